"""Validation metrics: clip scores as at inference, F1 at a threshold, and the choice of θ."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dreamsound.models.instrument import InstrumentClassifier
from dreamsound.train.data import LoadedClip


def f1_scores(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """Micro- and macro-F1 of ``scores [N, C] >= threshold`` against single labels ``[N]``.

    Macro-F1 averages over the classes that occur in ``labels`` (as IRMAS evaluations do).
    """
    truth = np.zeros_like(scores, dtype=bool)
    truth[np.arange(len(labels)), labels] = True
    predicted = scores >= threshold
    tp = (predicted & truth).sum(axis=0).astype(float)
    fp = (predicted & ~truth).sum(axis=0).astype(float)
    fn = (~predicted & truth).sum(axis=0).astype(float)
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1.0)
    present = truth.any(axis=0)
    per_class = 2 * tp / np.maximum(2 * tp + fp + fn, 1.0)
    macro = float(per_class[present].mean()) if present.any() else 0.0
    return float(micro), macro


def choose_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """θ in [0.05, 0.95] (step 0.01) that maximises micro-F1; returns (θ, micro, macro).

    Ties go to the θ closest to 0.5 (the least surprising choice).
    """
    best_key, best = (-1.0, 0.0), (0.5, 0.0, 0.0)
    for threshold in np.round(np.arange(0.05, 0.951, 0.01), 2):
        micro, macro = f1_scores(scores, labels, float(threshold))
        key = (micro, -abs(float(threshold) - 0.5))
        if key > best_key:
            best_key, best = key, (float(threshold), micro, macro)
    return best


@torch.no_grad()
def clip_scores(model: InstrumentClassifier, clips: Sequence[LoadedClip], *,
                batch_size: int = 256) -> tuple[np.ndarray, float]:
    """Clip scores ``[N, C]`` (mean of the 1 s window sigmoids, as at inference) and the mean
    window BCE loss against each clip's label."""
    model.eval()
    n_classes = len(model.class_names)
    patches, owners = [], []
    for index, clip in enumerate(clips):
        windows = model.front_end.patches(clip.log_mel.float())
        patches.append(windows)
        owners += [index] * windows.shape[0]
    all_patches = torch.cat(patches)
    owner = torch.tensor(owners)
    logits = torch.cat([model.network(all_patches[i:i + batch_size].unsqueeze(1)
                                      .to(model.device))[0].float().cpu()
                        for i in range(0, len(all_patches), batch_size)])
    targets = F.one_hot(torch.tensor([clips[i].label for i in owners]), n_classes).float()
    loss = float(F.binary_cross_entropy_with_logits(logits, targets))
    sums = torch.zeros(len(clips), n_classes).index_add_(0, owner, torch.sigmoid(logits))
    counts = torch.bincount(owner, minlength=len(clips)).clamp(min=1)[:, None]
    return (sums / counts).numpy(), loss
