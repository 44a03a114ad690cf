"""Do other models hear a dream? Transfer of wrong-class dreams to judges outside the dream.

For N clips of an IRMAS-layout folder (seeded choice, one seeded wrong target each) and, with
``--loop``, ``examples/loop.wav`` -> violin, every mode dreams the clip with the dreaming
model(s) and the judges (never one of the dreaming models) score the original and the written
dream (16-bit WAV, re-read). Per mode and judge: the transfer rate (share of dreams the judge
"moved" on, :func:`dreamsound.metrics.judge_moved`), the mean judge gain (target score after -
before), the same for the null baseline (the original plus white noise scaled to the dream's
own rmse_db, so a gain is read against chance), the mean rmse_db of the written audio and the
mean seconds per dream; then the same rates per target class, and how often each half of
"moved" held on its own (the score rose: :func:`dreamsound.metrics.judge_score_rose`; the rank
climbed: :func:`dreamsound.metrics.judge_rank_climbed`), for the dreams and for the null.

Beside the null, each dream has a **reference**: a seeded solo clip of the target class from
the same folder (the real instrument, as the folder has it) mixed into the original at the
dream's own rmse_db (:func:`dreamsound.engine.transfer.mixed_at_distance`), and the same clip
in place of the original. A judge's rate on a dream is read between chance (the null) and
the real thing at the same distance; the replacement says how often the judge hears the
folder's own recordings of the target at all.

``--json F`` writes ``{"runs": [...], "summaries": [...]}``: per run its mode, config and rows
(per dream: clip, true class, target, seconds, rmse_db, the dreaming model's confidence before
and on the written audio, and per judge ``moved``, ``gain``, ``confidence_before``,
``confidence_after``, ``rank_before``, ``rank_after``, ``top_after`` and the null's
``null_moved``, ``null_gain``, ``null_confidence_after``, ``null_rank_after``, their
``reference_`` twins and ``replaced_moved``; the row's ``reference_clip``, null when the folder
has no clip of the target class); per summary the printed table's figures (per judge ``rate``,
``score_rose``, ``rank_climbed``, ``gain``, their ``null_`` and ``reference_`` twins and
``replaced_rate``, over the ``referenced`` dreams that have a reference, and on those the
dream's own ``referenced_rate``, ``dream_only``, ``reference_only`` and
``dream_vs_reference_p``, the exact McNemar test of the two on the same pairs) and
``by_target``.

Usage::

    python -m scripts.experiments.bench_transfer /work/data/opl3 --clips 40 \\
        --modes exact,robust --models instrument --judges yamnet,musicnn,irmas-pons \\
        --weights yamnet=../shared/yamnet/yamnet.h5 --weights irmas-pons=../shared/pons

A mode is ``style[/domain][/changes=K][/score=S][/steps=N][/step=X][/rmse=D]``, e.g.
``robust/samples/changes=2``. ``--models a,b`` makes an ensemble (sound domains only); a member
``NAME@PATH`` loads that model with other weights, so one network trained twice can be two
members (``--models instrument,instrument@old.safetensors``).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dreamsound.errors import DataError, DreamsoundError
from dreamsound.metrics import judge_rank_climbed, judge_score_rose

REPO = Path(__file__).resolve().parents[2]
LOOP = REPO / "examples" / "loop.wav"


def parse_mode(text: str) -> dict:
    """``robust/samples/changes=2`` -> DreamConfig keyword arguments."""
    parts = text.split("/")
    values: dict = {"style": parts[0]}
    names = {"changes": "changes", "score": "score", "steps": "steps", "step": "step_size",
             "rmse": "max_rmse_db", "until": "until"}
    for part in parts[1:]:
        key, _, value = part.partition("=")
        if not value:
            values["domain"] = key
            continue
        field = names[key]
        values[field] = value if field == "score" else float(value)
    for key in ("changes", "steps"):
        if key in values:
            values[key] = int(values[key])
    return values


def clips_and_targets(data: Path, n: int, seed: int, models: list
                      ) -> list[tuple[Path, str, str]]:
    """``(clip, true code, wrong code)`` for ``n`` seeded clips; wrong targets are drawn among
    the classes every model (dreaming or judging) knows."""
    from dreamsound.data.irmas import IRMAS_CODES
    from dreamsound.engine.transfer import judge_knows
    from dreamsound.models.concepts import find_concept

    known = [c for c in IRMAS_CODES if all(judge_knows(m, find_concept(c)) for m in models)]
    files = sorted(p for p in data.glob("*/*.wav") if p.parent.name in IRMAS_CODES)
    if not files:
        raise DataError(f"{data}: no clips (an IRMAS-layout folder holds CLASS/*.wav, CLASS an "
                        "IRMAS code such as vio)")
    chooser = random.Random(seed)
    chosen = chooser.sample(files, min(n, len(files)))
    return [(p, p.parent.name, chooser.choice([c for c in known if c != p.parent.name]))
            for p in chosen]


def reference_clip(data: Path, code: str, number: int, seed: int) -> Path | None:
    """A seeded clip of class ``code`` from ``data`` (solo clips first), or None."""
    clips = sorted((data / code).glob("*.wav"))
    solo = [p for p in clips if "-solo-" in p.name] or clips
    return random.Random(f"{seed}:{number}").choice(solo) if solo else None


def run_mode(mode: str, jobs, args, models, judges) -> dict:
    from dreamsound.api import Dreamer
    from dreamsound.audio import load_audio
    from dreamsound.config import DreamConfig
    from dreamsound.engine.transfer import (
        judge_sound,
        matched_noise,
        mixed_at_distance,
        target_concept,
    )
    from dreamsound.models.concepts import find_concept
    from dreamsound.outputs import write_audio

    config = DreamConfig.from_kwargs(**parse_mode(mode), seed=args.seed)
    dreamer = Dreamer(models, config)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for number, (clip, true, wrong) in enumerate(jobs):
            started = time.perf_counter()
            result = dreamer.dream(clip, target=find_concept(wrong).name)
            seconds = time.perf_counter() - started
            path = write_audio(result, Path(folder) / f"d{number}")
            written = load_audio(path, sample_rate=result.sample_rate, allow_silence=True,
                                 max_seconds=None)
            result = dreamer.judge_written(result, path)
            concept = target_concept(dreamer.model, result.report.targets[0]["index"])
            rmse_db = result.report.rmse_db_rendered
            null = matched_noise(result.original, rmse_db, dreamer.model, seed=args.seed + number)
            other = reference_clip(args.data, wrong, number, args.seed)
            real = None if other is None else load_audio(
                other, sample_rate=result.sample_rate, max_seconds=None)
            row = {"clip": str(clip), "true": true, "target": wrong, "seconds": seconds,
                   "rmse_db": rmse_db, "reference_clip": None if other is None else str(other),
                   "confidence_before": result.report.confidence_before,
                   "confidence_rendered": result.report.confidence_rendered, "judges": {}}
            mixed = None if real is None else mixed_at_distance(
                result.original, real, rmse_db, dreamer.model)
            for judge in judges:
                dream = judge_sound(judge, concept, result.original, written, result.sample_rate)
                chance = judge_sound(judge, concept, result.original, null, result.sample_rate)
                row["judges"][judge.name] = {
                    "moved": dream.moved, "gain": dream.confidence_after
                    - dream.confidence_before, "top_after": dream.top_after[0]["name"],
                    "confidence_before": dream.confidence_before,
                    "confidence_after": dream.confidence_after,
                    "rank_before": dream.rank_before, "rank_after": dream.rank_after,
                    "null_moved": chance.moved,
                    "null_gain": chance.confidence_after - chance.confidence_before,
                    "null_confidence_after": chance.confidence_after,
                    "null_rank_after": chance.rank_after}
                if real is not None:
                    added = judge_sound(judge, concept, result.original, mixed,
                                        result.sample_rate)
                    instead = judge_sound(judge, concept, result.original,
                                          np.resize(real, result.original.size),
                                          result.sample_rate)
                    row["judges"][judge.name].update({
                        "reference_moved": added.moved,
                        "reference_gain": added.confidence_after - added.confidence_before,
                        "reference_confidence_after": added.confidence_after,
                        "reference_rank_after": added.rank_after,
                        "replaced_moved": instead.moved})
            rows.append(row)
            print(f"  {mode:<28} {Path(row['clip']).name[:36]:<36} -> {wrong}: "
                  f"{row['confidence_before']:.2f}->{row['confidence_rendered']:.2f} "
                  f"{row['rmse_db']:.2f} dB {seconds:.1f} s  " + "  ".join(
                      f"{n}:{'+' if j['moved'] else '-'}{j['gain']:+.3f}"
                      for n, j in row["judges"].items()), flush=True)
    return {"mode": mode, "config": config.to_json(), "rows": rows}


def _share(items: list, test) -> float | None:
    """The share of ``items`` for which ``test`` holds (None for no items)."""
    return sum(bool(test(v)) for v in items) / len(items) if items else None


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value for paired yes/no outcomes: the chance, were both
    equally likely to move a judge, of discordant pairs at least this one-sided
    (``only_a`` moved by the first only, ``only_b`` by the second only; 1.0 for none)."""
    n = only_a + only_b
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2 ** n
    return min(1.0, 2.0 * tail)


def summarize(run: dict, judges: list[str]) -> dict:
    rows = run["rows"]
    out = {"mode": run["mode"], "dreams": len(rows),
           "mean_rmse_db": statistics.mean(r["rmse_db"] for r in rows),
           "mean_seconds": statistics.mean(r["seconds"] for r in rows),
           "reached_0.9": sum(r["confidence_rendered"] >= 0.9 for r in rows) / len(rows)}
    for name in judges:
        verdicts = [r["judges"][name] for r in rows]
        referenced = [v for v in verdicts if "reference_moved" in v]
        summary = {"gain": statistics.mean(v["gain"] for v in verdicts),
                   "null_gain": statistics.mean(v["null_gain"] for v in verdicts),
                   "reference_gain": statistics.mean(v["reference_gain"] for v in referenced)
                   if referenced else None,
                   "replaced_rate": _share(referenced, lambda v: v["replaced_moved"]),
                   # dream and reference on the same pairs: the dream's rate there, and the
                   # discordant pairs (moved by one only)
                   "referenced": len(referenced),
                   "referenced_rate": _share(referenced, lambda v: v["moved"]),
                   "dream_only": sum(v["moved"] and not v["reference_moved"]
                                     for v in referenced),
                   "reference_only": sum(v["reference_moved"] and not v["moved"]
                                         for v in referenced)}
        summary["dream_vs_reference_p"] = mcnemar_exact_p(summary["dream_only"],
                                                          summary["reference_only"])
        # judge_moved and its two halves, each on its own (which one holds a judge back), for
        # the dream, the null baseline and the reference
        for prefix, items in (("", verdicts), ("null_", verdicts), ("reference_", referenced)):
            after = "confidence_after" if not prefix else f"{prefix}confidence_after"
            rank = "rank_after" if not prefix else f"{prefix}rank_after"
            summary[f"{prefix}rate"] = _share(items, lambda v, p=prefix: v[f"{p}moved"])
            summary[f"{prefix}score_rose"] = _share(
                items, lambda v, a=after: judge_score_rose(v["confidence_before"], v[a]))
            summary[f"{prefix}rank_climbed"] = _share(
                items, lambda v, r=rank: judge_rank_climbed(v["rank_before"], v[r]))
        out[name] = summary
    out["by_target"] = by_target(rows, judges)
    return out


def by_target(rows: list[dict], judges: list[str]) -> dict:
    """Per target class: dreams, the share that convinced the dreaming model(s) (>= 0.5 on
    the written audio) and each judge's transfer rate. Which targets carry over is not the
    same for every sound: a gain envelope can make a sustained sound more like a violin more
    easily than it can give it a guitar's plucked attacks."""
    out: dict = {}
    for target in sorted({r["target"] for r in rows}):
        mine = [r for r in rows if r["target"] == target]
        out[target] = {"dreams": len(mine),
                       "convinced": sum(r["confidence_rendered"] >= 0.5 for r in mine) / len(mine)}
        for name in judges:
            verdicts = [r["judges"][name] for r in mine]
            out[target][name] = _share(verdicts, lambda v: v["moved"])
            out[target][f"{name}_reference"] = _share(
                [v for v in verdicts if "reference_moved" in v], lambda v: v["reference_moved"])
    return out


def add_pair_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that fix the ``(clip, wrong target)`` pairs and who judges them, shared with
    :mod:`scripts.experiments.reference_distance` so both scripts draw the same pairs."""
    parser.add_argument("data", type=Path, help="IRMAS-layout folder of clips")
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--judges", default="yamnet,musicnn,irmas-pons")
    parser.add_argument("--weights", action="append", default=[], metavar="MODEL=PATH")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pair_arguments(parser)
    parser.add_argument("--loop", action="store_true", help="also examples/loop.wav -> violin")
    parser.add_argument("--modes", default="exact,robust")
    parser.add_argument("--models", default="instrument", help="dreaming model(s), a,b")
    parser.add_argument("--json", type=Path, help="write every row here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    except DreamsoundError as exc:  # bad input or missing weights: one line, exit 2
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    """The script's work for parsed ``args``."""

    from dreamsound.models.registry import load_model

    paths = dict(item.split("=", 1) for item in args.weights)
    members = [item.partition("@")[::2] for item in args.models.split(",")]  # (name, path)
    loaded = [(load_model(n, path or paths.get(n), "cpu"), 1.0) for n, path in members]
    judge_names = [j for j in args.judges.split(",") if j not in {n for n, _ in members}]
    judges = [load_model(n, paths.get(n), "cpu") for n in judge_names]
    jobs = clips_and_targets(args.data, args.clips, args.seed,
                             [m for m, _ in loaded] + judges)
    if args.loop:
        from dreamsound.engine.transfer import judge_knows
        from dreamsound.models.concepts import find_concept

        deaf = [m.name for m in [m for m, _ in loaded] + judges
                if not judge_knows(m, find_concept("vio"))]
        if deaf:  # a model without a violin class can neither dream it nor judge it
            print(f"--loop skipped: no violin class in {', '.join(deaf)}")
        else:
            jobs.append((LOOP, "loop", "vio"))
    runs = [run_mode(mode, jobs, args, loaded, judges) for mode in args.modes.split(",")]
    command = ["python", "-m", "scripts.experiments.bench_transfer", *sys.argv[1:]]
    print(f"\n$ {shlex.join(command)}")
    print(f"dreaming: {args.models}; judges: {', '.join(judge_names)}; {len(jobs)} dreams "
          "(wrong targets); rate = judge moved (null: same rmse_db of white noise; ref: a "
          "clip of the target class mixed in at the same rmse_db; in place: that clip "
          "instead of the original)")
    header = f"{'mode':<28} {'rmse dB':>7} {'s/dream':>8} {'>=0.9':>6} " + " ".join(
        f"{n + ' rate (null / ref / in place)':>40} {'gain':>7}" for n in judge_names)
    print(header)
    summaries = [summarize(run, judge_names) for run in runs]
    for s in summaries:
        print(f"{s['mode']:<28} {s['mean_rmse_db']:>7.2f} {s['mean_seconds']:>8.1f} "
              f"{s['reached_0.9']:>6.2f} " + " ".join(
                  f"{s[n]['rate']:>18.2f} ({s[n]['null_rate']:.2f} / "
                  f"{_rate(s[n]['reference_rate'])} / {_rate(s[n]['replaced_rate'])}) "
                  f"{s[n]['gain']:>+9.3f}" for n in judge_names))
    print("\ndream against reference on the pairs that have one: share moved by the dream / "
          "by the reference of N pairs; moved by the dream only / the reference only, exact "
          "McNemar p (two-sided)")
    for s in summaries:
        print(f"{s['mode']:<28} " + "  ".join(
            f"{n} {_rate(s[n]['referenced_rate'])} / {_rate(s[n]['reference_rate'])} of "
            f"{s[n]['referenced']}; {s[n]['dream_only']} / {s[n]['reference_only']}, "
            f"p = {s[n]['dream_vs_reference_p']:.3g}" for n in judge_names))
    print("\nper target class: dreams, share convinced (>= 0.5), each judge's transfer rate "
          "(reference)")
    for s in summaries:
        for target, row in s["by_target"].items():
            print(f"{s['mode']:<28} {target:<4} {row['dreams']:>3} {row['convinced']:>5.2f} "
                  + " ".join(f"{n} {row[n]:.2f} (ref {_rate(row[n + '_reference'])})"
                             for n in judge_names))
    print("\nthe two halves of 'moved', each alone: share of dreams whose target score rose "
          "(x2 and +0.02) / whose rank climbed (null; reference)")
    for s in summaries:
        print(f"{s['mode']:<28} " + "  ".join(
            f"{n} {s[n]['score_rose']:.2f} / {s[n]['rank_climbed']:.2f} "
            f"({s[n]['null_score_rose']:.2f} / {s[n]['null_rank_climbed']:.2f}; ref "
            f"{_rate(s[n]['reference_score_rose'])} / {_rate(s[n]['reference_rank_climbed'])})"
            for n in judge_names))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "summaries": summaries}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
