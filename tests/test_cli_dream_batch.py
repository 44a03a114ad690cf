"""Batch dreaming (`dreamsound dream FOLDER_OR_FILES... --workers N | --ray`): the executors of
``evaluate`` run every input x target, with the same files and reports wherever they run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from dreamsound.cli import app
from dreamsound.errors import AudioError
from dreamsound.inputs import expand_inputs
from tests.experiments.conftest import ray_cluster  # noqa: F401  (the local Ray cluster)

runner = CliRunner()
#: A fast dream of the debug model toward two classes, one torch thread wherever it runs.
FAST = ["-m", "debug", "-t", "violin", "-t", "flute", "-n", "2", "--json"]
TIMING = ("seconds", "seconds_per_step")


@pytest.fixture
def one_thread(monkeypatch):
    """``--threads 1`` sets this process's torch threads and environment: restore them."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, "1")  # recorded, so restored at teardown
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _write(path: Path, seconds: float, hz: float) -> Path:
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(path, (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 16000)
    return path


@pytest.fixture
def sounds(tmp_path: Path) -> Path:
    """A folder of two short sounds (and things that are not inputs)."""
    folder = tmp_path / "in"
    folder.mkdir()
    _write(folder / "b.wav", 1.5, 330)
    _write(folder / "a.wav", 1.0, 550)
    _write(folder / ".hidden.wav", 0.5, 440)
    _write(folder / "a.dream-violin.wav", 0.5, 440)  # an earlier output
    (folder / "notes.txt").write_text("not a sound")
    (folder / "sub").mkdir()
    return folder


def _dream(*argv: str) -> list[dict]:
    result = runner.invoke(app, list(argv))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    """A report without wall times, its outputs by file name (each run writes elsewhere)."""
    report = {k: v for k, v in report.items() if k not in TIMING}
    report["outputs"] = {k: Path(v).name for k, v in report["outputs"].items()}
    return report


def _same_runs(first: Path, second: Path, reports: tuple[list[dict], list[dict]]) -> None:
    a, b = reports
    assert [_comparable(r) for r in a] == [_comparable(r) for r in b]
    assert [(Path(r["input"]).name, r["target"]) for r in a] == [
        ("a.wav", "violin"), ("a.wav", "flute"), ("b.wav", "violin"), ("b.wav", "flute")]
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir()) and len(names) == 12
    for name in names:
        if name.endswith(".wav"):
            assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_a_folder_expands_to_its_sounds_in_name_order(sounds: Path) -> None:
    assert expand_inputs([str(sounds), "noise:1s"]) == [
        str(sounds / "a.wav"), str(sounds / "b.wav"), "noise:1s"]
    reports = _dream("dream", str(sounds), "-m", "debug", "-t", "violin", "-n", "1", "--json")
    assert [r["input"] for r in reports] == [str(sounds / "a.wav"), str(sounds / "b.wav")]
    assert (sounds / "b.dream-violin.wav").is_file()
    assert not (sounds / "a.dream-violin.dream-violin.wav").exists()


def test_a_folder_without_sounds_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(AudioError, match="holds no audio files"):
        expand_inputs([str(tmp_path)])
    result = runner.invoke(app, ["dream", str(tmp_path), "-m", "debug", "-t", "violin"])
    assert result.exit_code == 2 and "holds no audio files" in result.stderr
    assert "Traceback" not in result.output


def test_a_bad_file_stops_the_batch_before_anything_is_written(sounds: Path) -> None:
    (sounds / "c.wav").write_text("not audio")
    before = sorted(p.name for p in sounds.iterdir())
    result = runner.invoke(app, ["dream", str(sounds), "-m", "debug", "-t", "violin", "-n", "1",
                                 "--workers", "2"])
    assert result.exit_code == 2, result.output
    assert "c.wav: holds text, not sound" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in sounds.iterdir()) == before


def test_workers_below_one_and_missing_ray_are_refused(sounds: Path, monkeypatch) -> None:
    result = runner.invoke(app, ["dream", str(sounds), "-m", "debug", "--workers", "0"])
    assert result.exit_code == 2 and "--workers" in result.output
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    result = runner.invoke(app, ["dream", str(sounds), "-m", "debug", "-t", "violin", "--ray"])
    assert result.exit_code == 2
    assert 'pip install "dreamsound-ml[ray]"' in result.stderr
    assert not (sounds / "b.dream-violin.wav").exists()


def test_ray_takes_an_optional_address_but_never_a_generated_start(sounds: Path,
                                                                   monkeypatch) -> None:
    import dreamsound.batch

    calls: list[dict] = []
    monkeypatch.setattr(dreamsound.batch, "run_batch", lambda ref, jobs, settings, **kw:
                        calls.append({"jobs": [j.source for j in jobs], **kw}) or [])
    a = str(sounds / "a.wav")
    for argv, address in ((["--ray", "noise:1", a], None), ([a, "--ray", "auto"], "auto"),
                          ([a, "--ray"], None), ([a, "--ray", "10.0.0.7:6379"], "10.0.0.7:6379")):
        result = runner.invoke(app, ["dream", *argv, "-m", "debug", "-q"])
        assert result.exit_code == 0, result.output
        assert calls[-1]["ray"] is True and calls[-1]["ray_address"] == address
    assert calls[0]["jobs"] == ["noise:1", a]


@pytest.mark.slow
def test_worker_processes_write_the_bytes_and_reports_of_one_process(
        sounds: Path, tmp_path: Path, one_thread: None) -> None:
    inline = _dream("--threads", "1", "dream", str(sounds), *FAST, "--out", f"{tmp_path}/one/")
    pooled = _dream("--threads", "1", "dream", str(sounds), *FAST, "--out", f"{tmp_path}/two/",
                    "--workers", "2")
    _same_runs(tmp_path / "one", tmp_path / "two", (inline, pooled))


@pytest.mark.slow
def test_ray_writes_the_bytes_and_reports_of_one_process(
        sounds: Path, tmp_path: Path, one_thread: None, ray_cluster: str,  # noqa: F811
        monkeypatch) -> None:
    monkeypatch.chdir(sounds)  # relative inputs and outputs: workers run where the driver does
    inline = _dream("--threads", "1", "dream", "a.wav", "b.wav", *FAST, "--out", "one/")
    on_ray = _dream("--threads", "1", "dream", "a.wav", "b.wav", *FAST, "--out", "two/",
                    "--ray", ray_cluster)
    _same_runs(sounds / "one", sounds / "two", (inline, on_ray))
