"""Inverse STFT, fast Griffin-Lim, mel -> linear inversion and ``LogMelFrontEnd.invert``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dreamsound.metrics import spectral_convergence_db
from dreamsound.spectral import (
    ISTFT_EDGE_FLOOR,
    FrontEndConfig,
    LogMelFrontEnd,
    griffin_lim,
    hann_window,
    istft,
    mel_to_linear,
    overlap_add,
    stft,
)
from dreamsound.spectral.inversion import _phase_of

# (n_fft, win_length, hop_length): YAMNet's geometry (window shorter than the FFT, hop not
# dividing the window) and a librosa-style one.
GEOMETRIES = [(512, 400, 160), (1024, 1024, 256)]
YAMNET_LIKE = FrontEndConfig(sample_rate=16000, n_fft=512, win_length=400, hop_length=160,
                             n_mels=64, fmin=125.0, fmax=7500.0, log_offset=1e-3,
                             patch_frames=96, patch_hop_frames=48)


def musical_signal(sample_rate: int = 16000, seconds: float = 3.0) -> np.ndarray:
    """Six decaying harmonic notes (7 partials) over a 200 -> 3000 Hz linear chirp, peak 0.5."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    x = np.zeros_like(t)
    notes = [261.63, 329.63, 392.0, 523.25, 440.0, 349.23]
    duration = seconds / len(notes)
    for i, f0 in enumerate(notes):
        inside = (t >= i * duration) & (t < (i + 1) * duration)
        local = t[inside] - i * duration
        envelope = np.minimum(1.0, local / 0.01) * np.exp(-3.0 * local)
        for h in range(1, 8):
            x[inside] += envelope * np.sin(2 * np.pi * f0 * h * local) / h
    x += 0.2 * np.sin(2 * np.pi * (200 * t + (3000 - 200) / (2 * seconds) * t**2))
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def music() -> torch.Tensor:
    return torch.from_numpy(musical_signal())


def covered(n_frames: int, win_length: int, hop_length: int,
            floor: float = ISTFT_EDGE_FLOOR) -> torch.Tensor:
    """Mask of samples whose overlap-added squared window is >= floor * its maximum."""
    window_sum = overlap_add(hann_window(win_length).square().expand(n_frames, win_length),
                             hop_length)
    return window_sum >= floor * window_sum.max()


# -- overlap-add and istft -------------------------------------------------------------------

def test_overlap_add_matches_a_plain_loop(rng):
    frames = torch.from_numpy(rng.standard_normal((2, 7, 400)))
    expected = torch.zeros(2, 6 * 160 + 400, dtype=frames.dtype)
    for t in range(7):
        expected[:, t * 160:t * 160 + 400] += frames[:, t]
    torch.testing.assert_close(overlap_add(frames, 160), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("n_fft", "win_length", "hop_length"), GEOMETRIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_istft_inverts_stft_exactly(rng, n_fft, win_length, hop_length, dtype):
    # Batched [2, 3, n]; the original DreamSound skipped the synthesis window and swapped the
    # real and imaginary parts: either mistake breaks this round trip by O(1).
    x = torch.from_numpy(rng.uniform(-1, 1, (2, 3, 8000))).to(dtype)
    spectrum = stft(x, n_fft=n_fft, win_length=win_length, hop_length=hop_length)
    y = istft(spectrum, n_fft=n_fft, win_length=win_length, hop_length=hop_length)
    n = y.shape[-1]
    assert n == (spectrum.shape[-2] - 1) * hop_length + win_length
    error = (y - x[..., :n]).abs()
    well_covered = covered(spectrum.shape[-2], win_length, hop_length, floor=0.1)
    assert error[..., well_covered].max().item() < (1e-6 if dtype == torch.float32 else 1e-13)
    assert error[..., covered(spectrum.shape[-2], win_length, hop_length)].max().item() < (
        5e-6 if dtype == torch.float32 else 1e-12)
    # The plain least-squares synthesis is exact at the edges too (sample 0 meets only w[0] = 0
    # and cannot come back); rounding is amplified by 1 / w there, to ~1e-2 for full-scale
    # white noise in float32. (The default bounds edge samples by their neighbourhood's peak,
    # which white noise exceeds now and then: see the next tests.)
    plain = istft(spectrum, n_fft=n_fft, win_length=win_length, hop_length=hop_length,
                  edge_floor=0.0)
    edge_error = (plain - x[..., :n])[..., 1:].abs().max().item()
    assert edge_error < (3e-2 if dtype == torch.float32 else 1e-9)


def test_istft_matches_librosa_in_the_interior(rng):
    librosa = pytest.importorskip("librosa")
    spectrum = torch.from_numpy(rng.standard_normal((40, 513)) + 1j * rng.standard_normal(
        (40, 513)))
    ours = istft(spectrum, n_fft=1024, win_length=1024, hop_length=256).numpy()
    theirs = librosa.istft(spectrum.numpy().T, n_fft=1024, hop_length=256, win_length=1024,
                           window="hann", center=False)
    interior = slice(1024, len(theirs) - 1024)  # full overlap: both divide by the same sum
    np.testing.assert_allclose(ours[interior], theirs[interior], rtol=1e-6, atol=1e-9)


def test_istft_edges_are_finite_and_bounded(rng):
    # An inconsistent (random) spectrum: dividing by the ~0 window sum at the edges makes
    # spikes that ruin peak normalisation (> 20x the rest's peak here without the bound).
    spectrum = torch.from_numpy(rng.standard_normal((50, 257)) + 1j * rng.standard_normal(
        (50, 257))).to(torch.complex64)
    y = istft(spectrum, n_fft=512, win_length=400, hop_length=160)
    assert torch.isfinite(y).all()
    mask = covered(50, 400, 160)
    head, tail = int(mask.nonzero()[0]), int((~mask.flip(0)).cumprod(0).sum())
    assert 0 < head < 100 and 0 < tail < 100
    assert y[:head].abs().max() <= y[head:head + 400].abs().max()
    assert y[-tail:].abs().max() <= y[-tail - 400:-tail].abs().max()
    torch.testing.assert_close(y[head:-tail], istft(spectrum, n_fft=512, win_length=400,
                                                    hop_length=160, edge_floor=0.0)[head:-tail])
    unguarded = istft(spectrum, n_fft=512, win_length=400, hop_length=160, edge_floor=0.0)
    assert unguarded.abs().max() > 20 * y[head:-tail].abs().max()
    # A silent spectrum gives silence, not 0/0.
    silent = istft(torch.zeros(5, 257, dtype=torch.complex64), n_fft=512, win_length=400,
                   hop_length=160)
    assert torch.equal(silent, torch.zeros_like(silent))


def test_istft_edge_bound_keeps_a_consistent_signal_within_its_neighbourhood(rng):
    # A sound whose first samples are no louder than what follows (an attack, a fade-in, most
    # cuts) comes back exactly at the edges too; a first sample louder than the next window's
    # peak is clipped to that peak (the price of never producing spikes).
    x = torch.from_numpy(rng.uniform(-1, 1, 8000)) * torch.linspace(0.2, 1.0, 8000).double()
    x[-600:] *= torch.linspace(1.0, 0.1, 600).double()
    y = istft(stft(x, n_fft=512, win_length=400, hop_length=160), n_fft=512, win_length=400,
              hop_length=160)
    assert (y[1:] - x[1:y.shape[-1]]).abs().max() < 1e-9
    loud_start = x.clone()
    loud_start[5] = 3.0
    y = istft(stft(loud_start, n_fft=512, win_length=400, hop_length=160), n_fft=512,
              win_length=400, hop_length=160)
    assert float(y[5]) == pytest.approx(float(loud_start[40:440].abs().max()), rel=1e-9)


def test_istft_length_trims_and_pads(rng):
    x = torch.from_numpy(rng.uniform(-1, 1, 4000).astype(np.float32))
    spectrum = stft(x, n_fft=512, win_length=400, hop_length=160)
    assert istft(spectrum, n_fft=512, win_length=400, hop_length=160, length=3000).shape == (3000,)
    padded = istft(spectrum, n_fft=512, win_length=400, hop_length=160, length=5000)
    assert padded.shape == (5000,) and padded[3920:].abs().max() == 0


def test_istft_rejects_a_wrong_bin_count():
    with pytest.raises(ValueError, match="257"):
        istft(torch.zeros(10, 256, dtype=torch.complex64), n_fft=512, win_length=400,
              hop_length=160)


# -- Griffin-Lim -----------------------------------------------------------------------------

def sc_db(waveform: torch.Tensor, magnitude: torch.Tensor, geometry=(512, 400, 160)) -> float:
    n_fft, win_length, hop_length = geometry
    return spectral_convergence_db(waveform, magnitude, n_fft=n_fft, win_length=win_length,
                                   hop_length=hop_length)


@pytest.mark.parametrize(("n_fft", "win_length", "hop_length"), GEOMETRIES)
def test_griffin_lim_from_the_true_phase_is_immediately_consistent(music, n_fft, win_length,
                                                                    hop_length):
    spectrum = stft(music, n_fft=n_fft, win_length=win_length, hop_length=hop_length)
    for n_iter in (0, 2):
        y = griffin_lim(spectrum.abs(), n_fft=n_fft, win_length=win_length,
                        hop_length=hop_length, n_iter=n_iter, init_phase=spectrum)
        assert sc_db(y, spectrum.abs(), (n_fft, win_length, hop_length)) < -90.0
    # A phase in radians is accepted too.
    y = griffin_lim(spectrum.abs(), n_fft=n_fft, win_length=win_length, hop_length=hop_length,
                    n_iter=1, init_phase=spectrum.angle())
    assert sc_db(y, spectrum.abs(), (n_fft, win_length, hop_length)) < -90.0


def test_fast_griffin_lim_converges_from_random_phase_and_beats_plain(music):
    magnitude = stft(music, n_fft=512, win_length=400, hop_length=160).abs()
    history: dict[float, list[float]] = {0.99: [], 0.0: []}
    for momentum, scores in history.items():
        def record(iteration: int, waveform: torch.Tensor, scores=scores) -> None:
            assert iteration == len(scores) + 1
            scores.append(sc_db(waveform, magnitude))

        griffin_lim(magnitude, n_fft=512, win_length=400, hop_length=160, n_iter=40,
                    momentum=momentum, generator=torch.Generator().manual_seed(0),
                    callback=record)
    fast, plain = np.array(history[0.99]), np.array(history[0.0])
    # DESIGN.md §3: ~27 iterations to -20 dB with momentum (measured 21 here), ~114 without.
    assert fast[-1] <= -20.0
    assert int(np.argmax(fast <= -20.0)) + 1 <= 30
    assert plain[-1] > -20.0
    assert fast[31] < plain[31] - 3.0  # equal iterations (32): momentum clearly ahead


def test_griffin_lim_is_deterministic_with_a_seeded_generator(music):
    magnitude = stft(music[:8000], n_fft=512, win_length=400, hop_length=160).abs()

    def run(seed: int) -> torch.Tensor:
        return griffin_lim(magnitude, n_fft=512, win_length=400, hop_length=160, n_iter=5,
                           generator=torch.Generator().manual_seed(seed))

    first, again, other = run(3), run(3), run(4)
    assert first.numpy().tobytes() == again.numpy().tobytes()
    assert not torch.equal(first, other)


def test_griffin_lim_batched_equals_single(music):
    spectrum = stft(torch.stack([music[:8000], music[8000:16000]]), n_fft=512, win_length=400,
                    hop_length=160)
    start = torch.zeros(spectrum.shape[-2:])  # zero phase, broadcast over the batch
    batched = griffin_lim(spectrum.abs(), n_fft=512, win_length=400, hop_length=160, n_iter=4,
                          init_phase=start, length=8000)
    assert batched.shape == (2, 8000)
    for i in range(2):
        single = griffin_lim(spectrum[i].abs(), n_fft=512, win_length=400, hop_length=160,
                             n_iter=4, init_phase=start, length=8000)
        torch.testing.assert_close(batched[i], single, rtol=1e-4, atol=1e-6)


def test_griffin_lim_stays_finite_on_silence_and_subnormal_values(music):
    # torch.sgn returns inf/NaN for subnormal complex numbers; silent stretches produce them.
    tiny = torch.tensor([1e-45 + 0j, 1e-40 + 1e-40j, 0j, 3 + 4j], dtype=torch.complex64)
    phase = _phase_of(tiny)
    assert torch.isfinite(torch.view_as_real(phase)).all()
    assert phase.abs().max() <= 1.0 + 1e-6
    assert abs(complex(phase[3]) - (0.6 + 0.8j)) < 1e-6
    magnitude = stft(torch.nn.functional.pad(music[:8000], (0, 8000)), n_fft=512,
                     win_length=400, hop_length=160).abs()
    magnitude[60:70] = 1e-41  # subnormal float32
    start = torch.polar(torch.full_like(magnitude, 1e-42), torch.rand(magnitude.shape))
    for init in (None, start):
        y = griffin_lim(magnitude, n_fft=512, win_length=400, hop_length=160, n_iter=10,
                        init_phase=init, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(y).all()
    silent = griffin_lim(torch.zeros(20, 257), n_fft=512, win_length=400, hop_length=160,
                         n_iter=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(silent, torch.zeros_like(silent))


def test_griffin_lim_rejects_bad_arguments():
    magnitude = torch.ones(10, 257)
    with pytest.raises(ValueError, match="momentum"):
        griffin_lim(magnitude, n_fft=512, win_length=400, hop_length=160, momentum=1.0)
    with pytest.raises(ValueError, match="real magnitude"):
        griffin_lim(magnitude.to(torch.complex64), n_fft=512, win_length=400, hop_length=160)
    with pytest.raises(ValueError, match="init_phase"):
        griffin_lim(magnitude, n_fft=512, win_length=400, hop_length=160,
                    init_phase=torch.zeros(11, 257))
    with pytest.raises(ValueError, match="edge_floor"):
        istft(torch.zeros(10, 257, dtype=torch.complex64), n_fft=512, win_length=400,
              hop_length=160, edge_floor=1.0)


# -- mel -> linear ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def front_end() -> LogMelFrontEnd:
    return LogMelFrontEnd(YAMNET_LIKE)


def log_mel_rmse_db(front_end: LogMelFrontEnd, linear: torch.Tensor, target: torch.Tensor) -> float:
    achieved = front_end.log(front_end.mel(linear))
    return float(((achieved - target) * 20 / math.log(10)).square().mean().sqrt())


def test_mel_to_linear_reproduces_an_unchanged_mel(front_end, music):
    reference = front_end.stft(front_end.pad(music)).abs()
    log_mel = front_end.log(front_end.mel(reference))
    mel = front_end.unlog(log_mel)
    without = mel_to_linear(mel, front_end.mel_matrix)
    assert (without >= 0).all()
    assert log_mel_rmse_db(front_end, without, log_mel) < 0.01
    with_reference = mel_to_linear(mel, front_end.mel_matrix, reference=reference)
    # Unchanged bands give the reference back (to float rounding of exp/log).
    torch.testing.assert_close(with_reference, reference, rtol=1e-3, atol=1e-6)


def test_mel_to_linear_follows_an_edit_and_keeps_the_reference_outside_the_mel_range(front_end,
                                                                                     music):
    reference = front_end.stft(front_end.pad(music)).abs()
    mel = front_end.mel(reference)
    # Edits of the mel magnitude (any log-mel below log(log_offset) would be unreachable).
    mel[:, 20:40] *= 2.0  # +6 dB on 20 bands
    mel[100:150] *= 10 ** (-10 / 20)  # -10 dB on 50 frames
    edited = front_end.log(mel)
    linear = mel_to_linear(front_end.unlog(edited), front_end.mel_matrix, reference=reference)
    assert (linear >= 0).all()
    assert log_mel_rmse_db(front_end, linear, edited) < 0.2
    outside = front_end.mel_matrix.sum(dim=1) == 0  # DC, < 125 Hz, > 7500 Hz
    assert outside.sum() > 10
    assert torch.equal(linear[:, outside], reference[:, outside])
    # The +6 dB went into the reference's own bins (fine structure kept): their ratio is ~2.
    band_bins = front_end.mel_matrix[:, 25] > 0
    ratio = linear[:300, band_bins].sum() / reference[:300, band_bins].sum()
    assert 1.7 < float(ratio) < 2.3


def test_mel_to_linear_creates_energy_where_the_reference_is_silent(front_end, music):
    reference = front_end.stft(front_end.pad(music)).abs()
    reference[50:60] = 0.0  # a silent stretch in the original
    log_mel = front_end.log(front_end.mel(reference))
    wanted = log_mel.clone()
    wanted[50:60, 10:30] = math.log(0.05)  # the dream painted energy into the silence
    linear = mel_to_linear(front_end.unlog(wanted), front_end.mel_matrix, reference=reference)
    assert torch.isfinite(linear).all() and (linear >= 0).all()
    assert log_mel_rmse_db(front_end, linear[50:60], wanted[50:60]) < 0.5


def test_mel_to_linear_is_batched(front_end, music):
    reference = front_end.stft(front_end.pad(torch.stack([music, music.flip(0)]))).abs()
    mel = front_end.mel(reference) * 1.5
    batched = mel_to_linear(mel, front_end.mel_matrix, reference=reference, n_iter=20)
    single = mel_to_linear(mel[1], front_end.mel_matrix, reference=reference[1], n_iter=20)
    torch.testing.assert_close(batched[1], single, rtol=1e-5, atol=1e-7)


# -- LogMelFrontEnd.invert -------------------------------------------------------------------

def test_invert_with_the_reference_gives_the_original_back(front_end, music):
    log_mel = front_end(music)
    y = front_end.invert(log_mel, reference_waveform=music, n_iter=8)
    assert y.shape == (YAMNET_LIKE.padded_length(music.shape[-1]),)
    n = music.shape[-1]
    assert float((y[:n] - music)[100:-100].norm() / music.norm()) < 1e-5
    # The first samples carry float32 rounding amplified by 1 / window (see istft).
    assert float((y[:n] - music).norm() / music.norm()) < 5e-4
    assert y[n:].abs().max() < 1e-5  # the front-end's zero padding stays silent


def test_invert_without_reference_is_deterministic_and_close(front_end, music):
    log_mel = front_end(music)
    first = front_end.invert(log_mel, n_iter=32, generator=torch.Generator().manual_seed(1))
    again = front_end.invert(log_mel, n_iter=32, generator=torch.Generator().manual_seed(1))
    assert first.numpy().tobytes() == again.numpy().tobytes()
    assert first.shape[-1] == YAMNET_LIKE.padded_length(music.shape[-1])
    # Random phase and a magnitude rebuilt from 64 bands: close on the model's scale, not exact
    # (measured 4.1 dB RMS here, 7.7 dB before any iteration; ~1.7 dB on the piano + violin clip).
    error = log_mel_rmse_db(front_end, front_end.stft(first).abs(), log_mel)
    no_iterations = front_end.invert(log_mel, n_iter=0, generator=torch.Generator().manual_seed(1))
    assert error < 5.0
    assert error < log_mel_rmse_db(front_end, front_end.stft(no_iterations).abs(), log_mel) - 2.0


def dream_like_edit(front_end: LogMelFrontEnd, music: torch.Tensor) -> torch.Tensor:
    """The music's log-mel with smooth random +-3 dB plus +8 dB on 8 bands of 100 frames."""
    log_mel = front_end(music)
    generator = torch.Generator().manual_seed(3)
    wobble = torch.randn(log_mel.shape[0] // 20 + 2, 8, generator=generator)
    smooth = torch.nn.functional.interpolate(wobble[None, None], size=log_mel.shape,
                                             mode="bilinear", align_corners=False)[0, 0]
    edited = log_mel + smooth * (3 / 8.686)
    edited[100:200, 30:38] += 8 / 8.686
    return edited


def test_fit_waveform_brings_the_rendering_closer_to_the_dream(front_end, music):
    edited = dream_like_edit(front_end, music)
    reachable = edited.clamp(min=math.log(YAMNET_LIKE.log_offset))  # no sound goes lower
    n = music.shape[-1]
    plain = front_end.invert(edited, reference_waveform=music, n_iter=32, length=n)
    fitted = front_end.invert(edited, reference_waveform=music, n_iter=32, length=n,
                              fit_iter=50)
    assert fitted.shape == plain.shape and torch.isfinite(fitted).all()
    assert not fitted.requires_grad

    def error_db(waveform: torch.Tensor) -> float:
        return float(((front_end(waveform) - reachable) * 20 / math.log(10)).square().mean().sqrt())

    # Measured 1.21 -> 0.85 dB here.
    assert error_db(fitted) < 0.8 * error_db(plain)


def test_fit_waveform_leaves_an_exact_rendering_and_silence_alone(front_end, music):
    log_mel = front_end(music)
    fitted = front_end.fit_waveform(music, log_mel, n_iter=20)
    assert float((fitted - music).norm() / music.norm()) < 0.01
    silence = torch.zeros_like(music)
    assert torch.equal(front_end.fit_waveform(silence, log_mel, n_iter=5), silence)


def test_invert_rejects_a_reference_of_another_length(front_end, music):
    with pytest.raises(ValueError, match="frames"):
        front_end.invert(front_end(music), reference_waveform=music[:20000], n_iter=1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_inversion_runs_on_cuda(front_end, music):
    device_front_end = LogMelFrontEnd(YAMNET_LIKE).to("cuda")
    log_mel = device_front_end(music.cuda())
    y = device_front_end.invert(log_mel, n_iter=4, generator=torch.Generator("cuda").manual_seed(0))
    assert y.device.type == "cuda" and torch.isfinite(y).all()
