"""Constraints on where a dream may go: the log floor, the ``max_rmse_db`` ball, a distance penalty.

Each is a small function the domains (:mod:`dreamsound.engine.domains`) apply after a step, or a
term the loop subtracts from the objective.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dreamsound import metrics

#: Halvings of the waveform pull-back's scale factor: the bound is then met to ~0.03 %.
PULL_BACK_HALVINGS = 12


def clamp_to_floor(log_mel: torch.Tensor, floor: float) -> torch.Tensor:
    """No sound is quieter than the front-end's floor; a log-mel below it could not be rendered."""
    return log_mel.clamp(min=floor)


def project_to_ball(current: torch.Tensor, base: torch.Tensor, rmse: float,
                    bound: float) -> torch.Tensor:
    """Scale the change ``current - base`` back onto ``rmse_db <= bound`` (spectrogram domain).

    Exact there: ``mel_db`` is linear in the log-mel, so scaling the change scales the rmse (and
    keeps it above the floor, since both ends are).
    """
    return base + (current - base) * (bound / rmse)


def pull_back(original: torch.Tensor, updated: torch.Tensor, bound: float,
              distance: Callable[[torch.Tensor], float]) -> tuple[torch.Tensor, float]:
    """Scale the change ``updated - original`` of a waveform until ``distance <= bound``.

    The dB distance of a waveform change is not linear in its size, so this bisects the scale
    factor in [0, 1] (:data:`PULL_BACK_HALVINGS` halvings).

    Returns
    -------
    (Tensor [n], float)
        The scaled waveform and its distance (dB).
    """
    change = updated - original
    low, high = 0.0, 1.0
    best, best_distance = original, 0.0
    for _ in range(PULL_BACK_HALVINGS):
        middle = 0.5 * (low + high)
        candidate = original + middle * change
        value = distance(candidate)
        if value <= bound:
            low, best, best_distance = middle, candidate, value
        else:
            high = middle
    return best, best_distance


#: The interpolating pull-back stops once the distance is within this share below the bound.
PULL_BACK_TOLERANCE = 2e-3
#: ... or after this many distance evaluations (it keeps the best one within the bound).
PULL_BACK_EVALUATIONS = 8


def pull_back_interpolated(original: torch.Tensor, updated: torch.Tensor, bound: float,
                           distance: Callable[[torch.Tensor], float], *, at_one: float
                           ) -> tuple[torch.Tensor, float]:
    """:func:`pull_back` in a few evaluations where the distance grows smoothly with the scale.

    Regula falsi (Illinois variant) on the scale factor in [0, 1], from ``distance(updated) =
    at_one > bound``: where the distance is nearly linear in the scale (an envelope's gains, a
    small waveform change) the first guess ``bound / at_one`` lands within
    :data:`PULL_BACK_TOLERANCE`, against :data:`PULL_BACK_HALVINGS` evaluations of bisection
    (measured on the robust default: 12 per capped step were ~20 % of a dream's time).
    The result is always within the bound.
    """
    change = updated - original
    # Aim inside the tolerance band, not at its edge: a guess exactly on the bound falls
    # outside it half the time by rounding.
    aim = bound * (1.0 - 0.5 * PULL_BACK_TOLERANCE)
    low, low_value, high, high_value = 0.0, 0.0, 1.0, float(at_one)
    best, best_distance = original, 0.0
    side = 0
    for _ in range(PULL_BACK_EVALUATIONS):
        scale = low + (high - low) * (aim - low_value) / (high_value - low_value)
        scale = min(max(scale, low + 1e-6 * (high - low)), high - 1e-6 * (high - low))
        candidate = original + scale * change
        value = distance(candidate)
        if value <= bound:
            low, low_value, best, best_distance = scale, value, candidate, value
            if value >= bound * (1.0 - PULL_BACK_TOLERANCE):
                break
            if side == -1:  # the same end moved twice: halve the other end's weight
                high_value = aim + 0.5 * (high_value - aim)
            side = -1
        else:
            high, high_value = scale, value
            if side == 1:
                low_value = aim - 0.5 * (aim - low_value)
            side = 1
    return best, best_distance


class DistancePenalty:
    """``λ · mse_db2(log_mel, reference)``, differentiable, subtracted from the objective.

    The same formula as the reported :func:`dreamsound.metrics.mse_db2` (a test checks it).
    """

    def __init__(self, weight: float, front_end: metrics.DbScale):
        self.weight = float(weight)
        self.front_end = front_end

    def __bool__(self) -> bool:
        return self.weight > 0

    def __call__(self, log_mel: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.weight * metrics.mse_db2_tensor(log_mel, reference, front_end=self.front_end)
