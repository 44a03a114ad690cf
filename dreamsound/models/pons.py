"""``irmas-pons``: the IRMAS-trained single-layer timbre CNN of Pons et al. (EUSIPCO 2017).

J. Pons, O. Slizovskaia, R. Gong, E. Gómez & X. Serra, *Timbre analysis of music audio signals
with convolutional neural networks*, EUSIPCO 2017. The authors' Keras 1.2 / Theano model
("single-layer", validation f-beta 0.673) was trained on the real IRMAS training recordings; its
weights (``github.com/Veleslavia/EUSIPCO2017``, AGPL-3.0) are downloaded by users, never shipped.
This module holds

* :class:`PonsFrontEnd`: the authors' librosa front-end, differentiable, on dreamsound's log-mel
  conventions (see "Log-mel scale" below);
* :class:`PonsNetwork`: six parallel convolution branches (5- and 80-row kernels, 1/3/5 columns),
  batch norm, ELU, max-pool over the whole frequency axis and 32 frames, a 1,792-d embedding and
  a dense layer to 11 logits;
* :func:`load_hdf5` / :func:`load_mean`: the Keras 1 ``.hdf5`` and the training-mean ``.npy``;
* :data:`SPEC`, the registry entry (``dreamsound.load_model("irmas-pons")``).

Conventions the weights file does not state, settled by measurement (``../shared/pons/README.md``):
Theano convolutions are true convolutions, so the kernels are **flipped** (rows and columns);
batch norm's ``running_std`` holds the **variance** (``x̂ = (x - mean) / sqrt(running_std + 1e-3)``);
the "same" padding of the even 80-row kernels is 40 rows before and 39 after; the pooled maps
are flattened **channel-major**. The clip score is the **mean of the patch softmaxes**.

Log-mel scale
-------------
The authors' features are ``F = power_to_db(P², ref=1, amin=1e-10, top_db=80)`` with ``P`` the
Slaney power mel (``|STFT|²`` through the area-normalised mel matrix): the power is squared once
more, so ``F = 20·log10 P`` and 1 dB of audio level moves ``F`` by 2 dB. dreamsound's engine and
metrics read a log-mel as *nepers of a mel magnitude* (``mel_db = log_mel · 20 / ln 10``, steps
and ``--max-rmse-db`` in those dB). So the log-mel this front-end returns is

    ``log_mel = ln(max(sqrt(P), 10^-2.5))``, floored at the clip's maximum minus ``ln 100``,

the natural log of the *root-power* mel magnitude ``sqrt(P)``, and the network computes
``F = log_mel · 40 / ln 10`` (:data:`FEATURE_DB_PER_NEPER`) exactly: ``amin=1e-10`` on ``P²`` is the
magnitude floor ``10^-2.5`` (``log_offset``, -50 dB) and ``top_db=80`` on ``F`` is 40 dB, i.e.
``ln 100`` nepers, of this magnitude. Then ``mel_db = 10·log10 P = F / 2``: dB of the band's
power, which moves 1 dB per dB of audio gain as on every other model, so ``rmse_db`` stays
comparable across models (reporting ``F`` itself would double every distance). The base class's
``floor``, ``mel_db`` and the engine's use of ``log_offset`` are therefore right as they stand.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dreamsound.data.irmas import IRMAS_CODES, IRMAS_NAMES
from dreamsound.errors import WeightsError
from dreamsound.models.base import AudioClassifier, PatchNetwork
from dreamsound.models.registry import ModelSpec
from dreamsound.models.weights import WeightsFile, resolve_weights_files
from dreamsound.models.yamnet import fold_batch_norm
from dreamsound.spectral import FrontEndConfig, LogMelFrontEnd, griffin_lim, istft, mel_to_linear

log = logging.getLogger(__name__)

MODEL_NAME = "irmas-pons"

#: Output order of the network: the authors' ``classes.pkl`` (IRMAS codes).
CLASS_CODES = ("cel", "pia", "vio", "cla", "org", "gac", "tru", "flu", "sax", "gel", "voi")

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
#: Batch-norm epsilon of every branch (the Keras config).
BN_EPSILON = 1e-3
N_CLASSES = 11

PONS_WEIGHTS = WeightsFile(
    model=MODEL_NAME,
    filename="singlelayer.hdf5",
    url="https://github.com/Veleslavia/EUSIPCO2017/raw/master/weights/singlelayer/"
        "epoch.115-val_loss.0.902-fbeta.0.673.hdf5",
    sha256="4ca446cb9b41c2838e669954f017d23bfd67717b86d9879bac78aeefdc2ae680",
    size=829992,
    source="the authors' Keras weights of Pons et al. 2017's single-layer model "
           "(github.com/Veleslavia/EUSIPCO2017, AGPL-3.0)",
    env_var="DREAMSOUND_IRMAS_PONS_WEIGHTS",
)
PONS_MEAN = WeightsFile(
    model=MODEL_NAME,
    filename="singlelayer_mean.npy",
    url="https://github.com/Veleslavia/EUSIPCO2017/raw/master/means/singlelayer_mean.npy",
    sha256="85c5b5e049fea7db0cd74bcfd66db1f0b99f442a58305c2bb0b882f572ac5150",
    size=98384,
    source="the training-set mean patch of the same model "
           "(github.com/Veleslavia/EUSIPCO2017, AGPL-3.0)",
    env_var="DREAMSOUND_IRMAS_PONS_MEAN",
)


# -- front-end -------------------------------------------------------------------------------------
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

    def fit_waveform(self, waveform: torch.Tensor, log_mel: torch.Tensor, *, n_iter: int = 50,
                     learning_rate: float = 0.05) -> torch.Tensor:
        """Refine ``waveform [..., n]`` so its log-mel comes closer to ``log_mel [..., T, 96]``.

        The method of :meth:`LogMelFrontEnd.fit_waveform` (Adam on a per-bin gain in nepers and
        phase offset in radians of the waveform's own STFT, resynthesised by :func:`istft`,
        minimising the mean squared log-mel error; the best iterate is returned), on this
        front-end's centred frames. Target values below the clip's own top-dB floor are
        unreachable and count as that floor.
        """
        c = self.config
        frames = log_mel.shape[-2]
        target = log_mel.detach()
        target = torch.maximum(target, self.relative_floor(target)).clamp(min=self.floor)
        n = waveform.shape[-1]
        with torch.no_grad():
            spectrum = self.stft(self.pad(waveform.detach()))
        padded = c.padded_length(n)
        window = self.window.to(waveform.dtype)
        gain = torch.zeros(spectrum.shape, dtype=waveform.dtype, device=waveform.device,
                           requires_grad=True)
        phase = torch.zeros_like(gain, requires_grad=True)
        optimiser = torch.optim.Adam([gain, phase], lr=learning_rate)
        best_loss, best = math.inf, waveform.detach()
        with torch.enable_grad():
            for _ in range(n_iter):
                rebuilt = istft(spectrum * torch.exp(torch.complex(gain, phase)), n_fft=c.n_fft,
                                win_length=c.win_length, hop_length=c.hop_length, window=window,
                                length=padded)
                candidate = rebuilt[..., self.centre:self.centre + n]
                loss = (self(candidate)[..., :frames, :] - target).square().mean()
                value = float(loss.detach())
                if not math.isfinite(value):
                    break
                if value < best_loss:
                    best_loss, best = value, candidate.detach()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
        return best


# -- network ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BranchSpec:
    """One of the six parallel branches: conv (rows x cols, "same") → BN → ELU → max-pool.

    Attributes
    ----------
    name : str
        Stable public name (``branch_80x3``), rows (frequency) x columns (time).
    keras : str
        Keras layer prefix, columns first (``3_80`` → ``3_80_conv``, ``3_80_bn``).
    rows, cols, filters : int
    """

    name: str
    keras: str
    rows: int
    cols: int
    filters: int

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)`` of "same" padding: ``k // 2`` before, the rest after
        (40 / 39 rows for the 80-row kernels, which matches Theano with flipped kernels)."""
        return (self.cols // 2, self.cols - 1 - self.cols // 2,
                self.rows // 2, self.rows - 1 - self.rows // 2)


#: The branches in concatenation order (the Keras ``merge_1`` inputs).
BRANCHES: tuple[BranchSpec, ...] = (
    BranchSpec("branch_5x1", "1_5", 5, 1, 128),
    BranchSpec("branch_5x3", "3_5", 5, 3, 64),
    BranchSpec("branch_5x5", "5_5", 5, 5, 32),
    BranchSpec("branch_80x1", "1_80", 80, 1, 128),
    BranchSpec("branch_80x3", "3_80", 80, 3, 64),
    BranchSpec("branch_80x5", "5_80", 80, 5, 32),
)
#: Max-pool window and stride (frequency rows, time columns): 96 x 128 → 1 x 4.
POOL = (96, 32)
PATCH_SHAPE = (96, 128)
EMBEDDING_SIZE = sum(b.filters for b in BRANCHES) * (PATCH_SHAPE[1] // POOL[1])  # 1,792


class PonsBranch(nn.Module):
    """``elu(conv(pad(x)))``, batch norm folded into the convolution; output ``[P, filters, 96,
    128]`` (the activation a ``--layer branch_...`` objective sees, before pooling)."""

    def __init__(self, spec: BranchSpec):
        super().__init__()
        self.spec = spec
        self.conv = nn.Conv2d(1, spec.filters, (spec.rows, spec.cols), bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(self.conv(F.pad(x, self.spec.padding)))


class PonsNetwork(PatchNetwork):
    """The single-layer network: patches → ``(logits [P, 11], embeddings [P, 1792])``.

    :meth:`forward` takes dreamsound patches ``[P, 1, 128 frames, 96 bands]`` of
    :class:`PonsFrontEnd`'s log-mel (nepers), turns them into the authors' input layout
    ``[P, 1, 96, 128]`` in dB (:func:`pons_features`) and subtracts the training mean;
    :meth:`from_input` runs the network on such an input directly.

    Named layers: ``branch_5x1``, ``branch_5x3``, ``branch_5x5``, ``branch_80x1``,
    ``branch_80x3``, ``branch_80x5`` (post-ELU maps ``[P, filters, 96, 128]``) and ``logits``.
    Dropout (0.5) is an inference no-op and is left out.
    """

    def __init__(self, n_classes: int = N_CLASSES):
        super().__init__()
        self.branches = nn.ModuleDict({spec.name: PonsBranch(spec) for spec in BRANCHES})
        self.logits = nn.Linear(EMBEDDING_SIZE, n_classes)
        # The training-set mean patch in the authors' layout [96, 128], dB.
        self.register_buffer("mean", torch.zeros(PATCH_SHAPE))

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and embeddings of dreamsound patches ``[P, 1, 128, 96]`` (nepers)."""
        return self.from_input(pons_features(patches) - self.mean)

    def from_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[P, 11]`` and embeddings ``[P, 1792]`` of the authors' network input
        ``[P, 1, 96, 128]`` (dB features minus the training mean)."""
        pooled = [F.max_pool2d(branch(x), POOL, POOL).flatten(1)  # channel-major flatten
                  for branch in self.branches.values()]
        embeddings = torch.cat(pooled, dim=1)
        return self.logits(embeddings), embeddings

    def named_layers(self) -> dict[str, nn.Module]:
        layers: dict[str, nn.Module] = dict(self.branches.items())
        layers["logits"] = self.logits
        return layers


class PonsClassifier(AudioClassifier):
    """:class:`AudioClassifier` whose scores are the softmax per patch (single-label training);
    the clip score is the mean of the patch softmaxes, as in the authors' evaluation.

    The network sees a log-mel only after the front-end's top-dB clamp is applied again
    (``max(log_mel, max(log_mel) - ln 100)``, :meth:`PonsFrontEnd.relative_floor`). A log-mel
    from :meth:`log_mel` is unchanged by it (bit for bit), but one edited in the spectrogram
    domain is not: when a dream raises the clip's loudest band, every band at the floor rises
    with it as soon as the dream is rendered and heard again. Measured on ``examples/loop.wav``
    dreamed toward violin without this: the dreamed log-mel scored 0.95, the same log-mel
    clamped again 0.73 and its rendering 0.71 (the loudest band rose 2.9 dB, and with it the
    52 % of the log-mel at the floor). With it the objective, its gradient (which now reaches
    the loudest band through the floor) and ``--until`` see what the rendering will give.
    """

    def scores_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)

    def network_outputs(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [N, 11], embeddings [N, 1792])`` of a log-mel ``[T, 96]``, clamped to the
        clip's top-dB floor first (see the class docstring); differentiable."""
        front_end = self.front_end
        assert isinstance(front_end, PonsFrontEnd)
        clamped = torch.maximum(log_mel, front_end.relative_floor(log_mel))
        return super().network_outputs(clamped)


def class_names_and_codes() -> tuple[list[str], list[str]]:
    """Display names (``cello``, ...) and IRMAS codes in the network's output order."""
    names = dict(zip(IRMAS_CODES, IRMAS_NAMES, strict=True))
    return [names[code] for code in CLASS_CODES], list(CLASS_CODES)


# -- weights ---------------------------------------------------------------------------------------
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _check(path: Path, what: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if tuple(array.shape) != tuple(shape):
        raise WeightsError(f"{path}: {what} has shape {tuple(array.shape)}, expected "
                           f"{tuple(shape)}; this is not the irmas-pons single-layer model")
    if not np.all(np.isfinite(array)):
        raise WeightsError(f"{path}: {what} holds NaN or Inf values; the file is corrupt")
    return array


def _read_hdf5(path: Path, h5) -> dict[str, np.ndarray]:
    # Keras 1 `model.save` keeps the weights under model_weights/; `save_weights` at the root.
    root = h5.get("model_weights", h5)

    def weight(layer: str, suffix: str, shape: tuple[int, ...]) -> np.ndarray:
        group = root.get(layer)
        name = f"{layer}_{suffix}"
        if group is None or (name not in group and f"{name}:0" not in group):
            raise WeightsError(f"{path}: no weight {layer}/{name}; this is not the irmas-pons "
                               "single-layer Keras model")
        data = group[name] if name in group else group[f"{name}:0"]
        return _check(path, f"{layer}/{name}", np.asarray(data[()], dtype=np.float64), shape)

    state: dict[str, np.ndarray] = {}
    for spec in BRANCHES:
        kernel = weight(f"{spec.keras}_conv", "W", (spec.filters, 1, spec.rows, spec.cols))
        bias = weight(f"{spec.keras}_conv", "b", (spec.filters,))
        bn = {field: weight(f"{spec.keras}_bn", field, (spec.filters,))
              for field in ("gamma", "beta", "running_mean", "running_std")}
        if np.any(bn["running_std"] < 0):
            raise WeightsError(f"{path}: {spec.keras}_bn has a negative running_std (a variance "
                               "in Keras 1); the file is corrupt")
        # Theano's conv2d is a true convolution: flip both kernel axes for torch's correlation.
        kernel = kernel[:, :, ::-1, ::-1]
        # BN(conv + b) = gamma (conv + b - mean) / sqrt(var + eps) + beta: fold with the conv
        # bias moved into the mean. Keras 1 names the variance "running_std".
        folded, folded_bias = fold_batch_norm(
            kernel, beta=bn["beta"], mean=bn["running_mean"] - bias,
            variance=bn["running_std"], gamma=bn["gamma"], epsilon=BN_EPSILON)
        state[f"branches.{spec.name}.conv.weight"] = folded
        state[f"branches.{spec.name}.conv.bias"] = folded_bias
    dense = weight("prediction", "W", (EMBEDDING_SIZE, N_CLASSES))
    state["logits.weight"] = dense.T  # Keras Dense kernel is [in, out]
    state["logits.bias"] = weight("prediction", "b", (N_CLASSES,))
    return state


def load_hdf5(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the authors' Keras 1 ``.hdf5`` into a :class:`PonsNetwork` state dict (no mean).

    Datasets ``model_weights/<layer>/<layer>_W`` (``[out, in, rows, cols]``), ``_b``, and the
    batch-norm ``_gamma``, ``_beta``, ``_running_mean``, ``_running_std``; the dense layer
    ``prediction``. Kernels are flipped and batch norm folded (float64, then float32).

    Raises
    ------
    WeightsError
        If the file is missing, not HDF5, damaged or truncated, lacks a weight, or has a
        wrong-shaped or non-finite one.
    """
    import h5py  # only needed when the weights are actually loaded

    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_HDF5_MAGIC))
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if head != _HDF5_MAGIC:
        raise WeightsError(f"{path}: not an HDF5 file (no HDF5 signature); irmas-pons needs the "
                           f"authors' Keras weights {PONS_WEIGHTS.filename}")
    try:
        with h5py.File(path, "r") as h5:
            arrays = _read_hdf5(path, h5)
    except WeightsError:
        raise
    except Exception as exc:  # h5py raises OSError/KeyError/ValueError on damaged files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"{path}: cannot read as a Keras HDF5 weights file; it is damaged or "
                           f"truncated ({reason})") from None
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
            for k, v in arrays.items()}


def load_mean(path: str | Path) -> torch.Tensor:
    """The training-set mean patch ``[96, 128]`` (dB, authors' layout) from its ``.npy``.

    Raises
    ------
    WeightsError
        If the file is missing, not a plain numeric ``.npy``, or not a finite 96 x 128 array.
    """
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise WeightsError(f"mean file not found: {path}") from None
    except (OSError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"{path}: cannot read as a NumPy .npy array; it is damaged or not "
                           f"{PONS_MEAN.filename} ({reason})") from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
        raise WeightsError(f"{path}: not a numeric array; expected {PONS_MEAN.filename}")
    _check(path, "the mean patch", array, PATCH_SHAPE)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def build_from_files(weights_path: str | Path, mean_path: str | Path, *,
                     device: torch.device | str = "cpu") -> PonsClassifier:
    """A :class:`PonsClassifier` from the ``.hdf5`` and the mean ``.npy`` (eval mode)."""
    state = load_hdf5(weights_path)
    state["mean"] = load_mean(mean_path)
    network = PonsNetwork()
    network.load_state_dict(state)
    names, codes = class_names_and_codes()
    model = PonsClassifier(MODEL_NAME, PonsFrontEnd(FRONT_END), network, names, codes)
    return model.to(device).eval()


def build(weights: Path | None, device: torch.device) -> AudioClassifier:
    """Registry factory: resolve both files and load.

    ``weights`` (``--weights``) is a folder holding ``singlelayer.hdf5`` (or the official
    ``epoch.115-val_loss.0.902-fbeta.0.673.hdf5``) and ``singlelayer_mean.npy``, or the
    ``.hdf5`` itself with the mean beside it. Without it: ``$DREAMSOUND_IRMAS_PONS_WEIGHTS`` /
    ``$DREAMSOUND_IRMAS_PONS_MEAN``, the cache, then a download (sha256-checked).
    """
    weights_path, mean_path = resolve_weights_files((PONS_WEIGHTS, PONS_MEAN), weights)
    log.info("loading irmas-pons weights from %s and %s", weights_path, mean_path)
    return build_from_files(weights_path, mean_path, device=device)


SPEC = ModelSpec(
    name=MODEL_NAME,
    summary="Pons et al. 2017 single-layer timbre CNN, trained on real IRMAS (11 instruments, "
            "12 kHz); AGPL-3.0 weights, downloaded",
    factory=build,
    weights=(PONS_WEIGHTS, PONS_MEAN),
)
