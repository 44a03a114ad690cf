"""``instrument``: a CNN for the 11 IRMAS instrument classes (dreamsound's default model).

Architecture after Han, Kim & Lee (2017), "Deep convolutional neural networks for predominant
instrument recognition in polyphonic music" (IEEE/ACM TASLP 25(1)), slimmed for CPU use:

* front-end: 22,050 Hz mono, STFT n_fft 1024 / hop 512 (periodic Hann, no centring), 128 Slaney
  mel bands 0-11,025 Hz, ``log(mel + 1e-3)`` (1e-3 is ~80 dB below a full-scale sine's 9.5, like
  librosa's ``top_db=80``); 1 s patches of 43 frames, 22 frames (0.51 s) apart;
* network on each patch ``[1, 43, 128]`` (time x mel): a per-band input normalisation, four
  blocks of two 3x3 conv -> batch-norm -> LeakyReLU(0.33) units (channels 16-32-64-128 by default,
  half of Han's 32-64-128-256), 3x3 max-pool (stride 3) + dropout 0.25 after blocks 1-3, global
  max-pool, a dense ``embedding`` layer, dropout 0.5 and 11 ``logits``;
* scores are independent sigmoids (IRMAS is multi-label); the clip decision is the mean over the
  1 s windows, thresholded at ``threshold`` (chosen on validation data by ``dreamsound train``).

Weights are safetensors files whose metadata holds the whole configuration (front-end,
architecture, classes, threshold), so a model trained with ``dreamsound train`` loads with
``--weights PATH`` even when its sizes differ from the shipped one. The shipped weights were trained
on clips rendered from General MIDI soundfonts, **not** on IRMAS: see its MODEL_CARD.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dreamsound.data.irmas import IRMAS_CODES, IRMAS_NAMES
from dreamsound.errors import WeightsError
from dreamsound.models.base import AudioClassifier, PatchNetwork
from dreamsound.models.registry import ModelSpec
from dreamsound.models.weights import WeightsFile, resolve_weights
from dreamsound.spectral import FrontEndConfig

#: Format tag written into the safetensors metadata (key ``format``).
WEIGHTS_FORMAT = "dreamsound-instrument-cnn"
FORMAT_VERSION = 1

FRONT_END = FrontEndConfig(sample_rate=22050, n_fft=1024, win_length=1024, hop_length=512,
                           n_mels=128, fmin=0.0, fmax=11025.0, log_offset=1e-3,
                           patch_frames=43, patch_hop_frames=22, mel_scale="slaney")

WEIGHTS = WeightsFile(
    model="instrument",
    filename="model.safetensors",
    url=None,
    # Digest of the shipped models/instrument_cnn/model.safetensors; retraining the default
    # (command in its MODEL_CARD.md) means updating it here.
    sha256="c6ce1b0b572fb75247e82c3ba4543f39aecec9fea00d996187ab5f6018555641",
    source="ships with dreamsound (models/instrument_cnn/, trained on soundfont-rendered clips)",
    env_var="DREAMSOUND_INSTRUMENT_WEIGHTS",
    packaged="instrument_cnn/model.safetensors",
    size=1_330_460,
)


@dataclass(frozen=True)
class Architecture:
    """Sizes of :class:`InstrumentNetwork`.

    Attributes
    ----------
    channels : tuple of int
        Output channels of the conv blocks (two 3x3 convs each).
    embedding : int
        Width of the dense ``embedding`` layer.
    pool_blocks : int
        Blocks followed by a 3x3/stride-3 max-pool (and dropout), from the first.
    leaky_slope : float
        Negative slope of the LeakyReLUs (Han et al.: 0.33).
    conv_dropout, dense_dropout : float
        Dropout after the pooled blocks and before the logits (training only).
    """

    channels: tuple[int, ...] = (16, 32, 64, 128)
    embedding: int = 256
    pool_blocks: int = 3
    leaky_slope: float = 0.33
    conv_dropout: float = 0.25
    dense_dropout: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Architecture:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "channels" in known:
            known["channels"] = tuple(int(c) for c in known["channels"])
        return cls(**known)


class ConvUnit(nn.Sequential):
    """3x3 conv (no bias: batch-norm follows) -> batch-norm -> LeakyReLU; a named layer whose
    output is the activation a dream objective sees.

    Frozen and in eval mode (how dreams, classification and evaluation run it: parameters
    without gradients, or no gradients at all), the batch norm is folded into the convolution
    (:meth:`folded`), so a step runs one convolution and no batch-norm pass forward or backward,
    on channels-last (NHWC) data on the CPU. Together they take the instrument step on 10 s of
    audio from 83 to 53 ms (spectrogram domain; 88 to 66 ms in the waveform domain, whose front
    end is unchanged), 2 threads, interleaved A/B; values differ only by float32 rounding.
    Training, or anything that needs gradients of the parameters, runs the three modules as
    they are.
    """

    def __init__(self, c_in: int, c_out: int, slope: float):
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.LeakyReLU(slope))
        self._folded_cache: tuple[tuple[Any, ...], torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn, act = self[0], self[1], self[2]
        needs_parameter_grads = torch.is_grad_enabled() and any(
            p.requires_grad for p in self.parameters())
        if self.training or needs_parameter_grads or not bn.track_running_stats:
            return super().forward(x)
        weight, bias = self.folded()
        return F.leaky_relu(F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation,
                                     conv.groups), act.negative_slope)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight, bias)`` of the convolution with the eval-mode batch norm folded in.

        ``bn(conv(x)) = conv(x) * s + (beta - mean * s)`` with ``s = gamma / sqrt(var + eps)``,
        computed in float64. Cached until a tensor it depends on changes (in place, tracked by
        its version counter, or replaced, e.g. by ``.to(device)``).
        """
        conv, bn = self[0], self[1]
        tensors = (conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        if any(t is not None and t.is_inference() for t in tensors):
            return self._fold(conv, bn)  # a model built under inference_mode: no versions
        # The tensors themselves (compared by identity, and kept alive so that no other tensor
        # can reuse their address), their version counters and storage (``.to()`` swaps .data).
        key = (tensors, tuple(None if t is None else (t._version, t.data_ptr(), t.device, t.dtype)
                              for t in tensors), bn.eps)
        cached = self._folded_cache
        if cached is not None and _same_key(cached[0], key):
            return cached[1], cached[2]
        weight, bias = self._fold(conv, bn)
        self._folded_cache = (key, weight, bias)
        return weight, bias

    @staticmethod
    def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
        """The folded ``(weight, bias)``, uncached (see :meth:`folded`)."""
        # Normal tensors even when the first call comes under inference_mode (a classification),
        # so that a later dream can use them in autograd.
        with torch.inference_mode(False), torch.no_grad():
            var = bn.running_var.double()
            scale = torch.rsqrt(var + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight.double()
            shift = -bn.running_mean.double() * scale
            if bn.bias is not None:
                shift = shift + bn.bias.double()
            weight = (conv.weight.double() * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype)
            bias = shift.to(conv.weight.dtype)
            if weight.device.type == "cpu":
                # NHWC kernels make oneDNN keep every activation channels-last, where its 3x3
                # kernels for 16-64 channels are much faster than in NCHW (forward + backward).
                # Strides set explicitly: with one input channel .contiguous(channels_last)
                # returns the NCHW kernel itself (a size-1 axis makes both layouts
                # "contiguous"), the first layer then wrote NCHW, and the second copied its
                # input and its gradient to NHWC on every step.
                _, in_c, height, width = weight.shape
                weight = torch.empty_strided(
                    weight.shape, (height * width * in_c, 1, width * in_c, in_c),
                    dtype=weight.dtype, device=weight.device).copy_(weight)
        return weight, bias


def _same_key(a: tuple, b: tuple) -> bool:
    """Whether two :meth:`ConvUnit.folded` cache keys name the same tensors in the same state."""
    return (len(a[0]) == len(b[0]) and all(x is y for x, y in zip(a[0], b[0], strict=True))
            and a[1:] == b[1:])


class InstrumentNetwork(PatchNetwork):
    """Han et al. (2017)-style CNN on log-mel patches ``[P, 1, frames, mels]``.

    Named layers: ``block{b}/conv{1,2}`` (b = 1..4), ``embedding`` and ``logits``.
    """

    def __init__(self, n_classes: int, architecture: Architecture = Architecture(), *,
                 n_mels: int = FRONT_END.n_mels):
        super().__init__()
        self.architecture = architecture
        a = architecture
        # Per-mel-band input normalisation with statistics fixed from the training data (set by
        # the trainer, saved with the weights): a plain affine map, so dreams see the same
        # gradient directions per band. Per band, because high bands sit far lower in level and
        # would otherwise barely register in the first convolution.
        self.register_buffer("input_mean", torch.zeros(n_mels))
        self.register_buffer("input_std", torch.ones(n_mels))
        self.blocks = nn.ModuleList()
        c_in = 1
        for index, c_out in enumerate(a.channels):
            block = nn.Module()
            block.conv1 = ConvUnit(c_in, c_out, a.leaky_slope)
            block.conv2 = ConvUnit(c_out, c_out, a.leaky_slope)
            pooled = index < a.pool_blocks
            block.pool = (nn.Sequential(nn.MaxPool2d(3, stride=3, ceil_mode=True),
                                        nn.Dropout(a.conv_dropout)) if pooled else nn.Identity())
            self.blocks.append(block)
            c_in = c_out
        self.embedding = nn.Sequential(nn.Linear(c_in, a.embedding), nn.LeakyReLU(a.leaky_slope))
        self.dropout = nn.Dropout(a.dense_dropout)
        self.logits = nn.Linear(a.embedding, n_classes)

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [P, C], embeddings [P, D])`` of patches ``[P, 1, frames, mels]``."""
        x = (patches - self.input_mean) / self.input_std
        for block in self.blocks:
            x = block.pool(block.conv2(block.conv1(x)))
        embeddings = self.embedding(self.global_pool(x))
        return self.logits(self.dropout(embeddings)), embeddings

    @staticmethod
    def global_pool(x: torch.Tensor) -> torch.Tensor:
        """``[P, C, T, F]`` -> ``[P, C]``: global max-pool (Han et al.), the strongest evidence
        anywhere in the patch (``scripts/experiments/fold_variants.py --pool mean`` swaps it)."""
        return torch.amax(x, dim=(-2, -1))

    def named_layers(self) -> dict[str, nn.Module]:
        layers: dict[str, nn.Module] = {}
        for index, block in enumerate(self.blocks, 1):
            layers[f"block{index}/conv1"] = block.conv1
            layers[f"block{index}/conv2"] = block.conv2
        layers["embedding"] = self.embedding
        layers["logits"] = self.logits
        return layers


@dataclass
class InstrumentConfig:
    """Everything needed to rebuild an instrument model (saved in the weights' metadata)."""

    front_end: FrontEndConfig = FRONT_END
    architecture: Architecture = field(default_factory=Architecture)
    class_names: list[str] = field(default_factory=lambda: list(IRMAS_NAMES))
    class_codes: list[str] = field(default_factory=lambda: list(IRMAS_CODES))
    threshold: float = 0.5
    extra: dict[str, Any] = field(default_factory=dict)  # training summary, data, metrics

    def to_dict(self) -> dict[str, Any]:
        return {"format": WEIGHTS_FORMAT, "format_version": FORMAT_VERSION,
                "front_end": self.front_end.to_dict(), "architecture": self.architecture.to_dict(),
                "class_names": list(self.class_names), "class_codes": list(self.class_codes),
                "threshold": float(self.threshold), **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstrumentConfig:
        if data.get("format") != WEIGHTS_FORMAT:
            raise WeightsError(f"not dreamsound instrument-CNN weights (format "
                               f"{data.get('format')!r}, expected {WEIGHTS_FORMAT!r})")
        try:
            names = [str(n) for n in data["class_names"]]
            codes = [str(c) for c in data.get("class_codes", names)]
            front_end = FrontEndConfig(**data["front_end"])
            architecture = Architecture.from_dict(data.get("architecture", {}))
            threshold = float(data.get("threshold", 0.5))
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"instrument weights have a broken configuration: {exc}") from None
        if len(codes) != len(names) or not names or not 0.0 < threshold < 1.0:
            raise WeightsError("instrument weights have a broken configuration: class names, "
                               "codes and threshold disagree")
        skip = {"format", "format_version", "front_end", "architecture", "class_names",
                "class_codes", "threshold"}
        return cls(front_end, architecture, names, codes, threshold,
                   {k: v for k, v in data.items() if k not in skip})


class InstrumentClassifier(AudioClassifier):
    """The instrument CNN with its clip-level decision threshold.

    Attributes
    ----------
    threshold : float
        A class is present in a clip when its mean score over the 1 s windows reaches this.
    config : InstrumentConfig
        What the model was built from (front-end, sizes, classes, training summary).
    """

    def __init__(self, config: InstrumentConfig):
        network = InstrumentNetwork(len(config.class_names), config.architecture,
                                    n_mels=config.front_end.n_mels)
        super().__init__("instrument", config.front_end, network, config.class_names,
                         config.class_codes)
        self.config = config
        self.threshold = config.threshold


def read_config(path: str | Path) -> InstrumentConfig:
    """The configuration stored in an instrument weights file (or its ``config.json``)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"cannot read instrument weights {path}: {exc} (a safetensors file "
                           "written by `dreamsound train` is expected)") from None
    text = metadata.get("config")
    if text is None:
        sidecar = path.with_name("config.json")
        if not sidecar.is_file():
            raise WeightsError(f"{path} has no configuration in its metadata and no config.json "
                               "beside it")
        text = sidecar.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WeightsError(f"the configuration of {path} is not valid JSON: {exc}") from None
    return InstrumentConfig.from_dict(data)


def load_weights_file(path: str | Path, device: str | torch.device = "cpu"
                      ) -> InstrumentClassifier:
    """Build an :class:`InstrumentClassifier` from a safetensors file written by the trainer.

    Raises
    ------
    WeightsError
        Unreadable or foreign file, broken configuration, or tensors of the wrong shape.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = read_config(path)
    model = InstrumentClassifier(config)
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"cannot read instrument weights {path}: {exc}") from None
    expected = model.network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
                  if unexpected else f"wrong shape for {wrong[:3]}")
        raise WeightsError(f"instrument weights {path} do not fit their configuration: {detail}")
    model.network.load_state_dict(state)
    return model


def save_weights_file(model: InstrumentClassifier, path: str | Path) -> Path:
    """Write ``model`` (network tensors + configuration metadata) to ``path`` atomically."""
    from safetensors.torch import save

    from dreamsound.io_utils import atomic_write

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in
               model.network.state_dict().items()}
    config = model.config.to_dict()
    config["threshold"] = float(model.threshold)
    data = save(tensors, metadata={"format": WEIGHTS_FORMAT, "config": json.dumps(config)})
    with atomic_write(path) as temp:
        temp.write_bytes(data)
    return Path(path)


def build(weights: Path | None, device: torch.device) -> InstrumentClassifier:
    """Registry factory: the shipped weights (or ``weights``) on ``device``."""
    return load_weights_file(resolve_weights(WEIGHTS, weights), device)


def class_names_and_codes() -> tuple[list[str], list[str]]:
    """The default model's classes without building it (for ``dreamsound classes``)."""
    return list(IRMAS_NAMES), list(IRMAS_CODES)


def new_model(class_codes: Sequence[str] = IRMAS_CODES, *,
              architecture: Architecture | None = None,
              front_end: FrontEndConfig = FRONT_END) -> InstrumentClassifier:
    """A randomly initialised model for ``class_codes`` (what the trainer starts from)."""
    unknown = [c for c in class_codes if c not in IRMAS_CODES]
    names = [IRMAS_NAMES[IRMAS_CODES.index(c)] if c in IRMAS_CODES else c for c in class_codes]
    if unknown:
        names = list(class_codes)
    config = InstrumentConfig(front_end=front_end, architecture=architecture or Architecture(),
                              class_names=names, class_codes=list(class_codes))
    return InstrumentClassifier(config)


SPEC = ModelSpec(
    name="instrument",
    summary="IRMAS-class instrument CNN (11 classes; default; trained on soundfont renders)",
    factory=build,
    weights=WEIGHTS,
)

__all__ = ["FRONT_END", "SPEC", "WEIGHTS", "Architecture", "InstrumentClassifier",
           "InstrumentConfig", "InstrumentNetwork", "build", "class_names_and_codes",
           "load_weights_file", "new_model", "read_config", "save_weights_file"]

