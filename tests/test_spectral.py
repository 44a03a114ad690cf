"""Gradient checks of the differentiable front-end (float64, short inputs), and its band geometry.

Dreams ascend on the waveform *through* the front-end, so its analytic gradient must equal the
numerical one: :func:`torch.autograd.gradcheck` compares them by finite differences.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamsound.spectral import FrontEndConfig, LogMelFrontEnd


def _tiny_config(mel_scale: str) -> FrontEndConfig:
    # Same structure as YAMNet's (window shorter than the FFT, no centring, log offset, patches),
    # small enough that finite differences over every input sample take well under a second.
    return FrontEndConfig(sample_rate=8000, n_fft=32, win_length=24, hop_length=8, n_mels=6,
                          fmin=100.0, fmax=3500.0, log_offset=0.01, patch_frames=4,
                          patch_hop_frames=2, mel_scale=mel_scale)


@pytest.mark.parametrize("mel_scale", ["tf", "slaney"])
def test_front_end_gradcheck_float64(mel_scale, rng):
    front_end = LogMelFrontEnd(_tiny_config(mel_scale)).double()
    # 70 samples: not a whole number of patch hops, so the gradient also goes through padding.
    waveform = torch.from_numpy(rng.standard_normal(70)).requires_grad_(True)

    def patches(x: torch.Tensor) -> torch.Tensor:
        return front_end.patches(front_end(x))

    assert patches(waveform).shape[-2:] == (4, 6)
    assert torch.autograd.gradcheck(patches, (waveform,), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_front_end_gradcheck_batched_float64(rng):
    front_end = LogMelFrontEnd(_tiny_config("tf")).double()
    batch = torch.from_numpy(rng.standard_normal((2, 40))).requires_grad_(True)
    assert torch.autograd.gradcheck(front_end, (batch,), eps=1e-6, atol=1e-5, rtol=1e-4)
    # Batched equals one by one.
    torch.testing.assert_close(front_end(batch), torch.stack([front_end(b) for b in batch]))


def test_band_centres_hz_are_the_triangles_weighted_mean_frequencies():
    config = FrontEndConfig(sample_rate=16000, n_fft=512, win_length=400, hop_length=160,
                            n_mels=64, fmin=125.0, fmax=7500.0, log_offset=1e-3,
                            patch_frames=96, patch_hop_frames=48)
    front_end = LogMelFrontEnd(config)
    centres = front_end.band_centres_hz()
    assert centres.shape == (64,) and centres.dtype == np.float64
    assert np.all(np.diff(centres) > 0)
    assert config.fmin < centres[0] and centres[-1] < config.fmax
    matrix = front_end.mel_matrix.double().numpy()
    bin_hz = np.linspace(0.0, 8000.0, config.n_bins)
    np.testing.assert_allclose(centres, (bin_hz @ matrix) / matrix.sum(axis=0))


def test_band_centres_hz_of_an_empty_band_is_zero_not_nan():
    # A 32-point FFT at 8 kHz has 250 Hz bins: the lowest of 20 bands from 0 Hz catch none.
    front_end = LogMelFrontEnd(FrontEndConfig(
        sample_rate=8000, n_fft=32, win_length=24, hop_length=8, n_mels=20, fmin=0.0,
        fmax=4000.0, log_offset=0.01, patch_frames=4, patch_hop_frames=2))
    empty = front_end.mel_matrix.sum(dim=0).numpy() == 0
    centres = front_end.band_centres_hz()
    assert empty.any() and np.all(np.isfinite(centres))
    assert np.all(centres[empty] == 0.0) and np.all(centres[~empty] > 0.0)


@pytest.mark.parametrize("n, win, hop, n_fft, lead", [
    (16000, 400, 160, 512, ()),      # YAMNet's geometry; 15 samples past the last frame
    (3001, 512, 256, 512, (2,)),     # window = FFT, batched
    (4000, 300, 100, 301, (2, 3)),   # odd FFT length (no Nyquist bin), hop dividing the window
    (999, 250, 96, 256, ()),         # hop dividing neither
])
def test_stft_magnitude_equals_autograd_of_stft_abs(n, win, hop, n_fft, lead):
    """The written gradient of |STFT| against autograd's through ``stft(...).abs()``, float32,
    with silent stretches (|z| = 0 gives a zero gradient in both)."""
    from dreamsound.spectral import stft, stft_magnitude

    generator = torch.Generator().manual_seed(n)
    waveform = torch.randn(*lead, n, generator=generator)
    waveform[..., : 2 * win] = 0.0
    ours_in = waveform.clone().requires_grad_(True)
    reference_in = waveform.clone().requires_grad_(True)
    ours = stft_magnitude(ours_in, n_fft=n_fft, win_length=win, hop_length=hop)
    reference = stft(reference_in, n_fft=n_fft, win_length=win, hop_length=hop).abs()
    assert torch.equal(ours, reference)
    assert bool((ours[..., 0, :] == 0).all())
    upstream = torch.randn(ours.shape, generator=generator)
    (got,) = torch.autograd.grad(ours, ours_in, upstream)
    (expected,) = torch.autograd.grad(reference, reference_in, upstream)
    assert got.shape == waveform.shape
    assert float((got - expected).abs().max()) <= 1e-6 * float(expected.abs().max())
    last = (1 + (n - win) // hop - 1) * hop + win  # samples past the last frame: no gradient
    assert bool((got[..., last:] == 0).all())
