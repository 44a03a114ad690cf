"""Training data: decode every excerpt to a log-mel once, split by song, cut random windows."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamsound.data.irmas import IRMAS_CODES, TrainingExcerpt
from dreamsound.errors import DataError, DreamsoundError
from dreamsound.models.instrument import FRONT_END
from dreamsound.spectral import FrontEndConfig, LogMelFrontEnd
from dreamsound.train.progress import ProgressCallback, TrainProgress

log = logging.getLogger(__name__)

#: A set's teacher view (one row per clip: class, file, one logit per IRMAS code), written by
#: ``scripts/data/teacher_targets.py`` and read by :func:`read_teacher`.
TEACHER_FILE = "teacher.csv"


@dataclass
class LoadedClip:
    """One decoded excerpt: its log-mel (float16, padded as the model pads) and its label."""

    log_mel: torch.Tensor  # [T, F] float16
    valid_frames: int      # frames computed from real samples (random crops stay inside)
    label: int
    group: str
    path: Path


def load_clips(excerpts: Sequence[TrainingExcerpt], class_codes: Sequence[str], *,
               front_end: FrontEndConfig = FRONT_END, threads: int = 2,
               progress: ProgressCallback | None = None) -> tuple[list[LoadedClip], list[str]]:
    """Decode, resample to the model rate and log-mel every excerpt once.

    Returns
    -------
    clips : list of LoadedClip
        The excerpts that could be read, in input order.
    skipped : list of str
        One line per unreadable file (its path and why).
    """
    from dreamsound.audio import load_audio

    log_mel = LogMelFrontEnd(front_end)

    def one(excerpt: TrainingExcerpt) -> LoadedClip | str:
        try:
            waveform = load_audio(excerpt.path, sample_rate=front_end.sample_rate)
        except DreamsoundError as exc:
            return str(exc)
        with torch.no_grad():
            mel = log_mel(torch.from_numpy(waveform))
        frames = front_end.n_frames(max(len(waveform), front_end.min_samples))
        return LoadedClip(mel.to(torch.float16), min(frames, mel.shape[0]),
                          list(class_codes).index(excerpt.label), excerpt.group, excerpt.path)

    clips: list[LoadedClip] = []
    skipped: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for done, result in enumerate(pool.map(one, excerpts), 1):
            if isinstance(result, str):
                skipped.append(result)
                log.warning("skipping unreadable file: %s", result)
            else:
                clips.append(result)
            if progress is not None and (done % 16 == 0 or done == len(excerpts)):
                progress(TrainProgress("load", done, len(excerpts)))
    return clips, skipped


def split_by_group(labels: Sequence[int], groups: Sequence[str], val_fraction: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a validation split stratified by class, keeping each group on one side.

    Every class with at least two groups gets ``round(val_fraction * groups)`` (at least one)
    of them in validation.
    """
    labels = np.asarray(labels)
    train, val = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        unique = sorted({groups[i] for i in members})
        rng.shuffle(unique)
        n_val = 0 if len(unique) < 2 else min(len(unique) - 1,
                                              max(1, round(val_fraction * len(unique))))
        val_groups = set(unique[:n_val])
        for i in members:
            (val if groups[i] in val_groups else train).append(i)
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(val), dtype=np.int64)


def manifest_summary(folders: Sequence[Path]) -> dict[str, Any]:
    """Counts from rendered sets' ``manifest.csv`` (soundfont x solo/mix), when there are any."""
    counts: Counter[str] = Counter()
    for folder in folders:
        manifest = folder / "manifest.csv"
        if manifest.is_file():
            with open(manifest, newline="") as handle:
                for row in csv.DictReader(handle):
                    counts[f"{row.get('soundfont', '?')}/{row.get('kind', '?')}"] += 1
    return dict(sorted(counts.items()))


def random_windows(clips: Sequence[LoadedClip], chosen: Sequence[int], frames: int,
                   rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random ``frames``-long window (float32) from each of ``clips[chosen]``, kept inside
    the frames computed from real samples: the batch ``[B, frames, F]`` and its labels ``[B]``."""
    windows = []
    for i in chosen:
        clip = clips[i]
        room = max(1, clip.valid_frames - frames + 1)
        start = int(rng.integers(0, room))
        windows.append(clip.log_mel[start:start + frames].float())
    return torch.stack(windows), torch.tensor([clips[i].label for i in chosen])


def read_teacher(folders: Sequence[Path]) -> dict[Path, np.ndarray]:
    """Every clip's teacher logits (one per IRMAS code) from each folder's ``teacher.csv``,
    keyed by the clip's resolved path.

    Raises
    ------
    DataError
        A folder has no ``teacher.csv`` or one that cannot be read.
    """
    views: dict[Path, np.ndarray] = {}
    for folder in folders:
        path = Path(folder) / TEACHER_FILE
        if not path.is_file():
            raise DataError(f"{path} is missing: distillation needs each set's teacher view "
                            "(python -m scripts.data.teacher_targets SET ...)")
        try:
            with open(path, newline="") as handle:
                for row in csv.DictReader(handle):
                    clip = (Path(folder) / row["class"] / row["file"]).resolve()
                    views[clip] = np.array([float(row[c]) for c in IRMAS_CODES])
        except (OSError, KeyError, ValueError, csv.Error) as exc:
            raise DataError(f"{path}: not a teacher file ({exc})") from None
    return views


#: Temperature of the teacher's softmax (Hinton et al. 2015, "Distilling the knowledge in a
#: neural network", used 1-20; 2 keeps the second-best class visible without flattening the rest).
DISTIL_TEMPERATURE = 2.0


def teacher_targets(clips: Sequence[LoadedClip], class_codes: Sequence[str],
                    folders: Sequence[Path]) -> torch.Tensor:
    """``[len(clips), len(class_codes)]``: each clip's teacher distribution over the model's
    classes, ``softmax(logits / DISTIL_TEMPERATURE)`` (:func:`read_teacher`).

    Raises
    ------
    DataError
        A clip has no row in its folder's ``teacher.csv`` (the set changed since it was made).
    """
    views = read_teacher(folders)
    columns = [IRMAS_CODES.index(code) for code in class_codes]
    rows = []
    for clip in clips:
        view = views.get(Path(clip.path).resolve())
        if view is None:
            raise DataError(f"{clip.path} has no row in its set's {TEACHER_FILE}: run "
                            "scripts/data/teacher_targets.py on the set again")
        rows.append(view[columns])
    logits = torch.tensor(np.array(rows), dtype=torch.float32)
    return torch.softmax(logits / DISTIL_TEMPERATURE, dim=1)


#: How a teacher's distribution enters the targets (:func:`distil_targets`).
DISTIL_LABELS = ("blend", "keep")


def distil_targets(labels: torch.Tensor, teacher: torch.Tensor, share: float,
                   mode: str = "blend") -> torch.Tensor:
    """Each window's training target from its one-hot ``labels`` and the ``teacher``'s
    distribution (both ``[batch, classes]``), for the model's independent sigmoids.

    ``"blend"``: ``(1 - share) * label + share * teacher`` -- the true class's target drops to
    ``1 - share + share * teacher``. ``"keep"``: ``max(label, share * teacher)`` -- the true
    class stays at 1 and only the other classes learn the teacher's view (``share`` x its
    probability), so the model keeps saying yes to the labelled instrument while it learns which
    others a model trained on real recordings hears in the clip.
    """
    if mode == "blend":
        return (1 - share) * labels + share * teacher
    if mode == "keep":
        return torch.maximum(labels, share * teacher)
    raise ValueError(f"unknown distillation mode {mode!r}; choose one of "
                     f"{', '.join(DISTIL_LABELS)}")
