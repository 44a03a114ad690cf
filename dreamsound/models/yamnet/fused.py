"""YAMNet's 27 convolutions as one autograd function, the 3x3 ones in native kernels.

In a dream step most of the time outside the pointwise matrix products went to moving
activations through memory: each 3x3 convolution wrote its output, its ReLU read and wrote it
again, autograd kept every activation for the ReLUs' backward, and each ``threshold_backward``
read a saved activation and the gradient and wrote a new gradient. Here (``layers.c``,
compiled at first use by :mod:`dreamsound.native`):

* the first convolution and every depthwise layer write their output once, after bias and
  ReLU; a depthwise layer also adds the previous pointwise layer's bias and applies its ReLU as
  it reads its input, so the pointwise layers are plain matrix products;
* the backward pass keeps one bit per activation instead of the activations (1/32 of the
  memory), and each 3x3 layer's input gradient applies the ReLU masks as it is computed, so no
  ``threshold_backward`` runs except after the last layer.

The values are the eager units' (:mod:`.network`) to float32 rounding (the 3x3 sums are taken
in another order than oneDNN's): ``tests/test_yamnet_fused.py`` holds them to each other and
``tests/test_yamnet.py`` both to TensorFlow. The eager units run instead whenever this cannot:
no kernels (see :mod:`dreamsound.native`), another device or dtype, hooks on a layer (a layer
objective), or weights that need gradients.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dreamsound.models.yamnet.padding import tf_same_padding
from dreamsound.native import load_kernels

SOURCE = Path(__file__).with_name("layers.c")
LANES = 16  # channels per mask word; every YAMNet layer's channel count is a multiple

_POINTER, _INT = ctypes.c_void_p, ctypes.c_int
_GEOMETRY = [_INT] * 10  # n_threads, N, H, W, C, Ho, Wo, stride, pad_top, pad_left
_ARGTYPES = {
    # x, x_channels, x_bias, w, bias, y, y_mask, x_mask
    "conv3x3_forward": [_POINTER, _INT] + [_POINTER] * 6 + _GEOMETRY,
    # gy, y_mask, w, x_channels, x_mask, gx
    "conv3x3_backward": [_POINTER] * 3 + [_INT] + [_POINTER] * 2 + _GEOMETRY,
}
_typed: set[int] = set()


def kernels() -> ctypes.CDLL | None:
    """The kernels for this process, or None where they cannot run."""
    library = load_kernels(SOURCE)
    if library is not None and id(library) not in _typed:
        for name, argtypes in _ARGTYPES.items():
            function = getattr(library, name)
            function.argtypes, function.restype = argtypes, None
        _typed.add(id(library))
    return library


def usable(units: nn.ModuleDict, patches: torch.Tensor) -> bool:
    """Whether :func:`layers` may replace the eager units for ``patches``."""
    if patches.device.type != "cpu" or patches.dtype != torch.float32:
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return False
    for unit in units.values():
        if unit._forward_hooks or unit._forward_pre_hooks or unit._backward_hooks:
            return False
        if unit.weight.requires_grad or unit.bias.requires_grad:
            return False
        if unit.out_channels % LANES:
            return False
    module_hooks = torch.nn.modules.module
    if module_hooks._global_forward_hooks or module_hooks._global_forward_pre_hooks:
        return False
    return kernels() is not None


def layers(units: nn.ModuleDict, patches: torch.Tensor) -> torch.Tensor:
    """Layer 14's output ``[P, 1024, H, W]`` (after its ReLU; channels-last in memory) from
    patches ``[P, 1, 96, 64]``, as the eager units compute it."""
    stack = list(units.values())
    x = patches.reshape(patches.shape[0], *patches.shape[-2:]).contiguous()
    if torch.is_grad_enabled() and patches.requires_grad:
        out = _Layers.apply(x, stack)
    else:
        out, _ = _forward(x, stack, keep_masks=False)
    return out.permute(0, 3, 1, 2)


class _Layers(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, stack: list[nn.Module]) -> torch.Tensor:
        out, saved = _forward(x, stack, keep_masks=True)
        ctx.stack, ctx.saved = stack, saved
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (out,) = ctx.saved_tensors
        stack, saved = ctx.stack, ctx.saved
        ctx.saved = None
        # Layer 14's ReLU (the only mask not applied inside a kernel), then its matrix product.
        grad = torch.ops.aten.threshold_backward(grad.contiguous(), out, 0)
        for index in range(len(stack) - 1, -1, -1):
            unit, kept = stack[index], saved[index]
            saved[index] = None
            if unit.spec.kind == "pointwise":
                grad = _pointwise_input_gradient(unit, grad, kept)
            else:
                grad = _conv3x3_backward(unit, grad, *kept)
        return grad, None


def _forward(x: torch.Tensor, stack: list[nn.Module],
             keep_masks: bool) -> tuple[torch.Tensor, list]:
    """Run the units on patches ``[P, H, W]``; returns layer 14's output (NHWC, after its
    ReLU) and what each unit keeps for the backward pass."""
    pending_bias = None  # a pointwise layer's bias, added (with its ReLU) by the next layer
    saved: list = []
    last = len(stack) - 1
    for index, unit in enumerate(stack):
        if unit.spec.kind == "pointwise":
            saved.append(x if keep_masks and not unit._as_product else None)
            x = _pointwise(unit, x, with_bias=index == last)
            pending_bias = unit.bias.detach()
        else:
            x, kept = _conv3x3_forward(unit, x, pending_bias, keep_masks)
            saved.append(kept)
            pending_bias = None
    return F.relu_(x), saved


def _conv3x3_forward(unit: nn.Module, x: torch.Tensor, x_bias: torch.Tensor | None,
                     keep_masks: bool) -> tuple[torch.Tensor, tuple | None]:
    """The first layer (``x`` is ``[P, H, W]``) or a depthwise layer (``x`` NHWC, before the
    previous layer's bias and ReLU when ``x_bias`` is given)."""
    first = unit.spec.kind == "conv"
    n, height, width = x.shape[:3]
    channels = unit.out_channels
    geometry = _geometry(unit, height, width)
    out_h, out_w = geometry[:2]
    # Weights [9, C]: tap-major, channels innermost (first layer [32, 1, 3, 3], depthwise
    # [C, 1, 3, 3]).
    taps = unit.weight.detach().reshape(channels, 9).t().contiguous()
    y = torch.empty(n, out_h, out_w, channels)
    y_mask = _mask(n * out_h * out_w * channels) if keep_masks else None
    x_mask = _mask(x.numel()) if keep_masks and x_bias is not None else None
    kernels().conv3x3_forward(x.data_ptr(), 1 if first else channels, _pointer(x_bias),
                              taps.data_ptr(), unit.bias.detach().data_ptr(), y.data_ptr(),
                              _pointer(y_mask), _pointer(x_mask), torch.get_num_threads(), n,
                              height, width, channels, *geometry)
    kept = (y_mask, x_mask, taps, tuple(x.shape)) if keep_masks else None
    return y, kept


def _conv3x3_backward(unit: nn.Module, grad: torch.Tensor, y_mask: torch.Tensor,
                      x_mask: torch.Tensor | None, taps: torch.Tensor,
                      x_shape: tuple[int, ...]) -> torch.Tensor:
    """The input gradient of a 3x3 layer: through its ReLU (``y_mask``) and, for a depthwise
    layer after a pointwise one, through that layer's ReLU too (``x_mask``)."""
    n, height, width = x_shape[:3]
    channels = unit.out_channels
    grad = grad.contiguous()
    grad_x = torch.empty(x_shape)
    first = unit.spec.kind == "conv"
    kernels().conv3x3_backward(grad.data_ptr(), y_mask.data_ptr(), taps.data_ptr(),
                               1 if first else channels, _pointer(x_mask), grad_x.data_ptr(),
                               torch.get_num_threads(), n, height, width, channels,
                               *_geometry(unit, height, width))
    return grad_x


def _geometry(unit: nn.Module, height: int, width: int) -> tuple[int, ...]:
    """``(Ho, Wo, stride, pad_top, pad_left)`` of a 3x3 layer with TensorFlow's padding."""
    stride = unit.spec.stride
    return (-(-height // stride), -(-width // stride), stride,
            tf_same_padding(height, 3, stride)[0], tf_same_padding(width, 3, stride)[0])


def _pointwise(unit: nn.Module, x: torch.Tensor, with_bias: bool) -> torch.Tensor:
    """The 1x1 convolution of NHWC ``x`` (NHWC out); the bias only when ``with_bias``.

    As in :class:`.network.PointwiseReLU`: a matrix product from 64 input channels on, a
    convolution below (faster on the first layer's large maps)."""
    n, height, width, channels = x.shape
    weight = unit.weight.detach()
    bias = unit.bias.detach() if with_bias else None
    if unit._as_product:
        flat = x.reshape(-1, channels)
        matrix = weight.view(unit.out_channels, channels).t()
        out = torch.addmm(bias, flat, matrix) if bias is not None else torch.mm(flat, matrix)
        return out.view(n, height, width, -1)
    out = F.conv2d(x.permute(0, 3, 1, 2), weight, bias)
    return out.permute(0, 2, 3, 1).contiguous()


def _pointwise_input_gradient(unit: nn.Module, grad: torch.Tensor,
                              x: torch.Tensor | None) -> torch.Tensor:
    """Gradient of a pointwise layer's input from that of its output (both NHWC, before the
    ReLU: the next layer applied this layer's mask)."""
    n, height, width, out_channels = grad.shape
    weight = unit.weight.detach()
    if unit._as_product:
        flat = grad.reshape(-1, out_channels)
        return torch.mm(flat, weight.view(out_channels, -1)).view(n, height, width, -1)
    (grad_x, _, _) = torch.ops.aten.convolution_backward(
        grad.permute(0, 3, 1, 2), x.permute(0, 3, 1, 2), weight, None, [1, 1], [0, 0], [1, 1],
        False, [0, 0], 1, [True, False, False])
    return grad_x.permute(0, 2, 3, 1)


def _mask(elements: int) -> torch.Tensor:
    """One bit per activation, 16 channels per word."""
    return torch.empty(elements // LANES, dtype=torch.int16)


def _pointer(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()
