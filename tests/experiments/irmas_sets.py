"""Tiny synthetic IRMAS-layout data sets and helpers for reading an experiment's files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000
#: Evaluate settings that keep a run short: the random debug model, two steps per dream.
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


def file_lines(path: Path) -> list[str]:
    """The non-empty lines of a text file."""
    return [line for line in path.read_text().split("\n") if line]


def is_json(line: str) -> bool:
    """Whether ``line`` parses as JSON (a line cut by a kill does not)."""
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def without_timing(record: dict) -> dict:
    """A copy of a result record without what differs between runs (times, audio paths)."""
    record = json.loads(json.dumps(record))
    for key in ("correct", "wrong", "dream"):
        if key in record:
            record[key].pop("seconds_taken", None)
            record[key].pop("audio", None)
    return record


def summary_without_timing(summary: dict) -> dict:
    """A copy of a summary without what differs between runs (the noise dreams' times)."""
    summary = json.loads(json.dumps(summary))
    for dream in summary.get("noise", {}).values():
        dream.pop("seconds_taken", None)
        dream.pop("audio", None)
    return summary
