"""Train the instrument CNN on an IRMAS-layout folder (``dreamsound train``).

The loop follows Han, Kim & Lee (2017) where it matters for IRMAS: 1 s log-mel windows cut at
random from each 3 s training excerpt, one sigmoid per class trained with binary cross-entropy on
the excerpt's (single, predominant) label, and a clip decision made by averaging the window scores
and thresholding at a θ chosen on validation data -- never on test data.

What it adds: a validation split stratified by class that keeps excerpts of one song together;
augmentation in the mel-magnitude domain (gain, random EQ with tilt and band-limiting, a small
frequency shift, a synthetic room, a quieter second excerpt mixed in, a noise floor, small
time/frequency masks), which is cheap because every file is decoded, resampled and turned into a
log-mel once, up front; early stopping on the validation loss; and a
checkpoint written atomically at every improvement, so an interrupted run leaves the last good
model intact and loadable.

Outputs in ``out_dir``: ``model.safetensors`` (weights + the whole configuration in its metadata),
``config.json`` (the same configuration, readable) and ``train_log.json`` (one record per epoch).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dreamsound.data.irmas import IRMAS_CODES, TrainingExcerpt, read_training_set
from dreamsound.errors import DataError, DreamsoundError, OutputError
from dreamsound.models.instrument import (
    FRONT_END,
    Architecture,
    InstrumentClassifier,
    new_model,
    save_weights_file,
)
from dreamsound.spectral import FrontEndConfig, LogMelFrontEnd, unlog_mel

log = logging.getLogger(__name__)

PathLike = str | Path


@dataclass(frozen=True)
class TrainProgress:
    """One progress report from :func:`train`.

    Attributes
    ----------
    stage : str
        ``"load"`` (decoding files), ``"epoch"`` (batches of an epoch) or ``"validated"`` (an
        epoch ended; ``metrics`` holds its record).
    done, total : int
        Files decoded, or batches done in the epoch.
    epoch, epochs : int
        Current epoch (1-based; 0 while loading) and the maximum number of epochs.
    metrics : dict
        The epoch record (``train_loss``, ``val_loss``, ``val_accuracy``, ``val_micro_f1``,
        ``val_macro_f1``, ``threshold``, ``improved``, ...) when ``stage == "validated"``.
    """

    stage: str
    done: int
    total: int
    epoch: int = 0
    epochs: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)


ProgressCallback = Callable[[TrainProgress], None]


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


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


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


def _manifest_summary(folders: Sequence[Path]) -> dict[str, Any]:
    """Counts from rendered sets' ``manifest.csv`` (soundfont x solo/mix), when there are any."""
    counts: Counter[str] = Counter()
    for folder in folders:
        manifest = folder / "manifest.csv"
        if manifest.is_file():
            with open(manifest, newline="") as handle:
                for row in csv.DictReader(handle):
                    counts[f"{row.get('soundfont', '?')}/{row.get('kind', '?')}"] += 1
    return dict(sorted(counts.items()))


# --------------------------------------------------------------------------------------------
# Augmentation (on mel magnitudes: gains and mixtures are physical there, and it is all batched)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Augmentation:
    """Random changes applied to each training window.

    Attributes
    ----------
    gain_db : (float, float)
        Level change range in dB.
    eq_db : float
        Standard deviation in dB of a smooth random EQ ripple over the mel bands (the timbre of
        rooms, microphones and soundfonts differs in just this way).
    tilt_db : float
        Largest spectral tilt in dB from the lowest to the highest band (uniform in +-).
        Sample sets differ most in brightness: FluidR3_GM is several dB brighter above 2 kHz
        than TimGM6mb or sf_GMbank for the same instruments.
    reverb_prob, reverb_s, reverb_wet : float, (float, float), (float, float)
        Probability of a synthetic room on the window: an exponentially decaying tail added in
        the power domain, time constant ``reverb_s`` seconds (shorter in high bands, as in real
        rooms), at a steady-state level ``reverb_wet`` times the dry power. It blurs the note
        envelopes that differ most between sample sets (one soundfont's cello decays where
        another's sustains) and that rooms blur in real recordings anyway.
    shift_bands : float
        Largest shift of the spectrum along the mel axis, in bands (uniform in +-; one band is
        about a semitone above 1 kHz): instrument bodies and samples differ in formants.
    lowpass_prob, highpass_prob : float
        Probabilities of a random roll-off above 2.5-8 kHz (band-limited samples, old
        recordings) and below 60-250 Hz (small speakers, thin samples).
    mix_prob, mix_db : float, (float, float)
        Probability of adding another (different-class) window, and its level relative to this
        one in dB: the label stays this window's (it remains predominant).
    noise_prob, noise_db : float, (float, float)
        Probability and level (dB re a full-scale sine's mel peak) of a noise floor.
    mask_prob : float
        Probability of one time mask (<= 6 frames) and one frequency mask (<= 10 bands).
    mixup_prob, mixup_alpha : float
        Mixup (Zhang et al. 2018): with probability ``mixup_prob`` a window is blended with
        another of the batch, ``lam * own + (1 - lam) * other`` in the magnitude domain and
        likewise its target, ``lam ~ Beta(alpha, alpha)``. Off by default.
    """

    gain_db: tuple[float, float] = (-24.0, 6.0)
    eq_db: float = 4.0
    tilt_db: float = 12.0
    shift_bands: float = 1.5
    reverb_prob: float = 0.5
    reverb_s: tuple[float, float] = (0.05, 0.6)
    reverb_wet: tuple[float, float] = (0.1, 1.0)
    lowpass_prob: float = 0.3
    highpass_prob: float = 0.2
    mix_prob: float = 0.3
    mix_db: tuple[float, float] = (-18.0, -6.0)
    noise_prob: float = 0.3
    noise_db: tuple[float, float] = (-80.0, -45.0)
    mask_prob: float = 0.3
    mixup_prob: float = 0.0
    mixup_alpha: float = 0.3


FULL_SCALE_MEL = 9.5  # Slaney mel peak of a full-scale sine with this front-end (measured)


def augment(log_mel: torch.Tensor, labels: torch.Tensor, config: Augmentation, offset: float,
            generator: torch.Generator, *, frame_s: float = 512 / 22050) -> torch.Tensor:
    """Augment a batch of log-mel windows ``[B, T, F]`` (see :class:`Augmentation`);
    ``frame_s`` is the frame hop in seconds."""
    batch, frames, bands = log_mel.shape

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator)

    magnitude = unlog_mel(log_mel, offset)
    if config.mix_prob > 0 and batch > 1:
        partner = torch.randint(0, batch, (batch,), generator=generator)
        use = (torch.rand(batch, generator=generator) < config.mix_prob) & \
            (labels[partner] != labels)
        level = 10 ** (uniform(*config.mix_db, batch) / 20) * use
        # Level relative to this window's own loudness (mean magnitude ratio).
        ratio = magnitude.mean(dim=(1, 2)) / magnitude[partner].mean(dim=(1, 2)).clamp(min=1e-8)
        magnitude = magnitude + (level * ratio)[:, None, None] * magnitude[partner]
    # An EQ curve in dB per band: smooth ripple (a few cosines over the band index with
    # decaying amplitude), a tilt pivoting near 1 kHz (band 40 of 128), and roll-offs.
    index = torch.arange(bands, dtype=torch.float32)
    position = index / max(bands - 1, 1)
    curve = torch.zeros(batch, bands)
    for k in range(1, 7):
        amplitude = torch.randn(batch, 1, generator=generator) * config.eq_db / k
        phase = uniform(0, 2 * math.pi, batch, 1)
        curve += amplitude * torch.cos(k * math.pi * position + phase)
    curve += uniform(-config.tilt_db, config.tilt_db, batch, 1) * (position - 40 / 128)
    low = (torch.rand(batch, 1, generator=generator) < config.lowpass_prob).float()
    cutoff = uniform(0.55, 0.95, batch, 1)      # band 70-122 of 128: ~2.5-8 kHz
    slope = uniform(40.0, 200.0, batch, 1)      # dB per unit of position (~0.3-1.6 dB/band)
    curve -= low * slope * torch.clamp(position - cutoff, min=0.0)
    high = (torch.rand(batch, 1, generator=generator) < config.highpass_prob).float()
    corner = uniform(0.015, 0.06, batch, 1)     # band 2-8: ~60-250 Hz
    curve -= high * 400.0 * torch.clamp(corner - position, min=0.0)
    magnitude = magnitude * 10 ** (curve[:, None, :] / 20)
    if config.shift_bands > 0:
        # Linear interpolation at shifted band positions (edges repeat).
        source = (index[None, :] - uniform(-config.shift_bands, config.shift_bands, batch, 1))
        source = source.clamp(0, bands - 1)
        below = source.floor().long()
        above = (below + 1).clamp(max=bands - 1)
        frac = (source - below)[:, None, :]
        low_part = torch.gather(magnitude, 2, below[:, None, :].expand(-1, frames, -1))
        high_part = torch.gather(magnitude, 2, above[:, None, :].expand(-1, frames, -1))
        magnitude = low_part * (1 - frac) + high_part * frac
    if config.reverb_prob > 0:
        use = (torch.rand(batch, 1, generator=generator) < config.reverb_prob).float()
        tau = uniform(*config.reverb_s, batch, 1) * (1.0 - 0.6 * position)  # [B, F] seconds
        decay = torch.exp(-frame_s / tau)
        # Wet gain so that a steady input gets a tail of `wet` times its own power.
        wet = uniform(*config.reverb_wet, batch, 1) * (1 - decay) / decay * use
        power = magnitude ** 2
        tail = torch.zeros(batch, bands)
        frames_out = []
        for t in range(frames):
            frames_out.append(power[:, t] + wet * tail)
            tail = decay * (tail + power[:, t])
        magnitude = torch.sqrt(torch.stack(frames_out, dim=1))
    magnitude = magnitude * 10 ** (uniform(*config.gain_db, batch)[:, None, None] / 20)
    if config.noise_prob > 0:
        use = torch.rand(batch, generator=generator) < config.noise_prob
        level = FULL_SCALE_MEL * 10 ** (uniform(*config.noise_db, batch) / 20) * use
        # |complex Gaussian| per cell: the magnitude of noise in each band and frame.
        noise = torch.sqrt(torch.randn(batch, frames, bands, generator=generator) ** 2 +
                           torch.randn(batch, frames, bands, generator=generator) ** 2)
        magnitude = magnitude + level[:, None, None] * noise
    out = torch.log(magnitude + offset)
    if config.mask_prob > 0:
        floor = math.log(offset)
        masked = torch.rand(batch, generator=generator) < config.mask_prob
        for i in torch.nonzero(masked).flatten().tolist():
            t0 = int(torch.randint(0, frames, (1,), generator=generator))
            f0 = int(torch.randint(0, bands, (1,), generator=generator))
            out[i, t0:t0 + int(torch.randint(1, 7, (1,), generator=generator))] = floor
            out[i, :, f0:f0 + int(torch.randint(1, 11, (1,), generator=generator))] = floor
    return out


def mixup(log_mel: torch.Tensor, targets: torch.Tensor, config: Augmentation, offset: float,
          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend windows ``[B, T, F]`` and their targets ``[B, C]`` pairwise (see
    :class:`Augmentation`); the blend is of magnitudes, as mixing two sounds would be."""
    batch = log_mel.shape[0]
    partner = torch.randperm(batch, generator=generator)
    lam = torch.distributions.Beta(config.mixup_alpha, config.mixup_alpha).sample((batch,))
    lam = torch.where(torch.rand(batch, generator=generator) < config.mixup_prob, lam, 1.0)
    magnitude = unlog_mel(log_mel, offset)
    mixed = lam[:, None, None] * magnitude + (1 - lam[:, None, None]) * magnitude[partner]
    return (torch.log(mixed + offset),
            lam[:, None] * targets + (1 - lam[:, None]) * targets[partner])


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def f1_scores(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """Micro- and macro-F1 of ``scores [N, C] >= threshold`` against single labels ``[N]``.

    Macro-F1 averages over the classes that occur in ``labels`` (as IRMAS evaluations do).
    """
    truth = np.zeros_like(scores, dtype=bool)
    truth[np.arange(len(labels)), labels] = True
    predicted = scores >= threshold
    tp = (predicted & truth).sum(axis=0).astype(float)
    fp = (predicted & ~truth).sum(axis=0).astype(float)
    fn = (~predicted & truth).sum(axis=0).astype(float)
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1.0)
    present = truth.any(axis=0)
    per_class = 2 * tp / np.maximum(2 * tp + fp + fn, 1.0)
    macro = float(per_class[present].mean()) if present.any() else 0.0
    return float(micro), macro


def choose_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """θ in [0.05, 0.95] (step 0.01) that maximises micro-F1; returns (θ, micro, macro).

    Ties go to the θ closest to 0.5 (the least surprising choice).
    """
    best_key, best = (-1.0, 0.0), (0.5, 0.0, 0.0)
    for threshold in np.round(np.arange(0.05, 0.951, 0.01), 2):
        micro, macro = f1_scores(scores, labels, float(threshold))
        key = (micro, -abs(float(threshold) - 0.5))
        if key > best_key:
            best_key, best = key, (float(threshold), micro, macro)
    return best


@torch.no_grad()
def clip_scores(model: InstrumentClassifier, clips: Sequence[LoadedClip], *,
                batch_size: int = 256) -> tuple[np.ndarray, float]:
    """Clip scores ``[N, C]`` (mean of the 1 s window sigmoids, as at inference) and the mean
    window BCE loss against each clip's label."""
    model.eval()
    n_classes = len(model.class_names)
    patches, owners = [], []
    for index, clip in enumerate(clips):
        windows = model.front_end.patches(clip.log_mel.float())
        patches.append(windows)
        owners += [index] * windows.shape[0]
    all_patches = torch.cat(patches)
    owner = torch.tensor(owners)
    logits = torch.cat([model.network(all_patches[i:i + batch_size].unsqueeze(1)
                                      .to(model.device))[0].float().cpu()
                        for i in range(0, len(all_patches), batch_size)])
    targets = F.one_hot(torch.tensor([clips[i].label for i in owners]), n_classes).float()
    loss = float(F.binary_cross_entropy_with_logits(logits, targets))
    sums = torch.zeros(len(clips), n_classes).index_add_(0, owner, torch.sigmoid(logits))
    counts = torch.bincount(owner, minlength=len(clips)).clamp(min=1)[:, None]
    return (sums / counts).numpy(), loss


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


# Each epoch draws one 1 s window per excerpt, so an epoch is only ~100 optimiser steps on a
# rendered set of a few thousand clips. Stopped at 20 epochs, the validation loss was still
# falling; run to 60 (the best epoch was the last), the FluidR3_GM cross-soundfont fold rose from
# 0.705 / 0.620 to 0.786 / 0.634 top-1 (solo / mixtures; docs/instrument_experiments.md).
DEFAULT_EPOCHS = 60
DEFAULT_PATIENCE = 8


def _write_json(path: Path, obj: Any) -> None:
    from dreamsound.io_utils import atomic_write

    with atomic_write(path) as temp:
        temp.write_text(json.dumps(obj, indent=2) + "\n")


def train(data_dir: PathLike | Sequence[PathLike], out_dir: PathLike, *,
          epochs: int = DEFAULT_EPOCHS, batch_size: int = 64, lr: float = 3e-3,
          val_fraction: float = 0.15, seed: int = 0, patience: int = DEFAULT_PATIENCE,
          device: str | torch.device | None = None,
          architecture: Architecture | None = None, augmentation: Augmentation | None = None,
          crops_per_clip: int = 1, weight_decay: float = 1e-4, threads: int = 2,
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
    folders = [Path(data_dir)] if isinstance(data_dir, str | Path) else [Path(d) for d in
                                                                          data_dir]
    if not folders:
        raise DataError("no data folder given")
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {out}: {exc.strerror}") from None
    dev = resolve_device(device)
    augmentation = augmentation or Augmentation()
    started = time.perf_counter()

    # -- data ------------------------------------------------------------------------------
    excerpts: list[TrainingExcerpt] = []
    for folder in folders:
        excerpts += read_training_set(folder)
    codes = [c for c in IRMAS_CODES if any(e.label == c for e in excerpts)]
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
    load_seconds = time.perf_counter() - started

    # -- model -----------------------------------------------------------------------------
    torch.manual_seed(seed)
    model = new_model(codes, architecture=architecture)
    front = model.front_end.config
    network = model.network
    with torch.no_grad():
        # Fixed per-band input normalisation from the training excerpts.
        sample = torch.cat([c.log_mel[:c.valid_frames].float() for c in train_clips])
        network.input_mean.copy_(sample.mean(dim=0))
        network.input_std.copy_(sample.std(dim=0).clamp(min=1e-2))
        del sample
        # Start every sigmoid at the class prior (1 / classes) instead of 0.5, so the first
        # epochs learn the classes rather than how rare each one is (Lin et al. 2017, focal
        # loss paper, section 4.1).
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
        "rendered": _manifest_summary(folders),
    }
    settings = {"epochs": epochs, "batch_size": batch_size, "lr": lr,
                "val_fraction": val_fraction, "seed": seed, "patience": patience,
                "crops_per_clip": crops_per_clip, "weight_decay": weight_decay,
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
                windows = []
                for i in chosen:
                    clip = train_clips[i]
                    room = max(1, clip.valid_frames - front.patch_frames + 1)
                    start = int(rng.integers(0, room))
                    windows.append(clip.log_mel[start:start + front.patch_frames].float())
                batch = torch.stack(windows)
                batch_labels = torch.tensor([train_clips[i].label for i in chosen])
                batch = augment(batch, batch_labels, augmentation, front.log_offset, generator,
                                frame_s=front.hop_length / front.sample_rate)
                targets = F.one_hot(batch_labels, len(codes)).float()
                if augmentation.mixup_prob > 0:
                    batch, targets = mixup(batch, targets, augmentation, front.log_offset,
                                           generator)
                targets = targets.to(dev)
                logits, _ = network(batch.unsqueeze(1).to(dev))
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
