"""The page's pure parts, without a server: the status line, the report table, and a page that
goes away cancelling its job."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("gradio", reason="the studio extra is not installed: pip install '.[studio]'")

from dreamsound.events import ProgressEvent
from dreamsound.studio.app import _follow, progress_html, report_markdown
from dreamsound.studio.workbench import Cancelled, Job

REPORT = {
    "model": "debug", "input": "loop.wav", "objective": "target", "target": "violin",
    "layer": None, "domain": "spectrogram", "rule": None, "steps": 3, "stopped": "until",
    "seconds": 1.25, "duration_s": 8.0, "confidence_before": 0.25, "confidence_after": 0.9,
    "confidence_rendered": 0.875, "objective_before": 0.1, "objective_after": 2.0,
    "top_before": [{"name": "flute", "score": 0.5}], "top_after": [{"name": "violin",
                                                                  "score": 0.9}],
    "top_rendered": [{"name": "violin", "score": 0.875}], "rmse_db": 1.5,
    "rmse_db_rendered": 1.75,
    "judges": [{"model": "instrument", "target": "violin", "confidence_before": 0.125,
                "confidence_after": 0.5, "moved": True},
               {"model": "musicnn", "target": None, "moved": None,
                "note": "musicnn has no class for clarinet"}],
}


def test_progress_line():
    line = progress_html(ProgressEvent(stage="dream", step=12, total=50, confidence=0.4312,
                                       rmse_db=1.824))
    assert "<progress value='12' max='50'>" in line
    assert "step 12/50 · confidence 0.431 · rmse_db 1.82 dB" in line
    last = progress_html(ProgressEvent(stage="dream", step=50, total=50))
    assert "rendering and judging the written file" in last
    assert "starting" in progress_html(None)


def test_report_table():
    text = report_markdown(REPORT)
    assert "3 steps (reached until) · 1.2 s" in text
    assert "| confidence of **violin** | 0.250 | 0.900 | 0.875 |" in text
    assert "| distance to the original | – | rmse_db 1.50 dB | rmse_db 1.75 dB |" in text
    assert "| judge instrument: violin | 0.125 | – | 0.500 (moved) |" in text
    assert "| judge musicnn | – | – | musicnn has no class for clarinet |" in text


def test_layer_report_shows_energy():
    text = report_markdown({**REPORT, "objective": "layer", "target": None, "layer": "conv2",
                            "judges": []})
    assert "| layer energy | 0.1 | 2 | – |" in text and "judge" not in text


def test_a_page_that_goes_away_cancels_its_job():
    def work(progress):
        for step in range(1, 10**6):
            progress(ProgressEvent(stage="dream", step=step, total=10**6))
            time.sleep(0.001)

    job = Job(work).start()
    updates = _follow(job, "status", "dreaming")
    next(updates)
    next(updates)
    updates.close()  # what gradio does to the event's generator when the page is gone
    with pytest.raises(Cancelled):
        job.result()
