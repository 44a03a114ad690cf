"""The report of the probing experiment: aggregates, markdown and heatmap from known records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamsound.experiments.report import plot_heatmap, render_markdown, rmse_matrix, summarize


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
