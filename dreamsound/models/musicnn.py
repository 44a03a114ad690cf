"""``musicnn`` and ``musicnn-msd``: Pons & Serra's pretrained music taggers, ported to PyTorch.

musicnn (J. Pons and X. Serra, "musicnn: pre-trained convolutional neural networks for music
audio tagging", ISMIR 2019 LBD, arXiv:1909.06654; ISC licence, PyPI ``musicnn-0.1.0``) tags 3 s
patches of music with 50 independent tags. Two of its pretrained models are here, with the same
code and different weights:

* ``musicnn``: ``MTT_musicnn``, trained on MagnaTagATune (tags such as violin, classical, techno);
* ``musicnn-msd``: ``MSD_musicnn``, trained on the Million Song Dataset (rock, jazz, House, ...).

The port is checked against TensorFlow's own outputs (``shared/musicnn``,
``tests/test_musicnn.py``): the front end, the network alone, its input gradient and the converted
weights.

Front end (:class:`MusicnnFrontEnd`): 16 kHz mono, STFT with a 512-sample periodic Hann window,
hop 256, **centred** (256 zeros on each side, librosa >= 0.10's ``pad_mode='constant'``), the
**power** spectrogram, librosa's Slaney mel matrix (96 bands, 0-8000 Hz, area-normalised), then
``log10(10000 * mel + 1)`` in float32. Patches are 187 frames (2.992 s), side by side (hop 187);
the frames after the last whole patch are not seen, as in the package.

Network (:class:`MusicnnNetwork`), per patch of 187 frames x 96 bands:

* input batch norm;
* "timbral" convolutions spanning 7 frames and 38 or 67 mel bands (204 filters each), max-pooled
  over frequency, and "temporal" convolutions spanning 128, 64 or 32 frames and one band
  (51 filters each), max-pooled over frequency: a 561-channel sequence of 187 frames;
* a mid-end of three 1-D convolutions over time (7 frames, 64 filters), the last two residual;
* the 753 channels (561 + 3 x 64) pooled over time by max and by mean, interleaved, then
  batch norm, dense 200 + ReLU + batch norm (the ``penultimate`` embedding) and dense 50 (logits).

Every convolution is conv -> ReLU -> batch norm (musicnn puts the norm after the activation);
batch norms use TensorFlow's epsilon 1e-3 and the stored moving statistics; the padding is
TensorFlow's (zeros, the extra row of an even "same" kernel *after*).

Weights are safetensors files holding the 64 TensorFlow variables verbatim (names such as
``conv2d/kernel``, TensorFlow layouts), written by ``scripts/data/convert_musicnn.py`` from the
wheel's checkpoints; they ship in ``models/musicnn/`` and ``models/musicnn_msd/`` with the ISC
notice and a model card. ``--weights`` also takes an ``.npz`` of the same variables.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dreamsound.errors import WeightsError
from dreamsound.models.base import AudioClassifier, PatchNetwork
from dreamsound.models.registry import ModelSpec
from dreamsound.models.weights import WeightsFile, resolve_weights
from dreamsound.spectral import FrontEndConfig, LogMelFrontEnd, griffin_lim, istft, mel_to_linear

log = logging.getLogger(__name__)

#: Format tag in the weights' safetensors metadata (``scripts/data/convert_musicnn.py``).
WEIGHTS_FORMAT = "dreamsound-musicnn"

#: The 50 MagnaTagATune tags of ``MTT_musicnn``, in output order (``configuration.py``).
MTT_TAGS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
    "weird", "country", "metal", "female voice", "choral",
)

#: The 50 Million Song Dataset (last.fm) tags of ``MSD_musicnn``, in output order, with the case
#: the package stores ("Mellow", "House", ...); targets are matched case-insensitively anyway.
MSD_TAGS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill",
    "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock",
    "60s", "rnb", "indie pop", "sad", "House", "happy",
)

#: TensorFlow's ``tf.compat.v1.layers.batch_normalization`` default (all 11 norms use it).
BN_EPSILON = 1e-3
#: Patch length: ``librosa.time_to_frames(3 s) + 1`` = 187 frames (2.992 s).
PATCH_FRAMES = 187
#: The log compression's scale: ``log10(LOG_SCALE * mel + 1)`` ("logC" in musicnn's code).
LOG_SCALE = 10000.0

# -- architecture ------------------------------------------------------------------------------
#: Timbral branches: (name, kernel frames, kernel mel bands, filters, TF conv, TF batch norm).
TIMBRAL = (("f74", 7, 38, 204, "conv2d", "batch_normalization_1"),
           ("f77", 7, 67, 204, "conv2d_1", "batch_normalization_2"))
#: Temporal branches: (name, kernel frames, filters, TF conv, TF batch norm); kernels span 1 band.
TEMPORAL = (("s1", 128, 51, "conv2d_2", "batch_normalization_3"),
            ("s2", 64, 51, "conv2d_3", "batch_normalization_4"),
            ("s3", 32, 51, "conv2d_4", "batch_normalization_5"))
#: Mid-end: (name, TF conv, TF batch norm); 7-frame kernels, 64 filters, residual after cnn1.
MID_END = (("cnn1", "conv2d_5", "batch_normalization_6"),
           ("cnn2", "conv2d_6", "batch_normalization_7"),
           ("cnn3", "conv2d_7", "batch_normalization_8"))
MID_FILTERS, MID_KERNEL = 64, 7
FRONT_CHANNELS = sum(t[3] for t in TIMBRAL) + sum(t[2] for t in TEMPORAL)  # 561
POOLED_CHANNELS = FRONT_CHANNELS + MID_FILTERS * len(MID_END)  # 753
BACKEND_UNITS = 200
N_TAGS = 50


def _variable_shapes(n_mels: int = 96) -> dict[str, tuple[int, ...]]:
    """TensorFlow name -> shape of the 64 model variables (792,079 parameters)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def norm(name: str, size: int) -> None:
        for part in ("beta", "gamma", "moving_mean", "moving_variance"):
            shapes[f"{name}/{part}"] = (size,)

    norm("batch_normalization", 1)
    for _, frames, bands, filters, conv, bn in TIMBRAL:
        shapes[f"{conv}/kernel"], shapes[f"{conv}/bias"] = (frames, bands, 1, filters), (filters,)
        norm(bn, filters)
    for _, frames, filters, conv, bn in TEMPORAL:
        shapes[f"{conv}/kernel"], shapes[f"{conv}/bias"] = (frames, 1, 1, filters), (filters,)
        norm(bn, filters)
    width = FRONT_CHANNELS
    for _, conv, bn in MID_END:
        shapes[f"{conv}/kernel"] = (MID_KERNEL, width, 1, MID_FILTERS)
        shapes[f"{conv}/bias"] = (MID_FILTERS,)
        norm(bn, MID_FILTERS)
        width = MID_FILTERS
    norm("batch_normalization_9", 2 * POOLED_CHANNELS)
    shapes["dense/kernel"], shapes["dense/bias"] = (2 * POOLED_CHANNELS, BACKEND_UNITS), \
        (BACKEND_UNITS,)
    norm("batch_normalization_10", BACKEND_UNITS)
    shapes["dense_1/kernel"], shapes["dense_1/bias"] = (BACKEND_UNITS, N_TAGS), (N_TAGS,)
    return shapes


#: TensorFlow name -> shape of every model variable (what a weights file must hold).
VARIABLE_SHAPES: dict[str, tuple[int, ...]] = _variable_shapes()


# -- front end -----------------------------------------------------------------------------------
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

    def fit_waveform(self, waveform: torch.Tensor, log_mel: torch.Tensor, *, n_iter: int = 50,
                     learning_rate: float = 0.05) -> torch.Tensor:
        """Refine ``waveform [..., n]`` so that its log-mel comes closer to ``log_mel``.

        :meth:`LogMelFrontEnd.fit_waveform` (Adam on a gain and a phase offset per STFT bin,
        resynthesised by :func:`~dreamsound.spectral.istft`, minimising the squared log-mel
        error through this front end; the best iterate is returned), with the centred geometry:
        the bins are those of the centred STFT, and the resynthesis drops the 256 leading
        padding samples. Log-mel values below the floor 0 count as 0.
        """
        c = self.config
        frames = log_mel.shape[-2]
        target = log_mel.detach().clamp(min=self.floor)
        n = waveform.shape[-1]
        with torch.no_grad():
            padded = self.pad(waveform.detach())
            spectrum = self.stft(padded)
        # The centred signal spans padded + n_fft samples; istft rebuilds it from sample 0.
        span = padded.shape[-1] + c.n_fft
        window = self.window.to(waveform.dtype)
        gain = torch.zeros(spectrum.shape, dtype=waveform.dtype, device=waveform.device,
                           requires_grad=True)
        phase = torch.zeros_like(gain, requires_grad=True)
        optimiser = torch.optim.Adam([gain, phase], lr=learning_rate)
        best_loss, best = math.inf, waveform.detach()
        with torch.enable_grad():
            for _ in range(n_iter):
                rebuilt = istft(spectrum * torch.exp(torch.complex(gain, phase)), n_fft=c.n_fft,
                                win_length=c.win_length, hop_length=c.hop_length,
                                window=window, length=span)
                candidate = self._uncentre(rebuilt, n)
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


# -- network -------------------------------------------------------------------------------------
def _batch_norm_2d(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPSILON)


def _batch_norm_1d(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=BN_EPSILON)


class FrequencyPooledConv(nn.Module):
    """Zero-pad time, conv (VALID) -> ReLU -> batch norm, max over all remaining mel bands.

    Input ``[P, 1, T, 96]`` (batch-normalised log-mel), output ``[P, filters, T]``.

    Parameters
    ----------
    frames, bands, filters : int
        Kernel size (time x mel) and number of filters.
    pad_before, pad_after : int
        Zero frames added before/after in time (``frames - 1`` in all, so ``T`` is kept).
    """

    def __init__(self, frames: int, bands: int, filters: int, pad_before: int, pad_after: int):
        super().__init__()
        self.time_padding = (pad_before, pad_after)
        self.conv = nn.Conv2d(1, filters, (frames, bands))
        self.bn = _batch_norm_2d(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, *self.time_padding))
        return self.bn(F.relu(self.conv(x))).amax(dim=-1)


class TimbralBranches(nn.Module):
    """musicnn's ``timbral_block``: f74 and f77 (7 x 38 and 7 x 67 kernels, 204 filters each).

    The kernels span 40 % and 70 % of the 96 mel bands ("f74", "f77": 7 frames x 0.4 / 0.7
    of the bands); TensorFlow pads time by 3 | 3 and convolves VALID over frequency.
    Output ``[P, 408, T]`` = ``[f74, f77]`` on channels.
    """

    def __init__(self) -> None:
        super().__init__()
        for name, frames, bands, filters, _, _ in TIMBRAL:
            before = (frames - 1) // 2
            self.add_module(name, FrequencyPooledConv(frames, bands, filters, before,
                                                      frames - 1 - before))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.children()], dim=1)


class TemporalBranches(nn.Module):
    """musicnn's ``temporal_block``: s1, s2, s3 (128-, 64- and 32-frame kernels, one band, 51
    filters each) with TensorFlow "same" padding: the odd extra zero frame goes *after*
    (63 | 64, 31 | 32, 15 | 16). Output ``[P, 153, T]``."""

    def __init__(self) -> None:
        super().__init__()
        for name, frames, filters, _, _ in TEMPORAL:
            before = (frames - 1) // 2
            self.add_module(name, FrequencyPooledConv(frames, 1, filters, before,
                                                      frames - 1 - before))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.children()], dim=1)


class MidEndLayer(nn.Module):
    """conv over time (7 frames, zero-padded 3 | 3) -> ReLU -> batch norm, plus the input when
    ``residual``. ``[P, C_in, T]`` -> ``[P, 64, T]``.

    TensorFlow writes this as a 7 x C_in VALID Conv2d over a ``(T, C_in, 1)`` image; that is
    exactly a Conv1d over channels."""

    def __init__(self, in_channels: int, residual: bool):
        super().__init__()
        self.residual = residual
        self.conv = nn.Conv1d(in_channels, MID_FILTERS, MID_KERNEL, padding=MID_KERNEL // 2)
        self.bn = _batch_norm_1d(MID_FILTERS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(F.relu(self.conv(x)))
        return y + x if self.residual else y


class Backend(nn.Module):
    """Pooled features ``[P, 1506]`` -> batch norm -> dense 200 -> ReLU -> batch norm
    (``penultimate`` ``[P, 200]``). Dropout (0.5 before each dense layer) is off at inference."""

    def __init__(self) -> None:
        super().__init__()
        self.input_bn = _batch_norm_1d(2 * POOLED_CHANNELS)
        self.dense = nn.Linear(2 * POOLED_CHANNELS, BACKEND_UNITS)
        self.bn = _batch_norm_1d(BACKEND_UNITS)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.dense(self.input_bn(pooled))))


class MusicnnNetwork(PatchNetwork):
    """musicnn (``models.build_musicnn``, 64 mid-end filters, 200 back-end units) on patches
    ``[P, 1, 187, 96]`` (time x mel) -> ``(logits [P, 50], penultimate [P, 200])``.

    Named layers (outputs, channels on dimension 1, T = 187 frames): ``timbral``
    ``[P, 408, T]``, ``temporal`` ``[P, 153, T]``, ``cnn1``/``cnn2``/``cnn3`` ``[P, 64, T]``
    (cnn2 and cnn3 with their residual added), ``penultimate`` ``[P, 200]``, ``logits``
    ``[P, 50]``. It works on any number of frames; musicnn was trained on 187.
    """

    def __init__(self, n_tags: int = N_TAGS):
        super().__init__()
        self.input_bn = _batch_norm_2d(1)
        self.timbral = TimbralBranches()
        self.temporal = TemporalBranches()
        self.cnn1 = MidEndLayer(FRONT_CHANNELS, residual=False)
        self.cnn2 = MidEndLayer(MID_FILTERS, residual=True)
        self.cnn3 = MidEndLayer(MID_FILTERS, residual=True)
        self.penultimate = Backend()
        self.logits = nn.Linear(BACKEND_UNITS, n_tags)

    def features(self, patches: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every intermediate of :meth:`forward` by TensorFlow's golden names: ``timbral``,
        ``temporal``, ``cnn1``..``cnn3`` ``[P, C, T]``, ``max_pool``/``mean_pool`` ``[P, 753]``,
        ``penultimate`` ``[P, 200]``, ``logits`` ``[P, 50]``."""
        x = self.input_bn(patches)
        out: dict[str, torch.Tensor] = {"timbral": self.timbral(x), "temporal": self.temporal(x)}
        front = torch.cat([out["timbral"], out["temporal"]], dim=1)  # [P, 561, T]
        out["cnn1"] = self.cnn1(front)
        out["cnn2"] = self.cnn2(out["cnn1"])
        out["cnn3"] = self.cnn3(out["cnn2"])
        stacked = torch.cat([front, out["cnn1"], out["cnn2"], out["cnn3"]], dim=1)  # [P, 753, T]
        out["max_pool"], out["mean_pool"] = stacked.amax(dim=-1), stacked.mean(dim=-1)
        # TensorFlow concatenates [max, mean] on a new last axis and flattens: the channels
        # interleave as max_0, mean_0, max_1, mean_1, ... (not all maxima, then all means).
        pooled = torch.stack([out["max_pool"], out["mean_pool"]], dim=-1).flatten(1)
        out["penultimate"] = self.penultimate(pooled)
        out["logits"] = self.logits(out["penultimate"])
        return out

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [P, 50], penultimate [P, 200])`` of ``[P, 1, T, 96]``."""
        out = self.features(patches)
        return out["logits"], out["penultimate"]

    def named_layers(self) -> dict[str, nn.Module]:
        return {"timbral": self.timbral, "temporal": self.temporal, "cnn1": self.cnn1,
                "cnn2": self.cnn2, "cnn3": self.cnn3, "penultimate": self.penultimate,
                "logits": self.logits}

    # -- weights ---------------------------------------------------------------------------
    def load_tf_variables(self, variables: dict[str, np.ndarray]) -> None:
        """Copy musicnn's TensorFlow variables (name -> array in TF layout) into the network.

        Raises
        ------
        WeightsError
            Missing, unexpected or wrongly shaped variables.
        """
        check_variables(variables)

        def tensor(name: str, transform: Callable[[np.ndarray], np.ndarray] = lambda a: a
                   ) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(transform(
                np.asarray(variables[name], dtype=np.float32))))

        state: dict[str, torch.Tensor] = {}

        def norm(prefix: str, name: str) -> None:
            state[f"{prefix}.weight"] = tensor(f"{name}/gamma")
            state[f"{prefix}.bias"] = tensor(f"{name}/beta")
            state[f"{prefix}.running_mean"] = tensor(f"{name}/moving_mean")
            state[f"{prefix}.running_var"] = tensor(f"{name}/moving_variance")
            state[f"{prefix}.num_batches_tracked"] = torch.tensor(0)

        def conv2d(prefix: str, name: str) -> None:
            # TF (kh, kw, in, out) -> torch (out, in, kh, kw).
            state[f"{prefix}.weight"] = tensor(f"{name}/kernel", lambda a: a.transpose(3, 2, 0, 1))
            state[f"{prefix}.bias"] = tensor(f"{name}/bias")

        norm("input_bn", "batch_normalization")
        for name, _, _, _, conv, bn in TIMBRAL:
            conv2d(f"timbral.{name}.conv", conv)
            norm(f"timbral.{name}.bn", bn)
        for name, _, _, conv, bn in TEMPORAL:
            conv2d(f"temporal.{name}.conv", conv)
            norm(f"temporal.{name}.bn", bn)
        for name, conv, bn in MID_END:
            # TF (7, C_in, 1, 64) over a (T, C_in, 1) image -> Conv1d (64, C_in, 7).
            state[f"{name}.conv.weight"] = tensor(f"{conv}/kernel",
                                                  lambda a: a[:, :, 0, :].transpose(2, 1, 0))
            state[f"{name}.conv.bias"] = tensor(f"{conv}/bias")
            norm(f"{name}.bn", bn)
        norm("penultimate.input_bn", "batch_normalization_9")
        state["penultimate.dense.weight"] = tensor("dense/kernel", lambda a: a.T)
        state["penultimate.dense.bias"] = tensor("dense/bias")
        norm("penultimate.bn", "batch_normalization_10")
        state["logits.weight"] = tensor("dense_1/kernel", lambda a: a.T)
        state["logits.bias"] = tensor("dense_1/bias")
        self.load_state_dict(state)


def check_variables(variables: dict[str, np.ndarray]) -> None:
    """Raise :class:`WeightsError` unless ``variables`` are exactly musicnn's 64, in shape."""
    missing = sorted(set(VARIABLE_SHAPES) - set(variables))
    extra = sorted(set(variables) - set(VARIABLE_SHAPES))
    wrong = [f"{n} {tuple(variables[n].shape)} (expected {VARIABLE_SHAPES[n]})"
             for n in sorted(VARIABLE_SHAPES) if n in variables
             and tuple(variables[n].shape) != VARIABLE_SHAPES[n]]
    if missing or extra or wrong:
        detail = (f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}" if extra
                  else f"wrong shape: {wrong[:3]}")
        raise WeightsError(f"not musicnn weights (64 TensorFlow variables expected): {detail}")


# -- weights files -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One pretrained musicnn model.

    Attributes
    ----------
    name : str
        Registry name (``musicnn``, ``musicnn-msd``).
    tf_name : str
        The package's name (``MTT_musicnn``), written in the weights' metadata.
    tags : tuple of str
        Output order.
    weights : WeightsFile
        Where its safetensors file is found.
    summary : str
        One line for ``dreamsound models``.
    """

    name: str
    tf_name: str
    tags: tuple[str, ...]
    weights: WeightsFile
    summary: str


MTT_WEIGHTS = WeightsFile(
    model="musicnn",
    filename="model.safetensors",
    url=None,
    # Digest of models/musicnn/model.safetensors as written by scripts/data/convert_musicnn.py
    # from the wheel's MTT_musicnn checkpoint (tests/test_musicnn.py rebuilds it byte for byte).
    sha256="03e5b90a797beb4d141f9def5316367a5e073c325cd54032e090bed41fffa9e4",
    source="ships with dreamsound (models/musicnn/, converted from musicnn 0.1.0, ISC)",
    env_var="DREAMSOUND_MUSICNN_WEIGHTS",
    packaged="musicnn/model.safetensors",
    size=3_174_284,
)

MSD_WEIGHTS = WeightsFile(
    model="musicnn-msd",
    filename="model.safetensors",
    url=None,
    # Digest of models/musicnn_msd/model.safetensors (converted from MSD_musicnn's variables).
    sha256="05a3d5339ca80701207dc0aab8a7ce40da5725a2c587ffc6b89f9b5fb06d5421",
    source="ships with dreamsound (models/musicnn_msd/, converted from musicnn 0.1.0, ISC)",
    env_var="DREAMSOUND_MUSICNN_MSD_WEIGHTS",
    packaged="musicnn_msd/model.safetensors",
    size=3_174_284,
)

MTT = Variant("musicnn", "MTT_musicnn", MTT_TAGS, MTT_WEIGHTS,
              "musicnn MagnaTagATune tagger (Pons & Serra 2019; 50 tags, 16 kHz, 3 s patches)")
MSD = Variant("musicnn-msd", "MSD_musicnn", MSD_TAGS, MSD_WEIGHTS,
              "musicnn Million Song Dataset tagger (Pons & Serra 2019; 50 last.fm tags, 16 kHz)")


def load_variables(path: str | Path, *, expect: str | None = None) -> dict[str, np.ndarray]:
    """musicnn's TensorFlow variables from a weights file.

    Parameters
    ----------
    path : path
        A safetensors file written by ``scripts/data/convert_musicnn.py`` (format
        ``dreamsound-musicnn``), or an ``.npz`` of the variables keyed by TensorFlow name
        (optimiser entries such as ``conv2d/kernel/Adam`` are ignored).
    expect : str, optional
        ``MTT_musicnn`` or ``MSD_musicnn``: a safetensors file whose metadata names the other
        model is refused (its tags would be wrong).

    Raises
    ------
    WeightsError
        Unreadable, foreign or mismatched file.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                variables = {k: np.asarray(archive[k], dtype=np.float32) for k in archive.files
                             if "/Adam" not in k and k not in ("beta1_power", "beta2_power")}
        else:
            from safetensors import SafetensorError, safe_open

            try:
                with safe_open(str(path), framework="numpy") as handle:
                    metadata = handle.metadata() or {}
                    if metadata.get("format") != WEIGHTS_FORMAT:
                        raise WeightsError(
                            f"{path}: not musicnn weights (format {metadata.get('format')!r}, "
                            f"expected {WEIGHTS_FORMAT!r}; convert the checkpoint with "
                            "scripts/data/convert_musicnn.py)")
                    if expect is not None and metadata.get("model") != expect:
                        raise WeightsError(f"{path} holds {metadata.get('model')} weights, not "
                                           f"{expect}")
                    variables = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
            except SafetensorError as exc:
                raise WeightsError(f"cannot read musicnn weights {path}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read musicnn weights {path}: {exc}") from None
    check_variables(variables)
    return variables


def build_model(variant: Variant, variables: dict[str, np.ndarray], *,
                device: torch.device | str = "cpu") -> AudioClassifier:
    """An :class:`AudioClassifier` for ``variant`` holding ``variables`` (eval mode)."""
    network = MusicnnNetwork(len(variant.tags))
    network.load_tf_variables(variables)
    model = AudioClassifier(variant.name, MusicnnFrontEnd(FRONT_END), network, variant.tags)
    return model.to(device).eval()


def _factory(variant: Variant) -> Callable[[Path | None, torch.device], AudioClassifier]:
    def build(weights: Path | None, device: torch.device) -> AudioClassifier:
        path = resolve_weights(variant.weights, weights)
        log.info("loading %s weights from %s", variant.tf_name, path)
        # A converted file names its model: MSD weights under MTT tags would mislabel every
        # output, so that is refused (an .npz carries no name and is taken as given).
        return build_model(variant, load_variables(path, expect=variant.tf_name),
                           device=device)

    build.__name__ = f"build_{variant.name.replace('-', '_')}"
    build.__module__ = __name__
    return build


SPEC = ModelSpec(name=MTT.name, summary=MTT.summary, factory=_factory(MTT),
                 weights=MTT_WEIGHTS)
MSD_SPEC = ModelSpec(name=MSD.name, summary=MSD.summary, factory=_factory(MSD),
                     weights=MSD_WEIGHTS)


def config_json(variant: Variant) -> str:
    """The ``config.json`` that ships beside a variant's weights (front end, tags, sizes)."""
    return json.dumps({"model": variant.name, "tf_name": variant.tf_name,
                       "front_end": FRONT_END.to_dict(), "log": "log10(10000 * mel_power + 1)",
                       "stft": "centred, zero-padded 256 | 256, periodic Hann, power",
                       "bn_epsilon": BN_EPSILON, "tags": list(variant.tags)}, indent=2) + "\n"


__all__ = ["FRONT_END", "MSD", "MSD_SPEC", "MSD_TAGS", "MTT", "MTT_TAGS", "SPEC",
           "VARIABLE_SHAPES", "MusicnnFrontEnd", "MusicnnFrontEndConfig", "MusicnnNetwork",
           "build_model", "check_variables", "load_variables"]
