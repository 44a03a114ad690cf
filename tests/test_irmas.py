"""IRMAS readers on small fake trees built with the real data set's naming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dreamsound.data.irmas import (
    IRMAS_CODES,
    IRMAS_NAMES,
    detect_layout,
    parse_training_name,
    read_labels_file,
    read_testing_set,
    read_training_set,
)
from dreamsound.errors import DataError

# Names as they occur in IRMAS-TrainingData (with and without prefix / drums tag).
TRAINING_FILES = {
    "cel": ["008__[cel][nod][cla]0058__1.wav", "008__[cel][nod][cla]0058__2.wav",
            "012__[cel][nod][cla]0043__1.wav"],
    "cla": ["[cla][cla]0150__1.wav", "[cla][cla]0150__3.wav", "[cla][jaz_blu]0151__1.wav"],
    "vio": ["[vio][cla]2135__1.wav", "094__[vio][dru][pop_roc]2200__2.wav"],
    "voi": ["[voi][jaz_blu]2482__2.wav"],
}


def _wav(path: Path, seconds: float = 0.05) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(44100 * seconds)) / 44100
    tone = 0.1 * np.sin(2 * np.pi * 440 * t)
    sf.write(path, np.stack([tone, tone], axis=1), 44100, subtype="PCM_16")
    return path


@pytest.fixture
def training_tree(tmp_path: Path) -> Path:
    root = tmp_path / "IRMAS-TrainingData"
    for code, names in TRAINING_FILES.items():
        for name in names:
            _wav(root / code / name)
    # Clutter the real archives carry: Finder files and resource forks.
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "cel" / "._008__[cel][nod][cla]0058__1.wav").write_bytes(b"\0\5\26\7")
    (root / "__MACOSX").mkdir()
    return root


def test_class_constants_are_aligned():
    assert len(IRMAS_CODES) == len(IRMAS_NAMES) == 11
    assert IRMAS_NAMES[IRMAS_CODES.index("vio")] == "violin"
    assert IRMAS_NAMES[IRMAS_CODES.index("gac")] == "acoustic guitar"


@pytest.mark.parametrize(("name", "expected"), [
    ("008__[cel][nod][cla]0058__1.wav", ("008", "cel", False, "cla", "0058", "1")),
    ("110__[org][dru][jaz_blu]1117__2.wav", ("110", "org", True, "jaz_blu", "1117", "2")),
    ("[vio][cla]2135__1.wav", (None, "vio", None, "cla", "2135", "1")),
    ("[pia][jaz_blu]1513__1.wav", (None, "pia", None, "jaz_blu", "1513", "1")),
    # clarinet in classical music: the first "cla" is the instrument, the second the genre
    ("[cla][nod][cla]0001__3.wav", (None, "cla", False, "cla", "0001", "3")),
    ("notes about this file.wav", (None, None, None, None, None, None)),
])
def test_parse_training_name(name, expected):
    tags = parse_training_name(name)
    assert (tags.prefix, tags.instrument, tags.drums, tags.genre, tags.song,
            tags.excerpt) == expected


def test_read_training_set(training_tree):
    excerpts = read_training_set(training_tree)
    assert detect_layout(training_tree) == "training"
    assert len(excerpts) == sum(len(v) for v in TRAINING_FILES.values())  # no clutter read
    assert {e.label for e in excerpts} == set(TRAINING_FILES)
    by_name = {e.path.name: e for e in excerpts}
    cello = by_name["008__[cel][nod][cla]0058__2.wav"]
    assert (cello.label, cello.drums, cello.genre, cello.song, cello.excerpt) == \
        ("cel", False, "cla", "0058", "2")
    # Excerpts of one song share a group; another song does not.
    assert cello.group == by_name["008__[cel][nod][cla]0058__1.wav"].group
    assert cello.group != by_name["012__[cel][nod][cla]0043__1.wav"].group
    assert by_name["094__[vio][dru][pop_roc]2200__2.wav"].drums is True


def test_training_set_found_one_level_down(training_tree):
    # The folder the zip was extracted into works too.
    excerpts = read_training_set(training_tree.parent)
    assert len(excerpts) == sum(len(v) for v in TRAINING_FILES.values())


def test_folder_is_the_label_when_the_name_disagrees(training_tree, caplog):
    _wav(training_tree / "flu" / "[vio][cla]0001__1.wav")
    excerpts = read_training_set(training_tree)
    moved = [e for e in excerpts if e.path.parent.name == "flu"]
    assert [e.label for e in moved] == ["flu"]
    assert "using the folder" in caplog.text


def test_training_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_training_set(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="is empty"):
        read_training_set(empty)
    flat = tmp_path / "flat"
    _wav(flat / "[vio][cla]2135__1.wav")
    with pytest.raises(DataError, match="no class folders"):
        read_training_set(flat)
    wrong = tmp_path / "wrong"
    _wav(wrong / "vln" / "a.wav")
    _wav(wrong / "cel" / "b.wav")
    with pytest.raises(DataError, match="unknown class folder 'vln'"):
        read_training_set(wrong)
    others = tmp_path / "others"
    _wav(others / "songs" / "a.wav")
    with pytest.raises(DataError, match="no IRMAS class folders"):
        read_training_set(others)
    hollow = tmp_path / "hollow"
    (hollow / "cel").mkdir(parents=True)
    (hollow / "cel" / "readme.txt").write_text("no audio here")
    with pytest.raises(DataError, match=r"no \.wav files"):
        read_training_set(hollow)
    a_file = _wav(tmp_path / "x.wav")
    with pytest.raises(DataError, match="is a file"):
        read_training_set(a_file)


@pytest.fixture
def testing_tree(tmp_path: Path) -> Path:
    root = tmp_path / "IRMAS-Testing"
    part1, part2 = root / "IRMAS-TestingData-Part1", root / "IRMAS-TestingData-Part2"
    _wav(part1 / "0050_10CC___I_M_NOT_IN_LOVE-11.wav")
    (part1 / "0050_10CC___I_M_NOT_IN_LOVE-11.txt").write_text("gel\t\nvoi  \n")
    _wav(part1 / "(02) dont kill the whale-1.wav")
    (part1 / "(02) dont kill the whale-1.txt").write_text("pia\r\n")
    _wav(part2 / "Zamfir - The Lonely Shepherd - 01 - The Lonely Shepherd-9.wav")
    (part2 / "Zamfir - The Lonely Shepherd - 01 - The Lonely Shepherd-9.txt").write_text(
        "flu\n\norg\nflu\n")
    return root


def test_read_testing_set(testing_tree):
    assert detect_layout(testing_tree) == "testing"
    excerpts = read_testing_set(testing_tree)
    labels = {e.path.name: e.labels for e in excerpts}
    assert labels == {
        "0050_10CC___I_M_NOT_IN_LOVE-11.wav": ("gel", "voi"),
        "(02) dont kill the whale-1.wav": ("pia",),
        "Zamfir - The Lonely Shepherd - 01 - The Lonely Shepherd-9.wav": ("flu", "org"),
    }
    # One part on its own reads too.
    assert len(read_testing_set(testing_tree / "IRMAS-TestingData-Part2")) == 1


def test_testing_errors(testing_tree, tmp_path):
    part1 = testing_tree / "IRMAS-TestingData-Part1"
    bad = part1 / "(02) dont kill the whale-1.txt"
    bad.write_text("pia\nviolin\n")
    with pytest.raises(DataError, match=r"unknown label 'violin'.*line 2"):
        read_testing_set(testing_tree)
    bad.write_text("  \n\t\n")
    with pytest.raises(DataError, match="has no label"):
        read_labels_file(bad)
    bad.write_text("pia\n")
    _wav(part1 / "unlabelled.wav")
    with pytest.raises(DataError, match=r"has no label file unlabelled\.txt"):
        read_testing_set(testing_tree)


def test_layouts_are_told_apart(training_tree, testing_tree, tmp_path):
    with pytest.raises(DataError, match="training layout"):
        read_testing_set(training_tree)
    with pytest.raises(DataError, match="no IRMAS class folders"):
        read_training_set(testing_tree)
    lone = tmp_path / "lone"
    _wav(lone / "a.wav")
    with pytest.raises(DataError, match="no class folders"):
        detect_layout(lone)
