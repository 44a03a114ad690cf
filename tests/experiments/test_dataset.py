"""The data set of an experiment: listing both IRMAS layouts, the seeded selection, class maps."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from dreamsound.errors import DataError, TargetError
from dreamsound.experiments import dataset as ds
from dreamsound.models.base import resolve_class_name
from dreamsound.models.concepts import CONCEPTS
from tests.experiments.irmas_sets import write_testing_set, write_training_set


def test_list_clips_reads_both_layouts(tmp_path: Path) -> None:
    train = write_training_set(tmp_path / "train", {"cel": 2, "vio": 1})
    clips = ds.list_clips(train)
    assert [(c.rel, c.labels) for c in clips] == [
        ("cel/000__[cel][nod][cla]0000__1.wav", ("cel",)),
        ("cel/001__[cel][nod][cla]0001__1.wav", ("cel",)),
        ("vio/000__[vio][nod][cla]0000__1.wav", ("vio",)),
    ]
    test = write_testing_set(tmp_path / "test", {"a": ["pia"], "b": ["vio", "cel"]})
    by_rel = {c.rel: c for c in ds.list_clips(test)}
    assert by_rel["b.wav"].labels == ("vio", "cel")
    assert by_rel["b.wav"].true == "vio"  # the first label is the true class


def test_select_clips_is_seeded_and_takes_n_per_class() -> None:
    clips = [ds.LabelledClip(Path(f"/x/{code}/{i}.wav"), f"{code}/{i:02d}.wav", (code,))
             for code in ("vio", "cel") for i in range(12)]
    first = ds.select_clips(clips, per_class=3, seed=5)
    assert first == ds.select_clips(list(reversed(clips)), per_class=3, seed=5)
    assert [c.true for c in first] == ["cel"] * 3 + ["vio"] * 3  # IRMAS order, N each
    others = {tuple(c.rel for c in ds.select_clips(clips, per_class=3, seed=s))
              for s in range(6)}
    assert len(others) > 1  # the seed really shuffles
    assert len(ds.select_clips(clips, per_class=None, seed=0)) == 24
    with pytest.raises(DataError):
        ds.select_clips(clips, per_class=0, seed=0)


def test_class_indices_for_irmas_codes_and_yamnet_names() -> None:
    from dreamsound.data.irmas import IRMAS_CODES
    from dreamsound.models.registry import load_model
    from dreamsound.models.yamnet import class_map

    debug = load_model("debug", None, "cpu")
    assert ds.class_indices(debug, list(IRMAS_CODES)) == {c: i for i, c in enumerate(IRMAS_CODES)}

    names, mids = class_map()
    yamnet_like = SimpleNamespace(
        name="yamnet", class_names=list(names), class_codes=list(mids),
        resolve_class=lambda q: resolve_class_name(q, names, mids, model="yamnet"))
    index = ds.class_indices(yamnet_like, list(IRMAS_CODES))
    assert {c: names[i] for c, i in index.items()} == {
        c.irmas: c.audioset[0] for c in CONCEPTS}

    tiny = SimpleNamespace(name="tiny", class_names=["cello", "drums"], class_codes=[],
                           resolve_class=lambda q: resolve_class_name(q, ["cello", "drums"]))
    assert ds.class_indices(tiny, ["cel"]) == {"cel": 0}
    with pytest.raises(TargetError, match="no class for the data set's class 'vio'"):
        ds.class_indices(tiny, ["cel", "vio"])


def test_listed_clips_have_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    # Jobs go to workers that may not share this process's working folder (a Ray cluster).
    write_training_set(tmp_path / "train", {"cel": 1})
    monkeypatch.chdir(tmp_path)
    clips = ds.list_clips("train")
    assert clips[0].path.is_absolute() and clips[0].path.is_file()
    assert clips[0].rel == "cel/000__[cel][nod][cla]0000__1.wav"
