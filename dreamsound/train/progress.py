"""What :func:`dreamsound.train.train` reports while it runs (its progress events)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrainProgress:
    """One progress report from :func:`~dreamsound.train.train`.

    Attributes
    ----------
    stage : str
        ``"load"`` (decoding files), ``"epoch"`` (batches of an epoch) or ``"validated"`` (an
        epoch ended; ``metrics`` holds its record).
    done, total : int
        Files decoded, or batches done in the epoch.
    epoch, epochs : int
        Current epoch (1-based; 0 while loading) and the maximum number of epochs.
    metrics : dict
        The epoch record (``train_loss``, ``val_loss``, ``val_accuracy``, ``val_micro_f1``,
        ``val_macro_f1``, ``threshold``, ``improved``, ...) when ``stage == "validated"``.
    """

    stage: str
    done: int
    total: int
    epoch: int = 0
    epochs: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)


ProgressCallback = Callable[[TrainProgress], None]
