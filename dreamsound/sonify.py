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

Every sonification is peak-normalised to -1 dBFS. :func:`sonify` runs ``steps`` dream steps and
concatenates the gradient of each step (each segment normalised on its own, with 10 ms fades so
segments do not click) into one evolving sequence.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamsound.errors import DreamsoundError
from dreamsound.models.base import AudioClassifier
from dreamsound.models.registry import DEFAULT_MODEL, load_model
from dreamsound.spectral import griffin_lim

#: Griffin-Lim iterations for a spectrogram-domain gradient (a texture, not a reconstruction).
SONIFY_GL_ITERATIONS = 16
#: Fade at both ends of each segment of an evolving sequence, seconds.
SEGMENT_FADE_S = 0.01
#: Peak of every sonification, dBFS.
PEAK_DBFS = -1.0


def _bands_to_bins(values: torch.Tensor, mel_matrix: torch.Tensor) -> torch.Tensor:
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
        audio = gradient.float().cpu().numpy()
        audio = np.pad(audio, (0, max(0, length - audio.shape[0])))[:length]
    elif domain == "spectrogram":
        front_end = model.front_end
        cfg = front_end.config
        wanted = gradient.clamp(min=0.0)
        magnitude = _bands_to_bins(wanted, front_end.mel_matrix)
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


def _fade(segment: np.ndarray, fade: int) -> np.ndarray:
    fade = min(fade, segment.shape[0] // 2)
    if fade <= 0:
        return segment
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    out = segment.copy()
    out[:fade] *= ramp
    out[-fade:] *= ramp[::-1]
    return out


@dataclass
class SonifyResult:
    """What :func:`sonify` gives back.

    Attributes
    ----------
    audio : ndarray float32 [steps * n]
        The sonified gradients, one segment per step, concatenated.
    sample_rate : int
        Hz (the model's rate).
    segments : list of ndarray float32 [n]
        Each step's sonification (peak -1 dBFS each).
    spectrograms : dict of str -> ndarray
        ``"original"``: the input's log-mel ``[T, F]``; ``"gradients"``: ``[steps, T, F]``, the
        log-mel-domain gradients (spectrogram domain) or the log-mel of each gradient waveform
        (waveform domain).
    report : dict
        ``model``, ``input``, ``objective``, ``target``, ``layer``, ``channel``, ``domain``,
        ``steps``, ``seconds``, ``sample_rate``, ``duration_s``, ``outputs``.
    """

    audio: np.ndarray
    sample_rate: int
    segments: list[np.ndarray]
    spectrograms: dict[str, np.ndarray]
    report: dict
    input_path: Path | None = None


def sonify(audio: str | Path | np.ndarray, *, model: str | AudioClassifier = DEFAULT_MODEL,
           target: str | int | Sequence[Any] | Mapping[str, float] | None = None,
           layer: str | None = None, channel: int | None = None, steps: int = 1,
           domain: str = "spectrogram", step_size: float | None = None,
           normalize: str = "mean", seed: int = 0, weights: str | Path | None = None,
           device: str | None = None, sample_rate: int | None = None,
           progress: Any = None) -> SonifyResult:
    """Sonify the gradient of a sound toward a class or a layer.

    With ``steps=1`` the result is the gradient at the sound itself; with ``steps=N`` the sound
    is dreamed for N steps (the same engine and settings as :func:`dreamsound.dream`) and the
    gradient of every step becomes one segment of an evolving sequence.

    Parameters
    ----------
    audio : path, str or ndarray [n]
        As for :func:`dreamsound.dream` (files, ``noise:3s``-style starts, arrays).
    model, target, layer, channel, domain, step_size, normalize, seed, weights, device, sample_rate
        As for :func:`dreamsound.dream`.
    steps : int
        Gradients to sonify (>= 1).
    progress : callable(step, total, info), optional

    Returns
    -------
    SonifyResult
    """
    from dreamsound.dream import dream

    if steps < 1:
        raise DreamsoundError(f"--steps must be >= 1 to sonify, got {steps}")
    started = time.perf_counter()
    net = model if isinstance(model, AudioClassifier) else load_model(model, weights, device)
    gradients: list[torch.Tensor] = []

    def keep(_step: int, gradient: torch.Tensor) -> None:
        gradients.append(gradient.detach().clone())

    # The dream's last update is not needed: its gradients are. `steps` dream steps give
    # exactly `steps` gradients (the first at the original sound).
    result = dream(audio, model=net, target=target, layer=layer, channel=channel, domain=domain,
                   steps=steps, step_size=step_size, normalize=normalize, seed=seed,
                   sample_rate=sample_rate, gl_iterations=0, fit_iterations=0,
                   progress=progress,
                   on_gradient=keep)
    reference = None if float(np.max(np.abs(result.original), initial=0.0)) == 0.0 else \
        torch.from_numpy(result.original).to(net.device)
    n = result.original.shape[0]
    segments = [gradient_to_audio(g, model=net, domain=domain, reference=reference, length=n,
                                  seed=seed) for g in gradients]
    fade = round(SEGMENT_FADE_S * net.sample_rate)
    sequence = np.concatenate([_fade(s, fade) for s in segments]) if len(segments) > 1 \
        else segments[0]
    if domain == "spectrogram":
        views = np.stack([g.cpu().numpy() for g in gradients])
    else:
        with torch.no_grad():
            views = np.stack([net.log_mel(g / g.abs().max().clamp(min=1e-30)).cpu().numpy()
                              for g in gradients])
    report = {key: result.report[key] for key in ("model", "input", "objective", "target",
                                                   "layer", "channel", "domain")}
    report.update(steps=len(segments), seconds=time.perf_counter() - started,
                  sample_rate=net.sample_rate, duration_s=sequence.shape[0] / net.sample_rate,
                  outputs={})
    return SonifyResult(audio=sequence.astype(np.float32), sample_rate=net.sample_rate,
                        segments=segments,
                        spectrograms={"original": result.spectrograms["original"],
                                      "gradients": views},
                        report=report, input_path=result.input_path)

