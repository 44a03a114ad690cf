"""Selecting renders by YAMNet's view: per class the clips whose label YAMNet favours most are
linked, every clip's margin is recorded, and a set appears whole or not at all."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from scripts.data import select_renders


def test_kept_rows_are_the_largest_margins_per_label():
    labels = [0, 0, 0, 1, 1]
    margins = np.array([0.5, 2.0, -1.0, -3.0, -2.0])
    names = ["a", "b", "c", "d", "e"]
    assert select_renders.kept_rows(labels, names, margins, 0.6) == {0, 1, 4}
    assert select_renders.kept_rows(labels, names, margins, 0.01) == {1, 4}  # at least one


def test_selects_the_clips_yamnet_hears_as_their_label(tmp_path: Path, yamnet_h5: Path,
                                                      capsys) -> None:
    rate = 16000
    t = np.arange(3 * rate) / rate
    rng = np.random.default_rng(0)
    rendered = tmp_path / "renders" / "myset"
    clips = {  # "piano" clips: two piano-like decaying tones and one of white noise
        "pia/a.wav": np.sin(2 * np.pi * 262 * t) * np.exp(-3 * (t % 0.5)),
        "pia/b.wav": np.sin(2 * np.pi * 330 * t) * np.exp(-3 * (t % 0.5)),
        "pia/c.wav": rng.standard_normal(t.size),
        "flu/d.wav": np.sin(2 * np.pi * 523 * t),
    }
    for name, wave in clips.items():
        (rendered / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(rendered / name, (0.3 * wave).astype(np.float32), rate)
    (rendered / "manifest.csv").write_text("file,class,kind\npia/a.wav,pia,solo\n"
                                           "pia/b.wav,pia,solo\npia/c.wav,pia,solo\n"
                                           "flu/d.wav,flu,solo\n")
    out = tmp_path / "selected"
    argv = [str(rendered), "--out", str(out), "--keep", "0.67", "--weights", str(yamnet_h5),
            "--threads", "1"]
    assert select_renders.main(argv) == 0
    assert "myset: kept 3 of 4 clips" in capsys.readouterr().out

    with open(out / "myset" / "selection.csv", newline="") as handle:
        rows = {r["file"]: r for r in csv.DictReader(handle)}
    assert set(rows) == {"a.wav", "b.wav", "c.wav", "d.wav"}
    piano = sorted(("a.wav", "b.wav", "c.wav"), key=lambda f: -float(rows[f]["margin"]))
    kept = {f for f, r in rows.items() if r["kept"] == "1"}
    assert kept == set(piano[:2]) | {"d.wav"}
    assert "c.wav" not in kept  # noise sounds less like a piano to YAMNet than a struck tone
    links = sorted(p.relative_to(out / "myset").as_posix()
                   for p in (out / "myset").rglob("*.wav"))
    assert links == sorted(f"{rows[f]['class']}/{f}" for f in kept)
    assert all(p.is_symlink() and p.resolve().is_file() for p in (out / "myset").rglob("*.wav"))
    manifest = (out / "myset" / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 1 + len(kept) and all("c.wav" not in line for line in manifest)

    with pytest.raises(SystemExit):  # never mixes into an earlier selection
        select_renders.main(argv)
    assert "exists" in capsys.readouterr().err


def test_bad_inputs_are_one_line_errors_and_leave_nothing(tmp_path: Path, yamnet_h5: Path,
                                                          capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    good = tmp_path / "good"
    (good / "pia").mkdir(parents=True)
    sf.write(good / "pia" / "a.wav", np.zeros(16000, np.float32), 16000)
    out = tmp_path / "selected"
    code = select_renders.main([str(good), "--out", str(out), "--weights",
                                str(tmp_path / "missing.h5"), "--threads", "1"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "missing.h5" in err
    assert not out.exists()
    with pytest.raises(SystemExit) as stop:
        select_renders.main([str(empty), "--out", str(out), "--keep", "0", "--threads", "1"])
    assert stop.value.code == 2 and not out.exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:  # an empty set after a good one: nothing written
        select_renders.main([str(good), str(empty), "--out", str(out), "--weights",
                             str(yamnet_h5), "--threads", "1"])
    assert stop.value.code == 2 and "no wavs" in capsys.readouterr().err
    assert not out.exists()
    (good / "pia" / "b.wav").write_bytes(b"not audio")  # an unreadable clip: one line, exit 2
    assert select_renders.main([str(good), "--out", str(out), "--weights", str(yamnet_h5),
                                "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_teacher_file_holds_the_concept_logits_of_every_clip(tmp_path: Path, yamnet_h5: Path,
                                                            capsys) -> None:
    from dreamsound.data.irmas import IRMAS_CODES
    from scripts.data import teacher_targets

    rate = 16000
    t = np.arange(3 * rate) / rate
    rendered = tmp_path / "myset"
    for name, freq in (("pia/a.wav", 262), ("flu/b.wav", 523)):
        (rendered / name).parent.mkdir(parents=True, exist_ok=True)
        wave = np.sin(2 * np.pi * freq * t) * (np.exp(-3 * (t % 0.5)) if "pia" in name else 1)
        sf.write(rendered / name, (0.3 * wave).astype(np.float32), rate)
    assert teacher_targets.main([str(rendered), "--weights", str(yamnet_h5), "--threads",
                                 "1"]) == 0
    assert "myset: 2 clips" in capsys.readouterr().out
    with open(rendered / "teacher.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["class"], r["file"]) for r in rows] == [("flu", "b.wav"), ("pia", "a.wav")]
    logits = np.array([[float(r[c]) for c in IRMAS_CODES] for r in rows])
    # The margins select_renders ranks by are the same numbers seen from the label.
    from dreamsound.models.registry import load_model

    model = load_model("yamnet", weights=yamnet_h5, device="cpu")
    items = select_renders.class_items(rendered)
    margins = select_renders.concept_margins(model, items)
    for row, (label, _) in enumerate(items):
        assert margins[row] == pytest.approx(logits[row, label] - np.delete(logits[row],
                                                                          label).max(), abs=1e-3)
    assert not list(rendered.glob("*.partial"))
    # A folder with no clips is refused before anything is written.
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit):
        teacher_targets.main([str(empty), "--weights", str(yamnet_h5)])
    assert not (empty / "teacher.csv").exists()
