"""The labelled data set of an experiment: its clips, the seeded selection, its class mapping.

A data set is an IRMAS-layout folder (:mod:`dreamsound.data.irmas`): class folders of wavs
(training layout) or wavs with same-named ``.txt`` label files (testing layout). Its classes are
IRMAS codes (``"cel"``, ``"vio"``, ...), mapped onto a model's output indices by
:func:`class_indices`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dreamsound.data.irmas import (
    IRMAS_CODES,
    IRMAS_NAMES,
    detect_layout,
    read_testing_set,
    read_training_set,
)
from dreamsound.errors import DataError, ModelError, TargetError
from dreamsound.experiments.seeds import derive_seed
from dreamsound.io_utils import PathLike
from dreamsound.models.concepts import concept_indices, find_concept

__all__ = [
    "LabelledClip",
    "class_indices",
    "class_order",
    "list_clips",
    "select_clips",
]

@dataclass(frozen=True)
class LabelledClip:
    """A clip of the data set and its labels.

    Attributes
    ----------
    path : Path
        The sound file (absolute when listed by :func:`list_clips`).
    rel : str
        Its path relative to the data folder (POSIX separators): the clip's stable id.
    labels : tuple of str
        Class codes; the first is the true class (the training layout has exactly one, a
        testing-layout clip may have several).
    """

    path: Path
    rel: str
    labels: tuple[str, ...]

    @property
    def true(self) -> str:
        """The clip's true class: its first label."""
        return self.labels[0]


def list_clips(data_dir: PathLike) -> list[LabelledClip]:
    """Every labelled clip of an IRMAS-layout folder (training or testing layout).

    Raises
    ------
    DataError
        Missing or empty folder, neither layout, no clips, bad label files.
    """
    root = Path(data_dir).expanduser()
    layout = detect_layout(root)
    base = root.resolve()
    if layout == "training":
        pairs = [(e.path, (e.label,)) for e in read_training_set(root)]
    else:
        pairs = [(e.path, tuple(e.labels)) for e in read_testing_set(root)]
    # Absolute paths: the jobs go to workers that may not share this process's working folder.
    clips = [LabelledClip(path=Path(p).absolute(),
                          rel=Path(p).resolve().relative_to(base).as_posix(), labels=labels)
             for p, labels in pairs]
    if not clips:
        raise DataError(f"no labelled clips in {root}")
    return clips


def class_order(codes: Iterable[str]) -> list[str]:
    """The distinct class codes in IRMAS order, then any others alphabetically."""
    present = set(codes)
    return [c for c in IRMAS_CODES if c in present] + sorted(present - set(IRMAS_CODES))


def select_clips(clips: Sequence[LabelledClip], *, per_class: int | None,
                 seed: int) -> list[LabelledClip]:
    """The first ``per_class`` clips of each true class after a seeded shuffle (all if None).

    Returns the chosen clips grouped by class (IRMAS order), each group in shuffled order.

    Raises
    ------
    DataError
        ``per_class`` below 1.
    """
    if per_class is not None and per_class < 1:
        raise DataError(f"--per-class must be at least 1, got {per_class}")
    by_class: dict[str, list[LabelledClip]] = {}
    for clip in sorted(clips, key=lambda c: c.rel):
        by_class.setdefault(clip.true, []).append(clip)
    chosen: list[LabelledClip] = []
    for code in class_order(by_class):
        group = by_class[code]
        order = np.random.default_rng(derive_seed(seed, "shuffle", code)).permutation(len(group))
        picked = [group[i] for i in order]
        chosen += picked if per_class is None else picked[:per_class]
    return chosen


def class_indices(model: Any, classes: Sequence[str]) -> dict[str, int]:
    """Map data-set class codes to the model's output indices.

    Per code: the model's own class codes (the instrument and debug models use the IRMAS
    codes), then the concept map (:mod:`dreamsound.models.concepts`: ``vio`` -> AudioSet
    "Violin, fiddle", MTT ``violin``), then the code through ``model.resolve_class``.

    Raises
    ------
    TargetError
        A code the model has no class for.
    ModelError
        Two codes that land on the same model class.
    """
    own_codes = [c.lower() for c in getattr(model, "class_codes", [])]
    irmas_names = dict(zip(IRMAS_CODES, IRMAS_NAMES))
    out: dict[str, int] = {}
    for code in classes:
        if code.lower() in own_codes:
            out[code] = own_codes.index(code.lower())
            continue
        concept = find_concept(code)
        mapped = concept_indices(concept, model.class_names, getattr(model, "class_codes", [])) \
            if concept is not None else []
        if mapped:
            out[code] = mapped[0]
            continue
        try:
            out[code] = model.resolve_class(code)
        except TargetError:
            raise TargetError(f"model {model.name!r} has no class for the data set's class "
                              f"{code!r} ({irmas_names.get(code, code)}); use a model with "
                              "these classes") from None
    taken: dict[int, str] = {}
    for code, index in out.items():
        if index in taken:
            raise ModelError(f"classes {taken[index]!r} and {code!r} both map to "
                             f"{model.class_names[index]!r} of model {model.name!r}")
        taken[index] = code
    return out
