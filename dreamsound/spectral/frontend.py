"""Log-mel front-ends in torch: mel matrices, log-mel and patching, and their inversion.

A :class:`LogMelFrontEnd` turns a waveform into the log-mel patches a model sees (differentiably,
on any leading batch shape ``[..., n]``, on whatever device its inputs live on) and back
(:meth:`LogMelFrontEnd.invert`, with the functions of :mod:`dreamsound.spectral.inversion`). The
STFT conventions are those of :mod:`dreamsound.spectral.analysis`: frames from sample 0, a
periodic Hann window zero-padded at the end, magnitude (not power) spectrograms.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dreamsound.spectral.analysis import hann_window, stft, stft_magnitude
from dreamsound.spectral.inversion import griffin_lim, istft, mel_to_linear


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


def unlog_mel(log_mel: torch.Tensor, log_offset: float) -> torch.Tensor:
    """Inverse of ``log(mel + log_offset)``: the mel magnitude, clamped at 0 (the offset makes
    a small negative value possible after edits in the log domain)."""
    return torch.clamp(torch.exp(log_mel) - log_offset, min=0.0)


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

    def magnitude(self, waveform: torch.Tensor) -> torch.Tensor:
        """``|stft(waveform)|`` ``[..., T, n_bins]`` of an already padded waveform."""
        c = self.config
        return stft_magnitude(waveform, n_fft=c.n_fft, win_length=c.win_length,
                              hop_length=c.hop_length, window=self.window.to(waveform.dtype))

    def mel(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Mel magnitude ``[..., T, n_mels]`` from a linear magnitude ``[..., T, n_bins]``."""
        return magnitude @ self.mel_matrix.to(magnitude.dtype)

    def band_centres_hz(self) -> np.ndarray:
        """Centre frequency of each mel band, ``[n_mels]`` float64 in Hz.

        The weighted mean frequency of the band's triangle in :attr:`mel_matrix`: with the FFT
        bins at ``linspace(0, sample_rate / 2, n_bins)`` Hz, ``(bin_hz @ M) / M.sum(0)``. A band
        with no weight at all (possible for narrow low bands of a coarse FFT) gets 0 Hz rather
        than 0/0.
        """
        matrix = self.mel_matrix.detach().double().cpu().numpy()  # [bins, mels]
        bin_hz = np.linspace(0.0, self.config.sample_rate / 2.0, matrix.shape[0])
        weight = matrix.sum(axis=0)
        return (bin_hz @ matrix) / np.where(weight > 0, weight, 1.0)

    def log(self, mel: torch.Tensor) -> torch.Tensor:
        """``log(mel + log_offset)``."""
        return torch.log(mel + self.config.log_offset)

    def unlog(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`log`: the mel magnitude (clamped at 0)."""
        return unlog_mel(log_mel, self.config.log_offset)

    @property
    def floor(self) -> float:
        """The lowest value :meth:`log` can give (``ln(log_offset)``): the log-mel of silence.

        Front-ends with another log override this with their own floor."""
        return math.log(self.config.log_offset)

    def mel_db(self, log_mel: torch.Tensor) -> torch.Tensor:
        """The log-mel as dB of the mel magnitude on this model's own scale.

        Here ``20·log10(mel + log_offset) = log_mel · 20 / ln 10``. Front-ends with another log
        (power mels, ``log10(1 + C·mel)``, dB with a top-dB clamp) override this; the metrics
        (:mod:`dreamsound.metrics`) only ever call it, so ``rmse_db`` means the same on every model.
        """
        return log_mel * (20.0 / math.log(10.0))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[..., T, n_mels]`` of a waveform ``[..., n]`` (padded here)."""
        return self.log(self.mel(self.magnitude(self.pad(waveform))))

    def invert(self, log_mel: torch.Tensor, *, reference_waveform: torch.Tensor | None = None,
               n_iter: int = 32, momentum: float = 0.99, mel_iter: int = 100,
               fit_iter: int = 0,
               generator: torch.Generator | None = None, length: int | None = None,
               callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """Waveform ``[..., length]`` whose log-mel approximates ``log_mel`` (no gradients).

        :meth:`unlog` -> :func:`mel_to_linear` with this front-end's own mel matrix (starting
        from, and outside the mel range keeping, the reference's magnitude) -> fast
        :func:`griffin_lim` started from the reference's phase, or from random phase drawn from
        ``generator`` without a reference -> optionally :meth:`fit_waveform` (``fit_iter``).

        Parameters
        ----------
        log_mel : Tensor [..., T, n_mels]
            Log-mel of a *padded* signal, as :meth:`forward` returns it.
        reference_waveform : Tensor [..., n], optional
            The original (unpadded or padded) waveform; it is padded here and must give the
            same ``T`` frames as ``log_mel``.
        n_iter, momentum : int, float
            Griffin-Lim iterations and momentum.
        mel_iter : int
            Iterations of the mel -> linear solve.
        fit_iter : int
            Iterations of :meth:`fit_waveform` after Griffin-Lim (0: none).
        generator : torch.Generator, optional
            Random initial phase when there is no reference (seeded -> deterministic).
        length : int, optional
            Samples returned; default the padded length ``(T - 1) * hop + win_length`` (equal
            to :meth:`FrontEndConfig.padded_length` for whole-patch frame counts).
        callback : callable(iteration, waveform), optional
            Passed to :func:`griffin_lim`.
        """
        c = self.config
        with torch.no_grad():
            log_mel = log_mel.detach()
            mel = self.unlog(log_mel)
            reference = reference_phase = None
            if reference_waveform is not None:
                spectrum = self.stft(self.pad(reference_waveform.detach().to(
                    device=log_mel.device, dtype=log_mel.dtype)))
                if spectrum.shape[-2] != log_mel.shape[-2]:
                    raise ValueError(f"the reference gives {spectrum.shape[-2]} frames, the "
                                     f"log-mel has {log_mel.shape[-2]}")
                reference, reference_phase = spectrum.abs(), spectrum
            linear = mel_to_linear(mel, self.mel_matrix, reference=reference, n_iter=mel_iter)
            waveform = griffin_lim(linear, n_fft=c.n_fft, win_length=c.win_length,
                                   hop_length=c.hop_length, n_iter=n_iter, momentum=momentum,
                                   init_phase=reference_phase, generator=generator,
                                   length=length, window=self.window.to(log_mel.dtype),
                                   callback=callback)
        if fit_iter > 0:
            waveform = self.fit_waveform(waveform, log_mel, n_iter=fit_iter)
        return waveform

    def fit_waveform(self, waveform: torch.Tensor, log_mel: torch.Tensor, *, n_iter: int = 50,
                     learning_rate: float = 0.05) -> torch.Tensor:
        """Refine ``waveform [..., n]`` so that its log-mel comes closer to ``log_mel [..., T, F]``.

        Griffin-Lim matches a *linear* magnitude that :func:`mel_to_linear` guessed and then
        keeps whatever its last phase makes of it; neither step looks at the log-mel itself.
        This runs ``n_iter`` Adam steps on a gain (log-magnitude, nepers) and a phase offset
        (radians) for every bin of the waveform's own STFT, resynthesised by :func:`istft`,
        minimising the mean squared log-mel error through this differentiable front-end, i.e.
        on the log scale a model and :func:`dreamsound.metrics.rmse_db` use. Gains and phases
        are relative, so a step changes a quiet bin as much *relatively* as a loud one (Adam on
        the samples themselves adds a noise floor at a fixed absolute level, ruinous in quiet
        passages). Log-mel values below ``log(log_offset)`` are unreachable and count as that
        floor. The best iterate is returned, so the result is never further off than the input.

        Measured (``python -m scripts.bench.bench_render work_data/render/test/fluidr3gm``: 16
        instrument-model dreams of 3 s clips toward a wrong class; Griffin-Lim 32 iterations from
        the original's phase, then 50 of these steps): the rendering's log-mel lands 0.22 dB RMS
        from the dreamed one instead of 1.05, and the rendering adds ~0 dB instead of 0.35 dB to
        the dream's 1.54 dB from the original; 0.65 s instead of 0.09 s per rendering (2 threads).
        ``learning_rate`` is in nepers / radians per step.
        """
        frames = log_mel.shape[-2]
        target = self._fit_target(log_mel.detach())
        n = waveform.shape[-1]
        with torch.no_grad():
            spectrum = self.stft(self.pad(waveform.detach()))
        gain = torch.zeros(spectrum.shape, dtype=waveform.dtype, device=waveform.device,
                           requires_grad=True)
        phase = torch.zeros_like(gain, requires_grad=True)
        optimiser = torch.optim.Adam([gain, phase], lr=learning_rate)
        best_loss, best = math.inf, waveform.detach()
        with torch.enable_grad():
            for _ in range(n_iter):
                candidate = self._resynthesise(spectrum * torch.exp(torch.complex(gain, phase)),
                                               n)
                ours = self(candidate)
                common = min(frames, ours.shape[-2])
                loss = (ours[..., :common, :] - target[..., :common, :]).square().mean()
                value = float(loss.detach())
                if not math.isfinite(value):
                    break
                if value < best_loss:
                    best_loss, best = value, candidate.detach()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
        return best

    def _fit_target(self, log_mel: torch.Tensor) -> torch.Tensor:
        """What :meth:`fit_waveform` aims at: ``log_mel`` with the values no sound can reach
        (below :attr:`floor`) raised to it."""
        return log_mel.clamp(min=self.floor)

    def _stft_span(self, n: int) -> int:
        """Samples of the signal :meth:`stft` frames, for a clip of ``n`` samples."""
        return self.config.padded_length(n)

    def _uncentre(self, padded: torch.Tensor, n: int) -> torch.Tensor:
        """The clip's ``n`` samples ``[..., n]`` from the framed signal (padding dropped)."""
        return padded[..., :n]

    def _resynthesise(self, spectrum: torch.Tensor, n: int) -> torch.Tensor:
        """The clip ``[..., n]`` whose :meth:`stft` is (closest to) ``spectrum``."""
        c = self.config
        rebuilt = istft(spectrum, n_fft=c.n_fft, win_length=c.win_length,
                        hop_length=c.hop_length, window=self.window.to(spectrum.real.dtype),
                        length=self._stft_span(n))
        return self._uncentre(rebuilt, n)

    def patches(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Cut ``[..., T, F]`` into patches ``[..., N, patch_frames, F]`` (no end padding)."""
        c = self.config
        if log_mel.shape[-2] < c.patch_frames:
            raise ValueError(f"need at least {c.patch_frames} frames, got {log_mel.shape[-2]}")
        return log_mel.unfold(-2, c.patch_frames, c.patch_hop_frames).transpose(-1, -2)
