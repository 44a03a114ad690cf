"""Metric definitions on hand-computed examples (DESIGN.md §3, "Metrics")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dreamsound import metrics
from dreamsound.errors import TargetError
from dreamsound.metrics import (
    METRIC_DEFINITIONS,
    distance_report,
    is_success,
    mel_db,
    mse_db2,
    rmse_db,
    spectral_convergence_db,
    target_confidence,
    top_k,
)
from dreamsound.spectral import FrontEndConfig, LogMelFrontEnd, stft

OFFSET = 1e-3
#: A standard front-end whose log floor is OFFSET (ln(mel + 0.001)); only its dB scale is used.
FE = LogMelFrontEnd(FrontEndConfig(sample_rate=16000, n_fft=512, win_length=400, hop_length=160,
                                   n_mels=8, fmin=100.0, fmax=7000.0, log_offset=OFFSET,
                                   patch_frames=4, patch_hop_frames=2))


def log_mel_of(mel: torch.Tensor) -> torch.Tensor:
    return torch.log(mel + OFFSET)


def test_mel_db_is_20_log10_of_mel_plus_the_floor():
    mel = torch.tensor([[0.0, 0.999, 9.999]], dtype=torch.float64)
    expected = torch.tensor([[-60.0, 0.0, 20.0]], dtype=torch.float64)
    torch.testing.assert_close(mel_db(log_mel_of(mel), front_end=FE), expected)
    assert FE.floor == pytest.approx(math.log(OFFSET))


def test_a_uniform_doubling_is_6_0206_db():
    a = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    b = a + math.log(2.0)  # twice (mel + offset): +20*log10(2) dB everywhere
    assert rmse_db(a, b, front_end=FE) == pytest.approx(6.0206, abs=1e-4)
    assert mse_db2(a, b, front_end=FE) == pytest.approx(6.0206**2, abs=1e-3)


def test_mse_and_rmse_on_a_hand_computed_example():
    # dB differences of 3 and 4 -> mse = (9 + 16) / 2 = 12.5 dB^2, rmse = sqrt(12.5) dB.
    to_log = math.log(10.0) / 20.0
    a = torch.zeros(1, 2, dtype=torch.float64)
    b = torch.tensor([[3.0, -4.0]], dtype=torch.float64) * to_log
    assert mse_db2(a, b, front_end=FE) == pytest.approx(12.5)
    assert rmse_db(a, b, front_end=FE) == pytest.approx(math.sqrt(12.5))
    assert distance_report(a, b, front_end=FE) == pytest.approx(
        {"mse_db2": 12.5, "rmse_db": math.sqrt(12.5)})
    # numpy arrays are accepted too.
    assert mse_db2(a.numpy(), b.numpy(), front_end=FE) == pytest.approx(12.5)


def test_identical_inputs_are_zero_distance(rng):
    a = torch.from_numpy(rng.standard_normal((100, 64)).astype(np.float32))
    assert mse_db2(a, a.clone(), front_end=FE) == 0.0
    assert rmse_db(a, a.clone(), front_end=FE) == 0.0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        rmse_db(torch.zeros(96, 64), torch.zeros(97, 64), front_end=FE)


def test_target_confidence_is_the_mean_over_patches():
    scores = torch.tensor([[0.2, 0.8], [0.4, 0.6]])
    assert target_confidence(scores, 1) == pytest.approx(0.7)
    assert target_confidence(scores, 0) == pytest.approx(0.3)
    assert target_confidence(torch.tensor([0.1, 0.9]), 1) == pytest.approx(0.9)
    with pytest.raises(TargetError):
        target_confidence(scores, 2)


def test_top_k_orders_best_first_with_stable_ties():
    names = ["cello", "flute", "violin", "voice"]
    scores = torch.tensor([0.1, 0.5, 0.9, 0.5])
    result = top_k(scores, names, 3)
    assert [name for name, _ in result] == ["violin", "flute", "voice"]
    assert result[0][1] == pytest.approx(0.9)
    assert len(top_k(scores, names, 10)) == 4
    with pytest.raises(ValueError):
        top_k(scores, names[:3], 2)


def test_is_success_top1_or_threshold():
    scores = torch.tensor([0.3, 0.6, 0.5])
    assert is_success(scores, 1)
    assert not is_success(scores, 2)
    assert is_success(scores, 2, threshold=0.5)
    assert not is_success(scores, 0, threshold=0.5)


def test_spectral_convergence_on_scaled_copies(rng):
    x = torch.from_numpy(rng.uniform(-1, 1, 16000)).double()
    geometry = dict(n_fft=512, win_length=400, hop_length=160)
    magnitude = stft(x, **geometry).abs()
    # |STFT(a x)| - S = (a - 1) S exactly: SC = 20 log10 |a - 1|.
    assert spectral_convergence_db(0.5 * x, magnitude, **geometry) == pytest.approx(
        20 * math.log10(0.5), abs=1e-9)
    assert spectral_convergence_db(2.0 * x, magnitude, **geometry) == pytest.approx(0.0, abs=1e-9)
    assert spectral_convergence_db(x, magnitude, **geometry) < -250 or math.isinf(
        spectral_convergence_db(x, magnitude, **geometry))
    # A longer (zero-padded) estimate is compared on the target's frames only.
    padded = torch.nn.functional.pad(0.5 * x, (0, 1000))
    assert spectral_convergence_db(padded, magnitude, **geometry) == pytest.approx(
        20 * math.log10(0.5), abs=1e-9)
    with pytest.raises(ValueError):
        spectral_convergence_db(x, torch.zeros_like(magnitude), **geometry)
    # edge_frames leaves out the first and last frames: an error confined to them disappears.
    spoiled = magnitude.clone()
    spoiled[:2] *= 3.0
    spoiled[-2:] *= 3.0
    assert spectral_convergence_db(x, spoiled, **geometry) > -20
    assert spectral_convergence_db(x, spoiled, **geometry, edge_frames=2) < -250 or math.isinf(
        spectral_convergence_db(x, spoiled, **geometry, edge_frames=2))
    with pytest.raises(ValueError, match="edge_frames"):
        spectral_convergence_db(x, magnitude, **geometry, edge_frames=magnitude.shape[0] // 2)


def test_every_metric_has_a_one_line_definition():
    for key in ("confidence", "success", "mel_db", "mse_db2", "rmse_db",
                "spectral_convergence_db"):
        assert key in METRIC_DEFINITIONS
    for text in METRIC_DEFINITIONS.values():
        assert text and "\n" not in text and len(text) < 200
    assert "dB^2" in METRIC_DEFINITIONS["mse_db2"]
    assert abs(metrics.DB_PER_NEPER - 8.685889638) < 1e-9
