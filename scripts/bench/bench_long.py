"""Benchmark: a long recording dreamed in bounded memory (issue 17, "Streaming dreams").

Not a unit test. ``examples/loop.wav`` is looped with soundfile into a ``--minutes`` long file
(default 10) in a temporary folder, and dreamed with the default settings on the default model
(or ``--model``/``--steps``), the way ``dreamsound dream`` does it
(:func:`dreamsound.streaming.dream_file`). Each dream runs in a child process that reports its
own peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and wall time. In the same run, the
first 10 s of the same file are dreamed with the same settings (one segment, the one-shot path)
twice in a child before and twice in a child after the long dream; the reference is the mean of
the two warm (second) runs, since a process's first dream pays one-time costs that only the
long dream's first segment pays.

Checks (printed with the figures):

* peak RSS of the long dream <= 1 GB;
* wall time <= 1.3 x (``minutes`` x 6) x the 10 s reference;
* no seam: :func:`seam_check` on the written file.

Usage::

    python -m scripts.bench.bench_long [--minutes 10] [--model instrument] [--steps N]
        [--device cpu] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see scripts/bench/bench_griffinlim.py

import numpy as np

REPO = Path(__file__).resolve().parents[2]
LOOP = REPO / "examples" / "loop.wav"
#: Limits the issue sets.
MAX_RSS_BYTES = 1 << 30
MAX_TIME_RATIO = 1.3
#: Seconds of the reference dream.
REFERENCE_SECONDS = 10.0


def make_long_file(path: Path, seconds: float, source: Path = LOOP) -> Path:
    """Write ``source`` looped to ``seconds`` (its own rate and format), one loop at a time."""
    import soundfile as sf

    loop, rate = sf.read(source, dtype="float32", always_2d=True)
    total = round(seconds * rate)
    with sf.SoundFile(path, "w", samplerate=rate, channels=loop.shape[1],
                      subtype="PCM_16") as out:
        written = 0
        while written < total:
            piece = loop[:total - written]
            out.write(piece)
            written += piece.shape[0]
    return path


def spectral_flux(log_mel_db: np.ndarray) -> np.ndarray:
    """Spectral flux per frame ``[T]`` in dB: the RMS over bands of the change of a log-mel in
    dB ``[T, F]`` from the previous frame (frame 0 gets 0). Symmetric, so a seam that drops the
    level counts as much as one that raises it."""
    change = np.diff(np.asarray(log_mel_db, dtype=np.float64), axis=0)
    return np.concatenate([[0.0], np.sqrt(np.mean(change ** 2, axis=1))])


def seam_check(log_mel_db: np.ndarray, join_frames: list[tuple[int, int]], *,
               percentile: float = 95.0, risk: float = 0.01) -> dict:
    """Whether the flux at the joins stays within its spread elsewhere.

    ``join_frames``: per join, the frames ``[first, last)`` whose span meets the overlap of
    the two segments (where a seam can show: the cross-fade spreads it over the overlap). Each
    join's statistic is the largest flux in its frames; the reference is the largest flux in
    every window of as many frames elsewhere (tiled, meeting no join's frames). A join "stands
    out" when its statistic is above the reference's ``percentile``: without a seam each does
    so with chance ``p = 1 - percentile / 100``. Passes when the median join is within that
    percentile and no more joins stand out than chance explains: at most the smallest ``k``
    with ``P(Binomial(joins, p) > k) < risk`` (2 of 4 joins, 8 of 66 at the defaults).
    """
    from scipy.stats import binom

    flux = spectral_flux(log_mel_db)
    width = max(last - first for first, last in join_frames)
    at_joins = np.array([flux[first:last].max() for first, last in join_frames])
    busy = np.zeros(flux.shape[0], dtype=bool)
    for first, last in join_frames:
        busy[first:last] = True
    starts = [s for s in range(1, flux.shape[0] - width + 1)
              if not busy[s:s + width].any()][::width]
    elsewhere = np.array([flux[s:s + width].max() for s in starts])
    limit = float(np.percentile(elsewhere, percentile))
    above = int(np.sum(at_joins > limit))
    chance = 1.0 - percentile / 100.0
    allowed = int(binom.ppf(1.0 - risk, len(at_joins), chance))
    return {"joins": len(at_joins), "windows_elsewhere": len(elsewhere), "frames": width,
            "join_flux_median_db": float(np.median(at_joins)),
            "join_flux_max_db": float(at_joins.max()),
            "elsewhere_flux_median_db": float(np.median(elsewhere)),
            f"elsewhere_flux_p{percentile:g}_db": limit,
            "joins_above": above, "joins_above_allowed": allowed,
            "ok": bool(np.median(at_joins) <= limit and above <= allowed)}


def join_frames(plan, hop_length: int, win_length: int) -> list[tuple[int, int]]:
    """Frames (first sample at ``t · hop_length``) meeting each join's overlap, one frame of
    margin each side."""
    out = []
    for index in range(1, plan.count):
        start = index * plan.hop
        end = (index - 1) * plan.hop + plan.length
        first = max(0, (start - win_length) // hop_length)
        out.append((first, end // hop_length + 2))
    return out


def written_seams(path: Path, model_name: str, device: str) -> dict:
    """:func:`seam_check` of a written long dream on its model's log-mel (dB)."""
    from dreamsound.inputs import FileBlocks
    from dreamsound.models.registry import load_model
    from dreamsound.segments import SegmentPlan, log_mel_blocks

    model = load_model(model_name, device=device)
    cfg = model.front_end.config
    with FileBlocks(path, model.sample_rate) as source:
        plan = SegmentPlan.for_model(source.n_samples, model)
        blocks = [model.front_end.mel_db(mel[:new]).cpu().numpy()
                  for (mel,), new in log_mel_blocks(model, [source])]
    return seam_check(np.concatenate(blocks), join_frames(plan, cfg.hop_length, cfg.win_length))


def child(args: argparse.Namespace) -> None:
    """Dream ``args.input`` in this process; print one JSON line: wall time, peak RSS, report."""
    from dreamsound.allocator import reuse_freed_memory
    from dreamsound.api import Dreamer
    from dreamsound.config import DreamConfig
    from dreamsound.streaming import dream_file

    reuse_freed_memory()  # as the CLI does
    settings = {} if args.steps is None else {"steps": args.steps}
    dreamer = Dreamer(args.model, DreamConfig(**settings), device=args.device)
    last = [-1]

    def progress(event) -> None:
        if event.segment is not None and event.segment != last[0]:
            last[0] = event.segment
            print(f"segment {event.segment + 1}/{event.segments}", file=sys.stderr, flush=True)

    runs = []
    for repeat in range(args.repeat):
        # A process's first dream also pays one-time costs (first calls into torch's kernels,
        # allocations, caches): the reference is timed warm, as every segment but the first is.
        stem = Path(args.stem + (f"-{repeat}" if args.repeat > 1 else ""))
        started = time.perf_counter()
        report = dream_file(dreamer, args.input, stem=stem, progress=progress)
        runs.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"seconds": runs[-1], "runs": runs, "peak_rss_bytes": peak,
                      "report": report}), flush=True)


def run_child(args: argparse.Namespace, source: Path, stem: Path, repeat: int = 1) -> dict:
    command = [sys.executable, "-m", "scripts.bench.bench_long", "--child", str(source),
               "--stem", str(stem), "--model", args.model, "--device", args.device,
               "--repeat", str(repeat)]
    if args.steps is not None:
        command += ["--steps", str(args.steps)]
    done = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, check=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model", default="instrument")
    parser.add_argument("--steps", type=int, default=None, help="default: DreamConfig's")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--keep", type=Path, default=None, help="write the files here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--stem", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.input = args.child
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        long_file = make_long_file(folder / f"loop-{args.minutes:g}min.wav", args.minutes * 60)
        short_file = make_long_file(folder / "loop-10s.wav", REFERENCE_SECONDS)
        first = run_child(args, short_file, folder / "short-1.dream", repeat=2)
        print(f"reference 10 s dream: {first['runs']} s (cold, warm)", flush=True)
        long = run_child(args, long_file, folder / "long.dream")
        print(f"{args.minutes:g} min dream: {long['seconds']:.1f} s", flush=True)
        second = run_child(args, short_file, folder / "short-2.dream", repeat=2)
        print(f"reference 10 s dream again: {second['runs']} s (cold, warm)", flush=True)
        reference = (first["seconds"] + second["seconds"]) / 2
        scale = args.minutes * 60 / REFERENCE_SECONDS
        ratio = long["seconds"] / (scale * reference)
        seams = written_seams(Path(long["report"]["outputs"]["audio"]), args.model, args.device)
        report = long["report"]
        figures = {
            "command": " ".join([sys.executable, "-m", "scripts.bench.bench_long",
                                 *sys.argv[1:]]),
            "minutes": args.minutes, "model": args.model,
            "steps_per_segment": report["steps_requested"],
            "segments": report["segments"]["count"],
            "long_seconds": long["seconds"],
            "reference_10s_seconds_warm": [first["seconds"], second["seconds"]],
            "reference_10s_seconds_cold": [first["runs"][0], second["runs"][0]],
            "time_ratio": ratio, "time_ok": ratio <= MAX_TIME_RATIO,
            "peak_rss_mb": long["peak_rss_bytes"] / 2**20,
            "reference_peak_rss_mb": first["peak_rss_bytes"] / 2**20,
            "rss_ok": long["peak_rss_bytes"] <= MAX_RSS_BYTES,
            "seams": seams,
            "confidence_before": report["confidence_before"],
            "confidence_rendered": report["confidence_rendered"],
            "rmse_db_rendered": report["rmse_db_rendered"],
            "load_average": os.getloadavg(),
        }
        print(json.dumps(figures, indent=2), flush=True)


if __name__ == "__main__":
    main()
