"""Gradient sonification: what the rendered gradient contains, sequences, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamsound.api import sonify
from dreamsound.errors import DreamsoundError
from dreamsound.sonification import bands_to_bins, gradient_to_audio

SR = 16000
PEAK = 10 ** (-1 / 20)


@pytest.fixture
def chord(rng) -> np.ndarray:
    t = np.arange(2 * SR) / SR
    x = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 2500 * t)
    return (x + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def testbands_to_bins_spreads_each_band_over_its_triangle(debug_model):
    matrix = debug_model.front_end.mel_matrix
    values = torch.zeros(1, matrix.shape[1])
    values[0, 10] = 1.0
    bins = bands_to_bins(values, matrix)[0]
    covered = matrix[:, 10] > 0
    assert bool((bins[covered] > 0).all()) and bool((bins[~covered] == 0).all())
    # A constant over all bands gives a constant over every bin the mel range covers.
    flat = bands_to_bins(torch.ones(1, matrix.shape[1]), matrix)[0]
    support = matrix.sum(dim=1) > 0
    assert torch.allclose(flat[support], torch.ones(int(support.sum())))


def test_waveform_gradient_is_played_as_is(debug_model, rng):
    gradient = torch.from_numpy(rng.standard_normal(SR)).float()
    audio = gradient_to_audio(gradient, model=debug_model, domain="waveform", reference=None,
                              length=SR)
    assert np.abs(audio).max() == pytest.approx(PEAK, rel=1e-6)
    assert np.allclose(audio / np.abs(audio).max(), gradient.numpy() / gradient.abs().max().item(),
                       atol=1e-6)


def test_spectrogram_gradient_positive_part_only(debug_model, chord):
    front_end = debug_model.front_end
    reference = torch.from_numpy(chord)
    log_mel = debug_model.log_mel(reference)
    band_hz = (np.linspace(0, SR / 2, front_end.mel_matrix.shape[0])
               @ front_end.mel_matrix.numpy()) / front_end.mel_matrix.numpy().sum(0)
    band = int(np.argmin(np.abs(band_hz - 2500)))
    gradient = torch.zeros_like(log_mel)
    gradient[:, band] = 1.0      # the model wants more around 2.5 kHz ...
    gradient[:, band - 8] = -5.0  # ... and (much) less lower down: not audible as an addition
    audio = gradient_to_audio(gradient, model=debug_model, domain="spectrogram",
                              reference=reference, length=chord.size)
    assert audio.shape == chord.shape and np.isfinite(audio).all()
    assert np.abs(audio).max() == pytest.approx(PEAK, rel=1e-6)
    power = np.abs(np.fft.rfft(audio * np.hanning(audio.size))) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / SR)
    near = (freqs > 2000) & (freqs < 3100)
    assert power[near].sum() / power.sum() > 0.9
    # All-negative gradient: nothing to add, silence (not NaN).
    quiet = gradient_to_audio(-torch.ones_like(log_mel), model=debug_model,
                              domain="spectrogram", reference=reference, length=chord.size)
    assert np.isfinite(quiet).all() and not quiet.any()
    with pytest.raises(DreamsoundError, match="NaN"):
        gradient_to_audio(gradient * float("nan"), model=debug_model, domain="spectrogram",
                          reference=reference, length=chord.size)


@pytest.mark.parametrize("domain", ["spectrogram", "waveform"])
def test_sonify_sequence(debug_model, chord, domain):
    one = sonify(chord, model=debug_model, target="violin", domain=domain, sample_rate=SR)
    assert one.audio.shape == chord.shape and len(one.segments) == 1
    three = sonify(chord, model=debug_model, target="violin", steps=3, domain=domain,
                   sample_rate=SR)
    assert three.audio.shape == (3 * chord.size,) and len(three.segments) == 3
    assert three.report["steps"] == 3 and three.report["target"] == "violin"
    assert three.spectrograms["gradients"].shape[0] == 3
    for segment in three.segments:
        assert np.abs(segment).max() == pytest.approx(PEAK, rel=1e-6)
    # The first segment is the gradient at the sound itself, as with steps=1 (up to the fades).
    fade = round(0.01 * SR)
    assert np.allclose(three.audio[fade:chord.size - fade], one.audio[fade:-fade], atol=1e-6)
    # The gradient evolves as the sound is dreamed.
    assert not np.allclose(three.segments[0], three.segments[2], atol=1e-3)
    again = sonify(chord, model=debug_model, target="violin", steps=3, domain=domain,
                   sample_rate=SR)
    assert again.audio.tobytes() == three.audio.tobytes()


def test_sonify_layer(debug_model, chord):
    result = sonify(chord, model=debug_model, layer="conv2", channel=1, sample_rate=SR)
    assert result.report["layer"] == "conv2" and np.isfinite(result.audio).all()
    assert np.abs(result.audio).max() > 0
    with pytest.raises(DreamsoundError, match="steps"):
        sonify(chord, model=debug_model, steps=0, sample_rate=SR)
