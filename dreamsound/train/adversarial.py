"""Adversarial copies of training windows: a little robustness for a model that dreams.

A model trained on clean windows changes its mind under tiny, model-specific changes of its
input (Cochran & Kim's dreams reach 0.9 at ~1.3 dB), so what its gradient asks for is mostly
its own fragility. Training it also on copies of each window moved *against* it by a small
change (projected gradient descent in an L2 ball, Madry et al. 2018, "Towards Deep Learning
Models Resistant to Adversarial Attacks") is meant to make its gradients ask for more of what a
class sounds like: image surrogates trained with a small radius make perturbations that carry
over to other models (Springer, Mitchell & Kenyon 2021, "A Little Robustness Goes a Long
Way"). Here, at 0.3 dB, the dreams moved musicnn more often and YAMNet and irmas-pons not
(docs/transfer.md).

The radius is in dB rmse of the log-mel window, the unit of :func:`dreamsound.metrics.rmse_db`
(the log-mel is the natural log of mel magnitude, so x dB are x / 8.69 nepers per value).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dreamsound import metrics

#: Gradient steps that find each adversarial copy.
ADVERSARIAL_STEPS = 2
#: Length of each step, in radii: steps that together go past the ball's edge (then pulled back
#: onto it), so a copy ends at or near the edge, where the loss is usually highest.
STEP_RADII = 1.25


def adversarial_copies(network: torch.nn.Module, windows: torch.Tensor, targets: torch.Tensor,
                       radius_db: float, *, steps: int = ADVERSARIAL_STEPS) -> torch.Tensor:
    """Copies of ``windows [B, 1, T, F]`` (log-mel) moved to raise the network's loss.

    Each copy lies within ``radius_db`` dB rmse of its window (an L2 ball of radius
    ``radius_db / 8.69 · sqrt(T·F)`` nepers). The network is run in evaluation mode (batch
    statistics and dropout fixed) and left in the mode it was in; its weights get no gradient.

    Parameters
    ----------
    network : Module
        Maps ``[B, 1, T, F]`` to ``(logits [B, C], embeddings)``.
    windows : Tensor [B, 1, T, F]
        Log-mel windows (nepers of magnitude).
    targets : Tensor [B, C]
        The training targets (0..1) the loss is measured against.
    radius_db : float
        Largest change of each window, dB rmse (> 0).
    steps : int
        Gradient steps.
    """
    if radius_db <= 0 or steps < 1:
        raise ValueError("radius_db must be > 0 and steps >= 1")
    radius = radius_db / metrics.DB_PER_NEPER * math.sqrt(windows[0].numel())
    was_training = network.training
    network.eval()
    try:
        delta = torch.zeros_like(windows)
        for _ in range(steps):
            delta.requires_grad_(True)
            logits, _ = network(windows + delta)
            loss = F.binary_cross_entropy_with_logits(logits, targets)
            (gradient,) = torch.autograd.grad(loss, delta)
            delta = delta.detach() + STEP_RADII * radius / steps * _unit(gradient)
            delta = delta * (radius / _norm(delta)).clamp(max=1.0)
    finally:
        network.train(was_training)
    return (windows + delta).detach()


def _norm(x: torch.Tensor) -> torch.Tensor:
    """L2 norm of each item of a batch, shaped to broadcast over it (never 0)."""
    return x.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, *([1] * (x.dim() - 1)))


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / _norm(x)
