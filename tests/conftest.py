"""Shared fixtures: where ``../shared`` is, seeded RNGs, small synthetic signals."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

# Before torch is imported anywhere: see dreamsound/cli.py.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="session")
def load_script():
    """Import a script from scripts/ by module name (it is not a package). scripts/ goes on the
    path, so scripts that import their siblings work, and the module is registered by name, as
    dataclasses need."""
    folder = str(REPO / "scripts")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module
