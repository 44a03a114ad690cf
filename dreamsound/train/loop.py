"""The training loop: :func:`train` (model set-up, epochs, validation, θ, early stopping and
atomic checkpoints) and its :class:`TrainResult`.

Outputs in ``out_dir``: ``model.safetensors`` (weights + the whole configuration in its metadata),
``config.json`` (the same configuration, readable) and ``train_log.json`` (one record per epoch).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dreamsound.data.irmas import IRMAS_CODES, TrainingExcerpt, read_training_set
from dreamsound.errors import DataError, DreamsoundError, OutputError
from dreamsound.models.instrument import (
    Architecture,
    load_weights_file,
    new_model,
    save_weights_file,
)
from dreamsound.train.adversarial import adversarial_copies
from dreamsound.train.augmentation import Augmentation, augment, mixup
from dreamsound.train.data import (
    DISTIL_LABELS,
    distil_targets,
    load_clips,
    manifest_summary,
    random_windows,
    split_by_group,
    teacher_targets,
)
from dreamsound.train.metrics import choose_threshold, clip_scores
from dreamsound.train.progress import ProgressCallback, TrainProgress

log = logging.getLogger(__name__)

PathLike = str | Path


@dataclass
class TrainResult:
    """What a finished :func:`train` run produced.

    Attributes
    ----------
    out_dir, weights_path, config_path, log_path : Path
        The output folder and its three files.
    best_epoch, epochs_run : int
        Epoch of the kept weights, and epochs trained.
    stopped_early : bool
        True when the validation loss stopped improving for ``patience`` epochs.
    threshold : float
        θ: the clip-score threshold chosen on validation data.
    val_loss, val_accuracy, val_micro_f1, val_macro_f1 : float
        Validation metrics of the kept weights (accuracy = top-1 of the clip scores; F1 at θ).
    n_train, n_val : int
        Excerpts in each split.
    classes : list of str
        Class codes, in output order.
    load_seconds, train_seconds, seconds_per_epoch : float
        Wall-clock times.
    """

    out_dir: Path
    weights_path: Path
    config_path: Path
    log_path: Path
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    threshold: float
    val_loss: float
    val_accuracy: float
    val_micro_f1: float
    val_macro_f1: float
    n_train: int
    n_val: int
    classes: list[str]
    load_seconds: float
    train_seconds: float
    seconds_per_epoch: float

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("out_dir", "weights_path", "config_path", "log_path"):
            out[key] = str(out[key])
        return out



# Each epoch draws one 1 s window per excerpt, so an epoch is only ~100 optimiser steps on a
# rendered set of a few thousand clips. Stopped at 20 epochs, the validation loss was still
# falling; run to 60 (the best epoch was the last), the FluidR3_GM cross-soundfont fold rose from
# 0.705 / 0.620 to 0.786 / 0.634 top-1 (solo / mixtures; docs/instrument_experiments.md).
DEFAULT_EPOCHS = 60
DEFAULT_PATIENCE = 8


#: Largest adversarial radius ``train`` accepts (dB rmse): the radii worth trying are a fraction
#: of a dB; at 1 dB the default network lost 17 points of validation accuracy in 3 epochs.
MAX_ADVERSARIAL_DB = 3.0


def _starting_weights(init: PathLike | None, device: torch.device):
    """The model in ``init`` on ``device`` (None without ``init``), read before any data so a
    bad file fails fast."""
    if init is None:
        return None
    path = Path(init).expanduser()
    if not path.is_file():
        raise DataError(f"no weights to start from at {path}")
    return load_weights_file(path, device)


def _write_json(path: Path, obj: Any) -> None:
    from dreamsound.io_utils import atomic_write

    with atomic_write(path) as temp:
        temp.write_text(json.dumps(obj, indent=2) + "\n")


def train(data_dir: PathLike | Sequence[PathLike], out_dir: PathLike, *,
          epochs: int = DEFAULT_EPOCHS, batch_size: int = 64, lr: float = 3e-3,
          val_fraction: float = 0.15, seed: int = 0, patience: int = DEFAULT_PATIENCE,
          device: str | torch.device | None = None,
          architecture: Architecture | None = None, augmentation: Augmentation | None = None,
          crops_per_clip: int = 1, weight_decay: float = 1e-4, distil: float = 0.0,
          distil_label: str = "blend", init: PathLike | None = None,
          adversarial_db: float = 0.0, threads: int = 2,
          progress: ProgressCallback | None = None) -> TrainResult:
    """Train an instrument CNN on IRMAS-layout folder(s) and write it to ``out_dir``.

    Parameters
    ----------
    data_dir : path or sequence of paths
        IRMAS-training-layout folder(s): ``<cls>/*.wav`` with class codes ``cel`` ... ``voi``
        (the real ``IRMAS-TrainingData`` or a set rendered by ``scripts/data/render_trainset.py``).
        Several folders are pooled. The model gets the classes found, in IRMAS order.
    out_dir : path
        Where ``model.safetensors``, ``config.json`` and ``train_log.json`` go (created).
    epochs : int
        Maximum number of epochs (one random 1 s window per excerpt and ``crops_per_clip``).
    batch_size : int
        Windows per optimiser step.
    lr : float
        Adam learning rate (divided by 3 after two epochs without a lower validation loss).
    val_fraction : float
        Share of each class's songs held out for validation, in (0, 1).
    seed : int
        Fixes the split, initialisation, window choice and augmentation.
    patience : int
        Stop after this many epochs without a lower validation loss.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"mps"`` or ``"auto"``/None.
    architecture : Architecture, optional
        Network sizes (default: :class:`~dreamsound.models.instrument.Architecture`).
    augmentation : Augmentation, optional
        Augmentation settings; ``Augmentation(0-probabilities)`` turns parts off.
    crops_per_clip : int
        Random windows taken from each excerpt per epoch.
    weight_decay : float
        L2 penalty in Adam.
    distil : float
        Share of the target taken from a teacher, in [0, 1): each window's target is
        ``(1 - distil) * label + distil * softmax(teacher logits / DISTIL_TEMPERATURE)`` over the
        model's classes, the teacher's logits read from each folder's ``teacher.csv``
        (``scripts/data/teacher_targets.py``: YAMNet's view of the clip). 0 (default): labels only.
    distil_label : str
        ``"blend"`` (the formula above) or ``"keep"``: the true class's target stays 1 and the
        others get ``distil`` x the teacher's probability
        (:func:`~dreamsound.train.data.distil_targets`).
    init : path, optional
        Start from these weights (a ``model.safetensors`` of the same classes, in the same
        order) instead of a random network: fine-tuning. Its architecture and input
        normalisation are kept (``architecture`` must then be None).
    adversarial_db : float
        When > 0, every batch also trains on copies of its windows moved against the model
        within this many dB rmse (:func:`~dreamsound.train.adversarial.adversarial_copies`):
        a slightly robust model (its dreams moved musicnn more often, YAMNet and irmas-pons
        not: docs/transfer.md). About 3x the time per step. 0 (default):
        clean windows only.
    threads : int
        Threads that decode files.
    progress : callable, optional
        Called with :class:`TrainProgress` reports. An exception it raises (KeyboardInterrupt
        included) stops training; the last checkpoint in ``out_dir`` stays intact.

    Returns
    -------
    TrainResult

    Raises
    ------
    DataError
        Missing/empty folder, no class folders, no readable file, too few files to hold out a
        validation split.
    OutputError
        ``out_dir`` cannot be created or written.
    """
    from dreamsound import __version__
    from dreamsound.models.registry import resolve_device

    if epochs < 1 or batch_size < 1 or crops_per_clip < 1 or patience < 1:
        raise ValueError("epochs, batch_size, crops_per_clip and patience must be >= 1")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not 0.0 <= distil < 1.0:
        raise ValueError(f"distil must be in [0, 1), got {distil}")
    if not 0.0 <= adversarial_db <= MAX_ADVERSARIAL_DB:
        raise ValueError(f"adversarial_db must be in [0, {MAX_ADVERSARIAL_DB}], got "
                         f"{adversarial_db}")
    if init is not None and architecture is not None:
        raise ValueError("give init or architecture, not both: fine-tuning keeps the "
                         "architecture of its weights")
    if distil_label not in DISTIL_LABELS:
        raise ValueError(f"distil_label must be one of {', '.join(DISTIL_LABELS)}, got "
                         f"{distil_label!r}")
    folders = [Path(data_dir)] if isinstance(data_dir, str | Path) else [Path(d) for d in
                                                                          data_dir]
    if not folders:
        raise DataError("no data folder given")
    out = Path(out_dir).expanduser()
    dev = resolve_device(device)
    augmentation = augmentation or Augmentation()
    started = time.perf_counter()

    # -- data ------------------------------------------------------------------------------
    start = _starting_weights(init, dev)
    excerpts: list[TrainingExcerpt] = []
    for folder in folders:
        excerpts += read_training_set(folder)
    codes = [c for c in IRMAS_CODES if any(e.label == c for e in excerpts)]
    if start is not None and list(start.config.class_codes) != codes:
        raise DataError(f"the weights given to start from ({init}) have the classes "
                        f"{', '.join(start.config.class_codes)}, the data "
                        f"{', '.join(codes)}: fine-tuning needs the same classes")
    clips, skipped = load_clips(excerpts, codes, threads=threads, progress=progress)
    if not clips:
        raise DataError(f"none of the {len(excerpts)} .wav files could be read (first: "
                        f"{skipped[0]})")
    if skipped:
        log.warning("skipped %d of %d files that could not be read", len(skipped), len(excerpts))
    labels = [c.label for c in clips]
    rng = np.random.default_rng(seed)
    train_idx, val_idx = split_by_group(labels, [c.group for c in clips], val_fraction, rng)
    if len(val_idx) == 0 or len(train_idx) == 0:
        raise DataError(f"too few files to hold out a validation split ({len(clips)} readable; "
                        "each class needs at least two songs/files)")
    train_clips = [clips[i] for i in train_idx]
    val_clips = [clips[i] for i in val_idx]
    soft_targets = teacher_targets(train_clips, codes, folders) if distil > 0 else None
    load_seconds = time.perf_counter() - started
    # Created only once the data is known to be usable: bad data leaves no empty folder behind.
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {out}: {exc.strerror}") from None

    # -- model -----------------------------------------------------------------------------
    torch.manual_seed(seed)
    model = start if start is not None else new_model(codes, architecture=architecture)
    front = model.front_end.config
    network = model.network
    if start is None:
        with torch.no_grad():
            # Fixed per-band input normalisation from the training excerpts.
            sample = torch.cat([c.log_mel[:c.valid_frames].float() for c in train_clips])
            network.input_mean.copy_(sample.mean(dim=0))
            network.input_std.copy_(sample.std(dim=0).clamp(min=1e-2))
            del sample
            # Start every sigmoid at the class prior (1 / classes) instead of 0.5, so the
            # first epochs learn the classes rather than how rare each one is (Lin et al.
            # 2017, focal loss paper, section 4.1).
            network.logits.bias.fill_(-math.log(len(codes) - 1))
    model.to(dev)
    optimiser = torch.optim.Adam(network.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=1 / 3, patience=1)
    generator = torch.Generator().manual_seed(seed)
    per_class = Counter(codes[c.label] for c in clips)
    data_summary = {
        "folders": [f.name for f in folders],
        "files": len(excerpts), "readable": len(clips), "skipped": len(skipped),
        "train": len(train_clips), "validation": len(val_clips),
        "per_class": {c: per_class[c] for c in codes},
        "rendered": manifest_summary(folders),
    }
    settings = {"epochs": epochs, "batch_size": batch_size, "lr": lr,
                "val_fraction": val_fraction, "seed": seed, "patience": patience,
                "crops_per_clip": crops_per_clip, "weight_decay": weight_decay,
                "distil": distil, "distil_label": distil_label,
                "init": str(init) if init is not None else None,
                "adversarial_db": adversarial_db,
                "augmentation": asdict(augmentation), "device": str(dev),
                "dreamsound_version": __version__}
    history: list[dict[str, Any]] = []
    log_doc: dict[str, Any] = {"status": "running", "settings": settings, "data": data_summary,
                               "epochs": history, "skipped_files": skipped[:50]}
    weights_path, config_path, log_path = (out / "model.safetensors", out / "config.json",
                                           out / "train_log.json")
    best: dict[str, Any] | None = None
    stale = 0
    epoch = 0
    train_started = time.perf_counter()

    def save_checkpoint(record: dict[str, Any]) -> None:
        model.threshold = record["threshold"]
        model.config.threshold = record["threshold"]
        model.config.extra = {
            "training": {**settings, "best_epoch": record["epoch"]},
            "validation": {k: record[k] for k in ("val_loss", "val_accuracy", "val_micro_f1",
                                                   "val_macro_f1", "threshold")},
            "data": data_summary,
        }
        save_weights_file(model, weights_path)  # weights + config in one atomic file ...
        _write_json(config_path, model.config.to_dict())  # ... and a readable copy

    try:
        for epoch in range(1, epochs + 1):
            epoch_started = time.perf_counter()
            network.train()
            order = np.concatenate([rng.permutation(len(train_clips))
                                    for _ in range(crops_per_clip)])
            n_batches = math.ceil(len(order) / batch_size)
            losses = []
            for step in range(n_batches):
                if progress is not None:
                    progress(TrainProgress("epoch", step, n_batches, epoch, epochs))
                chosen = order[step * batch_size:(step + 1) * batch_size]
                batch, batch_labels = random_windows(train_clips, chosen, front.patch_frames,
                                                     rng)
                batch = augment(batch, batch_labels, augmentation, front.log_offset, generator,
                                frame_s=front.hop_length / front.sample_rate)
                targets = F.one_hot(batch_labels, len(codes)).float()
                if soft_targets is not None:
                    targets = distil_targets(targets, soft_targets[chosen], distil, distil_label)
                if augmentation.mixup_prob > 0:
                    batch, targets = mixup(batch, targets, augmentation, front.log_offset,
                                           generator)
                targets = targets.to(dev)
                windows = batch.unsqueeze(1).to(dev)
                if adversarial_db > 0:
                    moved = adversarial_copies(network, windows, targets, adversarial_db)
                    windows, targets = torch.cat([windows, moved]), torch.cat([targets, targets])
                logits, _ = network(windows)
                loss = F.binary_cross_entropy_with_logits(logits, targets)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                losses.append(loss.item())
            if progress is not None:
                progress(TrainProgress("epoch", n_batches, n_batches, epoch, epochs))
            scores, val_loss = clip_scores(model, val_clips)
            val_labels = np.array([c.label for c in val_clips])
            threshold, micro, macro = choose_threshold(scores, val_labels)
            record = {
                "epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val_loss,
                "val_accuracy": float(np.mean(scores.argmax(axis=1) == val_labels)),
                "val_micro_f1": micro, "val_macro_f1": macro, "threshold": threshold,
                "lr": optimiser.param_groups[0]["lr"],
                "seconds": time.perf_counter() - epoch_started,
            }
            record["improved"] = best is None or val_loss < best["val_loss"]
            history.append(record)
            scheduler.step(val_loss)
            if record["improved"]:
                best, stale = record, 0
                save_checkpoint(record)
            else:
                stale += 1
            log.info("epoch %d: train %.4f val %.4f acc %.3f F1 %.3f", epoch,
                     record["train_loss"], val_loss, record["val_accuracy"], micro)
            if progress is not None:
                progress(TrainProgress("validated", n_batches, n_batches, epoch, epochs, record))
            if stale >= patience:
                log_doc["status"] = "early_stopped"
                break
        else:
            log_doc["status"] = "finished"
    except BaseException:
        log_doc["status"] = "interrupted"
        raise
    finally:
        log_doc.update(best_epoch=best["epoch"] if best else None,
                       load_seconds=load_seconds,
                       train_seconds=time.perf_counter() - train_started)
        try:
            _write_json(log_path, log_doc)
        except DreamsoundError as exc:  # never hide the original error behind this one
            log.warning("could not write %s: %s", log_path, exc)
    assert best is not None  # at least one epoch ran, and the first always improves
    train_seconds = time.perf_counter() - train_started
    return TrainResult(
        out_dir=out, weights_path=weights_path, config_path=config_path, log_path=log_path,
        best_epoch=best["epoch"], epochs_run=len(history),
        stopped_early=log_doc["status"] == "early_stopped", threshold=best["threshold"],
        val_loss=best["val_loss"], val_accuracy=best["val_accuracy"],
        val_micro_f1=best["val_micro_f1"], val_macro_f1=best["val_macro_f1"],
        n_train=len(train_clips), n_val=len(val_clips), classes=list(codes),
        load_seconds=load_seconds, train_seconds=train_seconds,
        seconds_per_epoch=train_seconds / max(1, len(history)))
