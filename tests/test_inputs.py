"""One input loader: files, arrays and generated starts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamsound.errors import AudioError
from dreamsound.inputs import generate_start, load_input, parse_start
from tests.signals import SR, amplitude_at


def test_generated_starts():
    assert parse_start("noise:3s") == ("noise", 3.0, None)
    assert parse_start("silence:500ms") == ("silence", 0.5, None)
    assert parse_start("sine:440:2s") == ("sine", 2.0, 440.0)
    assert parse_start("loop.wav") is None
    noise = generate_start("noise:1s", sample_rate=SR, seed=3)
    assert noise.shape == (SR,) and noise.dtype == np.float32
    assert np.array_equal(noise, generate_start("noise:1s", sample_rate=SR, seed=3))
    assert not np.array_equal(noise, generate_start("noise:1s", sample_rate=SR, seed=4))
    assert not generate_start("silence:0.25s", sample_rate=SR).any()
    sine = generate_start("sine:1000:1s", sample_rate=SR)
    assert amplitude_at(torch.from_numpy(sine), 1000) > 100 * amplitude_at(
        torch.from_numpy(sine), 3000)
    with pytest.raises(AudioError, match="Nyquist"):
        generate_start("sine:9000:1s", sample_rate=SR)


def test_load_input_files_arrays_and_starts(chord, chord_wav):
    from_file = load_input(chord_wav, sample_rate=SR)
    assert from_file.path == chord_wav and np.allclose(from_file.waveform, chord, atol=1e-6)
    from_array = load_input(chord, sample_rate=8000, input_rate=SR)
    assert from_array.label == "array" and from_array.waveform.shape == (SR,)
    start = load_input("noise:0.5s", sample_rate=SR, seed=2)
    assert start.label == "noise:0.5s" and start.path is None and start.waveform.shape == (8000,)
    with pytest.raises(AudioError, match="mono"):
        load_input(np.zeros((2, 100), np.float32) + 0.1, sample_rate=SR)
    with pytest.raises(AudioError):
        load_input(np.zeros(SR, np.float32), sample_rate=SR, allow_silence=False)
