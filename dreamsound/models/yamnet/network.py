"""YAMNet's network after the front end (MobileNetV1), with TensorFlow's "same" padding.

Conv 3x3 stride 2 (32 filters), then 13 depthwise-separable layers, global average pooling to a
1024-d embedding and a dense layer to 521 logits. Batch norm is folded into the convolutions when
weights are loaded (:mod:`dreamsound.models.yamnet.weights`), so every layer is
``relu(conv + bias)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dreamsound.models.base import PatchNetwork
from dreamsound.models.yamnet import fused
from dreamsound.models.yamnet.padding import tf_same_padding

#: Batch-norm epsilon of every YAMNet layer (``params.batchnorm_epsilon``).
BN_EPSILON = 1e-4
N_CLASSES = 521
EMBEDDING_SIZE = 1024

#: The 13 depthwise-separable layers: (layer number, stride, pointwise filters). Layer 1 is the
#: full 3x3 convolution with stride 2 and 32 filters (``yamnet.py``'s ``_YAMNET_LAYER_DEFS``).
SEPARABLE_LAYERS: tuple[tuple[int, int, int], ...] = (
    (2, 1, 64), (3, 2, 128), (4, 1, 128), (5, 2, 256), (6, 1, 256), (7, 2, 512), (8, 1, 512),
    (9, 1, 512), (10, 1, 512), (11, 1, 512), (12, 1, 512), (13, 2, 1024), (14, 1, 1024),
)


# -- architecture ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvUnitSpec:
    """One convolution of the network (each is followed by folded batch norm and a ReLU).

    Attributes
    ----------
    layer : int
        YAMNet layer number (1-14).
    kind : str
        ``"conv"`` (layer 1), ``"depthwise"`` or ``"pointwise"``.
    in_channels, out_channels, kernel, stride : int
        Convolution geometry (square kernel and stride).
    """

    layer: int
    kind: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int

    @property
    def key(self) -> str:
        """Attribute name inside :class:`YAMNetNetwork` (``layer2_depthwise``)."""
        return f"layer{self.layer}_{self.kind}"

    @property
    def public_name(self) -> str:
        """Stable name users pick layers by (``layer2/depthwise``)."""
        return f"layer{self.layer}/{self.kind}"

    @property
    def groups(self) -> int:
        return self.in_channels if self.kind == "depthwise" else 1

    @property
    def torch_weight_shape(self) -> tuple[int, int, int, int]:
        """PyTorch kernel layout ``[out, in / groups, kh, kw]``."""
        return (self.out_channels, self.in_channels // self.groups, self.kernel, self.kernel)


def conv_unit_specs() -> list[ConvUnitSpec]:
    """The 27 convolutions of YAMNet in forward order."""
    units = [ConvUnitSpec(1, "conv", 1, 32, 3, 2)]
    channels = 32
    for layer, stride, filters in SEPARABLE_LAYERS:
        units.append(ConvUnitSpec(layer, "depthwise", channels, channels, 3, stride))
        units.append(ConvUnitSpec(layer, "pointwise", channels, filters, 1, 1))
        channels = filters
    return units


def _phase_kernel(zero_led: torch.Tensor) -> torch.Tensor:
    """The input gradient of a stride-2 convolution with a zero-led 4x4 kernel, as the kernel of
    a stride-1 2x2 convolution whose ``4 * C_in`` outputs are the four phases of the input.

    Input pixel ``2m + p`` (``p`` 0 or 1, likewise columns) took output pixels ``m - 1`` and
    ``m`` through taps ``(3, 1)`` when ``p`` is 0 and ``(none, 2)`` when ``p`` is 1 (tap 0 of the
    4x4 kernel would reach ``m + 1``; it is zero). Returns ``[C_in * 4, C_out, 2, 2]`` in
    :func:`torch.nn.functional.pixel_shuffle`'s channel order (``c_in``, row phase, column phase).
    """
    taps = torch.tensor([[3, 1], [0, 2]], device=zero_led.device)  # [phase, window]; 0: zero
    picked = zero_led[:, :, taps][:, :, :, :, taps]  # [C_out, C_in, p, di, q, dj]
    out_channels, in_channels = zero_led.shape[:2]
    return picked.permute(1, 2, 4, 0, 3, 5).reshape(in_channels * 4, out_channels, 2, 2)


class _PhaseSplitConv(torch.autograd.Function):
    """A stride-2 convolution with a zero-led 4x4 kernel and padding 1 (groups 1) whose input
    gradient is the 2x2 convolution of :func:`_phase_kernel` followed by a pixel shuffle.

    For YAMNet's first layer (one input channel, 32 outputs) oneDNN's backward-data kernel took
    2.1 ms of a step on 20 patches; the phase-split form takes 0.7 ms (``torch.profiler``, 2
    threads), the same sums in another order. In whole steps the gain is smaller: the previous
    code took 1.01x the time idle and 1.02-1.04x with a busy core (``bench_tf_yamnet``, two
    runs). The depthwise layers keep torch's own backward:
    they gained nothing from either this or a transposed convolution in a whole step. Weight and
    bias gradients, when asked for, come from torch's own convolution backward.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, zero_led: torch.Tensor,
                bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, zero_led)
        return F.conv2d(x, zero_led, bias, stride=2, padding=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, zero_led = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            by_phase = F.conv2d(grad, _phase_kernel(zero_led), padding=1)[..., :-1, :-1]
            grad_x = F.pixel_shuffle(by_phase, 2)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            _, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
                grad, x, zero_led, [zero_led.shape[0]], [2, 2], [1, 1], [1, 1], False, [0, 0], 1,
                [False, ctx.needs_input_grad[1], ctx.needs_input_grad[2]])
        return grad_x, grad_weight, grad_bias


class SameConvReLU(nn.Conv2d):
    """``relu(conv(x) + bias)`` with TensorFlow "same" padding; batch norm folded into the conv.

    Stride-1 layers pad symmetrically, which PyTorch's own ``padding`` does exactly. Strided
    layers on an even size have TensorFlow padding ``(0, 1)`` (:func:`tf_same_padding`); they run
    as the kernel with a zero tap row and column in front (4x4) under symmetric padding 1, whose
    windows then cover the same pixels with the same taps: exactly the same sums (the zero taps
    add exact zeros), with no padded copy of the input in the forward pass or of its gradient in
    the backward pass; the first layer's input gradient is computed by phases
    (:class:`_PhaseSplitConv`). Other sizes pad explicitly. The output is channels-last in
    memory (its shape stays ``[P, C, H, W]``), the layout the pointwise layers and the depthwise
    kernels work in without reordering.
    """

    def __init__(self, spec: ConvUnitSpec):
        symmetric = spec.stride == 1
        super().__init__(spec.in_channels, spec.out_channels, spec.kernel, stride=spec.stride,
                         padding=spec.kernel // 2 if symmetric else 0, groups=spec.groups,
                         bias=True)
        self.spec = spec
        self._explicit_pad = not symmetric and spec.kernel > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._explicit_pad:
            k, s = self.spec.kernel, self.spec.stride
            top, bottom = tf_same_padding(x.shape[-2], k, s)
            left, right = tf_same_padding(x.shape[-1], k, s)
            if (top, bottom, left, right) == (0, 1, 0, 1) and k == 3:
                leading_zero_taps = F.pad(self.weight, (1, 0, 1, 0))
                if self.groups == 1:  # the first layer
                    y = _PhaseSplitConv.apply(x, leading_zero_taps, self.bias)
                else:
                    y = F.conv2d(x, leading_zero_taps, self.bias, stride=s, padding=1,
                                 groups=self.groups)
            else:
                y = super().forward(F.pad(x, (left, right, top, bottom)))
        else:
            y = super().forward(x)
        # In place: the convolution's output is a fresh tensor that its backward does not keep,
        # so the ReLU needs no buffer of its own: one activation-sized allocation (and its page
        # faults) less per layer, the same values, ~5 % off a step (interleaved A/B, 2 threads).
        return F.relu_(y).contiguous(memory_format=torch.channels_last)


class PointwiseReLU(nn.Conv2d):
    """``relu(conv1x1(x) + bias)``, from 64 input channels on as one matrix product.

    A 1x1 convolution is ``[pixels, C_in] @ kernel^T`` when channels are the innermost axis
    (channels-last memory, which :class:`SameConvReLU` outputs). As a matrix product it skips
    oneDNN's per-call reorders of the kernel, most of a step's time in the deep 512- and
    1024-channel layers whose feature maps are a few pixels (forward + input gradient of the
    1024 -> 1024 layer on 20 patches: 1.9 ms against 4.7 ms). The first pointwise layer (32
    channels on the largest maps) stays a convolution, which is faster there (3.3 against 4.8
    ms). Same parameters and state-dict keys as the convolution; input and output
    ``[P, C, H, W]`` (channels-last in memory).
    """

    def __init__(self, spec: ConvUnitSpec):
        super().__init__(spec.in_channels, spec.out_channels, 1, bias=True)
        self.spec = spec
        self._as_product = spec.in_channels >= 64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._as_product:
            return F.relu_(super().forward(x))
        patches, channels, height, width = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(-1, channels)  # a view when channels-last
        out = torch.addmm(self.bias, pixels, self.weight.view(self.out_channels, channels).t())
        # In place on the product's fresh output (its backward keeps only the inputs).
        return F.relu_(out).view(patches, height, width, -1).permute(0, 3, 1, 2)


def _unit(spec: ConvUnitSpec) -> nn.Conv2d:
    return PointwiseReLU(spec) if spec.kind == "pointwise" else SameConvReLU(spec)


class YAMNetNetwork(PatchNetwork):
    """YAMNet after the front end: log-mel patches -> (logits, embeddings).

    Parameters
    ----------
    n_classes : int
        Output classes (521 for AudioSet).

    Notes
    -----
    Named layers (see :meth:`named_layers`) give activations *after* their ReLU, like the
    ``layerN/.../relu`` tensors of the Keras model: ``layer1/conv``, ``layer2/depthwise``,
    ``layer2/pointwise``, ..., ``layer14/pointwise``, and ``logits`` (pre-sigmoid).
    """

    def __init__(self, n_classes: int = N_CLASSES):
        super().__init__()
        self.units = nn.ModuleDict({spec.key: _unit(spec) for spec in conv_unit_specs()})
        self.logits = nn.Linear(EMBEDDING_SIZE, n_classes)

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[P, n_classes]`` and embeddings ``[P, 1024]`` of patches ``[P, 1, 96, 64]``."""
        if fused.usable(self.units, patches):
            x = fused.layers(self.units, patches)
        else:
            x = patches
            for unit in self.units.values():
                x = unit(x)
        embeddings = x.mean(dim=(-2, -1))  # global average pooling
        return self.logits(embeddings), embeddings

    def named_layers(self) -> dict[str, nn.Module]:
        layers: dict[str, nn.Module] = {u.spec.public_name: u for u in self.units.values()}
        layers["logits"] = self.logits
        return layers
