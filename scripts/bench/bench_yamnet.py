"""Benchmark YAMNet forward+backward (gradient w.r.t. the input only) on 10 s of audio.

The dream engine's inner step is: waveform (or log-mel) -> logits -> target objective ->
backward to the input, with the parameters frozen. This script times that step on the CPU and
prints a table (median of ``--repeats`` runs after ``--warmup`` runs).

Usage::

    python -m scripts.bench.bench_yamnet --weights ../shared/yamnet/yamnet.h5 [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from dreamsound.models.registry import load_model


def _median_seconds(step: Callable[[], None], *, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="../shared/yamnet/yamnet.h5")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--target", type=int, default=132, help="class index (132 = Music)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = load_model("yamnet", weights=args.weights, device=args.device)
    sr = model.sample_rate
    generator = torch.Generator().manual_seed(0)
    waveform = 0.1 * torch.randn(int(args.seconds * sr), generator=generator)
    waveform = waveform.to(model.device)
    with torch.no_grad():
        log_mel = model.log_mel(waveform)
    n_patches = model.front_end.patches(log_mel).shape[0]

    def sync() -> None:
        if model.device.type == "cuda":
            torch.cuda.synchronize()

    def from_log_mel() -> None:
        x = log_mel.clone().requires_grad_(True)
        model.logits_from_log_mel(x)[:, args.target].mean().backward()
        sync()

    def from_waveform() -> None:
        x = waveform.clone().requires_grad_(True)
        model(x).logits[:, args.target].mean().backward()
        sync()

    def forward_only() -> None:
        with torch.no_grad():
            model(waveform)
        sync()

    rows = [
        ("forward only (no grad), waveform", forward_only),
        ("forward+backward from log-mel", from_log_mel),
        ("forward+backward from waveform", from_waveform),
    ]
    print(f"YAMNet, {args.seconds:g} s of audio = {n_patches} patches, device {args.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of "
          f"{args.repeats} after {args.warmup} warm-up runs")
    print(f"{'step':<36} {'seconds':>9}")
    for name, step in rows:
        seconds = _median_seconds(step, warmup=args.warmup, repeats=args.repeats)
        print(f"{name:<36} {seconds:>9.4f}")


if __name__ == "__main__":
    main()
