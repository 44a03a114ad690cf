"""How far must the real thing go before a judge hears it? No dream involved.

The reference of :mod:`bench_transfer` at fixed distances.

For the same N seeded ``(clip, wrong target)`` pairs as :mod:`bench_transfer` (same data, same
``--clips`` and ``--seed``, same models), a clip of the target class (the same seeded choice as
the benchmark's reference, :func:`bench_transfer.reference_clip`) is mixed into the original at
each distance of ``--distances`` (rmse_db on the dreaming model's log-mel,
:func:`dreamsound.engine.transfer.mixed_at_distance`), and each judge says whether it moved
(:func:`dreamsound.metrics.judge_moved`); the last column puts the clip in place of the
original. A dream's transfer rate at D dB is read against this curve: the share of pairs in
which adding the target instrument itself at D dB moves each judge.

Usage::

    python -m scripts.experiments.reference_distance work_data/real/dev --clips 40 \\
        --distances 3,6,9,12,15 --model instrument --judges yamnet,musicnn,irmas-pons \\
        --weights yamnet=../shared/yamnet/yamnet.h5 --weights irmas-pons=../shared/pons

``--json F`` writes ``{"distances", "pairs", "rates": {judge: {distance: share, "in_place":
share}}, "rows"}`` (per pair: clip, true class, target, reference clip and, per judge and
distance, ``moved``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from dreamsound.errors import DreamsoundError
from scripts.experiments.bench_transfer import (
    add_pair_arguments,
    clips_and_targets,
    reference_clip,
)


def distance_list(text: str) -> list[float]:
    """``"3,6,9"`` -> ``[3.0, 6.0, 9.0]``: positive rmse_db values (argparse's type)."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not all(0.0 < v < 100.0 for v in values):
        raise argparse.ArgumentTypeError(f"distances are dB between 0 and 100, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pair_arguments(parser)
    parser.add_argument("--distances", type=distance_list, default=[3.0, 6.0, 9.0, 12.0, 15.0],
                        help="rmse_db values, a,b,...")
    parser.add_argument("--model", default="instrument",
                        help="the model whose log-mel measures the distance (the dreamer's)")
    parser.add_argument("--json", type=Path, help="write the rates and every row here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    except DreamsoundError as exc:  # bad input or missing weights: one line, exit 2
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    """The script's work for parsed ``args``."""

    from dreamsound.audio import load_audio
    from dreamsound.engine.transfer import judge_sound, mixed_at_distance
    from dreamsound.models.concepts import find_concept
    from dreamsound.models.registry import load_model

    distances = args.distances
    paths = dict(item.split("=", 1) for item in args.weights)
    model = load_model(args.model, paths.get(args.model), "cpu")
    judges = [load_model(n, paths.get(n), "cpu") for n in args.judges.split(",")
              if n != args.model]
    rate = model.sample_rate
    rows = []
    for number, (clip, true, wrong) in enumerate(
            clips_and_targets(args.data, args.clips, args.seed, [model, *judges])):
        other = reference_clip(args.data, wrong, number, args.seed)
        if other is None:
            continue
        original = load_audio(clip, sample_rate=rate, max_seconds=None)
        real = load_audio(other, sample_rate=rate, max_seconds=None)
        versions = {f"{d:g}": mixed_at_distance(original, real, d, model) for d in distances}
        versions["in_place"] = np.resize(real, original.size)
        concept = find_concept(wrong)
        row = {"clip": str(clip), "true": true, "target": wrong, "reference_clip": str(other),
               "judges": {j.name: {key: judge_sound(j, concept, original, sound, rate).moved
                                   for key, sound in versions.items()} for j in judges}}
        rows.append(row)
        print(f"  {clip.name[:40]:<40} -> {wrong}  " + "  ".join(
            f"{n}:" + "".join("+" if m else "-" for m in moved.values())
            for n, moved in row["judges"].items()), flush=True)
    keys = [f"{d:g}" for d in distances] + ["in_place"]
    rates = {j.name: {k: sum(r["judges"][j.name][k] for r in rows) / len(rows) if rows
                      else None for k in keys} for j in judges}
    command = ["python", "-m", "scripts.experiments.reference_distance", *sys.argv[1:]]
    print(f"\n$ {shlex.join(command)}")
    print(f"{len(rows)} pairs; share in which a clip of the target class, mixed in at each "
          f"rmse_db ({args.model}'s log-mel) or in place of the original, moved each judge")
    print(f"{'judge':<12} " + " ".join(f"{k + (' dB' if k != 'in_place' else ''):>9}"
                                       for k in keys))
    for name, shares in rates.items():
        print(f"{name:<12} " + " ".join(f"{'-' if v is None else f'{v:.2f}':>9}"
                                        for v in shares.values()))
    if args.json:
        args.json.write_text(json.dumps({"distances": distances, "pairs": len(rows),
                                         "rates": rates, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
