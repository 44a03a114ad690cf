"""Audio I/O: decoding, validation of bad input, mix-down, resampling, atomic saving."""

from __future__ import annotations

import logging
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dreamsound import audio
from dreamsound.audio import (
    SILENCE_PEAK,
    load_audio,
    mix_down,
    peak_normalize,
    read_audio,
    resample,
    save_audio,
    validate_waveform,
)
from dreamsound.errors import AudioError, OutputError
from dreamsound.io_utils import atomic_write
from tests.signals import stops_short_by


def sine(freq_hz: float, rate: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    """Frequency of the largest spectral peak (Hann window, zero-padded FFT)."""
    n = 1 << int(np.ceil(np.log2(len(x) * 4)))
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n))
    return float(np.argmax(spectrum) * rate / n)


def band_db(x: np.ndarray, rate: int, lo: float, hi: float) -> float:
    """Energy in [lo, hi] Hz relative to the whole signal, in dB."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    band = spectrum[(freqs >= lo) & (freqs <= hi)].sum()
    return float(10 * np.log10(band / spectrum.sum() + 1e-30))


def assert_one_line_naming(exc: pytest.ExceptionInfo, path: Path) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert str(path) in message
    return message


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "tone.wav"
    sf.write(path, sine(440, 16000), 16000, subtype="PCM_16")
    return path


# -- reading good files -----------------------------------------------------------------------


def test_round_trip_pcm16_and_float(tmp_path: Path, rng: np.random.Generator) -> None:
    x = (rng.uniform(-0.9, 0.9, 8000)).astype(np.float32)
    pcm = save_audio(tmp_path / "pcm.wav", x, 8000)
    flt = save_audio(tmp_path / "flt.wav", x, 8000, subtype="FLOAT")
    assert sf.info(pcm).subtype == "PCM_16" and sf.info(flt).subtype == "FLOAT"
    back_pcm = load_audio(pcm)
    back_flt = load_audio(flt)
    assert back_pcm.dtype == np.float32 and back_pcm.shape == x.shape
    assert np.max(np.abs(back_pcm - x)) <= 1.0 / 32768 + 1e-7  # one 16-bit step
    np.testing.assert_array_equal(back_flt, x)
    data, rate = read_audio(flt)
    assert rate == 8000 and data.shape == (8000, 1)


@pytest.mark.parametrize("suffix", [".flac", ".ogg", ".mp3", ".aiff"])
def test_other_libsndfile_formats(tmp_path: Path, suffix: str) -> None:
    x = sine(1000, 16000)
    path = save_audio(tmp_path / f"tone{suffix}", x, 16000)
    y = load_audio(path)
    # Lossy codecs add delay and padding; the tone must survive wherever it is.
    assert abs(len(y) - len(x)) < 3000
    assert abs(peak_hz(y, 16000) - 1000) < 5


def test_stereo_mix_down_is_channel_mean(tmp_path: Path) -> None:
    left, right = sine(440, 16000, amp=0.6), sine(660, 16000, amp=0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), (left + right) / 2, atol=1e-7)
    # Opposite-phase channels cancel, as on a mono speaker.
    sf.write(path, np.stack([left, -left], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path, allow_silence=True), 0.0, atol=1e-7)


def test_eight_channels(tmp_path: Path) -> None:
    channels = np.stack([sine(200 * (k + 1), 16000, amp=0.1) for k in range(8)], axis=1)
    path = tmp_path / "eight.wav"
    sf.write(path, channels, 16000, subtype="PCM_24")
    data, rate = read_audio(path)
    assert data.shape == (16000, 8) and rate == 16000
    np.testing.assert_allclose(load_audio(path), channels.mean(axis=1), atol=1e-6)


def test_8khz_upsampled_keeps_pitch_and_warns(tmp_path: Path, caplog) -> None:
    path = tmp_path / "low.wav"
    sf.write(path, sine(1000, 8000, seconds=2.0), 8000, subtype="PCM_16")
    with caplog.at_level(logging.WARNING, logger="dreamsound.audio"):
        y = load_audio(path, sample_rate=16000)
    assert len(y) == 32000
    assert abs(peak_hz(y, 16000) - 1000) < 2
    assert any("upsampling 8000 Hz -> 16000 Hz" in r.getMessage() for r in caplog.records)
    # Nothing appears above the source's Nyquist frequency (4 kHz).
    assert band_db(y, 16000, 4200, 8000) < -90


def test_96khz_downsampled_keeps_pitch_without_aliasing(tmp_path: Path, caplog) -> None:
    # 5 kHz stays; 20 kHz is above the new Nyquist (8 kHz) and must be filtered out, not folded
    # to |20 - 16| = 4 kHz as naive decimation would.
    x = sine(5000, 96000, seconds=1.0, amp=0.4) + sine(20000, 96000, seconds=1.0, amp=0.4)
    path = tmp_path / "high.wav"
    sf.write(path, x, 96000, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="dreamsound.audio"):
        y = load_audio(path, sample_rate=16000)
    assert not caplog.records  # downsampling loses nothing the model could use: no warning
    assert len(y) == 16000
    assert abs(peak_hz(y, 16000) - 5000) < 2
    assert band_db(y, 16000, 3900, 4100) < -100
    # The 5 kHz tone keeps its level (half the energy of the original, which had two tones).
    np.testing.assert_allclose(np.sqrt(np.mean(y[1000:-1000] ** 2)), 0.4 / np.sqrt(2), rtol=1e-3)


def test_resample_identity_and_lengths() -> None:
    x = sine(300, 44100)
    assert resample(x, 44100, 44100) is not None
    np.testing.assert_array_equal(resample(x, 44100, 44100), x)
    assert len(resample(x, 44100, 16000)) == 16000
    assert len(resample(x, 44100, 22050)) == 22050
    stereo = np.stack([x, x], axis=1)
    assert resample(stereo, 44100, 16000).shape == (16000, 2)


def test_mix_down_shapes() -> None:
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(mix_down(x), [0.5, 2.5, 4.5])
    np.testing.assert_array_equal(mix_down(x[:, 0]), x[:, 0])
    with pytest.raises(AudioError):
        mix_down(np.zeros((2, 2, 2)))


def test_streaming_wav_with_unknown_data_size_is_accepted(tmp_path: Path) -> None:
    """Writers that cannot seek leave 0xFFFFFFFF as the data size: not a truncation."""
    path = tmp_path / "stream.wav"
    sf.write(path, sine(440, 8000), 8000, subtype="PCM_16")
    raw = bytearray(path.read_bytes())
    at = raw.find(b"data")
    raw[at + 4:at + 8] = struct.pack("<I", 0xFFFFFFFF)
    path.write_bytes(bytes(raw))
    assert len(load_audio(path)) == 8000


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_ffmpeg_fallback_for_formats_libsndfile_cannot_read(tmp_path: Path, caplog) -> None:
    path = tmp_path / "tone.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                    "sine=frequency=1000:sample_rate=44100:duration=1", "-c:a", "aac", str(path)],
                   check=True)
    with caplog.at_level(logging.INFO, logger="dreamsound.audio"):
        y = load_audio(path, sample_rate=16000)
    assert "with ffmpeg" in caplog.text
    assert abs(len(y) - 16000) < 1000  # AAC adds priming/padding samples
    assert abs(peak_hz(y, 16000) - 1000) < 5


# -- bad input: each a one-line AudioError naming the file ------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError) as exc:
        load_audio(path)
    assert "not found" in assert_one_line_naming(exc, path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioError) as exc:
        load_audio(tmp_path)
    assert "folder" in assert_one_line_naming(exc, tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.touch()
    with pytest.raises(AudioError) as exc:
        load_audio(path)
    assert "empty" in assert_one_line_naming(exc, path)


def test_text_renamed_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("these are my shopping notes, not a sound\n" * 20)
    with pytest.raises(AudioError) as exc:
        load_audio(path)
    message = assert_one_line_naming(exc, path)
    assert "holds text, not sound (it begins 'these are my shopping notes, not a sound')" \
        in message


@pytest.mark.parametrize("content, needle", [
    ("version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab" * 32 + "\nsize 12345\n",
     "a Git LFS pointer, not the sound itself (fetch it with `git lfs pull`)"),
    ("\ufeff<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n",
     "a web page (HTML), not sound: perhaps a failed download"),
    ("  \n\n\t\n", "only blank text"),
    ("\u266b" * 2000, "holds text, not sound (it begins '\u266b\u266b\u266b"),
])
def test_text_files_are_named_for_what_they_hold(tmp_path: Path, content: str,
                                                 needle: str) -> None:
    # The last case (3 bytes a character) is longer than the sniffed 4096 bytes, which end
    # inside a character.
    path = tmp_path / "take.mp3"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AudioError) as exc:
        load_audio(path)
    assert needle in assert_one_line_naming(exc, path)


@pytest.mark.parametrize("subtype, suffix", [("PCM_16", "wav"), ("FLOAT", "wav"),
                                             ("PCM_24", "flac"), ("VORBIS", "ogg"),
                                             ("PCM_16", "aiff")])
def test_no_sound_file_is_taken_for_text(tmp_path: Path, subtype: str, suffix: str) -> None:
    from dreamsound.file_checks import text_instead_of_sound

    path = tmp_path / f"tone.{suffix}"
    sf.write(path, sine(440, 16000), 16000, subtype=subtype)
    assert text_instead_of_sound(path) is None
    assert load_audio(path).shape == (16000,)


def test_unreadable_format_without_ffmpeg_suggests_installing(tmp_path: Path,
                                                             monkeypatch) -> None:
    path = tmp_path / "notes.wav"
    path.write_bytes(bytes(range(256)) * 8)  # binary, not text: it reaches the decoders
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    with pytest.raises(AudioError) as exc:
        load_audio(path)
    assert "install ffmpeg" in assert_one_line_naming(exc, path)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_a_whole_file_libsndfile_stops_short_of_is_decoded_by_ffmpeg(tmp_path: Path,
                                                                     monkeypatch,
                                                                     caplog) -> None:
    # FLAC: every decoder counts its frames exactly, so ffmpeg's count is the file's.
    path = tmp_path / "track.flac"
    sf.write(path, sine(440, 16000, seconds=2.0), 16000, subtype="PCM_16")
    monkeypatch.setattr(sf, "SoundFile", stops_short_by(3000, path))
    with caplog.at_level(logging.INFO, logger="dreamsound.audio"):
        data, rate = audio.read_audio(path)
    assert rate == 16000 and data.shape == (32000, 1)
    np.testing.assert_allclose(data[:, 0], sine(440, 16000, seconds=2.0), atol=1e-4)
    assert "decoded whole with ffmpeg" in caplog.text
    # A second opinion that also stops short confirms the damage.
    decode = audio._read_ffmpeg
    monkeypatch.setattr(audio, "_read_ffmpeg",
                        lambda *args: (decode(*args)[0][:31000], 16000))
    with pytest.raises(AudioError) as exc:
        audio.read_audio(path)
    assert "truncated or corrupt: decoded 29000 of 32000 frames" in \
        assert_one_line_naming(exc, path)
    # Without ffmpeg there is no second opinion: the shortfall reads as damage.
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match="decoded 29000 of 32000 frames"):
        audio.read_audio(path)


@pytest.mark.parametrize("cut", [1, 1000, 20000])
def test_truncated_wav(wav: Path, cut: int) -> None:
    raw = wav.read_bytes()
    wav.write_bytes(raw[:-cut])
    # libsndfile alone would quietly return the shorter sound:
    assert sf.info(wav).frames < 16000
    with pytest.raises(AudioError) as exc:
        load_audio(wav)
    message = assert_one_line_naming(exc, wav)
    assert "truncated" in message and f"{len(raw) - 44 - cut}" in message


def test_truncated_wav_inside_header(wav: Path) -> None:
    wav.write_bytes(wav.read_bytes()[:30])
    with pytest.raises(AudioError) as exc:
        load_audio(wav)
    assert_one_line_naming(exc, wav)


def test_truncated_aiff_and_flac(tmp_path: Path) -> None:
    for suffix in (".aiff", ".flac"):
        path = tmp_path / f"tone{suffix}"
        sf.write(path, sine(440, 16000, seconds=2.0), 16000, subtype="PCM_16")
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
        with pytest.raises(AudioError) as exc:
            load_audio(path)
        assert "truncated" in assert_one_line_naming(exc, path)


def test_zero_samples(tmp_path: Path) -> None:
    path = tmp_path / "nothing.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    assert path.stat().st_size > 0  # a valid header, no frames
    with pytest.raises(AudioError) as exc:
        load_audio(path)
    assert "no audio samples" in assert_one_line_naming(exc, path)


def test_all_zero_audio_is_refused_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "zeros.wav"
    sf.write(path, np.zeros(16000, dtype=np.float32), 16000, subtype="PCM_16")
    with pytest.raises(AudioError) as exc:
        load_audio(path)
    assert "silent" in assert_one_line_naming(exc, path)
    assert np.all(load_audio(path, allow_silence=True) == 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path: Path, bad: float) -> None:
    x = sine(440, 16000)
    x[1234] = bad
    path = tmp_path / "bad.wav"
    sf.write(path, x, 16000, subtype="FLOAT")  # float WAV can hold NaN/Inf; PCM cannot
    with pytest.raises(AudioError) as exc:
        load_audio(path)
    message = assert_one_line_naming(exc, path)
    assert "non-finite" in message and "sample 1234" in message


def test_too_long(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, sine(440, 8000, seconds=3.0), 8000, subtype="PCM_16")
    with pytest.raises(AudioError) as exc:
        load_audio(path, max_seconds=2.0)
    message = assert_one_line_naming(exc, path)
    assert "3.0 s" in message and "2 s limit" in message and "--max-seconds" in message
    assert len(load_audio(path, max_seconds=None)) == 24000
    assert len(load_audio(path, max_seconds=3.0)) == 24000


def test_default_limit_is_ten_minutes() -> None:
    assert audio.DEFAULT_MAX_SECONDS == 600.0


def test_invalid_target_rate(wav: Path) -> None:
    with pytest.raises(AudioError):
        load_audio(wav, sample_rate=0)


# -- in-memory validation and level -----------------------------------------------------------


def test_validate_waveform() -> None:
    x = sine(440, 1000).astype(np.float64)
    out = validate_waveform(x, what="dreamed audio")
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    assert validate_waveform(np.stack([x, x], 1), what="st").shape == (1000, 2)
    for bad, word in [(np.zeros((2, 2, 2)), "shape"), (np.zeros(0), "no audio"),
                      (np.array([0.1, np.nan]), "NaN"), (np.array([0.1, np.inf]), "Inf"),
                      (np.zeros(100), "silent"), (np.full(10, SILENCE_PEAK / 2), "silent"),
                      (np.array(["a", "b"]), "numbers")]:
        with pytest.raises(AudioError, match=word) as exc:
            validate_waveform(bad, what="dreamed audio")
        assert str(exc.value).startswith("dreamed audio: ")
    assert validate_waveform(np.zeros(100), what="z", allow_silence=True).shape == (100,)


def test_validate_waveform_scales_integer_pcm() -> None:
    np.testing.assert_allclose(validate_waveform(np.array([-32768, 0, 16384], dtype=np.int16),
                                                 what="i16"), [-1.0, 0.0, 0.5])
    np.testing.assert_allclose(validate_waveform(np.array([0, 128, 192], dtype=np.uint8),
                                                 what="u8"), [-1.0, 0.0, 0.5])


def test_validate_waveform_accepts_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    x = torch.linspace(-0.5, 0.5, 100, requires_grad=True)
    out = validate_waveform(x * 1.0, what="t")
    np.testing.assert_allclose(out, x.detach().numpy())


def test_peak_normalize() -> None:
    x = sine(440, 8000, amp=0.25)
    y = peak_normalize(x)
    np.testing.assert_allclose(np.max(np.abs(y)), 10 ** (-1 / 20), rtol=1e-6)
    np.testing.assert_allclose(y / np.max(np.abs(y)), x / np.max(np.abs(x)), atol=1e-6)
    assert np.max(np.abs(x)) == pytest.approx(0.25, rel=1e-3)  # input untouched
    np.testing.assert_allclose(np.max(np.abs(peak_normalize(4 * x, peak_dbfs=-6.0))),
                               10 ** (-6 / 20), rtol=1e-6)
    # boost=False only limits: quiet input unchanged, loud input brought down.
    np.testing.assert_array_equal(peak_normalize(x, boost=False), x)
    np.testing.assert_allclose(np.max(np.abs(peak_normalize(8 * x, boost=False))),
                               10 ** (-1 / 20), rtol=1e-6)
    np.testing.assert_array_equal(peak_normalize(np.zeros(10)), np.zeros(10))
    with pytest.raises(ValueError):
        peak_normalize(x, peak_dbfs=3.0)
    with pytest.raises(AudioError):
        peak_normalize(np.array([0.5, np.nan]))


# -- saving -----------------------------------------------------------------------------------


def test_save_refuses_to_overwrite_the_input(wav: Path) -> None:
    before = wav.read_bytes()
    spellings = [wav, wav.parent / "sub" / ".." / wav.name, str(wav)]
    os.mkdir(wav.parent / "sub")
    for spelling in spellings:
        with pytest.raises(OutputError, match="refusing to write"):
            save_audio(spelling, sine(100, 16000), 16000, inputs=[wav])
    link = wav.parent / "hardlink.wav"
    os.link(wav, link)
    with pytest.raises(OutputError, match="input file"):
        save_audio(link, sine(100, 16000), 16000, inputs=[wav])
    assert wav.read_bytes() == before


def test_save_creates_folders_and_replaces_existing(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.wav"
    save_audio(target, sine(100, 8000), 8000)
    save_audio(target, sine(200, 8000, seconds=2.0), 8000)
    assert sf.info(target).frames == 16000
    assert [p.name for p in target.parent.iterdir()] == ["out.wav"]
    mode = target.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # the temp file did not impose 0o600


def test_failed_write_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out.wav"
    save_audio(target, sine(100, 8000), 8000)
    before = target.read_bytes()

    def broken_write(file, data, samplerate, **kwargs):
        Path(file).write_bytes(b"RIFF half a file")  # the writer got half way ...
        raise RuntimeError("disk on fire")  # ... and died

    monkeypatch.setattr(audio.sf, "write", broken_write)
    with pytest.raises(OutputError, match="disk on fire"):
        save_audio(target, sine(300, 8000), 8000)
    assert target.read_bytes() == before  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]  # no temp file left


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    def interrupted(file, data, samplerate, **kwargs):
        Path(file).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(audio.sf, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_audio(tmp_path / "new.wav", sine(300, 8000), 8000)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root can write into read-only folders")
def test_unwritable_folder(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable") as exc:
            save_audio(folder / "out.wav", sine(100, 8000), 8000)
        assert "\n" not in str(exc.value)
    finally:
        folder.chmod(0o700)


def test_unwritable_folder_through_os_error(tmp_path: Path, monkeypatch) -> None:
    """Same path as above, reached even as root, by making the OS refuse the temp file."""
    import dreamsound.io_utils as io_utils

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(io_utils.os, "open", refuse)
    with pytest.raises(OutputError, match="not writable"):
        save_audio(tmp_path / "out.wav", sine(100, 8000), 8000)


def test_parent_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder") as exc:
        save_audio(blocker / "out.wav", sine(100, 8000), 8000)
    assert str(blocker / "out.wav") in str(exc.value)


def test_output_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "x.wav").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        save_audio(tmp_path / "x.wav", sine(100, 8000), 8000)


def test_save_refuses_bad_data_and_names(tmp_path: Path) -> None:
    x = sine(100, 8000)
    x[5] = np.nan
    with pytest.raises(OutputError, match="NaN"):
        save_audio(tmp_path / "nan.wav", x, 8000)
    with pytest.raises(OutputError, match="unsupported extension"):
        save_audio(tmp_path / "out.xyz", sine(100, 8000), 8000)
    with pytest.raises(OutputError, match="cannot hold"):
        save_audio(tmp_path / "out.flac", sine(100, 8000), 8000, subtype="FLOAT")
    with pytest.raises(OutputError, match="non-empty"):
        save_audio(tmp_path / "empty.wav", np.zeros(0), 8000)
    assert list(tmp_path.iterdir()) == []


def test_save_clips_pcm_with_a_warning(tmp_path: Path, caplog) -> None:
    x = np.array([0.5, 1.5, -2.0, 0.0], dtype=np.float32)
    with caplog.at_level(logging.WARNING, logger="dreamsound.audio"):
        path = save_audio(tmp_path / "loud.wav", x, 8000)
    assert "clipping 2 samples" in caplog.text
    np.testing.assert_allclose(sf.read(path)[0], [0.5, 32767 / 32768, -1.0, 0.0], atol=1e-4)
    # FLOAT keeps values beyond full scale as they are.
    path = save_audio(tmp_path / "loud_float.wav", x, 8000, subtype="FLOAT")
    np.testing.assert_array_equal(sf.read(path, dtype="float32")[0], x)


def test_atomic_write_generic(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    with atomic_write(target) as temp:
        assert temp.parent == tmp_path and temp.suffix == ".json" and temp != target
        temp.write_text('{"ok": true}')
        assert not target.exists()  # nothing visible until the block completes
    assert target.read_text() == '{"ok": true}'
    with pytest.raises(ValueError), atomic_write(target) as temp:
        temp.write_text("half")
        raise ValueError("boom")
    assert target.read_text() == '{"ok": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
    with pytest.raises(OutputError), atomic_write(target, inputs=[target]):
        pass


def test_limit_peaks_only_touches_the_peaks():
    from dreamsound.audio import limit_peaks


    t = np.arange(16000) / 16000
    quiet = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    loud = quiet.copy()
    loud[8000:8040] = 1.5  # one overshoot
    limited = limit_peaks(loud, 16000)
    assert np.abs(limited).max() <= 10 ** (-1 / 20) + 1e-7
    # Away from the peak (beyond the 10 ms window) the level is untouched.
    assert np.array_equal(limited[:7500], loud[:7500]) and np.array_equal(limited[8600:],
                                                                          loud[8600:])
    assert np.array_equal(limit_peaks(quiet, 16000), quiet)
