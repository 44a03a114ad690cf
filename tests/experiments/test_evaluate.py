"""`dreamsound evaluate` end to end: report files, resumption, refusals, errors, CLI.

Runs use the random ``debug`` model on tiny synthetic IRMAS-layout folders, with very few steps:
the point is the experiment's machinery, not the dreams. Where the jobs run (a process pool, a
Ray cluster) is tested in test_executors.py.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dreamsound.cli import app
from dreamsound.config import DreamConfig
from dreamsound.errors import DataError, ModelError, OutputError
from dreamsound.experiments.report import summarize
from dreamsound.models.concepts import find_concept
from tests.experiments.irmas_sets import (
    FAST,
    file_lines,
    is_json,
    without_timing,
    write_testing_set,
    write_training_set,
)

ev = importlib.import_module("dreamsound.experiments.evaluate")


# --------------------------------------------------------------------------------------------
# End to end (debug model)
# --------------------------------------------------------------------------------------------


def test_evaluate_writes_a_complete_report(train_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    calls: list[tuple[int, int]] = []
    result = ev.evaluate(train_dir, out=out, per_class=1, seed=0, keep_audio=True,
                         progress=lambda e: calls.append((e.step, e.total)), **FAST)
    assert result.complete and result.total_jobs == 3 + 3 and result.ran == 6
    assert calls[-1] == (6, 6)
    for name in ("report.json", "report.md", "heatmap.png", "results.jsonl", "run.json"):
        assert (out / name).is_file(), name
    doc = json.loads((out / "report.json").read_text())
    summary = doc["summary"]
    for key in ("clips", "success_rate_correct", "success_rate_wrong", "mean_rmse_db_correct",
                "mean_rmse_db_wrong", "noise_success_rate", "per_class", "per_pair", "noise"):
        assert key in summary, key
    assert summary["clips"] == 3 and summary["noise_dreams"] == 3 and summary["errors"] == 0
    assert set(summary["per_class"]) == {"cel", "flu", "vio"}
    assert doc["info"]["class_names"] == {"cel": "cello", "flu": "flute", "vio": "violin"}
    assert len(file_lines(out / "results.jsonl")) == 6
    for record in doc["records"]:
        if record["kind"] == "clip":
            assert record["wrong"]["target"] != record["true"]
            assert record["correct"]["target"] == record["true"]
            assert math.isfinite(record["between"]["rmse_db"])
            dreams = [record["correct"], record["wrong"]]
        else:
            dreams = [record["dream"]]
        for dream in dreams:
            assert 1 <= dream["steps"] <= 2
            assert 0.0 <= dream["confidence"] <= 1.0
            assert dream["rmse_db"] >= 0.0
            assert dream["reached_threshold"] == (dream["confidence"] >= 0.9)
            assert Path(dream["audio"]).is_file()
    wavs = sorted(p.relative_to(out / "audio").as_posix() for p in (out / "audio").rglob("*.wav"))
    assert len(wavs) == 9 and "noise/noise__to_vio.wav" in wavs
    md = (out / "report.md").read_text()
    assert "## Per class pair" in md and "dreamsound.evaluate(" in md
    # The summary is built from the results file: the same numbers come back from it.
    records = ev.read_results(out / "results.jsonl")
    assert summarize(records, classes=["cel", "flu", "vio"], threshold=0.9) == summary


def test_same_seed_same_results(train_dir: Path, tmp_path: Path) -> None:
    def run(out: str, seed: int) -> list[dict]:
        result = ev.evaluate(train_dir, out=tmp_path / out, per_class=1, seed=seed,
                             noise=False, **FAST)
        return [without_timing(r) for r in result.records]

    first = run("a", 0)
    assert run("b", 0) == first


def test_an_interrupted_run_resumes_without_redoing_finished_jobs(
        train_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    ran: list[str] = []
    real_run_job = ev.run_job

    def counting_run_job(job, **kwargs):
        ran.append(job.job)
        return real_run_job(job, **kwargs)

    monkeypatch.setattr(ev, "run_job", counting_run_job)

    class Stop(Exception):
        pass

    def stop_after_two(record: dict) -> None:
        if len(ran) == 2:
            raise Stop  # as if the process were killed right after the second job was saved

    with pytest.raises(Stop):
        ev.evaluate(train_dir, out=out, per_class=2, on_record=stop_after_two, **FAST)
    first_lines = file_lines(out / "results.jsonl")
    assert len(first_lines) == 2
    done_first = list(ran)

    # A crash in the middle of writing a line leaves a partial last line: it is dropped.
    with open(out / "results.jsonl", "a") as handle:
        handle.write('{"job": "clip:vio/half')

    ran.clear()
    result = ev.evaluate(train_dir, out=out, per_class=2, **FAST)
    assert result.resumed == 2 and result.ran == result.total_jobs - 2 and result.complete
    assert not set(ran) & set(done_first)  # nothing finished was redone
    lines = file_lines(out / "results.jsonl")
    assert lines[:2] == first_lines  # finished records are kept byte for byte
    ids = [json.loads(line)["job"] for line in lines]
    assert len(ids) == len(set(ids)) == result.total_jobs

    # Running the finished run again does nothing but rebuild the report.
    ran.clear()
    again = ev.evaluate(train_dir, out=out, per_class=2, **FAST)
    assert ran == [] and again.ran == 0 and again.resumed == again.total_jobs
    assert again.summary == result.summary


def test_max_jobs_runs_part_and_reports_it(train_dir: Path, tmp_path: Path) -> None:
    result = ev.evaluate(train_dir, out=tmp_path / "out", per_class=1, noise=False,
                         max_jobs=2, **FAST)
    assert result.ran == 2 and not result.complete and result.summary["clips"] == 2
    assert json.loads((tmp_path / "out" / "report.json").read_text())["info"]["complete"] is False


def test_results_of_other_settings_are_not_mixed_in(train_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ev.evaluate(train_dir, out=out, per_class=1, noise=False, max_jobs=1, **FAST)
    with pytest.raises(OutputError, match="threshold"):
        ev.evaluate(train_dir, out=out, per_class=1, noise=False, model="debug", max_steps=2,
                    threshold=0.8)


def test_a_broken_clip_becomes_an_error_record(tmp_path: Path) -> None:
    data = write_training_set(tmp_path / "data", {"cel": 1, "vio": 0})
    broken = data / "vio" / "999__[vio][nod][cla]0999__1.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    result = ev.evaluate(data, out=tmp_path / "out", noise=False, **FAST)
    failed = [r for r in result.records if r.get("error")]
    assert [r["job"] for r in failed] == [f"clip:vio/{broken.name}"]
    assert failed[0]["error"].startswith("AudioError: ")
    assert result.summary["errors"] == 1 and result.summary["clips"] == 1
    assert "1 job(s) failed" in (tmp_path / "out" / "report.md").read_text()


def test_testing_layout_multi_label_clips(tmp_path: Path) -> None:
    data = write_testing_set(tmp_path / "test", {"a": ["cel", "vio"], "b": ["vio", "cel"],
                                                 "c": ["flu"]})
    result = ev.evaluate(data, out=tmp_path / "out", noise=False, **FAST)
    by_file = {r["file"]: r for r in result.records}
    # With classes cel, flu, vio, the only wrong class for a cel+vio clip is flu.
    assert by_file["a.wav"]["true"] == "cel" and by_file["a.wav"]["wrong"]["target"] == "flu"
    assert by_file["b.wav"]["true"] == "vio" and by_file["b.wav"]["wrong"]["target"] == "flu"
    assert by_file["c.wav"]["wrong"]["target"] in {"cel", "vio"}


@pytest.mark.parametrize("make, error", [
    (lambda p: p / "missing", DataError),
    (lambda p: (p / "empty").mkdir() or p / "empty", DataError),
    (lambda p: write_training_set(p / "one", {"cel": 2}), DataError),
])
def test_bad_data_folders(tmp_path: Path, make, error) -> None:
    with pytest.raises(error):
        ev.evaluate(make(tmp_path), out=tmp_path / "out", **FAST)


def test_unknown_model_and_bad_settings(train_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown model"):
        ev.evaluate(train_dir, out=tmp_path / "out", model="nope")
    from dreamsound.errors import DreamsoundError

    with pytest.raises(DreamsoundError, match="threshold"):
        ev.evaluate(train_dir, out=tmp_path / "out", model="debug", threshold=1.5)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        ev.evaluate(train_dir, out=tmp_path / "file", **FAST)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def test_cli_evaluate_json(train_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["evaluate", str(train_dir), "--model", "debug",
                                      "--per-class", "1", "--max-steps", "2", "--no-noise",
                                      "--out", str(out), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    for key in ("clips", "success_rate_correct", "success_rate_wrong", "mean_rmse_db_correct",
                "mean_rmse_db_wrong", "noise_success_rate", "per_class"):
        assert key in summary, key
    assert summary["clips"] == 3 and summary["noise_dreams"] == 0 and summary["complete"]
    md = (out / "report.md").read_text()
    assert "`dreamsound evaluate " in md and "--model debug" in md and "--no-noise" in md


def test_dream_config_reaches_the_engine_and_bad_settings_fail_at_once(train_dir: Path,
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["evaluate", str(train_dir), "-m", "debug", "--per-class",
                                      "1", "--max-steps", "1", "--no-noise", "--domain",
                                      "waveform", "--step-size", "0.02", "-o", str(out), "-q",
                                      "--json"])
    assert result.exit_code == 0, result.output
    stored = json.loads((out / "run.json").read_text())["dream_config"]
    assert (stored["domain"], stored["step_size"], stored["until_rendered"]) == (
        "waveform", 0.02, True)
    assert (stored["until"], stored["steps"]) == (ev.DEFAULT_THRESHOLD, 1)
    assert DreamConfig.from_json(stored).domain == "waveform"  # the journal's config round-trips
    assert "--domain waveform --step-size 0.02" in (out / "report.md").read_text()
    from dreamsound.errors import DreamsoundError

    with pytest.raises(DreamsoundError, match="unknown dream setting 'domian'"):
        DreamConfig.from_kwargs(domian="waveform")
    bad = CliRunner().invoke(app, ["evaluate", str(train_dir), "-m", "debug", "--domain", "time",
                                   "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--domain 'time' is not one of" in bad.output
    assert not (tmp_path / "x").exists()  # nothing was started


def test_cli_evaluate_table_and_errors(train_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["evaluate", str(train_dir), "-m", "debug", "--per-class", "1", "--max-steps", "1",
            "--no-noise", "-o", str(tmp_path / "out"), "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "correct class" in result.stdout and "report.md" in result.stdout
    again = runner.invoke(app, args)
    assert "resumed: 3 of 3" in again.stdout
    bad = runner.invoke(app, ["evaluate", str(tmp_path / "nothing"), "-m", "debug", "-q"])
    assert bad.exit_code == 2
    assert "data folder not found" in bad.stderr and "Traceback" not in bad.output


def test_cli_default_max_steps_matches_the_library() -> None:
    import inspect

    from dreamsound.cli.evaluate import evaluate as command

    parameters = inspect.signature(command).parameters
    assert parameters["max_steps"].default == ev.DEFAULT_MAX_STEPS
    assert parameters["threshold"].default == ev.DEFAULT_THRESHOLD


# --------------------------------------------------------------------------------------------
# Slow: a real kill
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_killing_the_command_and_running_it_again(tmp_path: Path) -> None:
    data = write_training_set(tmp_path / "data", {"cel": 4, "flu": 4, "vio": 4}, seconds=1.0)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dreamsound", "evaluate", str(data), "--model", "debug",
           "--max-steps", "10", "--out", str(out), "--quiet", "--json"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if results.exists() and len(file_lines(results)) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = [line for line in file_lines(results) if is_json(line)]
    assert 3 <= len(before) < 15
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["resumed"] == len(before) and summary["ran"] == 15 - len(before)
    after = file_lines(results)
    assert after[:len(before)] == before
    assert len({json.loads(line)["job"] for line in after}) == len(after) == 15


@pytest.mark.slow
def test_yamnet_through_the_irmas_class_map(tmp_path: Path, yamnet_h5: Path) -> None:
    data = write_training_set(tmp_path / "data", {"cel": 1, "pia": 1, "voi": 1}, seconds=1.0)
    result = ev.evaluate(data, out=tmp_path / "out", model="yamnet", weights=yamnet_h5,
                         max_steps=2, noise=False)
    assert result.info["class_names"] == {"cel": "Cello", "pia": "Piano", "voi": "Singing"}
    assert result.summary["clips"] == 3 and result.summary["errors"] == 0
    for record in result.records:
        assert record["correct"]["target_name"] == find_concept(record["true"]).audioset[0]
        assert record["correct"]["confidence"] > record["correct"]["confidence_before"]


def test_results_of_other_weights_are_not_mixed_in(train_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Same model name, same settings, different weights (a retrained default model, say).
    out = tmp_path / "out"
    first = ev.evaluate(train_dir, out=out, per_class=1, noise=False, max_jobs=1, **FAST)
    assert first.info["model_sha256"] == json.loads((out / "run.json").read_text())[
        "model_sha256"]
    from dreamsound.models import registry

    original = registry.load_model

    def retrained(*args, **kwargs):
        net = original(*args, **kwargs)
        with torch.no_grad():
            next(iter(net.parameters())).add_(0.01)
        return net

    monkeypatch.setattr(registry, "load_model", retrained)
    with pytest.raises(OutputError, match="model_sha256"):
        ev.evaluate(train_dir, out=out, per_class=1, noise=False, **FAST)
    monkeypatch.setattr(registry, "load_model", original)
    again = ev.evaluate(train_dir, out=out, per_class=1, noise=False, **FAST)
    assert again.resumed == 1
