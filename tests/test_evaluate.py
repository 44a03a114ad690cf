"""`dreamsound evaluate`: data listing, job list, aggregation, report files, resumption, CLI.

Runs use the random ``debug`` model on tiny synthetic IRMAS-layout folders, with very few steps:
the point is the experiment's machinery, not the dreams.
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
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from dreamsound.cli import app
from dreamsound.config import DreamConfig
from dreamsound.errors import DataError, ModelError, OutputError, TargetError
from dreamsound.experiments.report import plot_heatmap, render_markdown, rmse_matrix, summarize
from dreamsound.models.base import resolve_class_name

ev = importlib.import_module("dreamsound.experiments.evaluate")

RATE = 16000
FAST = {"model": "debug", "max_steps": 2, "threshold": 0.9}


def _tone(freq: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
            ).astype(np.float32)


def write_training_set(root: Path, per_class: dict[str, int], *, seconds: float = 0.5) -> Path:
    """IRMAS training layout: ``root/<code>/<name>.wav``."""
    rng = np.random.default_rng(1)
    for c, (code, count) in enumerate(per_class.items()):
        (root / code).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            sf.write(root / code / f"{i:03d}__[{code}][nod][cla]{i:04d}__1.wav",
                     _tone(220.0 * (c + 1) + 7 * i, seconds, rng), RATE)
    return root


def write_testing_set(root: Path, labels: dict[str, list[str]]) -> Path:
    """IRMAS testing layout: ``root/<name>.wav`` beside ``root/<name>.txt`` (one code a line)."""
    rng = np.random.default_rng(2)
    root.mkdir(parents=True, exist_ok=True)
    for i, (name, codes) in enumerate(labels.items()):
        sf.write(root / f"{name}.wav", _tone(300.0 + 50 * i, 0.5, rng), RATE)
        (root / f"{name}.txt").write_text("".join(f"{c}\t \n" for c in codes))
    return root


@pytest.fixture
def train_dir(tmp_path: Path) -> Path:
    return write_training_set(tmp_path / "train", {"cel": 2, "flu": 2, "vio": 2})


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().split("\n") if line]


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Data set and job list
# --------------------------------------------------------------------------------------------


def test_list_clips_reads_both_layouts(tmp_path: Path) -> None:
    train = write_training_set(tmp_path / "train", {"cel": 2, "vio": 1})
    clips = ev.list_clips(train)
    assert [(c.rel, c.labels) for c in clips] == [
        ("cel/000__[cel][nod][cla]0000__1.wav", ("cel",)),
        ("cel/001__[cel][nod][cla]0001__1.wav", ("cel",)),
        ("vio/000__[vio][nod][cla]0000__1.wav", ("vio",)),
    ]
    test = write_testing_set(tmp_path / "test", {"a": ["pia"], "b": ["vio", "cel"]})
    by_rel = {c.rel: c for c in ev.list_clips(test)}
    assert by_rel["b.wav"].labels == ("vio", "cel")
    assert by_rel["b.wav"].true == "vio"  # the first label is the true class


def test_select_clips_is_seeded_and_takes_n_per_class() -> None:
    clips = [ev.LabelledClip(Path(f"/x/{code}/{i}.wav"), f"{code}/{i:02d}.wav", (code,))
             for code in ("vio", "cel") for i in range(12)]
    first = ev.select_clips(clips, per_class=3, seed=5)
    assert first == ev.select_clips(list(reversed(clips)), per_class=3, seed=5)
    assert [c.true for c in first] == ["cel"] * 3 + ["vio"] * 3  # IRMAS order, N each
    others = {tuple(c.rel for c in ev.select_clips(clips, per_class=3, seed=s))
              for s in range(6)}
    assert len(others) > 1  # the seed really shuffles
    assert len(ev.select_clips(clips, per_class=None, seed=0)) == 24
    with pytest.raises(DataError):
        ev.select_clips(clips, per_class=0, seed=0)


def test_job_list_is_deterministic_and_wrong_class_is_never_a_label() -> None:
    classes = ["cel", "cla", "flu", "gac", "vio"]
    rng = np.random.default_rng(0)
    clips = []
    for i in range(200):
        labels = tuple(rng.choice(classes, size=int(rng.integers(1, 4)), replace=False))
        clips.append(ev.LabelledClip(Path(f"/x/{i}.wav"), f"{i:03d}.wav", labels))
    jobs = ev.build_jobs(clips, classes=classes, seed=3)
    assert jobs == ev.build_jobs(clips, classes=classes, seed=3)
    clip_jobs = [j for j in jobs if isinstance(j, ev.ClipJob)]
    assert len(clip_jobs) == 200
    for job in clip_jobs:
        assert job.wrong != job.true
        assert job.wrong not in job.labels
        assert job.wrong in classes
    # Every admissible wrong class gets drawn, and another seed draws differently.
    assert {j.wrong for j in clip_jobs} == set(classes)
    other = [j for j in ev.build_jobs(clips, classes=classes, seed=4) if isinstance(j, ev.ClipJob)]
    assert [j.wrong for j in other] != [j.wrong for j in clip_jobs]
    # A clip's draw does not depend on the other clips in the list.
    alone = ev.build_jobs(clips[7:8], classes=classes, seed=3, noise=False)
    assert alone[0] == clip_jobs[7]
    noise_jobs = [j for j in jobs if isinstance(j, ev.NoiseJob)]
    assert [j.target for j in noise_jobs] == classes
    assert len({j.seed for j in jobs}) == len(jobs)


def test_a_clip_labelled_with_every_class_has_no_wrong_class() -> None:
    clip = ev.LabelledClip(Path("/x/a.wav"), "a.wav", ("cel", "vio"))
    with pytest.raises(DataError, match="no wrong class"):
        ev.build_jobs([clip], classes=["cel", "vio"], seed=0)


def test_class_indices_for_irmas_codes_and_yamnet_names() -> None:
    from dreamsound.data.irmas import IRMAS_CODES
    from dreamsound.models.registry import load_model
    from dreamsound.models.yamnet import class_map

    debug = load_model("debug", None, "cpu")
    assert ev.class_indices(debug, list(IRMAS_CODES)) == {c: i for i, c in enumerate(IRMAS_CODES)}

    names, mids = class_map()
    yamnet_like = SimpleNamespace(
        name="yamnet", class_names=list(names), class_codes=list(mids),
        resolve_class=lambda q: resolve_class_name(q, names, mids, model="yamnet"))
    index = ev.class_indices(yamnet_like, list(IRMAS_CODES))
    assert {c: names[i] for c, i in index.items()} == ev.YAMNET_CLASSES

    tiny = SimpleNamespace(name="tiny", class_names=["cello", "drums"], class_codes=[],
                           resolve_class=lambda q: resolve_class_name(q, ["cello", "drums"]))
    assert ev.class_indices(tiny, ["cel"]) == {"cel": 0}
    with pytest.raises(TargetError, match="no class for the data set's class 'vio'"):
        ev.class_indices(tiny, ["cel", "vio"])


# --------------------------------------------------------------------------------------------
# Aggregation from a known results file
# --------------------------------------------------------------------------------------------


def _dream(target: str, *, success: bool, confidence: float, rmse: float, steps: int,
           before: float = 0.2) -> dict:
    # The engine's own figures before rendering: a little more confident and closer.
    return {"target": target, "success": success, "reached_threshold": confidence >= 0.9,
            "confidence": confidence, "confidence_before": before, "rmse_db": rmse,
            "confidence_after": min(confidence + 0.05, 1.0), "rmse_db_spectrogram": rmse / 2,
            "steps": steps, "top1": target if success else "other"}


KNOWN_RECORDS = [
    {"job": "clip:cel/a.wav", "kind": "clip", "true": "cel",
     "correct": _dream("cel", success=True, confidence=0.95, rmse=1.0, steps=10),
     "wrong": _dream("vio", success=True, confidence=0.92, rmse=2.0, steps=20),
     "between": {"rmse_db": 2.5}},
    {"job": "clip:cel/b.wav", "kind": "clip", "true": "cel",
     "correct": _dream("cel", success=True, confidence=0.91, rmse=3.0, steps=30),
     "wrong": _dream("vio", success=False, confidence=0.50, rmse=4.0, steps=40),
     "between": {"rmse_db": 3.5}},
    {"job": "clip:vio/c.wav", "kind": "clip", "true": "vio",
     "correct": _dream("vio", success=False, confidence=0.80, rmse=2.0, steps=50),
     "wrong": _dream("cel", success=True, confidence=0.97, rmse=6.0, steps=60),
     "between": {"rmse_db": 5.0}},
    {"job": "clip:vio/d.wav", "kind": "clip", "error": "AudioError: d.wav: truncated"},
    {"job": "noise:cel", "kind": "noise", "target": "cel",
     "dream": _dream("cel", success=True, confidence=0.93, rmse=9.0, steps=5)},
    {"job": "noise:vio", "kind": "noise", "target": "vio",
     "dream": _dream("vio", success=False, confidence=0.40, rmse=7.0, steps=7)},
]


def test_summarize_computes_the_aggregates() -> None:
    s = summarize(KNOWN_RECORDS, classes=["cel", "vio"], threshold=0.9)
    assert (s["clips"], s["noise_dreams"], s["errors"]) == (3, 2, 1)
    assert s["failed"] == [{"job": "clip:vio/d.wav", "error": "AudioError: d.wav: truncated"}]
    assert s["success_rate_correct"] == pytest.approx(2 / 3)
    assert s["success_rate_wrong"] == pytest.approx(2 / 3)
    assert s["reached_threshold_rate_correct"] == pytest.approx(2 / 3)
    assert s["reached_threshold_rate_wrong"] == pytest.approx(2 / 3)
    assert s["mean_rmse_db_correct"] == pytest.approx(2.0)
    assert s["median_rmse_db_correct"] == pytest.approx(2.0)
    assert s["mean_rmse_db_wrong"] == pytest.approx(4.0)
    assert s["max_rmse_db_wrong"] == pytest.approx(6.0)
    assert s["mean_steps_correct"] == pytest.approx(30.0)
    assert s["no_step_rate_correct"] == 0.0
    assert s["mean_confidence_wrong"] == pytest.approx((0.92 + 0.50 + 0.97) / 3)
    assert s["mean_rmse_db_between"] == pytest.approx(11 / 3)
    assert s["reached_threshold_rate_spectrogram_correct"] == pytest.approx(2 / 3)  # .85 < .9
    assert s["reached_threshold_rate_spectrogram_wrong"] == pytest.approx(2 / 3)  # .55 < .9
    assert s["mean_rmse_db_spectrogram_wrong"] == pytest.approx(2.0)
    assert s["noise_success_rate"] == pytest.approx(0.5)
    assert s["noise_mean_steps"] == pytest.approx(6.0)

    cel, vio = s["per_class"]["cel"], s["per_class"]["vio"]
    assert cel["clips"] == 2 and vio["clips"] == 1
    assert cel["success_rate_correct"] == 1.0 and cel["success_rate_wrong"] == 0.5
    assert cel["mean_rmse_db_correct"] == pytest.approx(2.0)
    assert cel["median_rmse_db_wrong"] == pytest.approx(3.0)
    assert cel["mean_steps_wrong"] == pytest.approx(30.0)
    assert vio["success_rate_correct"] == 0.0 and vio["mean_rmse_db_wrong"] == pytest.approx(6.0)
    assert cel["noise_success"] is True and vio["noise_success"] is False

    pairs = {(p["true"], p["target"]): p for p in s["per_pair"]}
    assert list(pairs) == [("cel", "cel"), ("cel", "vio"), ("vio", "cel"), ("vio", "vio")]
    assert pairs["cel", "cel"]["kind"] == "correct" and pairs["cel", "vio"]["kind"] == "wrong"
    assert pairs["cel", "vio"]["n"] == 2
    assert pairs["cel", "vio"]["success_rate"] == 0.5
    assert pairs["cel", "vio"]["mean_rmse_db"] == pytest.approx(3.0)
    assert pairs["vio", "cel"]["mean_steps"] == pytest.approx(60.0)

    values, counts = rmse_matrix(s, ["cel", "vio"])
    assert values == [[pytest.approx(2.0), pytest.approx(3.0)],
                      [pytest.approx(6.0), pytest.approx(2.0)]]
    assert counts == [[2, 2], [1, 1]]
    json.dumps(s, allow_nan=False)  # the summary is plain JSON


def test_summarize_of_nothing_has_no_numbers() -> None:
    s = summarize([], classes=["cel"], threshold=0.9)
    assert s["clips"] == 0 and s["success_rate_correct"] is None
    assert s["mean_rmse_db_correct"] is None and s["per_pair"] == [] and s["per_class"] == {}


def test_markdown_and_heatmap_of_known_records(tmp_path: Path) -> None:
    s = summarize(KNOWN_RECORDS, classes=["cel", "vio", "flu"], threshold=0.9)
    text = render_markdown(s, {"command": "dreamsound evaluate data", "model": "debug",
                               "threshold": 0.9, "class_names": {"cel": "cello"},
                               "metric_definitions": {"rmse_db": "rmse_db: root of mse_db2; dB"}})
    for heading in ("## Run", "## Overall", "## Per class", "## Per class pair", "## Noise",
                    "## Metric definitions"):
        assert heading in text
    assert "| correct class | 3 | 66.7 % |" in text
    assert "cel (cello)" in text and "`dreamsound evaluate data`" in text
    assert "**rmse_db** — root of mse_db2; dB" in text
    assert "1 job(s) failed" in text
    png = plot_heatmap(s, tmp_path / "h.png", classes=["cel", "vio", "flu"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width = matplotlib.image.imread(png).shape[:2]
    assert width > 300 and height > 300
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


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
    assert len(_lines(out / "results.jsonl")) == 6
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
        return [_without_timing(r) for r in result.records]

    first = run("a", 0)
    assert run("b", 0) == first


def _without_timing(record: dict) -> dict:
    record = json.loads(json.dumps(record))
    for key in ("correct", "wrong", "dream"):
        if key in record:
            record[key].pop("seconds_taken", None)
            record[key].pop("audio", None)
    return record


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
    first_lines = _lines(out / "results.jsonl")
    assert len(first_lines) == 2
    done_first = list(ran)

    # A crash in the middle of writing a line leaves a partial last line: it is dropped.
    with open(out / "results.jsonl", "a") as handle:
        handle.write('{"job": "clip:vio/half')

    ran.clear()
    result = ev.evaluate(train_dir, out=out, per_class=2, **FAST)
    assert result.resumed == 2 and result.ran == result.total_jobs - 2 and result.complete
    assert not set(ran) & set(done_first)  # nothing finished was redone
    lines = _lines(out / "results.jsonl")
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


def test_a_damaged_results_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"job": "a"}\nnot json\n{"job": "b"}\n')
    with pytest.raises(DataError, match="line 2"):
        ev.read_results(path)


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
# Slow: worker processes, a real kill
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_worker_processes_give_the_same_results(train_dir: Path, tmp_path: Path) -> None:
    inline = ev.evaluate(train_dir, out=tmp_path / "one", per_class=1, workers=1, **FAST)
    pooled = ev.evaluate(train_dir, out=tmp_path / "two", per_class=1, workers=2, **FAST)
    assert [_without_timing(r) for r in pooled.records] == \
        [_without_timing(r) for r in inline.records]


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
        if results.exists() and len(_lines(results)) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = [line for line in _lines(results) if _is_json(line)]
    assert 3 <= len(before) < 15
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["resumed"] == len(before) and summary["ran"] == 15 - len(before)
    after = _lines(results)
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
        assert record["correct"]["target_name"] == ev.YAMNET_CLASSES[record["true"]]
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
