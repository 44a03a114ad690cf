"""The mechanics of long sounds (dreamsound.segments, inputs.FileBlocks): reading in blocks,
segment plans, the cross-fade, block-wise writing, whole-file analysis in blocks, the seam check
of scripts/bench/bench_long.py."""

from __future__ import annotations

import itertools
import logging
import shutil

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from dreamsound import inputs
from dreamsound.audio import load_audio
from dreamsound.classification import classify_waveform
from dreamsound.errors import AudioError, ConfigError, OutputError
from dreamsound.inputs import FileBlocks, resampled_length
from dreamsound.segments import (
    Crossfade,
    SegmentPlan,
    classify_file,
    is_long,
    measure_rendered,
    open_writer,
    segment_seed,
)
from scripts.bench.bench_long import seam_check, spectral_flux
from tests.signals import stops_short_by


def texture(seconds: float, rate: int, channels: int = 2, seed: int = 0,
            noise_rms: float = 0.002) -> np.ndarray:
    """A slowly changing stereo test sound: two tones with a tremolo over a faint noise (faint,
    so the spectral flux between frames is small and a seam would stand out)."""
    t = np.arange(round(seconds * rate)) / rate
    tone = 0.2 * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.4 * t)) \
        + 0.1 * np.sin(2 * np.pi * 1250 * t)
    noise = noise_rms * np.random.default_rng(seed).standard_normal((t.size, channels))
    return (tone[:, None] + noise).astype(np.float32)


@pytest.fixture
def stereo_file(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, texture(6.3, 44100), 44100, subtype="FLOAT")
    return path


# -- FileBlocks -----------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 1001, 44101, 123457])
@pytest.mark.parametrize("rates", [(44100, 16000), (44100, 22050), (8000, 22050)])
def test_resampled_length_is_soxrs(n, rates):
    assert resampled_length(n, *rates) == len(soxr.resample(np.zeros(n, np.float32), *rates,
                                                            quality="VHQ"))


def test_file_blocks_give_the_whole_file_in_any_windows(stereo_file):
    whole = load_audio(stereo_file, sample_rate=16000)
    with FileBlocks(stereo_file, 16000, read_frames=5000) as blocks:
        assert blocks.n_samples == whole.shape[0]
        spans = [(s, s + 7000) for s in range(0, blocks.n_samples + 3000, 4000)]
        pieces = [blocks.window(a, b) for a, b in spans]
        with pytest.raises(ValueError, match="let go"):
            blocks.window(0, 10)
    assert all(p.shape[0] == 7000 and p.dtype == np.float32 for p in pieces)
    rebuilt = np.concatenate([p[:4000] for p in pieces])
    np.testing.assert_array_equal(rebuilt[:whole.shape[0]], whole)  # bit-exact
    assert not rebuilt[whole.shape[0]:].any()  # zeros past the end


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_file_blocks_read_the_end_libsndfile_stops_short_of_as_silence(tmp_path, monkeypatch,
                                                                       caplog):
    path = tmp_path / "long.flac"
    sf.write(path, texture(4.0, 16000), 16000, subtype="PCM_16")
    whole = load_audio(path, sample_rate=16000)
    monkeypatch.setattr(sf, "SoundFile", stops_short_by(1600, path))
    with caplog.at_level(logging.WARNING, logger="dreamsound.inputs"), \
            FileBlocks(path, 16000, read_frames=5000) as blocks:
        read = blocks.window(0, blocks.n_samples)
    assert read.shape == whole.shape  # the whole length, the missing 0.1 s as silence
    np.testing.assert_array_equal(read[:-1600], whole[:-1600])
    assert not read[-1600:].any()
    assert "decoded 62400 of 64000 frames (ffmpeg reads them all)" in caplog.text
    # When ffmpeg stops short too, the file is damaged.
    monkeypatch.setattr(inputs, "ffmpeg_reads_whole", lambda path, declared: False)
    with pytest.raises(AudioError, match="truncated or corrupt: decoded 62400 of 64000"), \
            FileBlocks(path, 16000, read_frames=5000) as blocks:
        blocks.window(0, blocks.n_samples)


def test_file_blocks_refuse_bad_files(tmp_path, stereo_file):
    cut = tmp_path / "cut.wav"
    cut.write_bytes(stereo_file.read_bytes()[:50000])
    with pytest.raises(AudioError, match="truncated"):
        FileBlocks(cut, 16000)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a sound file at all" * 100)
    with pytest.raises(AudioError, match="libsndfile"):
        FileBlocks(junk, 16000)
    with pytest.raises(AudioError, match="limit"):
        FileBlocks(stereo_file, 16000, max_seconds=2.0)
    nan = texture(3.0, 16000, channels=1)
    nan[30000] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    with FileBlocks(tmp_path / "nan.wav", 16000) as blocks, \
            pytest.raises(AudioError, match=r"non-finite.*30000"):
        blocks.window(0, 48000)


# -- plan, seeds, cross-fade, writer ------------------------------------------------------------
def test_plan_hops_whole_patches_and_covers_the_file(debug_model):
    patch_hop = debug_model.front_end.config.patch_hop_samples
    plan = SegmentPlan.for_model(144000, debug_model, segment_s=3.0, overlap_s=0.5)
    assert plan.hop % patch_hop == 0 and plan.overlap == 8000 and plan.length <= 48000
    spans = [plan.bounds(i) for i in range(plan.count)]
    assert spans[0][0] == 0 and spans[-1][1] == 144000
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end - start == plan.overlap
    assert spans[-1][1] - spans[-1][0] > plan.overlap
    assert SegmentPlan.for_model(plan.length, debug_model, segment_s=3.0).count == 1
    with pytest.raises(ConfigError, match="overlap"):
        SegmentPlan.for_model(144000, debug_model, segment_s=1.0, overlap_s=0.8)


def test_segment_seeds_are_fixed_and_distinct():
    seeds = [segment_seed(7, i) for i in range(50)]
    assert seeds == [segment_seed(7, i) for i in range(50)]
    assert len(set(seeds)) == 50 and all(0 <= s < 2**31 for s in seeds)
    assert segment_seed(8, 0) != seeds[0]


def test_crossfade_gains_sum_to_one_and_write_per_segment():
    plan = SegmentPlan(n_samples=1000, length=300, hop=200)
    written: list[np.ndarray] = []
    fade = Crossfade(written.append, plan.overlap)
    signal = np.sin(np.arange(1000) / 7.0).astype(np.float32)
    for i in range(plan.count):
        start, end = plan.bounds(i)
        fade.add(signal[start:end], last=i == plan.count - 1)
    assert len(written) == plan.count and max(w.shape[0] for w in written) <= plan.length
    # The same sound in both segments passes every join unchanged.
    np.testing.assert_allclose(np.concatenate(written), signal, atol=1e-6)
    ramp = fade.fade_in
    assert np.all(np.diff(ramp) > 0) and ramp[0] < 0.01 and ramp[-1] > 0.99


def test_writer_is_atomic_and_never_over_an_input(tmp_path, stereo_file):
    target = tmp_path / "out.wav"
    with pytest.raises(RuntimeError, match="boom"), open_writer(target, 16000) as write:
        write(np.zeros(100, np.float32))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == [stereo_file]  # no output, no temporary file
    before = stereo_file.read_bytes()
    with pytest.raises(OutputError, match="input"), \
            open_writer(stereo_file, 16000, inputs=[stereo_file]):
        pass
    assert stereo_file.read_bytes() == before
    with open_writer(target, 16000) as write:
        write(np.full(10, 2.0, np.float32))  # clipped to full scale, as save_audio does
        write(np.full(5, -0.5, np.float32))
    data, rate = sf.read(target)
    assert rate == 16000 and data.shape == (15,) and data.max() == pytest.approx(1.0, abs=1e-4)


# -- whole-file analysis ---------------------------------------------------------------------------
def test_classify_file_matches_the_one_shot_scores(debug_model, stereo_file):
    whole = load_audio(stereo_file, sample_rate=16000)
    one_shot = classify_waveform(debug_model, whole)
    for block_patches in (3, 64):  # several blocks, and one
        streamed = classify_file(debug_model, stereo_file, block_patches=block_patches)
        assert streamed.frame_scores.shape == one_shot.frame_scores.shape
        np.testing.assert_allclose(streamed.scores, one_shot.scores, atol=1e-6, rtol=0)
        np.testing.assert_allclose(streamed.frame_scores, one_shot.frame_scores, atol=1e-6,
                                   rtol=0)
        np.testing.assert_array_equal(streamed.frame_starts_s, one_shot.frame_starts_s)


def test_measure_rendered_is_the_whole_file_distance(debug_model, tmp_path, stereo_file):
    from dreamsound import metrics

    whole = load_audio(stereo_file, sample_rate=16000)
    changed = (0.5 * whole + 0.01 * np.sin(np.arange(whole.size) / 3.0)).astype(np.float32)
    sf.write(tmp_path / "changed.wav", changed, 16000, subtype="FLOAT")
    with FileBlocks(stereo_file, 16000) as a, FileBlocks(tmp_path / "changed.wav", 16000) as b:
        clip, mse = measure_rendered(debug_model, a, b, block_patches=4)
    with torch.no_grad():
        before = debug_model.log_mel(torch.from_numpy(whole))
        after = debug_model.log_mel(torch.from_numpy(changed))
    assert mse == pytest.approx(metrics.mse_db2(before, after,
                                                front_end=debug_model.front_end), rel=1e-6)
    np.testing.assert_allclose(clip, classify_waveform(debug_model, changed).scores, atol=1e-6)


def test_is_long(tmp_path, stereo_file, debug_model):
    assert is_long(stereo_file, debug_model, segment_s=6.0)
    assert not is_long(stereo_file, debug_model, segment_s=6.3)
    assert not is_long("noise:30s", debug_model)
    assert not is_long(np.zeros(10**6, np.float32), debug_model)
    assert not is_long(tmp_path / "missing.wav", debug_model)


# -- the seam check the benchmark and the streaming tests use ---------------------------------
def test_seam_check_finds_a_seam_and_passes_without_one():
    rng = np.random.default_rng(1)
    frames = 40 + 2.0 * rng.standard_normal((3000, 16))  # a stationary texture in dB
    joins = [(first, first + 20) for first in range(200, 2900, 300)]
    assert spectral_flux(frames).shape == (3000,)
    assert seam_check(frames, joins)["ok"]
    seamed = frames.copy()
    for first, last in joins:  # a 6 dB level step in the middle of each join
        seamed[(first + last) // 2:] += 6.0 * (1 if (first // 300) % 2 else -1)
    found = seam_check(seamed, joins)
    assert not found["ok"] and found["joins_above"] == len(joins)
