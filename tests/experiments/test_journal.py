"""The journal of an experiment: the results file (reading, appending, repairing) and run.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamsound.errors import DataError, OutputError
from dreamsound.experiments import journal as jr


def test_a_damaged_results_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"job": "a"}\nnot json\n{"job": "b"}\n')
    with pytest.raises(DataError, match="line 2"):
        jr.read_results(path)


def test_a_cut_last_line_is_ignored_and_a_later_record_wins(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"job": "a", "n": 1}\n{"job": "b"}\n{"job": "a", "n": 2}\n{"job": "c", "n')
    assert jr.read_results(path) == [{"job": "a", "n": 2}, {"job": "b"}]
    assert jr.read_results(tmp_path / "none.jsonl") == []
    path.write_text('{"job": "a"}\n["not", "a", "record"]\n')
    with pytest.raises(DataError, match="line 2 is not a dreamsound result"):
        jr.read_results(path)


def test_the_writer_cuts_a_cut_line_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"job": "a"}\n{"job": "b", "x": [1, ')
    with jr.ResultsWriter(path) as writer:
        writer.append({"job": "c", "value": 0.5})
    assert path.read_text() == '{"job": "a"}\n{"job": "c", "value": 0.5}\n'
    with jr.ResultsWriter(path) as writer, pytest.raises(ValueError):
        writer.append({"job": "d", "value": float("nan")})  # JSON has no NaN: refused
    assert [r["job"] for r in jr.read_results(path)] == ["a", "c"]


def test_run_file_refuses_other_settings_once_there_are_results(tmp_path: Path) -> None:
    settings = {"seed": 0, "model": "debug"}
    jr.check_run_file(tmp_path, settings)
    assert json.loads((tmp_path / jr.RUN_FILE).read_text()) == settings
    # No results yet: nothing to mix, so other settings simply replace the record.
    jr.check_run_file(tmp_path, {"seed": 1, "model": "debug"})
    (tmp_path / jr.RESULTS_FILE).write_text('{"job": "a"}\n')
    with pytest.raises(OutputError, match=r"another run \(model: 'debug' there, 'other' now\)"):
        jr.check_run_file(tmp_path, {"seed": 1, "model": "other"})
    jr.check_run_file(tmp_path, {"seed": 1, "model": "debug"})  # the same run goes on
    assert json.loads((tmp_path / jr.RUN_FILE).read_text())["seed"] == 1
