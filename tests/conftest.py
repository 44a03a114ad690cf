"""Shared fixtures: where ``../shared`` is, seeded RNGs, small synthetic signals."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

# Before torch is imported anywhere: see dreamsound/cli.py.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _import_scripts_package() -> None:
    """Make the checkout's ``scripts/`` importable as ``scripts`` (``scripts.data.render_trainset``
    etc.), as ``python -m scripts...`` from the repository root sees it.

    It is registered by file location, not by putting the repository root on ``sys.path``
    (``pythonpath = ["."]``): the root also holds the source ``dreamsound/``, which would then
    shadow the installed package, so CI's regular install would test the source tree, where
    ``dreamsound.shipped_models`` (the wheel's copy of ``models/``) does not exist.
    """
    if "scripts" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        "scripts", REPO / "scripts" / "__init__.py",
        submodule_search_locations=[str(REPO / "scripts")])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scripts"] = module
    spec.loader.exec_module(module)


_import_scripts_package()


def _shared_dir() -> Path | None:
    env = os.environ.get("DREAMSOUND_SHARED")
    candidate = Path(env) if env else REPO.parent / "shared"
    return candidate if candidate.is_dir() else None


SHARED = _shared_dir()


@pytest.fixture(scope="session")
def shared() -> Path:
    """The reference material folder (``../shared`` or ``$DREAMSOUND_SHARED``); skip without it."""
    if SHARED is None:
        pytest.skip("../shared (or $DREAMSOUND_SHARED) is not available: real weights and "
                    "golden files are needed for this test")
    return SHARED


@pytest.fixture(scope="session")
def yamnet_h5(shared: Path) -> Path:
    return shared / "yamnet" / "yamnet.h5"


@pytest.fixture(scope="session")
def golden(shared: Path):
    return np.load(shared / "golden" / "yamnet_reference.npz")


@pytest.fixture(scope="session")
def debug_model():
    """The tiny random offline model (same weights on every machine)."""
    from dreamsound.models.registry import load_model

    return load_model("debug", device="cpu")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's cache or the network from tests."""
    monkeypatch.setenv("DREAMSOUND_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("DREAMSOUND_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _no_lasting_thread_governor(monkeypatch):
    """A CLI test run in this process installs the load-following thread governor
    (dreamsound.threads); it must not outlive the test and change later tests' thread counts."""
    from dreamsound import threads

    monkeypatch.setattr(threads, "_governor", None)


# -- signals shared by the engine and API tests ----------------------------------------------------
SR = 16000


@pytest.fixture
def chord(rng) -> np.ndarray:
    """2 s of 440 + 660 Hz with a little noise, 16 kHz."""
    t = np.arange(2 * SR) / SR
    x = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 660 * t)
    return (x + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture
def chord_wav(tmp_path, chord):
    import soundfile as sf

    path = tmp_path / "chord.wav"
    sf.write(path, chord, SR, subtype="FLOAT")
    return path

