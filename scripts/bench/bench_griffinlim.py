"""Benchmark: dreamsound's fast Griffin-Lim against ``librosa.griffinlim`` on the same magnitude.

Not a unit test. For one 10 s magnitude per STFT geometry (the shared piano + violin clip), both
implementations run the same algorithm (fast Griffin-Lim, momentum 0.99; Perraudin et al. 2013)
with the same window, hop, FFT size and frame convention (frames from sample 0, ``center=False``;
a window shorter than the FFT is zero-padded at the *end* for both), for 32 and 100 iterations:

* ``random``   -- uniform random initial phase from each library's own generator, several seeds
  (mean [min, max] of SC);
* ``random=``  -- the very same random phases for both (librosa's ``RandomState(seed)`` draws,
  given to ours as ``init_phase``), so that only the implementations differ;
* ``zero``     -- zero initial phase (librosa's ``init=None``): identical start for both;
* ``original`` -- the original sound's phase. librosa cannot start from a given phase, so only
  ours runs; it is the start dreamsound uses when re-rendering a dream.

Columns: spectral convergence over the whole signal and over the interior (without the first and
last ``ceil(win_length / hop_length)`` frames), both from
:func:`dreamsound.metrics.spectral_convergence_db` on both outputs; the edge peak, the loudest
sample within one window of either end relative to the loudest sample elsewhere (librosa with
``center=False`` divides by a window sum of ~0 there; ours fades those few ms instead, see
:func:`dreamsound.spectral.istft`); and the time per iteration (median of interleaved repeats),
with the ratio ours / librosa.

Usage::

    python -m scripts.bench.bench_griffinlim [--audio FILE] [--threads 2] [--repeats 3] [--seeds 3]

librosa computes its FFTs with numpy (one thread); ``--threads`` sets torch's thread count
(default 2, this machine's core count; ``--threads 1`` for a single-thread comparison).
``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` here (set it to override): with OpenMP's default
spin-waiting, two torch threads on a 2-core machine that other processes also use ran 8-20x
*slower* than one thread (76 vs 9 ms per iteration measured); passive waiting removes that.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Must be set before torch (and its OpenMP runtime) is imported; see the module docstring.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from dreamsound.metrics import spectral_convergence_db
from dreamsound.spectral import griffin_lim, hann_window, stft

REPO = Path(__file__).resolve().parents[2]
DEFAULT_AUDIO = REPO.parent / "shared" / "audio" / "anchor_clip.wav"


@dataclass(frozen=True)
class Geometry:
    """An STFT geometry and the rate the clip is resampled to (Hz, samples)."""

    name: str
    sample_rate: int
    n_fft: int
    win_length: int
    hop_length: int


GEOMETRIES = (
    Geometry("22.05 kHz 1024/1024/256", 22050, 1024, 1024, 256),
    Geometry("16 kHz YAMNet 512/400/160", 16000, 512, 400, 160),
)


@dataclass
class Result:
    """Spectral convergence (whole, interior; dB) and edge peak ratio of one output per seed."""

    sc_db: list[float]
    interior_sc_db: list[float]
    edge_peak: list[float]


@dataclass
class Row:
    geometry: str
    start: str
    n_iter: int
    ours: Result
    librosa: Result | None
    ours_ms_per_iter: float
    librosa_ms_per_iter: float | None

    @property
    def ratio(self) -> float | None:
        if self.librosa_ms_per_iter is None:
            return None
        return self.ours_ms_per_iter / self.librosa_ms_per_iter


def load_clip(path: Path, sample_rate: int) -> np.ndarray:
    """Mono float32 samples of ``path`` at ``sample_rate`` Hz (soxr resampling)."""
    import soundfile as sf
    import soxr

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate).astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


def median_seconds(runs: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall time of each of ``runs`` over ``repeats`` calls after one warm-up call each.

    The runs are interleaved (A B A B ...), so that load from other processes on a shared
    machine falls on both alike.
    """
    for run in runs:
        run()
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, bucket in zip(runs, times):
            start = time.perf_counter()
            run()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in times]


def bench_geometry(clip: np.ndarray, geometry: Geometry, *, iterations: tuple[int, ...],
                   seeds: int, repeats: int, librosa_module) -> list[Row]:
    g = geometry
    waveform = torch.from_numpy(clip)
    spectrum = stft(waveform, n_fft=g.n_fft, win_length=g.win_length, hop_length=g.hop_length)
    magnitude = spectrum.abs().contiguous()
    magnitude_np = magnitude.numpy().T.copy()  # librosa: [bins, frames]
    # The same window for both: periodic Hann of win_length, zero-padded at the end to n_fft
    # (librosa would centre a short window inside n_fft instead).
    window = hann_window(g.win_length)
    window_np = np.zeros(g.n_fft, dtype=np.float32)
    window_np[:g.win_length] = window.numpy()

    edge = -(-g.win_length // g.hop_length)  # frames that overlap the first/last window

    def measure(estimate: np.ndarray | torch.Tensor, into: Result) -> None:
        estimate = torch.as_tensor(np.asarray(estimate, dtype=np.float32))
        for frames, bucket in ((0, into.sc_db), (edge, into.interior_sc_db)):
            bucket.append(spectral_convergence_db(
                estimate, magnitude, n_fft=g.n_fft, win_length=g.win_length,
                hop_length=g.hop_length, edge_frames=frames))
        peak = estimate.abs()
        rim = torch.cat([peak[:g.win_length], peak[-g.win_length:]]).max()
        into.edge_peak.append(float(rim / peak[g.win_length:-g.win_length].max()))

    def librosa_draws(seed: int) -> torch.Tensor:
        # librosa.griffinlim(init="random", random_state=seed) draws exactly these phases.
        turns = np.random.RandomState(seed=seed).random(size=magnitude_np.shape)
        return torch.from_numpy(2 * np.pi * turns.T).to(torch.float32)

    def ours(n_iter: int, init_phase: torch.Tensor | None, seed: int) -> torch.Tensor:
        return griffin_lim(magnitude, n_fft=g.n_fft, win_length=g.win_length,
                           hop_length=g.hop_length, n_iter=n_iter, momentum=0.99,
                           init_phase=init_phase, window=window,
                           generator=torch.Generator().manual_seed(seed))

    def theirs(n_iter: int, init: str | None, seed: int) -> np.ndarray:
        return librosa_module.griffinlim(
            magnitude_np, n_iter=n_iter, hop_length=g.hop_length, win_length=g.n_fft,
            n_fft=g.n_fft, window=window_np, center=False, momentum=0.99, init=init,
            random_state=seed)

    zero_phase = torch.zeros_like(magnitude)
    rows = []
    for n_iter in iterations:
        # (label, our start per seed, librosa's init or None when it cannot run, seeds)
        starts: list[tuple[str, Callable[[int], torch.Tensor | None], str | None, int]] = [
            ("random", lambda seed: None, "random", seeds),
            ("random=", librosa_draws, "random", seeds),
            ("zero", lambda seed: zero_phase, "zero", 1),
            ("original", lambda seed: spectrum, None, 1)]
        for start, our_start, librosa_init, n_seeds in starts:
            runs_librosa = librosa_module is not None and librosa_init is not None
            init = None if librosa_init == "zero" else librosa_init
            ours_result, theirs_result = Result([], [], []), Result([], [], [])
            for seed in range(n_seeds):
                measure(ours(n_iter, our_start(seed), seed), ours_result)
                if runs_librosa:
                    measure(theirs(n_iter, init, seed), theirs_result)
            first_start = our_start(0)
            runs = [lambda n=n_iter, p=first_start: ours(n, p, 0)]
            if runs_librosa:
                runs.append(lambda n=n_iter, i=init: theirs(n, i, 0))
            seconds = median_seconds(runs, repeats)
            theirs_ms = 1e3 * seconds[1] / n_iter if runs_librosa else None
            rows.append(Row(g.name, start, n_iter, ours_result,
                            theirs_result if runs_librosa else None,
                            1e3 * seconds[0] / n_iter, theirs_ms))
    return rows


def format_values(values: list[float] | None, spread: bool = True) -> str:
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    if len(values) == 1 or not spread:
        return f"{mean:.2f}"
    return f"{mean:.2f} [{min(values):.2f}, {max(values):.2f}]"


def print_table(rows: list[Row]) -> None:
    def pair(ours: list[float], theirs: list[float] | None, spread: bool = True) -> str:
        return f"{format_values(ours, spread)} | {format_values(theirs, spread)}"

    header = (f"{'geometry':<26} {'start':<8} {'iters':>5}  {'SC dB ours | librosa':<42} "
              f"{'interior SC dB':<15} {'edge peak':<14} {'ms/it ours | librosa':<21} "
              f"{'ratio':>5}")
    print(header)
    print("-" * len(header))
    for r in rows:
        theirs = r.librosa
        librosa_ms = f"{r.librosa_ms_per_iter:.2f}" if r.librosa_ms_per_iter else "n/a"
        ratio = f"{r.ratio:5.2f}" if r.ratio is not None else f"{'n/a':>5}"
        print(f"{r.geometry:<26} {r.start:<8} {r.n_iter:>5}  "
              f"{pair(r.ours.sc_db, theirs and theirs.sc_db):<42} "
              f"{pair(r.ours.interior_sc_db, theirs and theirs.interior_sc_db, False):<15} "
              f"{pair(r.ours.edge_peak, theirs and theirs.edge_peak, False):<14} "
              f"{f'{r.ours_ms_per_iter:.2f} | {librosa_ms}':<21} {ratio}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO,
                        help="clip to analyse (default: ../shared/audio/anchor_clip.wav, 10 s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="use the first N seconds")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median)")
    parser.add_argument("--seeds", type=int, default=3, help="random-phase seeds")
    parser.add_argument("--iterations", type=int, nargs="+", default=[32, 100])
    args = parser.parse_args(argv)

    if not args.audio.is_file():
        print(f"no audio at {args.audio}; pass --audio FILE", file=sys.stderr)
        return 2
    try:
        import librosa
    except ImportError:
        librosa = None
        print("librosa is not installed (pip install librosa): only our timings are shown",
              file=sys.stderr)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} ({args.threads} threads, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY')}), numpy {np.__version__}, "
          f"librosa {getattr(librosa, '__version__', 'absent')}; momentum 0.99, center=False; "
          f"{args.audio.name}, first {args.seconds:g} s")
    rows: list[Row] = []
    for geometry in GEOMETRIES:
        clip = load_clip(args.audio, geometry.sample_rate)[:round(args.seconds
                                                                  * geometry.sample_rate)]
        rows += bench_geometry(clip, geometry, iterations=tuple(args.iterations),
                               seeds=args.seeds, repeats=args.repeats, librosa_module=librosa)
    print_table(rows)
    print("SC = 20 log10(|| |STFT(x)| - S ||_F / ||S||_F), lower is better (random: mean "
          "[min, max] over seeds; interior: without the edge frames). edge peak: loudest sample "
          "within one window of either end / loudest elsewhere. ratio = ours / librosa time "
          "per iteration (lower is faster).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
