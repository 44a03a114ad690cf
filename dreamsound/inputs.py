"""One loader for everything a command accepts as a sound: a file, an array, or a generated start.

``classify``, ``dream``, ``sonify`` and ``evaluate`` all call :func:`load_input`, so a sound
means the same thing everywhere: a file is decoded, mixed to mono and resampled to the model's
rate; an array is checked and resampled from the rate given; ``"noise:3s"``, ``"silence:2s"`` and
``"sine:440:2s"`` are generated at the model's rate (seeded). A folder given to ``dream`` or
``sonify`` stands for the audio files in it (:func:`expand_inputs`).
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dreamsound.errors import AudioError

log = logging.getLogger(__name__)

_SECONDS = r"(\d+(?:\.\d*)?|\.\d+)(ms|s)?"
_START_RE = re.compile(rf"^(noise|silence|sine:(\d+(?:\.\d*)?))\s*:\s*{_SECONDS}$", re.IGNORECASE)

#: RMS of the ``noise:`` start and peak of the ``sine:`` start (linear, full scale = 1).
NOISE_RMS = 0.05
SINE_PEAK = 0.25
#: Longest generated start, seconds.
MAX_START_SECONDS = 600.0
#: What a folder given as input contributes (:func:`expand_inputs`): files with these suffixes.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                  ".w64", ".caf", ".m4a", ".aac")
#: dreamsound's own outputs (``loop.dream-violin.wav``, ``loop.sonify-violin.wav``, ...).
_OUTPUT_RE = re.compile(r"\.(dream|sonify)-")


def parse_start(spec: str) -> tuple[str, float, float | None] | None:
    """Parse a generated start ``"noise:3s"``, ``"silence:2s"``, ``"sine:440:2s"``.

    Returns ``(kind, seconds, frequency_hz or None)``, or None when ``spec`` is not one (then it
    is a file name). A bare number is seconds; ``ms`` is accepted (``noise:500ms``).
    """
    match = _START_RE.match(str(spec).strip())
    if match is None:
        return None
    head, frequency, amount, unit = match.groups()
    seconds = float(amount) / (1000.0 if (unit or "s").lower() == "ms" else 1.0)
    kind = head.split(":")[0].lower()
    return kind, seconds, float(frequency) if frequency is not None else None


def is_generated(spec: str | Path) -> bool:
    """True when ``spec`` names a generated start and no file of that name exists."""
    return parse_start(str(spec)) is not None and not Path(str(spec)).expanduser().exists()


def generate_start(spec: str, *, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A generated start waveform: white noise (RMS 0.05), digital silence, or a sine (peak 0.25).

    Parameters
    ----------
    spec : str
        ``"noise:DUR"``, ``"silence:DUR"`` or ``"sine:FREQ_HZ:DUR"``; DUR like ``3s``, ``500ms``.
    sample_rate : int
        Hz.
    seed : int
        Seeds the noise.

    Returns
    -------
    ndarray float32 [round(seconds * sample_rate)]
    """
    parsed = parse_start(spec)
    if parsed is None:
        raise AudioError(f"{spec!r} is not a generated start; use noise:3s, silence:2s or "
                         "sine:440:2s")
    kind, seconds, frequency = parsed
    n = round(seconds * sample_rate)
    if n <= 0 or seconds > MAX_START_SECONDS:
        raise AudioError(f"{spec}: the length must be between 1 sample and "
                         f"{MAX_START_SECONDS:g} s")
    if kind == "noise":
        rng = np.random.default_rng(seed)
        return (NOISE_RMS * rng.standard_normal(n)).astype(np.float32)
    if kind == "silence":
        return np.zeros(n, dtype=np.float32)
    if frequency is None or not 0 < frequency < sample_rate / 2:
        raise AudioError(f"{spec}: the sine frequency must be between 0 and {sample_rate / 2:g} "
                         "Hz (the model's Nyquist frequency)")
    t = np.arange(n) / sample_rate
    return (SINE_PEAK * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@dataclass(frozen=True)
class LoadedInput:
    """A sound ready for a model.

    Attributes
    ----------
    waveform : ndarray float32 [n]
        Mono, at the model's rate.
    label : str
        The file path as given, the generated spec (``"noise:3s"``), or ``"array"``.
    path : Path or None
        The file, when the sound came from one (outputs must never overwrite it).
    """

    waveform: np.ndarray
    label: str
    path: Path | None


def load_input(audio: str | Path | Any, *, sample_rate: int, input_rate: int | None = None,
               seed: int = 0, allow_silence: bool = True,
               max_seconds: float | None = None) -> LoadedInput:
    """Any accepted sound as a mono float32 waveform at ``sample_rate`` Hz.

    Parameters
    ----------
    audio : path, str, ndarray or Tensor [n]
        A sound file; a generated start; or a mono waveform at ``input_rate`` Hz.
    sample_rate : int
        The model's rate, Hz.
    input_rate : int, optional
        Rate of an array input (default: ``sample_rate``).
    seed : int
        Seeds a generated noise start.
    allow_silence : bool
        Accept digital silence (the spectrogram domain can dream from it; classification cannot
        say anything about it).
    max_seconds : float, optional
        Refuse longer files (None: no limit).
    """
    from dreamsound.audio import load_audio, resample, validate_waveform

    if isinstance(audio, np.ndarray) or hasattr(audio, "detach"):
        wave = validate_waveform(audio, what="input waveform", allow_silence=allow_silence)
        if wave.ndim != 1:
            raise AudioError(f"input waveform: expected mono [n], got shape {wave.shape}")
        if input_rate is not None and input_rate != sample_rate:
            wave = resample(wave, input_rate, sample_rate, what="input waveform")
        return LoadedInput(wave, "array", None)
    text = str(audio)
    if is_generated(text):
        return LoadedInput(generate_start(text, sample_rate=sample_rate, seed=seed), text, None)
    path = Path(text).expanduser()
    wave = load_audio(path, sample_rate=sample_rate, allow_silence=allow_silence,
                      max_seconds=max_seconds)
    return LoadedInput(wave, str(path), path)


def expand_inputs(inputs: list[str] | tuple[str, ...]) -> list[str]:
    """The sounds a command was given, with every folder replaced by the audio files in it.

    A folder's files (not its subfolders) whose suffix is one of :data:`AUDIO_SUFFIXES` come in
    name order, as ``folder/name`` (the folder as given); hidden files and dreamsound's own
    outputs (``loop.dream-violin.wav``, ``loop.sonify-violin.wav``, ...) are left out, so dreaming
    a folder twice does not dream the first dreams. Anything else (files, generated starts) is
    kept as it is.

    Raises
    ------
    AudioError
        A folder with no audio file in it (or that cannot be listed).
    """
    found: list[str] = []
    for text in inputs:
        folder = Path(str(text)).expanduser()
        if is_generated(text) or not folder.is_dir():
            found.append(text)
            continue
        try:
            names = sorted(child.name for child in folder.iterdir() if child.is_file())
        except OSError as exc:
            raise AudioError(f"{folder}: cannot list the folder ({exc.strerror})") from None
        sounds = [name for name in names if Path(name).suffix.lower() in AUDIO_SUFFIXES
                  and not name.startswith(".") and not _OUTPUT_RE.search(name)]
        if not sounds:
            raise AudioError(f"{folder}: the folder holds no audio files "
                             f"({', '.join(AUDIO_SUFFIXES)})")
        found += [str(Path(str(text)) / name) for name in sounds]
    return found


def match_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Loop or trim ``wave`` to ``n`` samples."""
    if wave.shape[0] >= n:
        return wave[:n]
    return np.tile(wave, math.ceil(n / wave.shape[0]))[:n]


def resampled_length(n: int, input_rate: int, sample_rate: int) -> int:
    """Samples that ``n`` samples at ``input_rate`` Hz become at ``sample_rate`` Hz, as libsoxr
    (and so :func:`dreamsound.audio.resample`) counts them: ``n · out / in`` rounded half up."""
    return (2 * n * sample_rate + input_rate) // (2 * input_rate)


def ffmpeg_reads_whole(path: Path, declared: int) -> bool:
    """Whether ffmpeg (when on ``PATH``) decodes at least ``declared`` frames of ``path``
    without an error, counting them as they stream by (nothing is kept in memory): the
    streaming reader's second opinion when libsndfile stops short
    (:func:`dreamsound.audio._second_opinion` is the one-shot reader's).
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return False
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-i", f"file:{path}", "-vn", "-map", "0:a:0",
           "-ac", "1", "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1"]
    try:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
            assert proc.stdout is not None
            size = 0
            while chunk := proc.stdout.read(1 << 20):
                size += len(chunk)
            ok = proc.wait(timeout=600) == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
    return ok and size // 4 >= declared


class FileBlocks:
    """A sound file read in blocks, as mono float32 at a model's rate, in bounded memory.

    The file is decoded ``read_frames`` frames at a time by libsndfile, mixed to mono and
    resampled by a streaming libsoxr resampler at the quality :func:`~dreamsound.audio.resample`
    uses (its output is the same, sample for sample, as resampling the whole file at once).
    :meth:`window` hands out any span ``[start, end)`` of the result as long as spans never
    start before an earlier one did; only the samples from the earliest start still wanted to
    the latest end read are held.

    Parameters
    ----------
    path : path
        A file libsndfile reads (wav, flac, ogg, mp3, aiff, ...).
    sample_rate : int
        The model's rate, Hz.
    max_seconds : float, optional
        Refuse longer files (None: no limit, the default for streamed work).
    read_frames : int
        Frames decoded per read (at the file's rate).

    Raises
    ------
    AudioError
        Missing, empty, a folder, not readable by libsndfile, truncated (header and data
        disagree), NaN/Inf samples (when read), longer than ``max_seconds``.
    """

    def __init__(self, path: str | Path, sample_rate: int, *, max_seconds: float | None = None,
                 read_frames: int = 1 << 16):
        import soundfile as sf
        import soxr

        from dreamsound.audio import _check_length, _check_path
        from dreamsound.file_checks import iff_truncation

        self.path = Path(path).expanduser()
        _check_path(self.path)
        damage = iff_truncation(self.path)
        if damage:
            raise AudioError(f"{self.path}: {damage}; the file was probably cut short")
        try:
            self._file = sf.SoundFile(self.path)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{self.path}: not a sound file libsndfile can read "
                             f"({getattr(exc, 'error_string', exc)})") from None
        self.input_rate = int(self._file.samplerate)
        self.input_frames = int(self._file.frames)
        self.sample_rate = int(sample_rate)
        self._format = self._file.format
        if self.input_frames <= 0 or self.input_rate <= 0:
            self.close()
            raise AudioError(f"{self.path}: the file holds no audio samples")
        _check_length(self.path, self.input_frames, self.input_rate, max_seconds)
        #: Samples at the model's rate (the whole file).
        self.n_samples = resampled_length(self.input_frames, self.input_rate, self.sample_rate)
        self._resampler = None if self.input_rate == self.sample_rate else soxr.ResampleStream(
            self.input_rate, self.sample_rate, 1, dtype="float32", quality="VHQ")
        self._read_frames = int(read_frames)
        self._decoded = 0
        self._finished = False
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0

    @property
    def seconds(self) -> float:
        """Duration, s."""
        return self.input_frames / self.input_rate

    def _pull(self) -> None:
        """Decode, mix and resample the next read; mark the end of the file."""
        from dreamsound.audio import mix_down

        data = self._file.read(self._read_frames, dtype="float32", always_2d=True)
        last = data.shape[0] < self._read_frames
        if data.shape[0] and not np.isfinite(data).all():
            first = self._decoded + int(np.argmax(~np.isfinite(data).all(axis=1)))
            raise AudioError(f"{self.path}: holds non-finite (NaN/Inf) samples, the first at "
                             f"sample {first}")
        self._decoded += data.shape[0]
        if last:
            data = self._fill_short_end(data)
        mono = mix_down(data)
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(mono, last=last)
        self._finished = last
        self._buffer = np.concatenate([self._buffer, np.asarray(mono, dtype=np.float32)])

    def _fill_short_end(self, data: np.ndarray) -> np.ndarray:
        """The last read, with the frames libsndfile did not decode as silence when ffmpeg
        reads the file whole (:func:`ffmpeg_reads_whole`); a shortfall ffmpeg confirms is
        damage. MP3 frame counts are estimates: an MP3 may end early."""
        missing = self.input_frames - self._decoded
        if self._format == "MP3" or missing <= 0:
            return data
        if not ffmpeg_reads_whole(self.path, self.input_frames):
            raise AudioError(f"{self.path}: truncated or corrupt: decoded {self._decoded} "
                             f"of {self.input_frames} frames")
        log.warning("%s: libsndfile decoded %d of %d frames (ffmpeg reads them all); the last "
                    "%.3f s are read as silence", self.path, self._decoded, self.input_frames,
                    missing / self.input_rate)
        self._decoded += missing
        return np.concatenate([data, np.zeros((missing, data.shape[1]), np.float32)])

    def window(self, start: int, end: int) -> np.ndarray:
        """Samples ``[start, end)`` at the model's rate, float32; zeros past the end of the file
        (which is :attr:`n_samples` long), so the span is always ``end - start`` samples.

        ``start`` must not be before the start of an earlier window: what lies before it is
        let go.
        """
        if start < self._buffer_start:
            raise ValueError(f"window start {start} is before {self._buffer_start}, already "
                             "let go")
        end = max(start, end)
        wanted = min(end, self.n_samples)
        while not self._finished and self._buffer_start + self._buffer.shape[0] < wanted:
            self._pull()
        # Keep only what later windows may still ask for (copy: a view would pin the rest).
        drop = min(start - self._buffer_start, self._buffer.shape[0])
        if drop > 0:
            self._buffer = self._buffer[drop:].copy()
            self._buffer_start += drop
        offset = start - self._buffer_start
        piece = self._buffer[max(0, offset):max(0, wanted - self._buffer_start)]
        if piece.shape[0] < end - start:
            piece = np.pad(piece, (0, end - start - piece.shape[0]))
        return piece

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> FileBlocks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
