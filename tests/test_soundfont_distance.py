"""scripts/data/soundfont_distance.py: how far apart soundfonts sound on the same phrases."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from scripts.data import soundfont_distance as distance

SF2_DIR = Path("/usr/share/sounds/sf2")
FONTS = ("FluidR3_GM.sf2", "TimGM6mb.sf2", "sf_GMbank.sf2")

needs_fonts = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not all((SF2_DIR / f).is_file() for f in FONTS),
    reason="fluidsynth or the Debian GM soundfonts are not installed")


@needs_fonts
def test_same_samples_are_near_independent_recordings_are_far(tmp_path):
    # One font under two names plays the same phrases identically: exactly 0 dB.
    (tmp_path / "TimA.sf2").symlink_to(SF2_DIR / "TimGM6mb.sf2")
    (tmp_path / "TimB.sf2").symlink_to(SF2_DIR / "TimGM6mb.sf2")
    fonts = [tmp_path / "TimA.sf2", tmp_path / "TimB.sf2", SF2_DIR / "sf_GMbank.sf2",
             SF2_DIR / "FluidR3_GM.sf2"]
    table = distance.distance_table(fonts, ["vio"], per_class=2, seed=7)
    assert table["TimA vs TimB"]["vio"] == 0.0
    # TimGM6mb and sf_GMbank hold byte-identical violin samples; FluidR3_GM's are its own.
    assert table["TimA vs sf_GMbank"]["vio"] < 1.5
    assert table["TimA vs FluidR3_GM"]["vio"] > 5.0
    assert table["sf_GMbank vs FluidR3_GM"]["vio"] > 5.0


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for name in ("a/Font.sf2", "b/Font.sf2", "Other.sf2"):
        (tmp_path / name).write_bytes(b"RIFF")
    for argv, words in (([str(tmp_path / "a" / "Font.sf2"), str(tmp_path / "b" / "Font.sf2")],
                         "same file name"),
                        ([str(tmp_path / "a" / "Font.sf2"), "NoSuchFont"], "not found"),
                        # fluidsynth would render silence from it; refused before rendering.
                        ([str(tmp_path / "a" / "Font.sf2"), str(tmp_path / "Other.sf2")],
                         "cannot read")):
        with pytest.raises(SystemExit) as exc:
            distance.main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and words in err and "\n" not in err
