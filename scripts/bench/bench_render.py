"""Benchmark: how much the rendering of a spectrogram-domain dream adds to its distance.

Not a unit test. Each clip of an IRMAS-layout folder is dreamed (spectrogram domain, 0.1 dB steps,
``until`` 0.9 on the dreamed spectrogram only, so every rendering below starts from the same
dreamed log-mel) toward a seeded random wrong class; then that log-mel is rendered two ways, in
the same process:

* ``griffin-lim``  -- mel -> linear solve + fast Griffin-Lim (32 iterations) from the original's
  phase: what dreamsound did before the fit;
* ``+ fit``        -- the same, then ``LogMelFrontEnd.fit_waveform`` (``--fit-iterations``,
  default the engine's): the default rendering.

Columns (means over the clips): rmse_db from the rendering to the dreamed log-mel (how well the
sound carries the dream), from the original to the rendering (what ``evaluate`` reports) beside
the dream's own distance from the original, the target confidence of the rendering (peak-limited
as written) and the rendering's wall time.

Usage::

    python -m scripts.bench.bench_render DATA_DIR [--clips 16] [--seed 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see scripts/bench/bench_griffinlim.py

import numpy as np
import torch

from dreamsound import metrics
from dreamsound.api import dream
from dreamsound.audio import limit_peaks
from dreamsound.config import DreamConfig
from dreamsound.engine.objectives import Objective, TargetTerm
from dreamsound.models.registry import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="IRMAS training layout (class folders)")
    parser.add_argument("--model", default="instrument")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fit-iterations", type=int, default=DreamConfig().fit_iterations)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_model(args.model, device="cpu")
    codes = list(model.class_codes)
    files = sorted(p for p in args.data_dir.glob("*/*.wav") if p.parent.name in codes)
    if not files:
        raise SystemExit(f"no class-folder wavs with {args.model}'s class codes in {args.data_dir}")
    chooser = random.Random(args.seed)
    chosen = chooser.sample(files, min(args.clips, len(files)))
    fe = model.front_end
    columns: dict[str, dict[str, list[float]]] = {"griffin-lim": {}, "+ fit": {}}
    dreamed_distance: list[float] = []
    for path in chosen:
        target = chooser.choice([i for i, c in enumerate(codes) if c != path.parent.name])
        result = dream(str(path), model=model, target=target, until=0.9, steps=300,
                       step_size=0.1, seed=0)
        original = torch.from_numpy(result.spectrograms["original"])
        dreamed = torch.from_numpy(result.spectrograms["dreamed"])
        dreamed_distance.append(metrics.rmse_db(dreamed, original, front_end=fe))
        wave = torch.from_numpy(result.original)
        objective = Objective(model, targets=[TargetTerm(target, codes[target], 1.0, "")])
        for name, fit in (("griffin-lim", 0), ("+ fit", args.fit_iterations)):
            started = time.perf_counter()
            audio = model.front_end.invert(dreamed, reference_waveform=wave, n_iter=32,
                                           fit_iter=fit, length=wave.shape[-1])
            seconds = time.perf_counter() - started
            written = limit_peaks(audio.numpy().astype(np.float32), model.sample_rate)
            with torch.no_grad():
                heard = model.log_mel(torch.from_numpy(written))
                confidence = objective.confidence(model.logits_from_log_mel(heard))
            row = columns[name]
            row.setdefault("to dream", []).append(
                metrics.rmse_db(heard, dreamed, front_end=fe))
            row.setdefault("from original", []).append(
                metrics.rmse_db(heard, original, front_end=fe))
            row.setdefault("confidence", []).append(float(confidence))
            row.setdefault("seconds", []).append(seconds)
        print(f"{path.name[:48]:48s} -> {codes[target]}: dream {dreamed_distance[-1]:.2f} dB",
              flush=True)

    print(f"\n{len(chosen)} clips; the dreams lie {statistics.mean(dreamed_distance):.3f} dB "
          "(mean rmse_db) from their originals")
    print(f"{'rendering':12s} {'to dream dB':>12s} {'from original dB':>17s} "
          f"{'confidence':>11s} {'min conf':>9s} {'seconds':>8s}")
    for name, row in columns.items():
        print(f"{name:12s} {statistics.mean(row['to dream']):12.3f} "
              f"{statistics.mean(row['from original']):17.3f} "
              f"{statistics.mean(row['confidence']):11.3f} {min(row['confidence']):9.3f} "
              f"{statistics.median(row['seconds']):8.3f}")


if __name__ == "__main__":
    main()
