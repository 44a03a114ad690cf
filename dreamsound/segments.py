"""The mechanics of long sounds: segments of a file, joining them, writing block by block, and
analysing a whole file in blocks of patches, all in bounded memory (:mod:`dreamsound.streaming`
puts them together).

* :class:`SegmentPlan`: where the overlapping segments lie (their hop a whole number of the
  model's patch hops, so two segments analyse their overlap with the same frames and patches).
* :class:`Crossfade`: joins overlapping segments with a raised-cosine (Hann) cross-fade whose two
  gains sum to 1 at every sample, so a sound both segments render alike passes the join
  unchanged, each segment's edges (where its context ends) count least, and a convex blend of two
  peak-limited segments stays under the limiter's ceiling.
* :func:`open_writer`: a mono sound file written block by block through
  :func:`~dreamsound.io_utils.atomic_write` (a temporary file beside the output, renamed at the
  end, removed on any error).
* :func:`log_mel_blocks`, :func:`classify_file`, :func:`measure_rendered`: a whole file's
  log-mel, patch scores and distances, block by block.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamsound.classification import Classification
from dreamsound.errors import ConfigError, OutputError
from dreamsound.events import ProgressCallback, ProgressEvent
from dreamsound.inputs import FileBlocks, is_generated
from dreamsound.io_utils import atomic_write
from dreamsound.models.base import AudioClassifier

#: Longest sound dreamed in one piece, and the length of each segment of a longer one, s.
SEGMENT_SECONDS = 10.0
#: Overlap of consecutive segments (cross-faded), s.
OVERLAP_SECONDS = 1.0
#: Patches per block when a whole file is analysed (classification, distances).
BLOCK_PATCHES = 64


# -- the plan -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentPlan:
    """Where the segments of a sound lie, in samples at the model's rate.

    Segment ``i`` is ``[i · hop, min(n_samples, i · hop + length))``; ``overlap = length - hop``
    samples of it are shared with the next one. The last segment may be shorter, but is always
    longer than the overlap.
    """

    n_samples: int
    length: int
    hop: int

    @property
    def overlap(self) -> int:
        return self.length - self.hop

    @property
    def count(self) -> int:
        if self.n_samples <= self.length:
            return 1
        return 1 + math.ceil((self.n_samples - self.length) / self.hop)

    def bounds(self, index: int) -> tuple[int, int]:
        """``(start, end)`` of segment ``index``, samples."""
        start = index * self.hop
        return start, min(self.n_samples, start + self.length)

    @classmethod
    def for_model(cls, n_samples: int, model: AudioClassifier, *,
                  segment_s: float = SEGMENT_SECONDS,
                  overlap_s: float = OVERLAP_SECONDS) -> SegmentPlan:
        """The plan for ``n_samples`` on ``model``: segments at most ``segment_s`` long whose
        hop is a whole number of the model's patch hops (so the patch grids of two segments
        coincide), overlapping by ``overlap_s``."""
        rate = model.sample_rate
        patch_hop = model.front_end.config.patch_hop_samples
        overlap = round(overlap_s * rate)
        hop = (round(segment_s * rate) - overlap) // patch_hop * patch_hop
        if overlap < 1 or hop < max(overlap, patch_hop):
            raise ConfigError(f"segments of {segment_s:g} s overlapping by {overlap_s:g} s do "
                              f"not fit {model.name}'s patches ({patch_hop / rate:.2f} s apart):"
                              " the overlap must be > 0 and at most half the segment")
        return cls(n_samples=n_samples, length=hop + overlap, hop=hop)


def segment_seed(seed: int, index: int) -> int:
    """The seed of segment ``index`` of a dream seeded ``seed`` (a 31-bit integer derived by
    :class:`numpy.random.SeedSequence`: independent streams per segment, same on every run)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, index]).generate_state(1)[0]
               >> 1)


def is_long(source: Any, model: AudioClassifier, *, segment_s: float = SEGMENT_SECONDS) -> bool:
    """Whether ``source`` is a sound file longer than one segment that libsndfile reads (then
    it streams; anything else, including damaged files, takes the one-shot path, which says
    what is wrong)."""
    from dreamsound.audio import sound_file_info

    if not isinstance(source, str | Path) or is_generated(source):
        return False
    info = sound_file_info(source)
    return info is not None and info.samplerate > 0 and info.frames / info.samplerate > segment_s


def check_max_seconds(source: Any, max_seconds: float | None) -> None:
    """Refuse a sound file longer than ``max_seconds`` (the optional ``--max-seconds`` guard;
    None: any length). Anything that is not a file libsndfile reads is checked when loaded."""
    from dreamsound.audio import _check_length, sound_file_info

    if max_seconds is None or not isinstance(source, str | Path) or is_generated(source):
        return
    path = Path(source).expanduser()
    info = sound_file_info(path)
    if info is not None:  # otherwise the loader says what is wrong with it
        _check_length(path, info.frames, info.samplerate, max_seconds)


def segment_progress(progress: ProgressCallback | None, index: int, count: int,
                     per_segment: int) -> ProgressCallback | None:
    """Events of one segment's dream mapped onto one bar over the whole file."""
    if progress is None:
        return None

    def emit(event: ProgressEvent) -> None:
        per = event.total or per_segment
        progress(replace(event, step=index * per + event.step, total=count * per,
                         segment=index, segments=count))

    return emit


# -- joining and writing --------------------------------------------------------------------------
class Crossfade:
    """Joins overlapping segments: the ``overlap`` samples shared by two consecutive segments
    become ``(1 - w) · end of the first + w · start of the second`` with the raised-cosine
    ``w(t) = sin²(π/2 · (t + ½) / overlap)``; everything else passes as it is. Finished samples
    go to ``write`` as soon as they are known (one call per segment, at most one segment long);
    only the last ``overlap`` samples of the latest segment are held."""

    def __init__(self, write: Callable[[np.ndarray], None], overlap: int):
        self.write = write
        self.overlap = overlap
        self.fade_in = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
        self.tail: np.ndarray | None = None

    def add(self, segment: np.ndarray, *, last: bool) -> None:
        """Add the next segment (longer than the overlap; the first, middle ones at least
        twice as long)."""
        segment = np.asarray(segment, dtype=np.float32)
        body = segment
        if self.tail is not None:
            head = segment[:self.overlap].astype(np.float64)
            joined = self.tail * (1.0 - self.fade_in) + head * self.fade_in
            body = segment[self.overlap:]
            if last:
                self.write(np.concatenate([joined.astype(np.float32), body]))
                self.tail = None
                return
            self.write(np.concatenate([joined.astype(np.float32), body[:-self.overlap]]))
        elif last:
            self.write(body)
            return
        else:
            self.write(body[:-self.overlap])
        self.tail = body[-self.overlap:].astype(np.float64)


@contextlib.contextmanager
def open_writer(path: Path, sample_rate: int, *, inputs: Sequence[Any] = (),
                subtype: str = "PCM_16") -> Iterator[Callable[[np.ndarray], None]]:
    """Write a mono sound file block by block, atomically and never over an input: yields
    ``write(block)`` (float32 ``[n]``, clipped to full scale for integer subtypes as
    :func:`dreamsound.audio.save_audio` does). The file appears, complete, when the block ends
    without an error; otherwise the temporary file is removed."""
    import soundfile as sf

    from dreamsound.audio import _WRITE_FORMATS

    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"cannot write {path}: unsupported extension {path.suffix!r}")
    with atomic_write(path, inputs=[p for p in inputs if p is not None]) as temp:
        try:
            handle = sf.SoundFile(temp, "w", samplerate=int(sample_rate), channels=1,
                                  subtype=subtype, format=fmt)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise OutputError(f"cannot write {path}: {exc}") from None
        with handle:
            def write(block: np.ndarray) -> None:
                data = np.asarray(block, dtype=np.float32)
                if not np.isfinite(data).all():
                    raise OutputError(f"cannot write {path}: the audio holds NaN/Inf samples")
                if not subtype.startswith(("FLOAT", "DOUBLE")):
                    data = np.clip(data, -1.0, 1.0)
                try:
                    handle.write(data)
                except (sf.LibsndfileError, RuntimeError, OSError) as exc:
                    raise OutputError(f"cannot write {path}: {exc}") from None

            yield write


# -- whole-file analysis in blocks ----------------------------------------------------------------
def log_mel_blocks(model: AudioClassifier, sources: Sequence[FileBlocks], *,
                   block_patches: int = BLOCK_PATCHES
                   ) -> Iterator[tuple[list[torch.Tensor], int]]:
    """The whole-file log-mel of each source (all ``n_samples`` long), in blocks of whole
    patches: yields ``([log-mel [T_b, F] per source], new)``, where each block holds the frames
    of its patches (so the model scores exactly the whole file's patches) and its first ``new``
    frames are not in the next block (together they cover every frame of the file once).

    Each block is analysed with ``n_fft`` samples (rounded up to whole hops) of real context on
    each side and zeros past the end of the file, so its frames are the whole file's: exactly
    for frames that start at their first sample (the standard front-end), and away from the
    file's ends for centred ones.
    """
    cfg = model.front_end.config
    n = sources[0].n_samples
    total = cfg.n_frames(cfg.padded_length(n))
    patches = cfg.n_patches(total)
    hop = cfg.hop_length
    margin = math.ceil(cfg.n_fft / hop) * hop
    for first in range(0, patches, block_patches):
        stop = min(patches, first + block_patches)
        f0 = first * cfg.patch_hop_frames
        if stop == patches:  # the last block also holds the frames after the last patch
            f1 = total
            new = f1 - f0
        else:
            f1 = (stop - 1) * cfg.patch_hop_frames + cfg.patch_frames
            new = (stop - first) * cfg.patch_hop_frames
        start = max(0, f0 * hop - margin)
        lead = (f0 * hop - start) // hop
        end = (f1 - 1) * hop + cfg.win_length + margin
        mels = []
        for source in sources:
            wave = torch.from_numpy(source.window(start, end)).to(model.device)
            with torch.no_grad():
                mels.append(model.log_mel(wave)[lead:lead + f1 - f0])
        yield mels, new


def classify_file(model: AudioClassifier, path: str | Path, *,
                  max_seconds: float | None = None,
                  block_patches: int = BLOCK_PATCHES) -> Classification:
    """What ``model`` hears in a sound file of any length, in bounded memory: per-patch scores
    block by block; the clip score is the mean over all patches, as
    :func:`dreamsound.classification.classify_waveform` gives for the whole waveform."""
    rows = []
    with FileBlocks(path, model.sample_rate, max_seconds=max_seconds) as source:
        for (log_mel,), _ in log_mel_blocks(model, [source], block_patches=block_patches):
            # no_grad, not inference_mode: a model may cache tensors on its first call (the
            # instrument CNN's folded weights) that a later dream must differentiate through.
            with torch.no_grad():
                scores = model.scores_from_logits(model.logits_from_log_mel(log_mel))
            rows.append(scores.float().cpu().numpy())
    frame_scores = np.concatenate(rows)
    hop_s = model.front_end.config.patch_hop_samples / model.sample_rate
    return Classification(model=model.name, class_names=list(model.class_names),
                          scores=frame_scores.mean(axis=0), frame_scores=frame_scores,
                          frame_starts_s=np.arange(len(frame_scores)) * hop_s)


def measure_rendered(model: AudioClassifier, original: FileBlocks, rendered: FileBlocks, *,
                     block_patches: int = BLOCK_PATCHES) -> tuple[np.ndarray, float]:
    """``(clip scores [C] of the rendered file, mse_db2 original -> rendered)`` over the whole
    files, block by block: the clip score is the mean over all patches; ``mse_db2`` sums the
    squared dB differences (float64) of every frame and band of the two whole-file log-mels
    (:func:`log_mel_blocks`) and divides by their count, which is :func:`dreamsound.metrics.
    mse_db2` of the two whole log-mels."""
    fe = model.front_end
    total = torch.zeros(len(model.class_names), dtype=torch.float64)
    patches = 0
    squared, count = 0.0, 0
    for (before, after), new in log_mel_blocks(model, [original, rendered],
                                               block_patches=block_patches):
        with torch.no_grad():  # not inference_mode: see classify_file
            scores = model.scores_from_logits(model.logits_from_log_mel(after))
        total += scores.double().sum(dim=0).cpu()
        patches += scores.shape[0]
        difference = fe.mel_db(before[:new].double()) - fe.mel_db(after[:new].double())
        squared += float(difference.square().sum())
        count += difference.numel()
    return (total / patches).numpy(), squared / count


def join_step_files(files: Sequence[Path], write: Callable[[np.ndarray], None],
                    sample_rate: int, *, block: int = 1 << 18) -> None:
    """Concatenate raw float32 step sequences into ``write``, each faded in and out over
    :data:`dreamsound.sonification.SEGMENT_FADE_S` as :func:`~dreamsound.sonification.
    join_segments` fades them (no fades for a single step)."""
    from dreamsound.sonification import SEGMENT_FADE_S

    for file in files:
        n = file.stat().st_size // 4
        fade = min(round(SEGMENT_FADE_S * sample_rate), n // 2) if len(files) > 1 else 0
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        for start in range(0, n, block):
            data = np.fromfile(file, dtype="<f4", count=min(block, n - start),
                               offset=4 * start).astype(np.float32)
            index = np.arange(start, start + data.shape[0])
            head, tail = index < fade, index >= n - fade
            data[head] *= ramp[index[head]]
            data[tail] *= ramp[::-1][index[tail] - (n - fade)]
            write(data)


class StepFiles:
    """Raw float32 files in a private temporary folder, one per sonified step, appended block
    by block (each write opens and closes its file: no handles held, however many steps);
    removed with the folder when the ``with`` block ends, error or not."""

    def __init__(self, count: int):
        self._folder = tempfile.TemporaryDirectory(prefix="dreamsound-steps-")
        self.paths = [Path(self._folder.name) / f"step{k:05d}.f32" for k in range(count)]
        for path in self.paths:
            path.touch()

    def writer(self, index: int) -> Callable[[np.ndarray], None]:
        """``write(block)`` appending to step ``index``'s file."""
        path = self.paths[index]

        def write(block: np.ndarray) -> None:
            with open(path, "ab") as handle:
                handle.write(np.asarray(block, dtype="<f4").tobytes())

        return write

    def __enter__(self) -> StepFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self._folder.cleanup()
