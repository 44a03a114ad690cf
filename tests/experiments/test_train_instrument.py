"""scripts/experiments/train_instrument.py: the default model's recipe as one command."""

from __future__ import annotations

import pytest

from scripts.experiments import train_instrument as recipe


def test_dry_run_prints_every_render_and_the_training(tmp_path, capsys):
    assert recipe.main(["--work", str(tmp_path), "--out", str(tmp_path / "model"),
                        "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    renders, train = lines[:-1], lines[-1]
    assert len(renders) == 7
    assert all("--line-share 0.5" in line and "--seed 0" in line for line in renders)
    assert "--classes pia tru" in renders[-1] and "--classes" not in " ".join(renders[:-1])
    assert train.startswith("dreamsound --threads 2 train ")
    assert train.count(f"{tmp_path}/render/train_l/") == 7
    assert not (tmp_path / "render").exists()  # nothing run, nothing written


def test_keep_selects_renders_before_training_and_bad_keeps_are_refused(tmp_path, capsys):
    recipe.main(["--work", str(tmp_path), "--keep", "0.6", "--teacher", "y.h5", "--dry-run"])
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
    recipe.main(["--work", str(tmp_path), "--distil", "0.5", "--teacher", "y.h5", "--dry-run"])
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
    recipe.main(["--work", str(tmp_path), "--dry-run"])
    assert "teacher_targets" not in capsys.readouterr().out  # the recipe: labels only


def test_without_drops_sets_and_refuses_unknown_keys(tmp_path, capsys):
    recipe.main(["--work", str(tmp_path), "--without", "fluidr3gm", "musescore_pia_tru",
                 "--dry-run"])
    train = capsys.readouterr().out.strip().splitlines()[-1]
    assert "fluidr3gm" not in train and "musescore" not in train and "a320u" in train
    with pytest.raises(SystemExit) as stop:
        recipe.main(["--work", str(tmp_path), "--without", "fluidr3", "--dry-run"])
    assert stop.value.code == 2
    assert "fluidr3gm" in capsys.readouterr().err


def test_musescore_is_rendered_through_a_link_with_the_shipped_name(tmp_path, monkeypatch,
                                                                    capsys):
    lite = tmp_path / "MuseScore_General_Lite.sf3"
    monkeypatch.setattr(recipe, "MUSESCORE_LITE", lite)
    with pytest.raises(SystemExit) as stop:
        recipe.link_musescore(tmp_path / "sf", dry_run=False)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "musescore-general-soundfont-small" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "sf").exists()
    lite.write_bytes(b"sf3")
    link = recipe.link_musescore(tmp_path / "sf", dry_run=False)
    assert link.name == "MuseScore_General.sf3" and link.resolve() == lite.resolve()
    assert recipe.link_musescore(tmp_path / "sf", dry_run=False) == link  # kept as it is
    link.unlink()
    link.symlink_to(tmp_path / "gone.sf3")  # dangling: replaced, not an error
    assert recipe.link_musescore(tmp_path / "sf", dry_run=False).resolve() == lite.resolve()
