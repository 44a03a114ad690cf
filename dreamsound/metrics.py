"""The one place dreamsound's metrics are defined (DESIGN.md §3, "Metrics").

Every number the engine, the CLI and the evaluation report print comes from a function here, and
:data:`METRIC_DEFINITIONS` holds the one-line definitions the CLI shows in ``--help`` and the
README. No other module may re-implement these formulas.

Conventions
-----------
* Spectrogram distances are measured on the **model's own mel scale** in dB. A model's log-mel is
  ``log_mel = ln(mel + log_offset)`` (natural log; YAMNet's ``log_offset`` is 0.001), so the dB
  value ``20·log10(mel + log_offset)`` is simply ``log_mel · 20 / ln 10``. The ``log_offset`` is
  the model's own floor: anything quieter than it counts as the floor (−60 dB for 0.001), so
  differences between near-silent bands do not dominate the distance.
* ``mse_db2`` is in dB² (mean of squared dB differences), ``rmse_db`` in dB (its square root).
  Both are reported; they are not interchangeable.
* Confidences are the model's probabilities (independent sigmoids for the built-in models),
  averaged over patches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from dreamsound.errors import TargetError

#: dB per natural-log unit of magnitude: 20 / ln(10) ≈ 8.6859.
DB_PER_NEPER = 20.0 / math.log(10.0)

# Keep this a plain literal: the CLI reads it with ast.literal_eval, so that --help needs no torch.
METRIC_DEFINITIONS: dict[str, str] = {
    "confidence": "target confidence: the model's probability for the target class "
                  "(sigmoid per patch), averaged over patches; 0..1",
    "success": "success: the target is the top-1 class of the clip scores "
               "(or its confidence reaches the given threshold)",
    "mel_db": "mel dB: 20*log10(mel + log_offset) on the model's own mel scale "
              "(log_offset is the model's floor, 0.001 = -60 dB for YAMNet)",
    "mse_db2": "mse_db2: mean over frames and mel bands of the squared difference of the two "
               "mel-dB spectrograms; dB^2",
    "rmse_db": "rmse_db: square root of mse_db2; dB (a uniform 6.02 dB change gives 6.02)",
    "spectral_convergence_db": "spectral convergence: 20*log10(|| |STFT(x)| - S ||_F / || S ||_F)"
                               " between a waveform's STFT magnitude and the target magnitude S; "
                               "dB, lower is better",
}


def _as_tensor(values: Any) -> torch.Tensor:
    return values if isinstance(values, torch.Tensor) else torch.as_tensor(values)


def mel_db(log_mel: torch.Tensor, *, log_offset: float) -> torch.Tensor:
    """Mel magnitude in dB on the model's own scale: ``20·log10(mel + log_offset)``.

    Parameters
    ----------
    log_mel : Tensor [..., T, F]
        ``ln(mel + log_offset)`` as the model's front-end computes it.
    log_offset : float
        The model's floor (``FrontEndConfig.log_offset``, 0.001 for YAMNet). It is already
        inside ``log_mel``; it is asked for so that callers state which floor the dB values
        carry (a different floor changes every value) and so that it is checked to be positive.

    Returns
    -------
    Tensor [..., T, F]
        dB values; the floor maps to ``20·log10(log_offset)`` (−60 dB for 0.001).
    """
    if not log_offset > 0:
        raise ValueError(f"log_offset must be > 0, got {log_offset}")
    return _as_tensor(log_mel) * DB_PER_NEPER


def _db_difference(log_mel_a: Any, log_mel_b: Any, log_offset: float) -> torch.Tensor:
    a, b = _as_tensor(log_mel_a), _as_tensor(log_mel_b)
    if a.shape != b.shape:
        raise ValueError(f"spectrograms differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}; "
                         "analyse both at the same length (pad or trim the waveforms first)")
    if a.numel() == 0:
        raise ValueError("cannot compare empty spectrograms")
    a64, b64 = a.detach().double(), b.detach().double()
    return mel_db(a64, log_offset=log_offset) - mel_db(b64, log_offset=log_offset)


def mse_db2(log_mel_a: Any, log_mel_b: Any, *, log_offset: float) -> float:
    """Mean of squared differences of two log-mels in dB (:func:`mel_db`): dB².

    Both must have the same shape ``[..., T, F]`` (the same model and the same padded length);
    a mismatch raises ``ValueError`` rather than silently trimming, since different frame
    counts mean the two were not analysed alike. Computed in float64.
    """
    return float(_db_difference(log_mel_a, log_mel_b, log_offset).square().mean())


def rmse_db(log_mel_a: Any, log_mel_b: Any, *, log_offset: float) -> float:
    """Root of :func:`mse_db2`: dB. A uniform gain change of ``g`` dB gives exactly ``g``."""
    return math.sqrt(mse_db2(log_mel_a, log_mel_b, log_offset=log_offset))


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
                    log_offset: float) -> dict[str, float]:
    """``{"mse_db2": ..., "rmse_db": ...}`` between two log-mels (see :func:`mse_db2`)."""
    mse = mse_db2(log_mel_before, log_mel_after, log_offset=log_offset)
    return {"mse_db2": mse, "rmse_db": math.sqrt(mse)}
