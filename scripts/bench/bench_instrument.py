#!/usr/bin/env python
"""Time the instrument CNN on a 3 s clip (front-end + network, no file decoding).

Prints the median and the minimum over ``--repeats`` runs after warm-up; the target is a median
under 50 ms on a 2-core CPU. One thread by default: on a machine whose cores are busy with other
processes, torch's OpenMP threads wait for each other and 2 threads measured ~40x slower (~400 ms)
than 1 (~10 ms) for this small network; on an idle machine 2 threads are a little faster.

    python -m scripts.bench.bench_instrument --threads 1 --repeats 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

import dreamsound


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=50, help="timed runs (default 50)")
    parser.add_argument("--seconds", type=float, default=3.0, help="clip length (default 3)")
    parser.add_argument("--weights", default=None, help="weights file (default: shipped)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = dreamsound.load_model("instrument", weights=args.weights, device="cpu")
    rng = np.random.default_rng(0)
    waveform = torch.tensor(0.1 * rng.standard_normal(int(args.seconds * model.sample_rate)),
                            dtype=torch.float32)
    times = []
    with torch.inference_mode():
        for _ in range(5):
            model(waveform)
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = model(waveform)
            times.append(1000 * (time.perf_counter() - start))
    print(f"instrument CNN, {args.seconds:g} s clip ({out.logits.shape[0]} windows), "
          f"{args.threads} thread(s), {args.repeats} runs: median {statistics.median(times):.1f} "
          f"ms, min {min(times):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
