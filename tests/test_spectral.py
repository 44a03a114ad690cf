"""Gradient checks of the differentiable front-end (float64, short inputs).

Dreams ascend on the waveform *through* the front-end, so its analytic gradient must equal the
numerical one: :func:`torch.autograd.gradcheck` compares them by finite differences.
"""

from __future__ import annotations

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
