"""Benchmark the dream engine: one dream step on 10 s of audio, per model and domain.

For each model and domain, a fresh child process (so that its peak memory is its own):

* runs a whole dream of ``--steps`` steps on ``--seconds`` of audio (``examples/loop.wav``
  looped) toward one class, timing every step (the engine's own per-step timer: forward,
  backward, normalisation, update, distance) and the whole dream (with the final rendering);
* times the model's *bare* forward + backward on the same input in the same process (gradient
  with respect to the log-mel for the spectrogram domain, to the samples for the waveform
  domain, and nothing else), so the ratio is the engine's overhead;
* reports its peak resident memory (``ru_maxrss``).

Usage::

    python -m scripts.bench.bench --weights ../shared/yamnet/yamnet.h5   # debug, yamnet, instrument
    python -m scripts.bench.bench --models yamnet --domains spectrogram --steps 30 --json
    python -m scripts.bench.bench --baseline 1cb648b --rounds 3   # this tree against a commit

With ``--baseline REF`` the same children also run on the code of git commit ``REF`` (exported
to a temporary folder and put first on ``PYTHONPATH``), alternating old and new ``--rounds``
times, and the table gives the ratio new / old of the median step time: a restructuring is
measured against what it replaced on the same machine in the same run.

The Griffin-Lim comparison with librosa lives in ``scripts/bench/bench_griffinlim.py`` (run with
``--griffin-lim`` to call it after this table).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOOP = REPO / "examples" / "loop.wav"
TARGETS = {"debug": "violin", "yamnet": "violin", "instrument": "violin", "musicnn": "violin"}


def _median_time(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def child(model_name: str, domain: str, weights: str | None, seconds: float, steps: int,
          threads: int) -> dict:
    """Measure one (model, domain) in this process; returns the row as a dict."""
    import numpy as np
    import torch

    import dreamsound

    torch.set_num_threads(threads)
    if (Path(dreamsound.__file__).parent / "allocator.py").is_file():  # what its CLI does
        from dreamsound.allocator import reuse_freed_memory

        reuse_freed_memory()
    from dreamsound.audio import load_audio
    from dreamsound.models.registry import load_model

    try:  # this tree
        from dreamsound.api import dream

        def on_step(event) -> None:
            step_times.append(event.seconds)
    except ImportError:  # a baseline from before the engine's restructuring
        from dreamsound.dream import dream

        def on_step(_step, _total, info) -> None:
            step_times.append(info["seconds"])

    net = load_model(model_name, weights if model_name == "yamnet" else None, "cpu")
    loop = load_audio(LOOP, sample_rate=net.sample_rate)
    n = round(seconds * net.sample_rate)
    wave = np.tile(loop, int(np.ceil(n / loop.size)))[:n]
    target = net.resolve_class(TARGETS.get(model_name, "0"))

    step_times: list[float] = []
    started = time.perf_counter()
    result = dream(wave, model=net, target=target, domain=domain, steps=steps,
                   progress=on_step)
    dream_seconds = time.perf_counter() - started

    tensor = torch.from_numpy(wave)
    log_mel = net.log_mel(tensor).detach()

    def bare_spectrogram() -> None:
        variable = log_mel.clone().requires_grad_(True)
        net.logits_from_log_mel(variable)[:, target].mean().backward()

    def bare_waveform() -> None:
        variable = tensor.clone().requires_grad_(True)
        net(variable).logits[:, target].mean().backward()

    bare = _median_time(bare_spectrogram if domain == "spectrogram" else bare_waveform,
                        repeats=max(5, steps // 2))
    # Skip the first steps: they pay one-off allocations and lazy initialisation.
    steady = step_times[2:] if len(step_times) > 4 else step_times
    step = statistics.median(steady)
    return {"model": model_name, "domain": domain, "seconds_audio": seconds,
            "step_median_s": step, "step_min_s": min(steady), "bare_fwd_bwd_s": bare,
            "overhead_ratio": step / bare, "dream_s": dream_seconds, "steps": len(step_times),
            "confidence_before": result.report["confidence_before"],
            "confidence_after": result.report["confidence_after"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "threads": threads, "code_path": str(Path(sys.modules["dreamsound"].__file__).parent)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="debug,yamnet,instrument")
    parser.add_argument("--domains", default="spectrogram,waveform")
    parser.add_argument("--weights", default=str(REPO.parent / "shared" / "yamnet" / "yamnet.h5"),
                        help="YAMNet weights (yamnet.h5)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--griffin-lim", action="store_true",
                        help="also run scripts/bench/bench_griffinlim.py")
    parser.add_argument("--baseline", metavar="REF",
                        help="also run every child on the code of this git commit")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --baseline: alternate old and new this many times")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "DOMAIN"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        row = child(args.child[0], args.child[1], args.weights, args.seconds, args.steps,
                    args.threads)
        print(json.dumps(row))
        return

    baseline_dir = _export(args.baseline) if args.baseline else None
    rows, skipped = [], []
    for model_name in args.models.split(","):
        for domain in args.domains.split(","):
            for _ in range(args.rounds if baseline_dir else 1):
                for code in ([baseline_dir, None] if baseline_dir else [None]):
                    row = _run_child(args, model_name, domain, code, skipped)
                    if row is not None:
                        row["code"] = "baseline" if code else "this tree"
                        rows.append(row)
    if args.json:
        print(json.dumps({"rows": rows, "skipped": skipped}, indent=2))
    else:
        _print_table(args, rows, skipped)
        if baseline_dir:
            _print_ratios(args, rows)
    if args.griffin_lim:
        script = REPO / "scripts" / "bench" / "bench_griffinlim.py"
        if script.is_file():
            subprocess.run([sys.executable, str(script)], check=False)
        else:
            print("scripts/bench/bench_griffinlim.py is not there")


def _export(ref: str) -> str:
    """The package as of git commit ``ref``, exported to a temporary folder (kept until exit)."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="dreamsound-baseline-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "dreamsound"],
                             capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
    return folder


def _run_child(args, model_name: str, domain: str, code: str | None,
               skipped: list[str]) -> dict | None:
    import os

    cmd = [sys.executable, __file__, "--child", model_name, domain, "--weights", args.weights,
           "--seconds", str(args.seconds), "--steps", str(args.steps),
           "--threads", str(args.threads)]
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = code + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        skipped.append(f"{model_name}/{domain}: {reason}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _print_table(args, rows: list[dict], skipped: list[str]) -> None:
    header = (f"{'model':<11} {'domain':<12} {'code':<10} {'step (s)':>9} {'fwd+bwd (s)':>12} "
              f"{'overhead':>9} {'dream (s)':>10} {'peak RSS':>10}")
    print(f"one dream step on {args.seconds:g} s of audio, median of {args.steps - 2} steps, "
          f"{args.threads} threads")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:<11} {r['domain']:<12} {r['code']:<10} {r['step_median_s']:>9.4f} "
              f"{r['bare_fwd_bwd_s']:>12.4f} {r['overhead_ratio']:>8.2f}x "
              f"{r['dream_s']:>10.2f} {r['peak_rss_mb']:>7.0f} MB")
    for line in skipped:
        print(f"skipped {line}")


def _print_ratios(args, rows: list[dict]) -> None:
    """Median over rounds of each side's median step, and the ratio this tree / baseline."""
    print(f"\nthis tree / baseline {args.baseline}, median step time over {args.rounds} "
          "alternating round(s):")
    pairs = sorted({(r["model"], r["domain"]) for r in rows})
    for model_name, domain in pairs:
        side = {code: statistics.median(r["step_median_s"] for r in rows
                                        if (r["model"], r["domain"], r["code"])
                                        == (model_name, domain, code))
                for code in ("baseline", "this tree")
                if any(r["code"] == code and (r["model"], r["domain"]) == (model_name, domain)
                       for r in rows)}
        if len(side) == 2:
            print(f"  {model_name:<11} {domain:<12} {side['baseline']:.4f} s -> "
                  f"{side['this tree']:.4f} s  ratio {side['this tree'] / side['baseline']:.3f}")


if __name__ == "__main__":
    main()
