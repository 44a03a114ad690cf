"""scripts/data/preset_likeness.py: telling presets that play the same recordings by their sound."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from scripts.data import preset_likeness as likeness
from scripts.data import render_trainset

SR = 44100
SF2_DIR = Path("/usr/share/sounds/sf2")
FONTS = (SF2_DIR / "TimGM6mb.sf2", SF2_DIR / "sf_GMbank.sf2")


def _tone(phases: np.ndarray, levels: np.ndarray, f0: float = 220.0) -> np.ndarray:
    t = np.arange(SR) / SR
    return sum(level * np.sin(2 * np.pi * f0 * (k + 1) * t + phase)
               for k, (phase, level) in enumerate(zip(phases, levels, strict=True)))


def test_a_delayed_scaled_copy_correlates_and_another_recording_does_not():
    rng = np.random.default_rng(0)
    levels = 1.0 / np.arange(1, 11)
    note = _tone(rng.uniform(0, 2 * np.pi, 10), levels)
    copy = 0.3 * np.concatenate([np.zeros(441), note[:-441]]) + 1e-3 * rng.standard_normal(SR)
    # The same instrument at the same pitch, recorded again: other partial phases and levels.
    other = _tone(rng.uniform(0, 2 * np.pi, 10), levels * rng.uniform(0.5, 1.5, 10))
    assert likeness.peak_correlation(note, copy) > 0.98
    assert likeness.peak_correlation(note, other) < likeness.SAME_THRESHOLD
    assert likeness.peak_correlation(note, np.zeros(SR)) == 0.0


def test_notes_span_the_voice_range():
    assert likeness.notes_of((40, 80)) == [46, 56, 66, 76]


@pytest.mark.skipif(shutil.which("fluidsynth") is None or not all(f.is_file() for f in FONTS),
                    reason="needs fluidsynth, timgm6mb-soundfont and csound-soundfont")
def test_a_soundfont_plays_its_own_recordings_and_not_another_ones():
    same = likeness.compare(FONTS[0], FONTS[0], ["flu"])
    assert [(r["class"], r["program"]) for r in same] == [("flu", 73)]
    assert same[0]["same_recordings"] and same[0]["median"] > 0.99
    assert len(same[0]["correlations"]) == len(likeness.NOTE_FRACTIONS)
    other = likeness.compare(FONTS[0], FONTS[1], ["flu"])
    assert not other[0]["same_recordings"] and other[0]["median"] < 0.8


def test_a_patch_set_is_refused_with_one_line(capsys, monkeypatch):
    if shutil.which("fluidsynth") is None:
        pytest.skip("needs fluidsynth")
    patch_set = Path("/etc/timidity/freepats.cfg")
    monkeypatch.setattr(likeness, "find_soundfont",
                        lambda name: patch_set if name == "freepats" else FONTS[0])
    assert likeness.main(["freepats", "TimGM6mb"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_lead_programs_restrict_the_labelled_voice_only():
    assert [v.program for v in render_trainset.lead_voices("voi", {52, 0})] == [52]
    assert render_trainset.lead_voices("tru", {52}) == ()
    assert render_trainset.lead_voices("pia") == render_trainset.CLASS_VOICES["pia"]
    for index in range(12):
        plan = render_trainset.plan_clip(0, "musescoregenerallite", "voi", index, 0.4,
                                         programs={52})
        assert plan.program == 52


def test_rendering_with_no_lead_voice_left_fails_before_any_folder(tmp_path, capsys):
    out = tmp_path / "set"
    with pytest.raises(SystemExit) as stop:
        render_trainset.render(out, soundfonts=["TimGM6mb"], per_class=1, seed=0, mix_share=0.0,
                               workers=1, classes=["tru"], programs={52}, progress=False)
    assert stop.value.code == 2 and not out.exists()
    assert "--programs" in capsys.readouterr().err
