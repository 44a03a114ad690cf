"""Gradient sonification: the gradients of a dream, turned into sound.

The gradient of the objective says how the model wants the sound to change. DreamSound played the
waveform gradient itself; composers use it as material. Here:

* **waveform domain**: the gradient ``d objective / d samples`` ``[n]`` *is* a waveform; it is
  peak-normalised.
* **spectrogram domain**: the gradient ``d objective / d log-mel`` ``[T, F]`` says, per frame and
  mel band, where the model wants more (positive) or less (negative) energy. Its **positive
  part** is rendered: each linear-frequency bin takes the weighted mean of the mel bands whose
  triangles cover it (the band shares of the model's own mel matrix), which gives a magnitude
  spectrogram ``[T, bins]`` shaped like "what to add"; it is turned into sound by fast
  Griffin-Lim started from the original sound's phase (random phase for a silent start), so the
  result keeps the original's timing and pitch where the two overlap. Bins outside the model's
  mel range stay silent (the model cannot ask for anything there). The negative part (where the
  model wants less) is not audible as an addition and is left out.

Every sonification is peak-normalised to -1 dBFS. :func:`dreamsound.sonify` runs ``steps`` dream
steps and concatenates the gradient of each step (each segment normalised on its own, with 10 ms
fades so segments do not click, :func:`join_segments`) into one evolving sequence.
"""

from __future__ import annotations

import numpy as np
import torch

from dreamsound.errors import DreamsoundError
from dreamsound.models.base import AudioClassifier
from dreamsound.spectral import griffin_lim

#: Griffin-Lim iterations for a spectrogram-domain gradient (a texture, not a reconstruction).
SONIFY_GL_ITERATIONS = 16
#: Fade at both ends of each segment of an evolving sequence, seconds.
SEGMENT_FADE_S = 0.01
#: Peak of every sonification, dBFS.
PEAK_DBFS = -1.0


def bands_to_bins(values: torch.Tensor, mel_matrix: torch.Tensor) -> torch.Tensor:
    """Spread per-band values ``[T, F]`` onto linear bins ``[T, bins]``.

    Each bin gets the mean of the bands covering it, weighted by its share of each band's
    triangle (the rows of the mel matrix, normalised to sum to 1); bins outside every triangle
    get 0.
    """
    matrix = mel_matrix.to(device=values.device, dtype=values.dtype)  # [bins, F]
    share = matrix / matrix.sum(dim=1, keepdim=True).clamp(min=torch.finfo(values.dtype).tiny)
    return values @ share.T


def gradient_to_audio(gradient: torch.Tensor, *, model: AudioClassifier, domain: str,
                      reference: torch.Tensor | None, length: int, seed: int = 0,
                      n_iter: int = SONIFY_GL_ITERATIONS) -> np.ndarray:
    """Sonify one gradient (see the module docstring).

    Parameters
    ----------
    gradient : Tensor
        ``[T, F]`` (spectrogram domain, d objective / d log-mel) or ``[n]`` (waveform domain).
    model : AudioClassifier
        Supplies the STFT geometry and mel matrix.
    domain : {"spectrogram", "waveform"}
    reference : Tensor [n], optional
        The original sound, whose phase starts Griffin-Lim (spectrogram domain); None for random
        phase (seeded).
    length : int
        Samples to return.
    seed : int
        Seeds the random phase.
    n_iter : int
        Griffin-Lim iterations (spectrogram domain).

    Returns
    -------
    ndarray float32 [length]
        Peak at -1 dBFS, or all zeros when the gradient has no positive part.
    """
    from dreamsound.audio import peak_normalize

    gradient = gradient.detach()
    if not torch.isfinite(gradient).all():
        raise DreamsoundError("the gradient holds NaN/Inf values; nothing to sonify")
    if domain == "waveform":
        if gradient.dim() != 1:
            raise ValueError(f"a waveform gradient is [n], got {tuple(gradient.shape)}")
        audio = gradient.float().cpu().numpy()
        audio = np.pad(audio, (0, max(0, length - audio.shape[0])))[:length]
    elif domain == "spectrogram":
        front_end = model.front_end
        cfg = front_end.config
        wanted = gradient.clamp(min=0.0)
        magnitude = bands_to_bins(wanted, front_end.mel_matrix)
        init_phase = None
        if reference is not None:
            with torch.no_grad():
                init_phase = front_end.stft(front_end.pad(reference.detach().to(
                    device=magnitude.device, dtype=magnitude.dtype)))
            if init_phase.shape[-2] != magnitude.shape[-2]:
                init_phase = None
        generator = torch.Generator(device=magnitude.device).manual_seed(int(seed))
        with torch.no_grad():
            wave = griffin_lim(magnitude, n_fft=cfg.n_fft, win_length=cfg.win_length,
                               hop_length=cfg.hop_length, n_iter=n_iter,
                               init_phase=init_phase, generator=generator, length=length,
                               window=front_end.window.to(magnitude.dtype))
        audio = wave.float().cpu().numpy()
    else:
        raise DreamsoundError(f"unknown domain {domain!r}")
    return peak_normalize(audio, peak_dbfs=PEAK_DBFS)


def join_segments(segments: list[np.ndarray], sample_rate: int) -> np.ndarray:
    """One evolving sequence from per-step sonifications: each faded in and out over
    :data:`SEGMENT_FADE_S` (no clicks at the joins), then concatenated."""
    if len(segments) == 1:
        return segments[0]
    fade = round(SEGMENT_FADE_S * sample_rate)
    return np.concatenate([_fade_ends(s, fade) for s in segments])


def _fade_ends(segment: np.ndarray, fade: int) -> np.ndarray:
    fade = min(fade, segment.shape[0] // 2)
    if fade <= 0:
        return segment
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    out = segment.copy()
    out[:fade] *= ramp
    out[-fade:] *= ramp[::-1]
    return out
