"""The authors' librosa front-end of ``irmas-pons``, differentiable (:class:`PonsFrontEnd`).

12 kHz, reflect-centred STFT, Slaney power mel, ``power_to_db`` of the squared power with
``top_db=80``, on dreamsound's log-mel conventions (see "Log-mel scale" in
:mod:`dreamsound.models.pons`), and the way back (Griffin-Lim, a waveform fit).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dreamsound.spectral import FrontEndConfig, LogMelFrontEnd, griffin_lim, mel_to_linear

#: Shortest input used as is (3 s at 12 kHz; the authors' code refuses shorter clips). Shorter
#: ones are repeated (wrap-padded) up to this length.
MIN_SAMPLES = 36000

_DB_PER_NEPER = 20.0 / math.log(10.0)
#: dB of the authors' features (``10·log10 P²``) per neper of this front-end's log-mel.
FEATURE_DB_PER_NEPER = 2.0 * _DB_PER_NEPER
#: ``power_to_db``'s ``amin`` on the squared power mel.
AMIN = 1e-10
#: ``power_to_db``'s ``top_db`` on the features (dB).
TOP_DB = 80.0
#: The top-dB clamp in nepers of this front-end's log-mel: ``ln 100``.
TOP_NEPERS = TOP_DB / FEATURE_DB_PER_NEPER
#: Log-mel values within this of the clip's floor count as at the floor when inverting
#: (nepers; 1e-4 = 0.0009 dB, above float32 rounding of values near the floor).
_CENSORED_NEPERS = 1e-4


@dataclass(frozen=True)
class PonsFrontEndConfig(FrontEndConfig):
    """:class:`FrontEndConfig` with centred frames and wrap-padding to 3 s.

    The padded signal is ``max(n, MIN_SAMPLES)`` samples plus ``n_fft // 2`` reflected samples at
    each end (librosa's centring), so frame ``t`` is centred on input sample ``t · hop_length``
    and ``n_frames(padded_length(n)) = 1 + max(n, MIN_SAMPLES) // hop_length``.
    """

    @property
    def min_samples(self) -> int:
        """Shortest input used without repetition (36,000 samples = 3 s)."""
        return MIN_SAMPLES

    def padded_length(self, n: int) -> int:
        """Samples after :meth:`PonsFrontEnd.pad` of ``n`` input samples."""
        return max(n, self.min_samples) + 2 * (self.n_fft // 2)


#: The authors' front-end: 12 kHz, n_fft 512, hop 256, 96 Slaney mels 0-6000 Hz, 128-frame
#: (2.73 s) patches without overlap. ``log_offset`` is the magnitude floor 10^-2.5 (module doc).
FRONT_END = PonsFrontEndConfig(sample_rate=12000, n_fft=512, win_length=512, hop_length=256,
                               n_mels=96, fmin=0.0, fmax=6000.0, log_offset=AMIN ** 0.25,
                               patch_frames=128, patch_hop_frames=128, mel_scale="slaney")


def pons_features(log_mel: torch.Tensor) -> torch.Tensor:
    """The authors' features ``power_to_db(P², top_db=80)`` ``[..., n_mels, T]`` (dB, before the
    mean is subtracted) from this front-end's log-mel ``[..., T, n_mels]`` (nepers)."""
    return (log_mel * FEATURE_DB_PER_NEPER).transpose(-1, -2)


class PonsFrontEnd(LogMelFrontEnd):
    """The authors' librosa front-end, differentiable, on dreamsound's log-mel conventions.

    ``librosa.load(sr=12000)`` → ``melspectrogram(n_fft=512, hop_length=256, n_mels=96)``
    (periodic Hann, centred frames with **reflect** padding, power 2, Slaney mel with area norm,
    0-6000 Hz) → squared again → ``power_to_db(ref=1, amin=1e-10, top_db=80)``. The padding mode
    was chosen by matching ``reference_outputs.npz``: reflect gives the reference log-mel to
    4e-5 dB on every clip, zeros are off by up to 15 dB at the clip edges. (librosa's own
    default became zeros in 0.10; the authors' 2017 librosa reflected.)

    The log-mel returned is ``ln`` of the root-power mel magnitude ``sqrt(P)`` (see the module
    docstring: ``F = log_mel · 40 / ln 10``; ``mel_db = F / 2``). The top-dB clamp is relative to
    the clip's maximum over all frames and bands, as in ``power_to_db`` on the whole clip, and is
    differentiable (``torch.maximum``; the maximum itself carries gradient).

    Inputs under 3 s are repeated up to 3 s (the authors' code refuses them; repeating keeps
    the sound's level and texture in every frame where zeros would add silence that the
    top-dB clamp and the network then see). Patches: 128 frames, no overlap, the shorter tail
    dropped.
    """

    def __init__(self, config: PonsFrontEndConfig = FRONT_END):
        if config.mel_scale != "slaney" or config.win_length != config.n_fft:
            raise ValueError("the Pons front-end needs a Slaney mel and win_length == n_fft")
        super().__init__(config)

    @property
    def centre(self) -> int:
        """Samples of reflection padding before the input (``n_fft // 2`` = 256)."""
        return self.config.n_fft // 2

    def pad(self, waveform: torch.Tensor) -> torch.Tensor:
        """Repeat ``[..., n]`` up to 3 s if shorter, then reflect-pad ``n_fft // 2`` at each end.

        Returns ``[..., padded_length(n)]``; frame ``t`` of :meth:`stft` is then centred on input
        sample ``t · hop_length`` (librosa's ``center=True``).
        """
        n = waveform.shape[-1]
        if n == 0:
            raise ValueError("the Pons front-end needs a non-empty waveform")
        if n < MIN_SAMPLES:
            repeats = -(-MIN_SAMPLES // n)
            waveform = waveform.repeat(*([1] * (waveform.dim() - 1)), repeats)[..., :MIN_SAMPLES]
        lead, length = waveform.shape[:-1], waveform.shape[-1]
        # F.pad's reflect mode wants [C, W]; fold every leading dimension into C.
        flat = F.pad(waveform.reshape(-1, length), (self.centre, self.centre), mode="reflect")
        return flat.reshape(*lead, length + 2 * self.centre)

    def power_mel(self, power: torch.Tensor) -> torch.Tensor:
        """Power mel ``P [..., T, n_mels]`` from a linear power spectrum ``[..., T, n_bins]``."""
        return power @ self.mel_matrix.to(power.dtype)

    def mel(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Power mel ``P`` from a linear *magnitude* ``[..., T, n_bins]``: the mel matrix acts on
        ``|STFT|²`` in this front-end (librosa's ``power=2``), not on the magnitude."""
        return self.power_mel(magnitude.square())

    def log(self, mel: torch.Tensor) -> torch.Tensor:
        """``ln(max(sqrt(P), 10^-2.5))``, floored at its maximum minus ``ln 100`` (nepers).

        Equal to ``power_to_db(P², ref=1, amin=1e-10, top_db=80) / FEATURE_DB_PER_NEPER``; the
        maximum is taken over the last two axes ``[T, n_mels]`` (one clip).
        """
        log_mel = 0.5 * torch.log(mel.clamp(min=math.sqrt(AMIN)))
        return torch.maximum(log_mel, self.relative_floor(log_mel))

    @staticmethod
    def relative_floor(log_mel: torch.Tensor) -> torch.Tensor:
        """The clip's top-dB floor ``max(log_mel) - ln 100`` ``[..., 1, 1]`` (nepers)."""
        return log_mel.amax(dim=(-2, -1), keepdim=True) - TOP_NEPERS

    def unlog(self, log_mel: torch.Tensor) -> torch.Tensor:
        """The power mel ``P = exp(2 · log_mel)`` (not a magnitude).

        The mel matrix is linear in *power* here, so the mel that :func:`mel_to_linear` can take
        back through :attr:`mel_matrix` is the power mel; :meth:`invert` takes the square root
        only after that solve (a magnitude pushed through a power matrix would be wrong by a
        square root per bin).
        """
        return torch.exp(2.0 * log_mel)

    @property
    def floor(self) -> float:
        """``ln(10^-2.5) = -5.76`` nepers (-50 dB ``mel_db``): ``amin=1e-10`` on ``P²``.

        The absolute floor; every clip also has its own higher floor 40 dB (``mel_db``) below its
        loudest value (:meth:`relative_floor`, ``top_db=80`` on the features)."""
        return math.log(self.config.log_offset)

    def mel_db(self, log_mel: torch.Tensor) -> torch.Tensor:
        """``10·log10 P = 20·log10 sqrt(P)``: dB of the power mel, half the authors' features.

        One dB of audio gain is one dB here (and two in the features the network sees), as on
        every other model, so ``rmse_db`` compares across models. This is ``log_mel · 20 / ln 10``
        (the base formula: the log-mel is the log of the root-power magnitude).
        """
        return log_mel * _DB_PER_NEPER

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[..., T, 96]`` (nepers, see :meth:`log`) of ``[..., n]`` at 12 kHz;
        ``T = 1 + max(n, 36000) // 256``."""
        spectrum = self.stft(self.pad(waveform))
        # |X|² straight from the real and imaginary parts: no sqrt-then-square, and a finite
        # gradient at exact zeros.
        power = spectrum.real.square() + spectrum.imag.square()
        return self.log(self.power_mel(power))

    def invert(self, log_mel: torch.Tensor, *, reference_waveform: torch.Tensor | None = None,
               n_iter: int = 32, momentum: float = 0.99, mel_iter: int = 100,
               fit_iter: int = 0,
               generator: torch.Generator | None = None, length: int | None = None,
               callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """Waveform ``[..., length]`` whose log-mel approximates ``log_mel`` (no gradients).

        Power mel (:meth:`unlog`) → linear power by :func:`mel_to_linear` with this front-end's
        own matrix (starting from the reference's ``|STFT|²``) → square root → fast
        :func:`griffin_lim` from the reference's phase (random from ``generator`` without one)
        → the centring and repetition removed (output sample 0 is input sample 0) → optionally
        :meth:`fit_waveform`.

        Values at the clip's floor (:meth:`relative_floor`, or the absolute :attr:`floor`) are
        censored: any band power at or below it gives the same log-mel. There the reference's
        own band power is kept when it is lower, instead of raising every such band to the floor
        (on a whistle 96 % of the log-mel is at the floor, and raising it adds broadband noise
        40 dB below the loudest band). So an unchanged log-mel with its reference and
        ``n_iter=0`` gives the reference back to float rounding.

        Parameters
        ----------
        log_mel : Tensor [..., T, 96]
            As :meth:`forward` returns it (frames of the padded signal).
        reference_waveform : Tensor [..., n], optional
            The original waveform (unpadded); must give the same ``T``.
        n_iter, momentum, mel_iter, fit_iter, generator
            As for :meth:`LogMelFrontEnd.invert`.
        length : int, optional
            Samples returned (default ``(T - 1) · 256``, the span of the frame centres).
        callback : callable(iteration, waveform), optional
            Passed to :func:`griffin_lim`; its waveforms are the *padded* signal (input sample 0
            at index 256).
        """
        c = self.config
        with torch.no_grad():
            log_mel = log_mel.detach()
            power_mel = self.unlog(log_mel)
            reference = reference_phase = None
            if reference_waveform is not None:
                spectrum = self.stft(self.pad(reference_waveform.detach().to(
                    device=log_mel.device, dtype=log_mel.dtype)))
                if spectrum.shape[-2] != log_mel.shape[-2]:
                    raise ValueError(f"the reference gives {spectrum.shape[-2]} frames, the "
                                     f"log-mel has {log_mel.shape[-2]}")
                reference = spectrum.real.square() + spectrum.imag.square()
                reference_phase = spectrum
                floor = torch.clamp(self.relative_floor(log_mel), min=self.floor)
                censored = log_mel <= floor + _CENSORED_NEPERS
                power_mel = torch.where(censored,
                                        torch.minimum(power_mel, self.power_mel(reference)),
                                        power_mel)
            power = mel_to_linear(power_mel, self.mel_matrix, reference=reference,
                                  n_iter=mel_iter)
            padded = griffin_lim(power.sqrt(), n_fft=c.n_fft, win_length=c.win_length,
                                 hop_length=c.hop_length, n_iter=n_iter, momentum=momentum,
                                 init_phase=reference_phase, generator=generator,
                                 window=self.window.to(log_mel.dtype), callback=callback)
            n = length if length is not None else (log_mel.shape[-2] - 1) * c.hop_length
            waveform = self._uncentre(padded, n)
        if fit_iter > 0:
            waveform = self.fit_waveform(waveform, log_mel, n_iter=fit_iter)
        return waveform

    def _uncentre(self, padded: torch.Tensor, n: int) -> torch.Tensor:
        """Input samples ``[..., n]`` of a padded-signal waveform (zeros past its end)."""
        waveform = padded[..., self.centre:self.centre + n]
        short = n - waveform.shape[-1]
        return F.pad(waveform, (0, short)) if short > 0 else waveform

    def _fit_target(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Values below the clip's own top-dB floor (or the absolute :attr:`floor`) are
        unreachable and count as that floor."""
        return torch.maximum(log_mel, self.relative_floor(log_mel)).clamp(min=self.floor)
