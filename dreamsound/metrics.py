"""The one place dreamsound's metrics are defined (DESIGN.md §3, "Metrics").

Every number the engine, the CLI and the evaluation report print comes from a function here, and
:data:`~dreamsound.metric_defs.METRIC_DEFINITIONS` holds the one-line definitions the CLI
shows in ``--help`` and the README. No other module may re-implement these formulas.

Conventions
-----------
* Spectrogram distances are measured on the **model's own mel scale** in dB, as the model's
  front-end converts its log-mel (:meth:`LogMelFrontEnd.mel_db
  <dreamsound.spectral.LogMelFrontEnd.mel_db>`). For the standard front-end the log-mel is
  ``ln(mel + log_offset)`` (natural log; YAMNet's ``log_offset`` is 0.001), so the dB value
  ``20·log10(mel + log_offset)`` is simply ``log_mel · 20 / ln 10``. The offset is the model's
  own floor: anything quieter counts as the floor (−60 dB for 0.001), so differences between
  near-silent bands do not dominate the distance.
* ``mse_db2`` is in dB² (mean of squared dB differences), ``rmse_db`` in dB (its square root).
  Both are reported; they are not interchangeable.
* Confidences are the model's probabilities (independent sigmoids for the built-in models),
  averaged over patches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from dreamsound.errors import TargetError
from dreamsound.metric_defs import METRIC_DEFINITIONS


class DbScale(Protocol):
    """What the distance metrics need of a front-end: its log-mel in dB."""

    def mel_db(self, log_mel: torch.Tensor) -> torch.Tensor: ...


__all__ = ["DB_PER_NEPER", "METRIC_DEFINITIONS", "distance_report", "is_success", "judge_moved",
           "judge_rank_climbed", "judge_score_rose",
           "mel_db",
           "mse_db2", "rmse_db", "spectral_convergence_db", "target_confidence", "top_k"]

#: dB per natural-log unit of magnitude: 20 / ln(10) ≈ 8.6859.
DB_PER_NEPER = 20.0 / math.log(10.0)

def _as_tensor(values: Any) -> torch.Tensor:
    return values if isinstance(values, torch.Tensor) else torch.as_tensor(values)


def mel_db(log_mel: Any, *, front_end: DbScale) -> torch.Tensor:
    """A model's log-mel in dB on its own mel scale: ``20·log10(mel + log_offset)`` for the
    standard front-end (see ``LogMelFrontEnd.mel_db`` in :mod:`dreamsound.spectral`).

    Parameters
    ----------
    log_mel : Tensor or array [..., T, F]
        The log-mel as the model's front-end computes it.
    front_end : LogMelFrontEnd
        The front-end that made it (its ``mel_db`` says what a dB is on this model).

    Returns
    -------
    Tensor [..., T, F]
        dB values.
    """
    return front_end.mel_db(_as_tensor(log_mel))


def _db_difference(log_mel_a: Any, log_mel_b: Any, front_end: DbScale) -> torch.Tensor:
    a, b = _as_tensor(log_mel_a), _as_tensor(log_mel_b)
    if a.shape != b.shape:
        raise ValueError(f"spectrograms differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}; "
                         "analyse both at the same length (pad or trim the waveforms first)")
    if a.numel() == 0:
        raise ValueError("cannot compare empty spectrograms")
    a64, b64 = a.detach().double(), b.detach().double()
    return mel_db(a64, front_end=front_end) - mel_db(b64, front_end=front_end)


def mse_db2(log_mel_a: Any, log_mel_b: Any, *, front_end: DbScale) -> float:
    """Mean of squared differences of two log-mels in dB (:func:`mel_db`): dB².

    Both must have the same shape ``[..., T, F]`` (the same model and the same padded length);
    a mismatch raises ``ValueError`` rather than silently trimming, since different frame
    counts mean the two were not analysed alike. Computed in float64.
    """
    return float(_db_difference(log_mel_a, log_mel_b, front_end).square().mean())


def rmse_db(log_mel_a: Any, log_mel_b: Any, *, front_end: DbScale) -> float:
    """Root of :func:`mse_db2`: dB. A uniform gain change of ``g`` dB gives exactly ``g``."""
    return math.sqrt(mse_db2(log_mel_a, log_mel_b, front_end=front_end))


def mse_db2_tensor(log_mel_a: torch.Tensor, log_mel_b: torch.Tensor, *,
                   front_end: DbScale) -> torch.Tensor:
    """:func:`mse_db2` as a differentiable tensor in the inputs' dtype (the engine's distance
    penalty); the same formula, so the penalty is exactly the reported ``mse_db2``."""
    return (front_end.mel_db(log_mel_a) - front_end.mel_db(log_mel_b)).square().mean()


def _check_index(index: int, n_classes: int) -> int:
    if not 0 <= int(index) < n_classes:
        raise TargetError(f"class index {index} is out of range for {n_classes} classes")
    return int(index)


def target_confidence(scores: Any, index: int) -> float:
    """Mean over patches of the target class's probability.

    Parameters
    ----------
    scores : Tensor [N, C] or [C]
        Per-patch probabilities (``ModelOutput.scores``); a ``[C]`` vector counts as one patch.
    index : int
        Target class index.
    """
    table = _as_tensor(scores).detach()
    if table.dim() == 1:
        table = table[None]
    if table.dim() != 2 or table.shape[0] == 0:
        raise ValueError(f"expected scores [N, C], got shape {tuple(table.shape)}")
    return float(table[:, _check_index(index, table.shape[1])].double().mean())


def top_k(clip_scores: Any, class_names: Sequence[str], k: int = 3) -> list[tuple[str, float]]:
    """The ``k`` highest clip-level scores as ``[(class name, score), ...]``, best first.

    Ties keep the lower class index first (a stable, reproducible order).
    """
    values = _as_tensor(clip_scores).detach().double().flatten()
    if values.numel() != len(class_names):
        raise ValueError(f"{values.numel()} scores for {len(class_names)} class names")
    k = max(0, min(int(k), values.numel()))
    order = sorted(range(values.numel()), key=lambda i: (-float(values[i]), i))[:k]
    return [(class_names[i], float(values[i])) for i in order]


def is_success(clip_scores: Any, index: int, *, threshold: float | None = None) -> bool:
    """Whether a dream succeeded: the target is the top-1 class of ``clip_scores [C]`` (no other
    class strictly higher), or, when ``threshold`` is given, its score is at least
    ``threshold`` (0..1)."""
    values = _as_tensor(clip_scores).detach().double().flatten()
    index = _check_index(index, values.numel())
    if threshold is not None:
        return bool(values[index] >= threshold)
    return bool(values[index] >= values.max())


#: A judge's target score must at least multiply by this and rise by at least MOVE_MIN_GAIN.
MOVE_MIN_RATIO = 2.0
MOVE_MIN_GAIN = 0.02


def judge_moved(confidence_before: float, confidence_after: float, rank_before: int,
                rank_after: int) -> bool:
    """Whether a judge outside the dream heard it move toward the target
    (``METRIC_DEFINITIONS["judge_moved"]``).

    Parameters
    ----------
    confidence_before, confidence_after : float
        The judge's target score of the original and of the dream (0..1).
    rank_before, rank_after : int
        The target's rank (1 = first) among the judge's comparable classes.
    """
    return (judge_score_rose(confidence_before, confidence_after)
            and judge_rank_climbed(rank_before, rank_after))


def judge_score_rose(confidence_before: float, confidence_after: float) -> bool:
    """The score half of :func:`judge_moved`: the judge's target score (0..1) at least
    multiplied by ``MOVE_MIN_RATIO`` and rose by at least ``MOVE_MIN_GAIN``."""
    return bool(confidence_after >= MOVE_MIN_RATIO * confidence_before
                and confidence_after - confidence_before >= MOVE_MIN_GAIN)


def judge_rank_climbed(rank_before: int, rank_after: int) -> bool:
    """The rank half of :func:`judge_moved`: the target's rank (1 = first) among the judge's
    comparable classes improved, or it stayed first."""
    return bool(rank_after < rank_before or rank_after == rank_before == 1)


def spectral_convergence_db(waveform: torch.Tensor, magnitude: torch.Tensor, *, n_fft: int,
                            win_length: int, hop_length: int,
                            window: torch.Tensor | None = None,
                            edge_frames: int = 0) -> float:
    """Spectral convergence ``20·log10(‖|STFT(x̂)| − S‖_F / ‖S‖_F)`` in dB (lower is better).

    ``STFT`` is :func:`dreamsound.spectral.stft` (frames from sample 0, no centring). If the
    waveform gives more frames than ``magnitude`` has (e.g. it was zero-padded), only the first
    ``T`` frames are compared; fewer frames raise ``ValueError``. ``edge_frames=k`` leaves out the
    first and last ``k`` frames (e.g. to compare reconstructions away from the signal's edges,
    where frames are only partly overlapped).

    Parameters
    ----------
    waveform : Tensor [..., n]
        The estimate x̂.
    magnitude : Tensor [..., T, n_fft // 2 + 1]
        The target magnitude S (must not be all zero).
    """
    from dreamsound.spectral import stft  # local: spectral imports nothing from here

    waveform, magnitude = _as_tensor(waveform).detach(), _as_tensor(magnitude).detach()
    rebuilt = stft(waveform.to(magnitude.dtype), n_fft=n_fft, win_length=win_length,
                   hop_length=hop_length, window=window).abs()
    n_frames = magnitude.shape[-2]
    if rebuilt.shape[-2] < n_frames:
        raise ValueError(f"the waveform gives {rebuilt.shape[-2]} frames, the magnitude has "
                         f"{n_frames}")
    if edge_frames < 0 or 2 * edge_frames >= n_frames:
        raise ValueError(f"edge_frames={edge_frames} leaves no frames of {n_frames}")
    keep = slice(edge_frames, n_frames - edge_frames)
    rebuilt = rebuilt[..., keep, :].double()
    target = magnitude[..., keep, :].double()
    reference_norm = torch.linalg.vector_norm(target)
    if reference_norm == 0:
        raise ValueError("spectral convergence is undefined for an all-zero target magnitude")
    ratio = torch.linalg.vector_norm(rebuilt - target) / reference_norm
    # A perfect match gives -inf; report it as such rather than raising.
    return float(20.0 * torch.log10(ratio)) if ratio > 0 else -math.inf


def distance_report(log_mel_before: Any, log_mel_after: Any, *,
                    front_end: DbScale) -> dict[str, float]:
    """``{"mse_db2": ..., "rmse_db": ...}`` between two log-mels (see :func:`mse_db2`)."""
    mse = mse_db2(log_mel_before, log_mel_after, front_end=front_end)
    return {"mse_db2": mse, "rmse_db": math.sqrt(mse)}
