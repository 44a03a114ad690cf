"""scripts/experiments/train_instrument.py: the default model's recipe as one command."""

from __future__ import annotations

import pytest

from scripts.experiments import train_instrument as recipe


def test_dry_run_prints_every_render_and_the_training(tmp_path, capsys):
    assert recipe.main(["--work", str(tmp_path), "--out", str(tmp_path / "model"),
                        "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    renders, teacher, train = lines[:-2], lines[-2], lines[-1]
    assert len(renders) == 7
    assert all("--line-share 0.5" in line and "--seed 0" in line for line in renders)
    # MuseScore_General only where it plays its own recordings (preset_likeness).
    assert "MuseScore_General_Lite.sf3" in renders[-1]
    assert "--classes pia cel cla voi --programs 0 1 42 52 71 --out" in renders[-1]
    assert "--classes" not in " ".join(renders[:-1]) and "--programs" not in " ".join(renders[:-1])
    assert "scripts.data.teacher_targets" in teacher  # the recipe distils YAMNet's view
    assert train.startswith("dreamsound --threads 2 train ")
    assert train.endswith("--distil 0.5 --distil-label keep")
    assert train.count(f"{tmp_path}/render/train_l/") == 7
    assert not (tmp_path / "render").exists()  # nothing run, nothing written


def test_keep_selects_renders_before_training_and_bad_keeps_are_refused(tmp_path, capsys):
    recipe.main(["--work", str(tmp_path), "--keep", "0.6", "--teacher", "y.h5", "--distil", "0",
                 "--dry-run"])
    select, train = capsys.readouterr().out.strip().splitlines()[-2:]
    assert "scripts.data.select_renders" in select and "--keep 0.6" in select
    assert "--weights y.h5" in select and select.count(f"{tmp_path}/render/train_l/") == 7
    assert train.count(f"{tmp_path}/render/train_l_keep0.6/") == 7
    for bad in ("0", "1.5"):
        with pytest.raises(SystemExit) as stop:
            recipe.main(["--work", str(tmp_path), "--keep", bad, "--dry-run"])
        assert stop.value.code == 2
        assert "--keep must be in (0, 1]" in capsys.readouterr().err


def test_distil_writes_the_teacher_view_before_training_and_bad_shares_are_refused(tmp_path,
                                                                                  capsys):
    recipe.main(["--work", str(tmp_path), "--distil", "0.5", "--distil-label", "blend",
                 "--teacher", "y.h5", "--dry-run"])
    teacher, train = capsys.readouterr().out.strip().splitlines()[-2:]
    assert "scripts.data.teacher_targets" in teacher and "--weights y.h5" in teacher
    assert teacher.count(f"{tmp_path}/render/train_l/") == 7
    assert train.endswith("--distil 0.5 --distil-label blend")
    assert train.count(f"{tmp_path}/render/train_l/") == 7
    recipe.main(["--work", str(tmp_path), "--distil", "0.5", "--distil-label", "keep",
                 "--dry-run"])
    assert capsys.readouterr().out.strip().endswith("--distil 0.5 --distil-label keep")
    for bad in ("-0.1", "1"):
        with pytest.raises(SystemExit) as stop:
            recipe.main(["--work", str(tmp_path), "--distil", bad, "--dry-run"])
        assert stop.value.code == 2
        assert "--distil must be in [0, 1)" in capsys.readouterr().err
    recipe.main(["--work", str(tmp_path), "--distil", "0", "--dry-run"])
    out = capsys.readouterr().out
    assert "teacher_targets" not in out and "--distil" not in out  # labels only


def test_without_drops_sets_and_refuses_unknown_keys(tmp_path, capsys):
    recipe.main(["--work", str(tmp_path), "--without", "fluidr3gm", "musescore_ind",
                 "--dry-run"])
    train = capsys.readouterr().out.strip().splitlines()[-1]
    assert "fluidr3gm" not in train and "musescore" not in train and "a320u" in train
    with pytest.raises(SystemExit) as stop:
        recipe.main(["--work", str(tmp_path), "--without", "fluidr3", "--dry-run"])
    assert stop.value.code == 2
    assert "fluidr3gm" in capsys.readouterr().err


def test_a_missing_musescore_is_one_line_and_nothing_is_rendered(tmp_path, monkeypatch,
                                                                 capsys):
    monkeypatch.setattr(recipe, "MUSESCORE_LITE", tmp_path / "MuseScore_General_Lite.sf3")
    with pytest.raises(SystemExit) as stop:
        recipe.main(["--work", str(tmp_path / "work")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "musescore-general-soundfont-small" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "work").exists()
