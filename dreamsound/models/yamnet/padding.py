"""TensorFlow's "same" padding, which YAMNet's layers use (the network and its fused form)."""

from __future__ import annotations

import math


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """``(before, after)`` padding of TensorFlow's ``padding="SAME"`` along one axis.

    Total padding is ``max(0, (ceil(size / stride) - 1) * stride + kernel - size)``; when it is
    odd the extra pixel goes *after* (TensorFlow's convention; PyTorch's symmetric ``padding``
    cannot express that).
    """
    total = max(0, (math.ceil(size / stride) - 1) * stride + kernel - size)
    return total // 2, total - total // 2
