"""Spectral building blocks in torch: STFT, mel matrices, log-mel and patching.

Everything here is differentiable with respect to the waveform, works on any leading batch shape
``[..., n]`` and runs on whatever device its inputs live on.

Conventions (shared by every model front-end):

* frames start at sample 0 (no centring) and the window is ``win_length`` samples long, zero-padded
  at the *end* to ``n_fft`` before the FFT (TensorFlow's ``tf.signal.stft`` convention; note that
  ``torch.stft`` would centre a short window inside ``n_fft`` instead, which shifts every frame);
* the window is a *periodic* Hann window;
* the spectrogram is a **magnitude** (not power) spectrogram.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def hann_window(length: int, *, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Periodic Hann window of ``length`` samples (``tf.signal.hann_window(periodic=True)``)."""
    return torch.hann_window(length, periodic=True, dtype=dtype, device=device)


def frame_signal(waveform: torch.Tensor, frame_length: int, hop_length: int) -> torch.Tensor:
    """Cut ``[..., n]`` into overlapping frames ``[..., T, frame_length]`` starting at sample 0.

    ``T = 1 + (n - frame_length) // hop_length``; trailing samples that do not fill a frame are
    dropped (TensorFlow's ``pad_end=False``).
    """
    if waveform.shape[-1] < frame_length:
        raise ValueError(f"need at least {frame_length} samples, got {waveform.shape[-1]}")
    return waveform.unfold(-1, frame_length, hop_length)


def stft(waveform: torch.Tensor, *, n_fft: int, win_length: int, hop_length: int,
         window: torch.Tensor | None = None) -> torch.Tensor:
    """Complex STFT ``[..., T, n_fft // 2 + 1]`` of ``[..., n]`` (frames x bins, no centring)."""
    if window is None:
        window = hann_window(win_length, dtype=waveform.dtype, device=waveform.device)
    frames = frame_signal(waveform, win_length, hop_length) * window
    return torch.fft.rfft(frames, n=n_fft, dim=-1)


def hz_to_mel_htk(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale, natural-log form: ``1127 * ln(1 + f / 700)`` (f in Hz)."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def tf_mel_matrix(n_mels: int, n_bins: int, sample_rate: float, fmin: float,
                  fmax: float) -> np.ndarray:
    """The mel weight matrix ``[n_bins, n_mels]`` of ``tf.signal.linear_to_mel_weight_matrix``.

    HTK mel formula; triangles are built in the *mel* domain between band edges spaced evenly in
    mel from ``fmin`` to ``fmax`` (Hz); the DC bin gets zero weight; no area normalisation.
    Computed in float64 and returned as float32 (TensorFlow computes it in float32; the
    difference is below 1e-6).
    """
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got {fmin}, {fmax}")
    bin_hz = np.linspace(0.0, sample_rate / 2.0, n_bins)[1:]  # skip DC: it gets no weight
    bin_mel = hz_to_mel_htk(bin_hz)[:, None]
    edges = np.linspace(hz_to_mel_htk(fmin), hz_to_mel_htk(fmax), n_mels + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel - lower) / (center - lower)
    falling = (upper - bin_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return np.vstack([np.zeros((1, n_mels)), weights]).astype(np.float32)


def slaney_mel_matrix(n_mels: int, n_fft: int, sample_rate: float, fmin: float,
                      fmax: float) -> np.ndarray:
    """librosa's default mel matrix (Slaney scale, area-normalised), transposed to ``[bins, mels]``.

    Written out here (not imported) so that torch models need no librosa at run time.
    """
    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, dtype=np.float64)
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz)
                        / logstep, f / f_sp)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)),
                        f_sp * m)

    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return weights.T.astype(np.float32)


@dataclass(frozen=True)
class FrontEndConfig:
    """Everything that defines a log-mel front-end (all sizes in samples or frames, rates in Hz).

    The log-mel is ``log(mel_magnitude + log_offset)`` (natural log). Patches are
    ``patch_frames`` frames long, ``patch_hop_frames`` apart.
    """

    sample_rate: int
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    fmin: float
    fmax: float
    log_offset: float
    patch_frames: int
    patch_hop_frames: int
    mel_scale: str = "tf"  # "tf" (HTK, TensorFlow) or "slaney" (librosa's default)

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def min_samples(self) -> int:
        """Samples that make exactly one patch (YAMNet: 15,600 = 0.975 s)."""
        return (self.patch_frames - 1) * self.hop_length + self.win_length

    @property
    def patch_hop_samples(self) -> int:
        """Samples between patch starts (YAMNet: 7,680 = 0.48 s)."""
        return self.patch_hop_frames * self.hop_length

    def padded_length(self, n: int) -> int:
        """Length after padding ``n`` samples: at least one patch, then whole patch hops."""
        if n <= self.min_samples:
            return self.min_samples
        hops = math.ceil((n - self.min_samples) / self.patch_hop_samples)
        return self.min_samples + hops * self.patch_hop_samples

    def n_frames(self, n_samples: int) -> int:
        """STFT frames of an (already padded) signal of ``n_samples``."""
        return 1 + (n_samples - self.win_length) // self.hop_length

    def n_patches(self, n_frames: int) -> int:
        """Patches cut from ``n_frames`` log-mel frames."""
        return 1 + (n_frames - self.patch_frames) // self.patch_hop_frames

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class LogMelFrontEnd(torch.nn.Module):
    """Differentiable waveform -> log-mel -> patches, as a model sees its input.

    Call it on ``[..., n]`` float waveforms at ``config.sample_rate``; it pads (see
    :meth:`FrontEndConfig.padded_length`) and returns the log-mel ``[..., T, n_mels]``.
    The mel matrix is a buffer, so it moves with ``.to(device)``.
    """

    def __init__(self, config: FrontEndConfig):
        super().__init__()
        self.config = config
        if config.mel_scale == "tf":
            matrix = tf_mel_matrix(config.n_mels, config.n_bins, config.sample_rate,
                                   config.fmin, config.fmax)
        elif config.mel_scale == "slaney":
            matrix = slaney_mel_matrix(config.n_mels, config.n_fft, config.sample_rate,
                                       config.fmin, config.fmax)
        else:
            raise ValueError(f"unknown mel_scale {config.mel_scale!r}")
        self.register_buffer("mel_matrix", torch.from_numpy(matrix), persistent=False)
        self.register_buffer("window", hann_window(config.win_length), persistent=False)

    def pad(self, waveform: torch.Tensor) -> torch.Tensor:
        """Zero-pad ``[..., n]`` at the end to :meth:`FrontEndConfig.padded_length`."""
        n = waveform.shape[-1]
        return F.pad(waveform, (0, self.config.padded_length(n) - n))

    def stft(self, waveform: torch.Tensor) -> torch.Tensor:
        """Complex STFT ``[..., T, n_bins]`` of an already padded waveform."""
        c = self.config
        return stft(waveform, n_fft=c.n_fft, win_length=c.win_length, hop_length=c.hop_length,
                    window=self.window.to(waveform.dtype))

    def mel(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Mel magnitude ``[..., T, n_mels]`` from a linear magnitude ``[..., T, n_bins]``."""
        return magnitude @ self.mel_matrix.to(magnitude.dtype)

    def log(self, mel: torch.Tensor) -> torch.Tensor:
        """``log(mel + log_offset)``."""
        return torch.log(mel + self.config.log_offset)

    def unlog(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`log`: the mel magnitude (clamped at 0)."""
        return torch.clamp(torch.exp(log_mel) - self.config.log_offset, min=0.0)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[..., T, n_mels]`` of a waveform ``[..., n]`` (padded here)."""
        return self.log(self.mel(self.stft(self.pad(waveform)).abs()))

    def patches(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Cut ``[..., T, F]`` into patches ``[..., N, patch_frames, F]`` (no end padding)."""
        c = self.config
        if log_mel.shape[-2] < c.patch_frames:
            raise ValueError(f"need at least {c.patch_frames} frames, got {log_mel.shape[-2]}")
        return log_mel.unfold(-2, c.patch_frames, c.patch_hop_frames).transpose(-1, -2)
