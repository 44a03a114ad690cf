"""musicnn's network (:class:`MusicnnNetwork`) and the layout of its TensorFlow variables.

The architecture tables name each layer's TensorFlow variables, so the 64 variables a weights
file must hold (:data:`VARIABLE_SHAPES`, :func:`check_variables`) and their copy into the
network (:meth:`MusicnnNetwork.load_tf_variables`) live here with the layers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dreamsound.errors import WeightsError
from dreamsound.models.base import PatchNetwork

#: TensorFlow's ``tf.compat.v1.layers.batch_normalization`` default (all 11 norms use it).
BN_EPSILON = 1e-3

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


# -- layers ------------------------------------------------------------------------------------
def _batch_norm_2d(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPSILON)


def _batch_norm_1d(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=BN_EPSILON)


def norm_signs(bn: nn.BatchNorm2d) -> torch.Tensor:
    """``[C]``: +1 where the inference batch norm increases with its input (``gamma >= 0``),
    -1 where it decreases (half the front-end channels of the shipped weights)."""
    return torch.where(bn.weight >= 0, 1.0, -1.0).to(bn.weight)


def relu_norm_of_extreme(signed_max: torch.Tensor, signs: torch.Tensor,
                         bn: nn.BatchNorm2d) -> torch.Tensor:
    """``max over bands of bn(relu(z))`` ``[P, C, T]``, given ``signed_max``, the maximum over
    the bands of ``signs * z`` (each channel's ``z`` negated where ``signs`` is -1).

    The order is swapped so that ReLU and batch norm run on the pooled tensor, 60-96x smaller
    than ``z``: both are monotonic per channel, so the maximum after them is taken by the band
    where ``z`` is largest -- or smallest, where the norm decreases: ``signs * signed_max``.
    The values are the same bit for bit (rounding is monotonic too; negation is exact) and the
    gradient reaches the same bands, split evenly between tied bands as before (``amax``).
    """
    return bn(F.relu(signs.view(-1, 1) * signed_max).unsqueeze(-1)).squeeze(-1)


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
        signs = norm_signs(self.bn)
        signed = F.conv2d(F.pad(x, (0, 0, *self.time_padding)),
                          self.conv.weight * signs.view(-1, 1, 1, 1), self.conv.bias * signs)
        return relu_norm_of_extreme(signed.amax(dim=-1), signs, self.bn)


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
    (63 | 64, 31 | 32, 15 | 16). Output ``[P, 153, T]``.

    Where a gradient will flow, the three run as one matrix product over the 128-frame windows
    of every band, the shorter kernels zero-padded to the window they sit in: the input
    gradient of a one-channel convolution with a kernel this long is slow in oneDNN (about 30
    ms of a 3 s patch's forward and backward, against about 13 ms this way; ``python -m
    scripts.bench.bench --models musicnn --baseline REF`` times the whole step).
    """

    def __init__(self) -> None:
        super().__init__()
        for name, frames, filters, _, _ in TEMPORAL:
            before = (frames - 1) // 2
            self.add_module(name, FrequencyPooledConv(frames, 1, filters, before,
                                                      frames - 1 - before))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches: list[FrequencyPooledConv] = list(self.children())  # type: ignore[arg-type]
        if not (torch.is_grad_enabled() and x.requires_grad):
            # Without a gradient oneDNN's convolutions are the faster form (45 against 68 ms
            # for a 10 s clip's forward pass).
            return torch.cat([branch(x) for branch in branches], dim=1)
        lead = max(b.time_padding[0] for b in branches)
        trail = max(b.time_padding[1] for b in branches)
        width = lead + trail + 1
        signs = torch.cat([norm_signs(b.bn) for b in branches])  # [153]
        kernels = torch.cat([F.pad(b.conv.weight.flatten(1),
                                   (lead - b.time_padding[0], trail - b.time_padding[1]))
                             for b in branches]) * signs.view(-1, 1)  # [153, width]
        bias = torch.cat([b.conv.bias for b in branches]) * signs
        padded = F.pad(x[:, 0], (0, 0, lead, trail))  # [P, T + width - 1, bands]
        windows = padded.unfold(1, width, 1).transpose(-1, -2)  # [P, T, width, bands], a view
        # Bands innermost, so that the max over them (and its gradient) runs along memory.
        z = torch.matmul(kernels, windows) + bias.view(-1, 1)  # [P, T, 153, bands]
        signed_max = z.amax(dim=-1)  # [P, T, 153]
        # Contiguous [P, 153, T]: a channel slice of the transposed view looks channels-last
        # without being dense, and its gradient through ReLU and the batch norm came out
        # wrong (torch 2.13, CPU; the values were right).
        signed_max = signed_max.transpose(1, 2).contiguous()
        sizes = [b.conv.out_channels for b in branches]
        return torch.cat([relu_norm_of_extreme(part, sign, b.bn) for part, sign, b in
                          zip(signed_max.split(sizes, dim=1), signs.split(sizes), branches,
                              strict=True)], dim=1)


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
