"""Per-step gradient transforms: normalisation and smoothing; the seeded jitter."""

from __future__ import annotations

import pytest
import torch

from dreamsound.engine.transforms import (
    MAX_ELEMENT_STEP,
    Jitter,
    normalize_gradient,
    smooth_gradient,
)
from dreamsound.errors import DreamsoundError


def test_normalize_gradient():
    g = torch.tensor([1.0, -3.0, 2.0])
    assert torch.allclose(normalize_gradient(g, "mean").abs().mean(), torch.tensor(1.0))
    assert torch.allclose(normalize_gradient(g, "max").abs().max(), torch.tensor(1.0))
    with pytest.raises(DreamsoundError, match="zero everywhere"):
        normalize_gradient(torch.zeros(4), "mean")
    with pytest.raises(DreamsoundError, match="NaN"):
        normalize_gradient(torch.tensor([1.0, float("nan")]), "mean")


def test_smooth_gradient():
    checker = torch.ones(8, 6)
    checker[::2] *= -1
    checker[:, ::2] *= -1
    smoothed = smooth_gradient(checker, 1)
    # A frame-to-frame / band-to-band checkerboard (unrealisable as sound) is removed inside ...
    assert float(smoothed[1:-1, 1:-1].abs().max()) < 1e-6
    # ... while a constant or a slow ramp is kept.
    assert torch.allclose(smooth_gradient(torch.full((5, 4), 3.0), 2), torch.full((5, 4), 3.0))
    ramp = torch.arange(10.0)[:, None].expand(10, 4)
    assert torch.allclose(smooth_gradient(ramp, 1)[1:-1], ramp[1:-1])
    assert torch.equal(smooth_gradient(checker, 0), checker)


def test_mean_normalisation_bounds_every_element():
    # One bin holding nearly all of the gradient must not move by hundreds of dB in one step
    # (that overflowed exp() on rendering: NaN audio).
    gradient = torch.full((50, 20), 1e-6)
    gradient[10, 5] = 1.0
    step = normalize_gradient(gradient, "mean")
    assert float(step.abs().max()) == MAX_ELEMENT_STEP
    assert torch.all(step > 0)


def test_jitter_is_seeded_and_bounded():
    draws = [Jitter(3, torch.Generator().manual_seed(5)).draw() for _ in range(1)]
    again = Jitter(3, torch.Generator().manual_seed(5))
    first = again.draw()
    assert draws[0] == first
    shifts = [again.draw() for _ in range(200)]
    assert set(shifts) == {-3, -2, -1, 0, 1, 2, 3}
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    assert Jitter(0, generator).draw() == 0
    assert torch.equal(generator.get_state(), state)  # no jitter draws no random numbers
