"""DreamSound's waveform update rules and their STFT geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamsound.engine.rules import (
    StftGeometry,
    hard_cut_mask,
    masked_resynthesis,
    waveform_update,
)
from dreamsound.errors import DreamsoundError
from tests.signals import SR, amplitude_at, band_fraction, db, tone

GEOMETRY = StftGeometry(512, 400, 160)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-13)])
def test_all_ones_mask_reproduces_input_exactly(rng, dtype, tol):
    geometry = StftGeometry(512, 400, 160, dtype=dtype)
    x = torch.from_numpy(rng.standard_normal(12345) * 0.3).to(dtype)
    ones = torch.ones(geometry.analyze(x).shape, dtype=dtype)
    rebuilt = masked_resynthesis(geometry, x, ones)
    assert rebuilt.shape == x.shape
    assert float((rebuilt - x).abs().max()) < tol


def test_hard_cut_mask():
    magnitude = torch.tensor([[0.0, 0.05, 0.1, 0.5, 1.0],
                              [0.0, 0.004, 0.02, 0.05, 0.1],  # a quiet frame: its own maximum
                              [0.0, 0.0, 0.0, 0.0, 0.0]])
    assert hard_cut_mask(magnitude, 0.1).tolist() == [[0, 0, 1, 1, 1], [0, 0, 1, 1, 1],
                                                      [0, 0, 0, 0, 0]]
    assert hard_cut_mask(torch.zeros(2, 3), 0.1).sum() == 0


def test_additive_rule():
    x, g = tone(440), tone(1000)
    out = waveform_update(x, g, rule="additive", step_size=0.1, level=0.5, geometry=GEOMETRY)
    assert torch.allclose(out, x + 0.05 * g)


def test_filter_rule_keeps_only_the_gradients_bins():
    signal = tone(500) + tone(3000)
    gradient = tone(500, amp=1.0)  # the model "wants" only 500 Hz
    out = waveform_update(signal, gradient, rule="filter", step_size=0.1, level=1.0,
                          geometry=GEOMETRY)
    # 500 Hz passes untouched (the signal's own phase kept), 3000 Hz is gone.
    assert amplitude_at(out, 500) == pytest.approx(amplitude_at(signal, 500), rel=0.01)
    assert db(amplitude_at(out, 3000) / amplitude_at(signal, 3000)) < -100
    # No energy where the mask is zero (re-analysed; only window leakage at the mask's edges).
    mask = hard_cut_mask(GEOMETRY.analyze(gradient).abs(), 0.1)
    energy = GEOMETRY.analyze(out).abs().square()
    assert float((energy * (1 - mask)).sum() / energy.sum()) < 0.005


def test_filter_add_rule_adds_the_filtered_signal():
    signal = tone(500) + tone(3000)
    gradient = tone(500, amp=1.0)
    out = waveform_update(signal, gradient, rule="filter-add", step_size=0.5, level=1.0,
                          geometry=GEOMETRY)
    change = out - signal
    assert amplitude_at(change, 500) == pytest.approx(0.5 * amplitude_at(signal, 500), rel=0.01)
    assert db(amplitude_at(change, 3000) / amplitude_at(signal, 3000)) < -100
    assert amplitude_at(out, 3000) == pytest.approx(amplitude_at(signal, 3000), rel=1e-3)


def test_target_rule_shapes_the_gradient_by_the_second_sound(rng):
    signal = tone(500)
    gradient = torch.from_numpy(rng.standard_normal(SR)).float()  # broadband
    target = tone(2000)
    out = waveform_update(signal, gradient, rule="target", step_size=0.1, level=0.2,
                          geometry=GEOMETRY, target_sound=target)
    change = out - signal
    # The noise gradient now lives only around 2 kHz, the target's footprint.
    assert band_fraction(change, 1700, 2300) > 0.995
    assert amplitude_at(change, 2000) > 30 * amplitude_at(change, 5000)


def test_flip_filter_takes_the_mask_from_the_signal(rng):
    signal = tone(500)
    gradient = torch.from_numpy(rng.standard_normal(SR)).float()
    out = waveform_update(signal, gradient, rule="filter", step_size=0.1, level=1.0,
                          geometry=GEOMETRY, flip=True)
    # The result is the gradient, restricted to the signal's footprint, at the signal's level.
    assert band_fraction(out, 200, 800) > 0.995
    assert float(out.square().mean().sqrt()) == pytest.approx(
        float(signal.square().mean().sqrt()), rel=1e-3)
    # Unflipped, the same inputs give the signal (filtered by the broadband gradient's mask)
    # instead: the flip swapped which sound is heard and which one shapes it.
    plain = waveform_update(signal, gradient, rule="filter", step_size=0.1, level=1.0,
                            geometry=GEOMETRY)

    def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
        return abs(float(np.corrcoef(a.double().numpy(), b.double().numpy())[0, 1]))

    assert correlation(plain, signal) > 0.9
    assert correlation(out, signal) < 0.5


def test_flip_filter_add_adds_the_gradient_where_the_signal_is(rng):
    signal = tone(500)
    gradient = torch.from_numpy(rng.standard_normal(SR)).float()
    out = waveform_update(signal, gradient, rule="filter-add", step_size=0.1, level=0.2,
                          geometry=GEOMETRY, flip=True)
    change = out - signal
    assert float(change.abs().max()) > 0
    assert band_fraction(change, 200, 800) > 0.995


def test_flip_target_adds_the_second_sound_where_the_gradient_is():
    signal = tone(500)
    target = tone(1000) + tone(2000)
    gradient = tone(2000, amp=1.0)  # the model wants 2 kHz only
    out = waveform_update(signal, gradient, rule="target", step_size=0.5, level=0.2,
                          geometry=GEOMETRY, target_sound=target, flip=True)
    change = out - signal
    assert amplitude_at(change, 2000) == pytest.approx(0.5 * amplitude_at(target, 2000),
                                                       rel=0.01)
    assert db(amplitude_at(change, 1000) / amplitude_at(target, 1000)) < -100


def test_flip_is_refused_for_additive():
    with pytest.raises(DreamsoundError, match="--flip"):
        waveform_update(tone(500), tone(500), rule="additive", step_size=0.1, level=1.0,
                        geometry=GEOMETRY, flip=True)


# -- the engine on the debug model ----------------------------------------------------------------
