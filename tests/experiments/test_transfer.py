"""Transfer in evaluations: judges, the null baseline, the reference, the table and
transfer.png."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dreamsound.cli import app
from dreamsound.experiments.evaluate import evaluate
from dreamsound.experiments.transfer import summarize_transfer, transfer_markdown

FAST = {"model": "debug", "per_class": 1, "max_steps": 2, "noise": False}


def _dream(target: str, moved: bool, gain: float, null_moved: bool = False,
           reference_moved: bool | None = None) -> dict:
    verdict = {"moved": moved, "gain": gain, "null_moved": null_moved, "null_gain": 0.0}
    if reference_moved is not None:
        verdict.update(reference_moved=reference_moved, reference_gain=0.1 * reference_moved)
    return {"target": target, "judges": {"j": verdict}}


def test_summary_counts_moves_against_the_null_baseline():
    records = [
        {"kind": "clip", "correct": _dream("vio", True, 0.3), "wrong": _dream("flu", True, 0.2)},
        {"kind": "clip", "correct": _dream("flu", False, 0.0), "wrong": _dream("vio", False,
                                                                              -0.1, True)},
        {"kind": "clip", "error": "AudioError: broken"},
    ]
    transfer = summarize_transfer(records, judges=["j"], classes=["flu", "vio"])
    wrong = transfer["by_kind"]["wrong"]["j"]
    assert (wrong["n"], wrong["rate"], wrong["null_rate"]) == (2, 0.5, 0.5)
    assert abs(wrong["gain"] - 0.05) < 1e-12
    assert transfer["by_class"]["j"]["flu"]["rate"] == 1.0
    assert transfer["by_class"]["j"]["vio"]["rate"] == 0.0
    assert transfer["by_kind"]["noise"]["j"]["n"] == 0
    assert wrong["n_reference"] == 0 and wrong["reference_rate"] is None
    text = "\n".join(transfer_markdown(transfer))
    assert "random wrong class | 50 % (50 % / –), +0.050 (+0.000)" in text


def test_the_reference_is_read_over_the_dreams_that_have_one():
    records = [
        {"kind": "clip", "correct": _dream("vio", True, 0.3),
         "wrong": _dream("flu", True, 0.2, reference_moved=True)},
        {"kind": "clip", "correct": _dream("flu", False, 0.0),
         "wrong": _dream("vio", False, -0.1, reference_moved=False)},
        {"kind": "clip", "correct": _dream("flu", False, 0.0), "wrong": _dream("cel", True, 0.4)},
    ]
    transfer = summarize_transfer(records, judges=["j"], classes=["cel", "flu", "vio"])
    wrong = transfer["by_kind"]["wrong"]["j"]
    assert (wrong["n"], wrong["n_reference"], wrong["reference_rate"]) == (3, 2, 0.5)
    assert abs(wrong["reference_gain"] - 0.05) < 1e-12
    assert transfer["by_class"]["j"]["cel"]["reference_rate"] is None
    text = "\n".join(transfer_markdown(transfer))
    assert "random wrong class | 67 % (0 % / 50 %)" in text


def test_evaluate_with_a_judge_writes_transfer(train_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = evaluate(train_dir, out=out, judges=["instrument"], **FAST)
    transfer = result.summary["transfer"]
    assert transfer["judges"] == ["instrument"]
    wrong = transfer["by_kind"]["wrong"]["instrument"]
    assert wrong["n"] == result.summary["clips"]
    assert 0.0 <= wrong["rate"] <= 1.0 and 0.0 <= wrong["null_rate"] <= 1.0
    record = result.records[0]
    verdict = record["wrong"]["judges"]["instrument"]
    assert {"confidence_before", "confidence_after", "gain", "moved", "null_gain",
            "null_moved", "reference_gain", "reference_moved"} <= set(verdict)
    assert wrong["n_reference"] == wrong["n"]  # every class has a second clip here
    assert 0.0 <= wrong["reference_rate"] <= 1.0
    assert (out / "transfer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Transfer to judges outside the dream" in (out / "report.md").read_text()
    # A run with other judges is another run: refused rather than mixed in.
    runner = CliRunner()
    again = runner.invoke(app, ["evaluate", str(train_dir), "-m", "debug", "--per-class", "1",
                                "--max-steps", "2", "--no-noise", "-o", str(out), "-q"])
    assert again.exit_code == 2


def test_cli_judges_and_refuses_a_dreaming_judge(train_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(train_dir), "-m", "debug", "--per-class", "1",
                                 "--max-steps", "2", "--no-noise", "--judge", "instrument",
                                 "-o", str(tmp_path / "a"), "-q"])
    assert result.exit_code == 0, result.output
    assert "judge instrument: moved on" in result.stdout
    doc = json.loads((tmp_path / "a" / "report.json").read_text())
    assert doc["info"]["judges"] == ["instrument"]
    bad = runner.invoke(app, ["evaluate", str(train_dir), "-m", "debug", "--judge", "debug",
                              "-o", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "never takes part" in bad.output
    assert not (tmp_path / "b").exists()
    twice = runner.invoke(app, ["evaluate", str(train_dir), "-m", "debug", "--judge",
                                "instrument", "--judge", "instrument", "-o", str(tmp_path / "c")])
    assert twice.exit_code == 2 and "a judge twice" in twice.output
    assert not (tmp_path / "c").exists()
