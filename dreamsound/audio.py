"""Audio files in and out: decode, validate, mix down, resample, normalise, save atomically.

This is the only module that reads or writes sound files. Everything it hands to the rest of
dreamsound is a finite float32 numpy array; everything it refuses raises
:class:`~dreamsound.errors.AudioError` (inputs) or :class:`~dreamsound.errors.OutputError`
(outputs) with one line that names the file.

Decoding: libsndfile (through ``soundfile``) reads WAV, FLAC, OGG/Vorbis, AIFF, MP3 (libsndfile
>= 1.1) and more. Anything else (m4a/AAC, opus in webm, wma, ...) is decoded by the ``ffmpeg``
program when it is on ``PATH``, or else by ``librosa`` (optional extra ``dreamsound-ml[formats]``).

Resampling uses libsoxr at its "very high quality" setting (``soxr.resample(..., quality="VHQ")``):
a linear-phase filter with a passband to ~0.9 of the lower Nyquist and > 170 dB stop-band
rejection, so no audible aliasing or imaging is added before the model sees the sound.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from dreamsound.errors import AudioError, OutputError
from dreamsound.file_checks import iff_truncation, text_instead_of_sound
from dreamsound.io_utils import PathLike, atomic_write

log = logging.getLogger(__name__)

#: Default cap on input length, in seconds. Dreaming costs time and memory linear in length;
#: ten minutes is far beyond typical use but still fits in memory comfortably.
DEFAULT_MAX_SECONDS = 600.0

#: A waveform whose absolute peak is below this is "digital silence": half the step of 24-bit PCM
#: (2**-24 ~ -144 dBFS). Nothing a model can hear or a gradient can grow from.
SILENCE_PEAK = 2.0**-24

__all__ = [
    "DEFAULT_MAX_SECONDS",
    "SILENCE_PEAK",
    "load_audio",
    "mix_down",
    "peak_normalize",
    "read_audio",
    "resample",
    "save_audio",
    "sound_file_info",
    "validate_waveform",
]


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not a sound file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AudioError(f"{path}: cannot be read ({exc.strerror})") from None
    if size == 0:
        raise AudioError(f"{path}: the file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: permission denied")


def _read_soundfile(path: Path, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """Decode with libsndfile.

    Raises ``sf.LibsndfileError`` when libsndfile does not recognise the file (the caller then
    tries other decoders), and :class:`AudioError` when it recognises the format but the content
    is damaged: another decoder might paper over the damage, so none is tried.
    """
    with sf.SoundFile(path) as handle:
        rate, declared, fmt = handle.samplerate, handle.frames, handle.format
        _check_length(path, declared, rate, max_seconds)
        try:
            data = handle.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{path}: truncated or corrupt {fmt} data "
                             f"({_decoder_message(exc)})") from None
    # MP3 frame counts are estimates in some encoders' headers; everything else is exact, so a
    # shortfall means a damaged file -- or libsndfile's own decoder stopping short
    # (read_audio asks ffmpeg for a second opinion).
    if fmt != "MP3" and 0 < data.shape[0] < declared:
        raise _ShortDecode(f"{path}: truncated or corrupt: decoded {data.shape[0]} of "
                          f"{declared} frames", declared)
    return data, rate


class _ShortDecode(AudioError):
    """libsndfile decoded fewer frames than the file declares (``declared``)."""

    def __init__(self, message: str, declared: int):
        super().__init__(message)
        self.declared = declared


def _second_opinion(path: Path, max_seconds: float | None, short: _ShortDecode
                    ) -> tuple[np.ndarray, int]:
    """ffmpeg's decoding of a file libsndfile stopped short of, when it reaches the declared
    length; else ``short`` is raised: a damaged file stops every decoder short, while
    libsndfile's Vorbis decoder also stops short of some whole files (e.g. a Debian-packaged
    game track: libsndfile 1.2.2 decodes 9,129,710 of its 9,135,516 frames, libvorbisfile in sox
    and ffmpeg all of them)."""
    try:
        data, rate = _read_ffmpeg(path, max_seconds)
    except (FileNotFoundError, RuntimeError, OSError, subprocess.TimeoutExpired):
        raise short from None
    if data.shape[0] < short.declared:
        raise short
    log.info("%s: libsndfile decoded it only in part; decoded whole with ffmpeg", path)
    return data, rate


def _decoder_message(exc: BaseException) -> str:
    """The useful part of a decoder's complaint (soundfile repeats the path; drop it)."""
    text = getattr(exc, "error_string", None) or str(exc)
    return text.strip().rstrip(".") or type(exc).__name__


def _read_ffmpeg(path: Path, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """Decode with the ffmpeg program into a 32-bit float WAV in a private temp folder."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise FileNotFoundError("ffmpeg is not on PATH")
    with tempfile.TemporaryDirectory(prefix="dreamsound-") as tmp:
        out = Path(tmp) / "decoded.wav"
        # "file:" stops ffmpeg from reading a name like "http:x" or "pipe:0" as a protocol.
        cmd = [ffmpeg, "-nostdin", "-v", "error", "-i", f"file:{path}", "-vn", "-map", "0:a:0"]
        if max_seconds is not None:
            # Decode a little past the limit only: enough to know the file is too long without
            # decoding hours of audio into memory.
            cmd += ["-t", f"{max_seconds + 1.0:.3f}"]
        cmd += ["-c:a", "pcm_f32le", "-f", "wav", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0 or not out.is_file():
            detail = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise RuntimeError(detail)
        data, rate = sf.read(out, dtype="float32", always_2d=True)
    return data, int(rate)


def _read_librosa(path: Path, max_seconds: float | None) -> tuple[np.ndarray, int]:
    try:
        import librosa  # optional extra "formats"; heavy, so imported only when needed
    except ImportError:
        raise ImportError("librosa is not installed") from None
    duration = None if max_seconds is None else max_seconds + 1.0
    with warnings.catch_warnings():
        # librosa warns when it falls back to audioread (deprecated); we report failures ourselves.
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        data, rate = librosa.load(path, sr=None, mono=False, duration=duration, dtype=np.float32)
    data = np.atleast_2d(data).T  # librosa gives [channels, n] (or [n] for mono)
    return np.ascontiguousarray(data, dtype=np.float32), int(rate)


def _check_length(path: Path, frames: int, rate: int, max_seconds: float | None) -> None:
    if max_seconds is not None and rate > 0 and frames / rate > max_seconds:
        raise AudioError(
            f"{path}: {frames / rate:.1f} s is longer than the {max_seconds:g} s limit; "
            f"cut it, or raise the limit (--max-seconds SECONDS, or max_seconds=None in Python)"
        )


def read_audio(path: PathLike, *, max_seconds: float | None = DEFAULT_MAX_SECONDS
               ) -> tuple[np.ndarray, int]:
    """Decode a sound file at its own sample rate, with every channel, and check it.

    Parameters
    ----------
    path : path
        Any format libsndfile reads (wav, flac, ogg, aiff, mp3, ...); other formats go through
        ffmpeg (when on ``PATH``) or librosa.
    max_seconds : float or None, optional
        Refuse files longer than this many seconds (default 600). ``None``: no limit.

    Returns
    -------
    data : np.ndarray, float32, shape [n_samples, n_channels]
        Samples in [-1, 1] (float files may exceed it).
    sample_rate : int
        The file's native sample rate in Hz.

    Raises
    ------
    AudioError
        Missing, a folder, empty, not audio, truncated, no samples, NaN/Inf samples, too long.
        (Silence is not checked here; :func:`load_audio` does.)
    """
    file = Path(path).expanduser()
    _check_path(file)
    held_text = text_instead_of_sound(file)
    if held_text:
        raise AudioError(f"{file}: holds {held_text}")
    damage = iff_truncation(file)
    if damage:
        raise AudioError(f"{file}: {damage}; the file was probably cut short (re-copy or "
                         f"re-export it)")
    reasons = []
    data: np.ndarray | None = None
    rate = 0
    for name, reader in (("soundfile", _read_soundfile), ("ffmpeg", _read_ffmpeg),
                         ("librosa", _read_librosa)):
        if name == "librosa" and shutil.which("ffmpeg") is not None:
            # librosa's fallback (audioread) would call the same ffmpeg again: pointless and slow.
            continue
        try:
            data, rate = reader(file, max_seconds)
        except _ShortDecode as short:
            data, rate = _second_opinion(file, max_seconds, short)
            break
        except AudioError:
            raise
        except (ImportError, FileNotFoundError) as exc:
            reasons.append(f"{name}: {exc}")
            continue
        except Exception as exc:  # each decoder has its own exception zoo; try the next one
            reasons.append(f"{name}: {_decoder_message(exc)}")
            log.debug("%s could not decode %s: %s", name, file, exc)
            continue
        if name != "soundfile":
            log.info("decoded %s with %s (libsndfile cannot read it)", file, name)
        break
    if data is None:
        hint = ""
        if shutil.which("ffmpeg") is None:
            hint = "; for formats beyond wav/flac/ogg/mp3 install ffmpeg or dreamsound-ml[formats]"
        raise AudioError(f"{file}: not a readable sound file ({'; '.join(reasons)}){hint}")
    if data.shape[0] == 0 or rate <= 0:
        raise AudioError(f"{file}: the file holds no audio samples")
    _check_length(file, data.shape[0], rate, max_seconds)
    _check_finite(data, what=str(file))
    return data, rate


def mix_down(data: np.ndarray) -> np.ndarray:
    """Average all channels into one.

    Parameters
    ----------
    data : np.ndarray, shape [n] or [n, channels]

    Returns
    -------
    np.ndarray, float32, shape [n]
        The mean of the channels (so a signal identical in every channel keeps its level, and
        opposite-phase channels cancel, as on a mono speaker).
    """
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 1:
        return data
    if data.ndim != 2:
        raise AudioError(f"expected audio of shape [n] or [n, channels], got {data.shape}")
    return data.mean(axis=1, dtype=np.float64).astype(np.float32)


def resample(waveform: np.ndarray, orig_rate: int, target_rate: int, *,
             what: str = "audio", warn_upsampling: bool = True) -> np.ndarray:
    """Resample with libsoxr at very high quality.

    Parameters
    ----------
    waveform : np.ndarray, shape [n] or [n, channels]
    orig_rate, target_rate : int
        Sample rates in Hz.
    what : str, optional
        Name used in the log message (the file name).
    warn_upsampling : bool, optional
        Log a warning when upsampling (off where it is expected, e.g. a judge at a higher rate
        than the dream).

    Returns
    -------
    np.ndarray, float32, shape [round(n * target_rate / orig_rate)] (channels kept)

    Notes
    -----
    Upsampling cannot create content above the source's Nyquist frequency (orig_rate / 2), so the
    model then hears an empty top band; that is logged as a warning.
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    if orig_rate == target_rate:
        return waveform
    if orig_rate < target_rate and warn_upsampling:
        log.warning("%s: upsampling %d Hz -> %d Hz; the model will hear nothing above %.0f Hz",
                    what, orig_rate, target_rate, orig_rate / 2)
    out = soxr.resample(waveform, orig_rate, target_rate, quality="VHQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def sound_file_info(path: PathLike) -> Any | None:
    """libsndfile's header facts about a sound file (``frames``, ``samplerate``, ``channels``),
    read without decoding, or None for anything libsndfile does not read (a text file is not
    even handed to it: its MP3 decoder writes notes to stderr). What is wrong with such a file
    is :func:`read_audio`'s to say."""
    file = Path(path).expanduser()
    try:
        if not file.is_file() or text_instead_of_sound(file):
            return None
        return sf.info(str(file))
    except Exception:  # unreadable, or not a format libsndfile knows
        return None


def load_audio(path: PathLike, *, sample_rate: int | None = None,
               max_seconds: float | None = DEFAULT_MAX_SECONDS,
               allow_silence: bool = False) -> np.ndarray:
    """Read a sound file as a checked mono float32 waveform.

    Parameters
    ----------
    path : path
        The sound file (see :func:`read_audio` for formats).
    sample_rate : int or None, optional
        Resample to this rate in Hz (the model's rate, e.g. 16000 for YAMNet). ``None`` keeps the
        file's rate; get that rate with :func:`read_audio` or ``soundfile.info``.
    max_seconds : float or None, optional
        Refuse files longer than this (default 600 s). ``None``: no limit.
    allow_silence : bool, optional
        Accept digital silence (peak below ``SILENCE_PEAK``). Off by default: a silent input
        gives a model nothing to respond to and usually means a wrong file.

    Returns
    -------
    np.ndarray, float32, shape [n_samples]
        Mono (channel mean), at ``sample_rate``.

    Raises
    ------
    AudioError
        Any problem with the file, in one line naming it (see :func:`read_audio`), or silence.
    """
    data, rate = read_audio(path, max_seconds=max_seconds)
    what = str(Path(path).expanduser())
    mono = mix_down(data)
    if sample_rate is not None:
        if sample_rate <= 0:
            raise AudioError(f"{what}: invalid target sample rate {sample_rate} Hz")
        mono = resample(mono, rate, int(sample_rate), what=what)
    return validate_waveform(mono, what=what, allow_silence=allow_silence)


# --------------------------------------------------------------------------------------------
# In-memory checks and level
# --------------------------------------------------------------------------------------------


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor; avoid importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_finite(data: np.ndarray, *, what: str) -> None:
    bad = ~np.isfinite(data)
    if bad.any():
        first = int(np.argmax(bad.reshape(data.shape[0], -1).any(axis=1)))
        kinds = "NaN" if np.isnan(data).any() else "Inf"
        if kinds == "NaN" and np.isinf(data).any():
            kinds = "NaN and Inf"
        raise AudioError(f"{what}: holds {int(bad.sum())} non-finite ({kinds}) samples, the first "
                         f"at sample {first}")


def validate_waveform(x: Any, *, what: str, allow_silence: bool = False) -> np.ndarray:
    """Check an in-memory waveform and return it as contiguous float32.

    Parameters
    ----------
    x : array-like (numpy array or torch tensor), shape [n] or [n, channels]
        Samples, nominally in [-1, 1]. Integer PCM (int16, int32, uint8) is scaled to that range.
    what : str
        What it is, for the error message (a file name, ``"dreamed audio"``, ...).
    allow_silence : bool, optional
        Accept digital silence (peak below ``SILENCE_PEAK``).

    Returns
    -------
    np.ndarray, float32, same shape as ``x``

    Raises
    ------
    AudioError
        Wrong number of dimensions, no samples, NaN/Inf samples, or silence (unless allowed).
    """
    data = _as_numpy(x)
    if data.ndim not in (1, 2):
        raise AudioError(f"{what}: expected a waveform of shape [n] or [n, channels], "
                         f"got shape {tuple(data.shape)}")
    if data.size == 0:
        raise AudioError(f"{what}: holds no audio samples")
    if np.issubdtype(data.dtype, np.integer):
        # Integer PCM (as scipy.io.wavfile returns it): map full scale to [-1, 1), as libsndfile
        # does; unsigned formats (8-bit WAV) are offset by half their range.
        bits = data.dtype.itemsize * 8
        offset = 2.0 ** (bits - 1) if np.issubdtype(data.dtype, np.unsignedinteger) else 0.0
        data = (data.astype(np.float64) - offset) / 2.0 ** (bits - 1)
    elif not np.issubdtype(data.dtype, np.floating):
        raise AudioError(f"{what}: samples must be numbers, got dtype {data.dtype}")
    data = np.ascontiguousarray(data, dtype=np.float32)
    _check_finite(data, what=what)
    if not allow_silence and float(np.max(np.abs(data))) < SILENCE_PEAK:
        raise AudioError(f"{what}: is silent (peak below -144 dBFS); nothing for a model to hear "
                         f"(check the file, or allow silence explicitly)")
    return data


def peak_normalize(x: Any, *, peak_dbfs: float = -1.0, boost: bool = True) -> np.ndarray:
    """Scale a waveform so its absolute peak sits at ``peak_dbfs``.

    Parameters
    ----------
    x : array-like, shape [n] or [n, channels]
    peak_dbfs : float, optional
        Target peak in dB relative to full scale (1.0). Default -1 dBFS (0.891), which leaves
        room for the inter-sample peaks that lossy encoders and resamplers add.
    boost : bool, optional
        When False only attenuate: a quieter signal is returned unchanged (a limiter for the
        peak rather than a normaliser).

    Returns
    -------
    np.ndarray, float32, same shape
        A scaled copy. Silence is returned unchanged (there is no peak to scale).
    """
    if peak_dbfs > 0:
        raise ValueError(f"peak_dbfs must be <= 0 dBFS, got {peak_dbfs}")
    data = np.array(_as_numpy(x), dtype=np.float32, copy=True)
    if data.ndim == 0 or data.size == 0:
        return data
    _check_finite(data, what="waveform")
    peak = float(np.max(np.abs(data)))
    target = 10.0 ** (peak_dbfs / 20.0)
    if peak < SILENCE_PEAK or (not boost and peak <= target):
        return data
    data *= np.float32(target / peak)
    return data


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

# File extension -> libsndfile major format. Only the ones worth writing.
_WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".aif": "AIFF",
                  ".aiff": "AIFF", ".mp3": "MP3", ".w64": "W64", ".rf64": "RF64", ".caf": "CAF"}


def save_audio(path: PathLike, waveform: Any, sample_rate: int, *,
               inputs: Iterable[PathLike] = (), subtype: str | None = "PCM_16") -> Path:
    """Write a waveform to a sound file, atomically and never over an input.

    Parameters
    ----------
    path : path
        Destination; the format follows the extension (.wav, .flac, .ogg, .aiff, .mp3, ...).
        Missing parent folders are created.
    waveform : array-like, shape [n] or [n, channels]
        Samples in [-1, 1]. For integer subtypes, samples beyond full scale are clipped (logged
        as a warning); use :func:`peak_normalize` first to avoid that.
    sample_rate : int
        In Hz.
    inputs : iterable of paths, optional
        Source files that must never be overwritten (OutputError if ``path`` is one of them).
    subtype : str or None, optional
        libsndfile subtype: ``"PCM_16"`` (default), ``"PCM_24"``, ``"FLOAT"``, ... ``None`` or a
        subtype the format cannot hold with the default (``ogg`` -> Vorbis, ``mp3``) picks the
        format's own default.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    OutputError
        Output is an input, the folder cannot be created or written, unsupported extension or
        subtype, non-finite or empty data. No partial file is ever left behind.
    """
    target = Path(path).expanduser()
    fmt = _WRITE_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise OutputError(f"cannot write {target}: unsupported extension {target.suffix!r}; "
                          f"use one of {', '.join(sorted(_WRITE_FORMATS))}")
    if sample_rate <= 0:
        raise OutputError(f"cannot write {target}: invalid sample rate {sample_rate} Hz")
    data = _as_numpy(waveform)
    if data.ndim not in (1, 2) or data.size == 0:
        raise OutputError(f"cannot write {target}: expected a non-empty waveform [n] or "
                          f"[n, channels], got shape {tuple(data.shape)}")
    data = np.ascontiguousarray(data, dtype=np.float32)
    if not np.isfinite(data).all():
        raise OutputError(f"cannot write {target}: the audio holds NaN/Inf samples")
    if subtype is None or (subtype == "PCM_16" and not sf.check_format(fmt, subtype)):
        subtype = sf.default_subtype(fmt)
    elif not sf.check_format(fmt, subtype):
        raise OutputError(f"cannot write {target}: the {fmt} format cannot hold subtype "
                          f"{subtype!r}")
    if not subtype.startswith(("FLOAT", "DOUBLE")):
        over = int(np.count_nonzero(np.abs(data) > 1.0))
        if over:
            log.warning("%s: clipping %d samples beyond full scale (peak %.2f dBFS) for %s",
                        target, over, 20 * math.log10(float(np.max(np.abs(data)))), subtype)
            data = np.clip(data, -1.0, 1.0)
    with atomic_write(target, inputs=inputs) as temp:
        try:
            sf.write(temp, data, int(sample_rate), subtype=subtype, format=fmt)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise OutputError(f"cannot write {target}: {exc}") from None
    return target


# --------------------------------------------------------------------------------------------
# Peak limiting and silence
# --------------------------------------------------------------------------------------------

#: Peak of the written audio unless limiting is turned off (dBFS).
LIMIT_DBFS = -1.0


def is_silent(waveform: np.ndarray) -> bool:
    """True for an empty waveform or one whose peak is below :data:`SILENCE_PEAK`."""
    return waveform.size == 0 or float(np.max(np.abs(waveform))) < SILENCE_PEAK


#: Look-ahead / hold of the peak limiter (seconds): the gain is lowered this long before a peak
#: and released over the same time after it.
LIMITER_WINDOW_S = 0.01


def limit_peaks(waveform: np.ndarray, sample_rate: int, *, ceiling_dbfs: float = LIMIT_DBFS,
                window_s: float = LIMITER_WINDOW_S) -> np.ndarray:
    """A look-ahead peak limiter: no sample above ``ceiling_dbfs``, the rest left at its level.

    Scaling the whole file down by its loudest overshoot (a normaliser) would make a dream that
    raised a few peaks quieter everywhere, which the model hears too (a log-mel is not scale
    invariant). Instead the gain needed at each sample, ``min(1, ceiling / |x|)``, is spread by a
    running minimum over ``±window_s`` and smoothed by a Hann window of the same half-width:
    every sample within the window of a peak is at most that peak's gain, so the smoothed gain
    still brings the peak under the ceiling, and the gain changes smoothly (no clicks).

    Parameters
    ----------
    waveform : ndarray float32 [n]
    sample_rate : int
        Hz.
    ceiling_dbfs : float
        Peak ceiling, dBFS (-1 by default).
    window_s : float
        Look-ahead and release, seconds.

    Returns
    -------
    ndarray float32 [n]
        Unchanged when its peak is already under the ceiling.
    """
    from scipy.ndimage import minimum_filter1d

    data = np.asarray(waveform, dtype=np.float64)
    ceiling = 10.0 ** (ceiling_dbfs / 20.0)
    magnitude = np.abs(data)
    if data.size == 0 or float(magnitude.max()) <= ceiling:
        return np.asarray(waveform, dtype=np.float32)
    half = max(1, round(window_s * sample_rate))
    needed = np.minimum(1.0, ceiling / np.maximum(magnitude, 1e-30))
    held = minimum_filter1d(needed, size=2 * half + 1, mode="nearest")
    kernel = np.hanning(2 * half + 1)
    kernel /= kernel.sum()
    gain = np.convolve(np.pad(held, half, mode="edge"), kernel, mode="valid")
    limited = data * np.minimum(gain, 1.0)
    # Float rounding can leave a peak a hair over the ceiling; the clip only catches that.
    return np.clip(limited, -ceiling, ceiling).astype(np.float32)
