"""musicnn's front end: 16 kHz log-mel ``log10(10000 * mel + 1)`` in 187-frame patches.

:class:`MusicnnFrontEnd` (see :mod:`dreamsound.models.musicnn`): a centred, zero-padded STFT,
the power spectrogram through librosa's Slaney mel matrix, the log compression, patches side by
side, and the way back (Griffin-Lim and a waveform fit with the centred geometry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dreamsound.spectral import FrontEndConfig, LogMelFrontEnd, griffin_lim, mel_to_linear

#: Patch length: ``librosa.time_to_frames(3 s) + 1`` = 187 frames (2.992 s).
PATCH_FRAMES = 187
#: The log compression's scale: ``log10(LOG_SCALE * mel + 1)`` ("logC" in musicnn's code).
LOG_SCALE = 10000.0


@dataclass(frozen=True)
class MusicnnFrontEndConfig(FrontEndConfig):
    """:class:`FrontEndConfig` with musicnn's *centred* frame arithmetic.

    Frame ``t`` is centred on sample ``t * hop_length``, so a clip of ``n`` samples gives
    ``1 + n // hop_length`` frames (librosa's ``center=True``), and one patch needs
    ``(patch_frames - 1) * hop_length`` = 47,616 samples (2.976 s).
    """

    @property
    def min_samples(self) -> int:
        """Samples that make exactly one patch: 47,616 (musicnn crashes below this; we pad)."""
        return (self.patch_frames - 1) * self.hop_length

    def padded_length(self, n: int) -> int:
        """``max(n, min_samples)``: only clips shorter than one patch are (zero-)padded."""
        return max(n, self.min_samples)

    def n_frames(self, n_samples: int) -> int:
        """Centred STFT frames of ``n_samples``: ``1 + n // hop_length``."""
        return 1 + n_samples // self.hop_length


#: musicnn's front end (``configuration.py``: SR 16000, FFT_SIZE 512, FFT_HOP 256, N_MELS 96;
#: ``extractor.batch_data``: 187-frame patches, no overlap). ``log_offset = 1`` is not a mel
#: offset of this front end (it has none); it makes ``ln(log_offset)`` = 0 = :attr:`floor`
#: for code that still derives the log-mel floor from the config.
FRONT_END = MusicnnFrontEndConfig(sample_rate=16000, n_fft=512, win_length=512, hop_length=256,
                                  n_mels=96, fmin=0.0, fmax=8000.0, log_offset=1.0,
                                  patch_frames=PATCH_FRAMES, patch_hop_frames=PATCH_FRAMES,
                                  mel_scale="slaney")


def _fit_to(waveform: torch.Tensor, length: int) -> torch.Tensor:
    """Trim or zero-pad the last axis to ``length`` samples."""
    n = waveform.shape[-1]
    return waveform[..., :length] if n >= length else F.pad(waveform, (0, length - n))


class MusicnnFrontEnd(LogMelFrontEnd):
    """musicnn's front end, differentiable w.r.t. the waveform (``extractor.batch_data``).

    ``librosa.feature.melspectrogram(y, sr=16000, n_fft=512, hop_length=256, n_mels=96)`` with
    librosa >= 0.10 (centred frames, zero padding), then ``log10(10000 * mel + 1)``:

    * :meth:`pad` pads only clips shorter than one patch (2.976 s), at the end, with zeros. The
      package crashes on them (``UnboundLocalError``); musicnn's *training* code repeat-padded
      short clips ("pad_short": "repeat-pad"), but zeros keep the rendering of a dream simple
      (the padding is silence, not a copy to keep in step) and silence is a log-mel of 0.
    * :meth:`stft` centres: 256 zeros on each side (``pad_mode='constant'``, librosa >= 0.10;
      librosa <= 0.9 reflected, which changes the first and last frame only).
    * :meth:`mel` takes the **power** (|X|², librosa's ``power=2.0``), not the magnitude.
    * :meth:`log` is ``log10(10000·mel + 1)`` in float32.
    * :meth:`patches` cuts 187-frame patches side by side and drops the frames after the last
      whole patch, exactly as ``batch_data`` does (up to 2.99 s at the end of a clip is not seen
      by the model, and a dream leaves it as it was).

    The mel power is ``[..., T, 96]``, the log-mel ``[..., T, 96]`` (time major), patches
    ``[..., N, 187, 96]``.
    """

    config: MusicnnFrontEndConfig

    def __init__(self, config: MusicnnFrontEndConfig = FRONT_END):
        super().__init__(config)

    # -- analysis --------------------------------------------------------------------------
    def pad(self, waveform: torch.Tensor) -> torch.Tensor:
        """Zero-pad ``[..., n]`` at the end to one patch (47,616 samples) if it is shorter."""
        n = waveform.shape[-1]
        return F.pad(waveform, (0, self.config.padded_length(n) - n))

    def stft(self, waveform: torch.Tensor) -> torch.Tensor:
        """Centred complex STFT ``[..., 1 + n // 256, 257]`` of ``[..., n]``.

        ``n_fft // 2`` = 256 zeros go on each side, so frame ``t`` is centred on sample
        ``256 t`` (librosa ``center=True, pad_mode='constant'``).
        """
        half = self.config.n_fft // 2
        return super().stft(F.pad(waveform, (half, half)))

    @staticmethod
    def power(spectrum: torch.Tensor) -> torch.Tensor:
        """``|X|²`` ``[..., T, bins]`` of a complex STFT, as ``re² + im²``.

        Squaring ``abs`` would give the same values, but the gradient of ``|X|`` at ``X = 0``
        is undefined; that of ``re² + im²`` is 0 there, so digital silence stays differentiable.
        """
        return torch.view_as_real(spectrum).square().sum(dim=-1)

    def mel_power(self, power: torch.Tensor) -> torch.Tensor:
        """Mel power ``[..., T, 96]`` from a linear power spectrogram ``[..., T, 257]``."""
        return power @ self.mel_matrix.to(power.dtype)

    def mel(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Mel **power** ``[..., T, 96]`` from a linear *magnitude* ``[..., T, 257]``.

        Kept for the :class:`LogMelFrontEnd` interface (which passes magnitudes); musicnn's
        mels are of the power spectrogram, so the magnitude is squared first.
        """
        return self.mel_power(magnitude.square())

    def log(self, mel: torch.Tensor) -> torch.Tensor:
        """``log10(10000 · mel + 1)`` of a mel power, in the input's dtype (float32).

        musicnn 0.1.0 casts the mel power to **float16** before this expression and evaluates
        it in float16, where ``10000 · mel`` overflows to +inf from mel >= 6.55 (float16's
        largest value is 65504): any normal-level music does that in its low bands. TensorFlow
        then turns the whole patch into one fixed, input-independent taggram (NaNs swallowed by
        fused ReLUs), and a PyTorch port would give NaN. So this is computed in float32, as all
        of TensorFlow's reference outputs we check against were; where the package's float16
        value is finite the two agree within float16 rounding (<= 2.5e-3).
        """
        return torch.log10(mel * LOG_SCALE + 1.0)

    def unlog(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`log`: the mel **power** ``(10^log_mel - 1) / 10000``, clamped >= 0
        (a log-mel edited below 0, the log of silence, has no power)."""
        return torch.clamp((torch.pow(10.0, log_mel) - 1.0) / LOG_SCALE, min=0.0)

    @property
    def floor(self) -> float:
        """0.0: the log-mel of silence (``log10(0 + 1)``), the lowest value :meth:`log` gives."""
        return 0.0

    def mel_db(self, log_mel: torch.Tensor) -> torch.Tensor:
        """dB of the mel power: ``10·log10(mel + 1e-4)`` with ``mel = unlog(log_mel)``.

        ``log10(10000·mel + 1) = 4 + log10(mel + 1e-4)``, so the 1e-4 floor is the log's own
        knee (the "+1" divided by 10000: -40 dB, where the compression turns from logarithmic to
        linear), and the value is exactly ``10·log_mel - 40`` (log-mel below the floor 0 counts
        as the floor, like :meth:`unlog`). A power, hence 10 (not 20) dB per decade.
        """
        return 10.0 * log_mel.clamp(min=self.floor) - 40.0

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[..., 1 + n' // 256, 96]`` of a waveform ``[..., n]`` (``n'`` the padded
        length); float32 in, float32 out."""
        return self.log(self.mel_power(self.power(self.stft(self.pad(waveform)))))

    def patches(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Cut ``[..., T, 96]`` into ``[..., T // 187, 187, 96]``: whole patches side by side
        from frame 0, the remaining frames dropped (``batch_data`` with its default
        ``input_overlap=False``; a trailing part is not padded)."""
        c = self.config
        if log_mel.shape[-2] < c.patch_frames:
            raise ValueError(f"need at least {c.patch_frames} frames, got {log_mel.shape[-2]}")
        return log_mel.unfold(-2, c.patch_frames, c.patch_hop_frames).transpose(-1, -2)

    # -- synthesis -------------------------------------------------------------------------
    def _uncentre(self, padded: torch.Tensor, length: int) -> torch.Tensor:
        """Samples ``[..., length]`` of the clip from a signal that starts at the centring pad."""
        return _fit_to(padded[..., self.config.n_fft // 2:], length)

    def invert(self, log_mel: torch.Tensor, *, reference_waveform: torch.Tensor | None = None,
               n_iter: int = 32, momentum: float = 0.99, mel_iter: int = 100,
               fit_iter: int = 0,
               generator: torch.Generator | None = None, length: int | None = None,
               callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """Waveform ``[..., length]`` whose log-mel approximates ``log_mel [..., T, 96]``.

        :meth:`unlog` gives the mel *power*; :func:`~dreamsound.spectral.mel_to_linear` solves
        for a non-negative linear *power* with this front end's mel matrix (the mel is linear in
        the power, so the same solve applies; started from, and outside 0-8 kHz keeping, the
        reference's power); its square root is the magnitude fast Griffin-Lim matches, started
        from the reference's phase (or random phase from ``generator``). Griffin-Lim works on
        the centred signal (256 padding samples first), so its output is shifted back by 256
        samples; then, optionally, :meth:`fit_waveform`. No gradients.

        Parameters
        ----------
        log_mel : Tensor [..., T, 96]
            As :meth:`forward` gives it (of a padded clip).
        reference_waveform : Tensor [..., n], optional
            The original clip (16 kHz); it must give the same ``T`` frames.
        n_iter, momentum, mel_iter, fit_iter, generator, callback
            As :meth:`LogMelFrontEnd.invert`; ``callback`` sees uncentred waveforms.
        length : int, optional
            Samples returned; default ``(T - 1) * 256``, the shortest clip with ``T`` frames.
        """
        c = self.config
        frames = log_mel.shape[-2]
        n_out = length if length is not None else (frames - 1) * c.hop_length
        with torch.no_grad():
            log_mel = log_mel.detach()
            mel_power = self.unlog(log_mel)
            reference = spectrum = None
            if reference_waveform is not None:
                spectrum = self.stft(self.pad(reference_waveform.detach().to(
                    device=log_mel.device, dtype=log_mel.dtype)))
                if spectrum.shape[-2] != frames:
                    raise ValueError(f"the reference gives {spectrum.shape[-2]} frames, the "
                                     f"log-mel has {frames}")
                reference = self.power(spectrum)
            linear_power = mel_to_linear(mel_power, self.mel_matrix, reference=reference,
                                         n_iter=mel_iter)
            on_iteration = None
            if callback is not None:
                def on_iteration(iteration: int, padded: torch.Tensor) -> None:
                    callback(iteration, self._uncentre(padded, n_out))
            padded = griffin_lim(linear_power.sqrt(), n_fft=c.n_fft, win_length=c.win_length,
                                 hop_length=c.hop_length, n_iter=n_iter, momentum=momentum,
                                 init_phase=spectrum, generator=generator,
                                 window=self.window.to(log_mel.dtype), callback=on_iteration)
            waveform = self._uncentre(padded, n_out)
        if fit_iter > 0:
            waveform = self.fit_waveform(waveform, log_mel, n_iter=fit_iter)
        return waveform

    def _stft_span(self, n: int) -> int:
        """The padded clip plus the 256 centring zeros on each side that :meth:`stft` adds."""
        return self.config.padded_length(n) + self.config.n_fft
