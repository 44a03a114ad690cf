"""The transfer benchmark: modes parse, every dream is judged against the null baseline and
the reference (a clip of the target class at the dream's distance), and ``--loop`` is left out
(not crashed on) when a model has no violin class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamsound import metrics
from scripts.experiments import bench_transfer
from tests.experiments.irmas_sets import write_training_set


def test_modes_parse_into_dream_settings():
    assert bench_transfer.parse_mode("exact") == {"style": "exact"}
    assert bench_transfer.parse_mode("robust/samples/changes=2/rmse=6/step=1.0") == {
        "style": "robust", "domain": "samples", "changes": 2, "max_rmse_db": 6.0,
        "step_size": 1.0}


def test_every_dream_is_judged_with_its_null_baseline(tmp_path: Path, capsys) -> None:
    data = write_training_set(tmp_path / "clips", {"flu": 1, "pia": 1, "vio": 1}, seconds=1.0)
    out = tmp_path / "rows.json"
    code = bench_transfer.main([str(data), "--clips", "2", "--loop", "--models", "debug",
                                "--judges", "instrument", "--modes",
                                "exact/steps=2,robust/changes=1/steps=2", "--threads", "1",
                                "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert [s["mode"] for s in result["summaries"]] == ["exact/steps=2",
                                                        "robust/changes=1/steps=2"]
    for run in result["runs"]:
        assert len(run["rows"]) == 3  # two clips and the loop
        for row in run["rows"]:
            assert row["target"] != row["true"]
            verdict = row["judges"]["instrument"]
            assert {"moved", "gain", "null_moved", "null_gain", "top_after"} <= set(verdict)
            assert verdict["gain"] == pytest.approx(verdict["confidence_after"]
                                                    - verdict["confidence_before"])
            assert verdict["moved"] == metrics.judge_moved(
                verdict["confidence_before"], verdict["confidence_after"],
                verdict["rank_before"], verdict["rank_after"])
            # the reference is a clip of the target class (when the folder has one), judged
            # by the same rule; the loop's violin always has one here
            if not (data / row["target"]).is_dir():
                assert row["reference_clip"] is None and "reference_moved" not in verdict
                continue
            assert Path(row["reference_clip"]).parent.name == row["target"]
            assert verdict["reference_moved"] == metrics.judge_moved(
                verdict["confidence_before"], verdict["reference_confidence_after"],
                verdict["rank_before"], verdict["reference_rank_after"])
            assert isinstance(verdict["replaced_moved"], bool)
    assert result["runs"][1]["config"]["changes"] == 1
    for run, summary in zip(result["runs"], result["summaries"]):
        per_target = summary["by_target"]
        assert set(per_target) == {r["target"] for r in run["rows"]}
        assert sum(t["dreams"] for t in per_target.values()) == len(run["rows"])
        moved = sum(t["instrument"] * t["dreams"] for t in per_target.values())
        assert round(moved) == sum(r["judges"]["instrument"]["moved"] for r in run["rows"])
        assert round(moved) == round(summary["instrument"]["rate"] * len(run["rows"]))
        judged = summary["instrument"]
        assert judged["rate"] <= min(judged["score_rose"], judged["rank_climbed"])
        verdicts = [r["judges"]["instrument"] for r in run["rows"]]
        climbed = sum(metrics.judge_rank_climbed(v["rank_before"], v["rank_after"])
                      for v in verdicts)
        assert round(judged["rank_climbed"] * len(verdicts)) == climbed
        chance = sum(metrics.judge_rank_climbed(v["rank_before"], v["null_rank_after"])
                     for v in verdicts)
        assert round(judged["null_rank_climbed"] * len(verdicts)) == chance
        assert judged["null_rate"] <= min(judged["null_score_rose"], judged["null_rank_climbed"])
        referenced = [v for v in verdicts if "reference_moved" in v]
        assert run["rows"][-1]["reference_clip"] and referenced
        assert judged["reference_rate"] == (sum(v["reference_moved"] for v in referenced)
                                            / len(referenced))
        assert judged["replaced_rate"] == (sum(v["replaced_moved"] for v in referenced)
                                           / len(referenced))
        assert judged["referenced"] == len(referenced)
        assert judged["referenced_rate"] == sum(v["moved"] for v in referenced) / len(referenced)
        assert judged["dream_only"] - judged["reference_only"] == (
            sum(v["moved"] for v in referenced) - sum(v["reference_moved"] for v in referenced))
        assert judged["dream_vs_reference_p"] == bench_transfer.mcnemar_exact_p(
            judged["dream_only"], judged["reference_only"])
    printed = capsys.readouterr().out
    assert "instrument rate (null / ref / in place)" in printed and "per target class" in printed
    assert "the two halves of 'moved'" in printed


def test_loop_is_skipped_when_a_model_has_no_violin(tmp_path: Path, capsys) -> None:
    data = write_training_set(tmp_path / "clips", {"gel": 1, "pia": 1}, seconds=1.0)
    out = tmp_path / "rows.json"
    code = bench_transfer.main([str(data), "--clips", "1", "--loop", "--models", "debug",
                                "--judges", "musicnn-msd", "--modes", "exact/steps=1",
                                "--threads", "1", "--json", str(out)])
    assert code == 0
    assert "--loop skipped: no violin class in musicnn-msd" in capsys.readouterr().out
    rows = json.loads(out.read_text())["runs"][0]["rows"]
    assert [Path(r["clip"]).name for r in rows] == ["000__[pia][nod][cla]0000__1.wav"]


def test_one_network_with_two_weight_files_is_two_members(tmp_path: Path) -> None:
    shipped = bench_transfer.REPO / "models" / "instrument_cnn" / "model.safetensors"
    data = write_training_set(tmp_path / "clips", {"flu": 1, "pia": 1}, seconds=1.0)
    out = tmp_path / "rows.json"
    code = bench_transfer.main([str(data), "--clips", "1", "--models",
                                f"instrument,instrument@{shipped}", "--judges",
                                "debug,instrument", "--modes", "robust/changes=1/steps=1",
                                "--threads", "1", "--json", str(out)])
    assert code == 0
    run = json.loads(out.read_text())["runs"][0]
    assert set(run["rows"][0]["judges"]) == {"debug"}  # a dreaming model never judges


def test_a_target_without_clips_has_no_reference(tmp_path: Path) -> None:
    data = write_training_set(tmp_path / "clips", {"flu": 1, "pia": 1}, seconds=1.0)
    assert bench_transfer.reference_clip(data, "vio", 0, 0) is None
    chosen = bench_transfer.reference_clip(data, "pia", 3, 0)
    assert chosen.parent.name == "pia"
    assert chosen == bench_transfer.reference_clip(data, "pia", 3, 0)  # seeded
    out = tmp_path / "rows.json"
    code = bench_transfer.main([str(data), "--clips", "1", "--loop", "--models", "debug",
                                "--judges", "instrument", "--modes", "exact/steps=1",
                                "--threads", "1", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    loop = result["runs"][0]["rows"][-1]
    assert loop["target"] == "vio" and loop["reference_clip"] is None
    assert "reference_moved" not in loop["judges"]["instrument"]
    # the summary reads the reference over the dreams that have it (here at most the clip's)
    summary = result["summaries"][0]["instrument"]
    other = result["runs"][0]["rows"][0]["judges"]["instrument"]
    if "reference_moved" in other:
        assert summary["reference_rate"] == float(other["reference_moved"])
    else:
        assert summary["reference_rate"] is None and summary["reference_gain"] is None


def test_the_reference_at_fixed_distances_counts_what_it_judged(tmp_path: Path) -> None:
    from dreamsound.data.irmas import IRMAS_CODES
    from scripts.experiments import reference_distance

    data = write_training_set(tmp_path / "clips", dict.fromkeys(IRMAS_CODES, 1), seconds=1.0)
    out = tmp_path / "curve.json"
    code = reference_distance.main([str(data), "--clips", "4", "--distances", "2,8",
                                    "--model", "debug", "--judges", "instrument,debug",
                                    "--threads", "1", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert result["pairs"] == len(rows) == 4  # every target has a clip here
    for row in rows:
        assert Path(row["reference_clip"]).parent.name == row["target"] != row["true"]
        assert set(row["judges"]) == {"instrument"}  # the distance's model never judges
        assert set(row["judges"]["instrument"]) == {"2", "8", "in_place"}
    for key in ("2", "8", "in_place"):
        moved = sum(r["judges"]["instrument"][key] for r in rows)
        assert result["rates"]["instrument"][key] == moved / len(rows)


def test_bad_distances_are_one_line_errors(capsys) -> None:
    from scripts.experiments import reference_distance

    for bad in ("3,x", "0,6", "-3"):
        with pytest.raises(SystemExit) as stop:
            reference_distance.main(["somewhere", "--distances", bad])
        assert stop.value.code == 2
        assert "--distances" in capsys.readouterr().err


def test_mcnemar_exact_p_against_hand_counts() -> None:
    p = bench_transfer.mcnemar_exact_p
    assert p(0, 0) == 1.0 and p(3, 3) == 1.0
    assert p(5, 0) == 2 / 32                       # 2 * (1/2)^5
    assert p(0, 5) == p(5, 0)                      # two-sided
    assert p(8, 2) == 2 * (1 + 10 + 45) / 1024     # 2 * P(X <= 2), X ~ Bin(10, 1/2)
    assert p(10, 1) < p(8, 2) < p(6, 4)


def test_a_folder_without_clips_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    from scripts.experiments import reference_distance

    empty = tmp_path / "empty"
    empty.mkdir()
    assert bench_transfer.main([str(empty), "--models", "debug", "--judges", "instrument",
                                "--modes", "exact/steps=1", "--threads", "1"]) == 2
    assert reference_distance.main([str(empty), "--model", "debug", "--judges", "instrument",
                                    "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {empty}: no clips (an IRMAS-layout folder holds CLASS/*.wav, "
                   "CLASS an IRMAS code such as vio)"] * 2
