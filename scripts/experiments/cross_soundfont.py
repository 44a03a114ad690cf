#!/usr/bin/env python
"""Cross-soundfont generalisation of the instrument CNN, and evaluation on rendered test sets.

The shipped model never hears real instruments, so the honest question is whether it learned
instruments or one soundfont's samples. This script answers it the only way possible here: train on
clips rendered through two of the three GM soundfonts and test on held-out clips rendered through
the third (every way round), reporting top-1 accuracy on solo clips and on "predominant
instrument" mixtures (the top-1 class must be the predominant one).

Layout expected (what ``scripts/data/render_trainset.py`` writes, one folder per soundfont)::

    TRAIN_ROOT/<soundfont>/<cls>/*.wav      e.g. work_data/render/train/fluidr3gm
    TEST_ROOT/<soundfont>/<cls>/*.wav       + manifest.csv marking solo / mix

Commands::

    python -m scripts.experiments.cross_soundfont folds --train-root work_data/render/train \\
        --test-root work_data/render/test --out work_data/cross
    python -m scripts.experiments.cross_soundfont evaluate \\
        --weights models/instrument_cnn/model.safetensors \\
        --test work_data/render/test/fluidr3gm work_data/render/test/timgm6mb ...
    python -m scripts.experiments.cross_soundfont evaluate --model yamnet \\
        --weights ../shared/yamnet/yamnet.h5 --test work_data/real/dev   # another model
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from dreamsound.data.irmas import IRMAS_CODES, read_training_set
from dreamsound.errors import DataError, DreamsoundError
from dreamsound.models.base import AudioClassifier
from dreamsound.models.concepts import CONCEPTS, concept_indices
from dreamsound.models.instrument import InstrumentClassifier, load_weights_file
from dreamsound.models.registry import load_model
from dreamsound.train import (
    DEFAULT_EPOCHS,
    DEFAULT_PATIENCE,
    TrainProgress,
    clip_scores,
    load_clips,
    train,
)
from dreamsound.train.data import DISTIL_LABELS

if __package__ in (None, ""):  # run as a file, not with -m: make `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.data.select_renders import concept_logits


def evaluate_folder(model: InstrumentClassifier | Sequence[InstrumentClassifier], folder: Path,
                    programs: Sequence[int] | None = None) -> dict:
    """Top-1 accuracy of ``model`` on a rendered test folder, solo and mixtures apart.

    Clip scores are the mean of the 1 s window sigmoids, exactly as ``dreamsound classify``
    computes them; given several models (same classes), their clip scores are averaged (a
    mean-score ensemble). ``programs``: score only the clips whose predominant part plays one of
    these GM programs (e.g. the presets whose samples the training soundfonts do not share).
    """
    manifest, excerpts = _test_excerpts(folder, programs)
    models = [model] if isinstance(model, InstrumentClassifier) else list(model)
    codes = list(models[0].class_codes)
    if any(list(m.class_codes) != codes for m in models):
        raise DataError("the models to average have different classes")
    clips, skipped = load_clips(excerpts, codes)
    if skipped:
        raise DataError(f"unreadable test files: {skipped[:3]}")
    scores = np.mean([clip_scores(m, clips)[0] for m in models], axis=0)
    labels = np.array([c.label for c in clips])
    return folder_top1(folder, scores, labels, [manifest[f"{e.label}/{e.path.name}"]
                                                for e in excerpts], codes)


def evaluate_folder_concepts(model: AudioClassifier, folder: Path,
                             programs: Sequence[int] | None = None) -> dict:
    """:func:`evaluate_folder` for any registered model (YAMNet, musicnn, irmas-pons, ...):
    its top-1 among the 11 IRMAS concepts, each concept scored by the highest of the model's
    classes for it (:func:`scripts.data.select_renders.concept_logits`: logits averaged over
    the clip's patches, as the teacher files are written). A concept the model has no class
    for is never its answer."""
    manifest, excerpts = _test_excerpts(folder, programs)
    items = [(IRMAS_CODES.index(e.label), e.path) for e in excerpts]
    if not any(concept_indices(c, model.class_names, ()) for c in CONCEPTS):
        raise DataError(f"{model.name} has no class for any of the 11 instruments")
    logits = concept_logits(model, items)
    labels = np.array([label for label, _ in items])
    return folder_top1(folder, logits, labels, [manifest[f"{e.label}/{e.path.name}"]
                                                for e in excerpts], list(IRMAS_CODES))


def _test_excerpts(folder: Path, programs: Sequence[int] | None) -> tuple[dict, list]:
    """A test folder's manifest rows by ``class/file`` and its excerpts (those whose
    predominant part plays one of ``programs``, if given)."""
    with open(folder / "manifest.csv", newline="") as handle:
        manifest = {row["file"]: row for row in csv.DictReader(handle)}
    excerpts = [e for e in read_training_set(folder) if programs is None
                or int(manifest[f"{e.label}/{e.path.name}"]["program"]) in programs]
    if not excerpts:
        raise DataError(f"no test clips in {folder} play programs {list(programs or [])}")
    return manifest, excerpts


def folder_top1(folder: Path, scores: np.ndarray, labels: np.ndarray, rows: list[dict],
                codes: list[str]) -> dict:
    """The report of :func:`evaluate_folder` from clip ``scores`` ``[N, classes]`` (any
    monotonic score: only the argmax counts), class indices ``labels`` and manifest ``rows``."""
    kind = np.array([r["kind"] for r in rows])
    program = np.array([int(r["program"]) for r in rows])  # the predominant part's GM program
    predicted = scores.argmax(axis=1)  # -inf (a concept the model lacks) never wins
    top1 = predicted == labels
    confusion = np.zeros((len(codes), len(codes)), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    return {
        "folder": folder.name,
        "solo_top1": _share(top1[kind == "solo"]),
        "mix_top1": _share(top1[kind == "mix"]),
        "all_top1": float(top1.mean()),
        "n_solo": int((kind == "solo").sum()), "n_mix": int((kind == "mix").sum()),
        "per_class_top1": {c: float(top1[labels == i].mean()) for i, c in enumerate(codes)
                           if (labels == i).any()},
        # "cls:program" -> [top-1, n]: which preset failed (see scripts/data/soundfont_overlap.py)
        "per_program_top1": {f"{codes[labels[program == p][0]]}:{p}":
                             [float(top1[program == p].mean()), int((program == p).sum())]
                             for p in sorted(set(program.tolist()))},
        "confusion": {"classes": codes, "rows_true_cols_predicted": confusion.tolist()},
    }


def _share(hits: np.ndarray) -> float | None:
    """Fraction of true values; None for no clips (a test set without mixtures, say)."""
    return float(hits.mean()) if hits.size else None


def _fmt_share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _printer(prefix: str):
    def progress(event: TrainProgress) -> None:
        if event.stage == "validated":
            m = event.metrics
            print(f"{prefix} epoch {m['epoch']:2d}: train {m['train_loss']:.4f} val "
                  f"{m['val_loss']:.4f} acc {m['val_accuracy']:.3f} F1 {m['val_micro_f1']:.3f} "
                  f"θ {m['threshold']:.2f} {m['seconds']:.0f} s{' *' if m['improved'] else ''}",
                  flush=True)
    return progress


def run_folds(args: argparse.Namespace) -> int:
    fonts = sorted(p.name for p in args.train_root.iterdir() if p.is_dir())
    # By default every source with a test set is held out in turn (an extra training-only
    # source, such as freepats, has none).
    held_out = args.folds or [f for f in fonts if (args.test_root / f).is_dir()]
    results = []
    for test_font in held_out:
        train_dirs = [args.train_root / f for f in fonts if f != test_font]
        out = args.out / f"without-{test_font}"
        started = time.perf_counter()
        result = train(train_dirs, out, epochs=args.epochs, batch_size=args.batch_size,
                       lr=args.lr, seed=args.seed, patience=args.patience,
                       crops_per_clip=args.crops_per_clip, distil=args.distil,
                       distil_label=args.distil_label, device="cpu",
                       progress=_printer(f"[-{test_font}]"))
        model = load_weights_file(result.weights_path)
        held = evaluate_folder(model, args.test_root / test_font)
        # Seen soundfonts with a test set (an extra training-only source may have none).
        seen = [evaluate_folder(model, args.test_root / f) for f in fonts
                if f != test_font and (args.test_root / f).is_dir()]
        record = {"held_out": test_font, "trained_on": [d.name for d in train_dirs],
                  "held_out_test": held, "seen_soundfont_tests": seen,
                  "training": result.to_json(), "seconds": time.perf_counter() - started}
        results.append(record)
        print(f"[-{test_font}] solo top-1 {_fmt_share(held['solo_top1'])} (n={held['n_solo']}), "
              f"mixture top-1 {_fmt_share(held['mix_top1'])} (n={held['n_mix']}); val micro-F1 "
              f"{result.val_micro_f1:.3f}; {result.epochs_run} epochs, "
              f"{result.seconds_per_epoch:.0f} s/epoch", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = args.out / "cross_soundfont.json"
    if summary.is_file():  # folds run in separate invocations accumulate here
        earlier = [r for r in json.loads(summary.read_text())
                   if r["held_out"] not in {n["held_out"] for n in results}]
        results = sorted(earlier + results, key=lambda r: r["held_out"])
    summary.write_text(json.dumps(results, indent=2) + "\n")
    print("\n| held-out soundfont | trained on | solo top-1 | mixture top-1 | val micro-F1 |")
    print("|---|---|---|---|---|")
    for r in results:
        h = r["held_out_test"]
        print(f"| {r['held_out']} | {' + '.join(r['trained_on'])} | {_fmt_share(h['solo_top1'])} "
              f"(n={h['n_solo']}) | {_fmt_share(h['mix_top1'])} (n={h['n_mix']}) | "
              f"{r['training']['val_micro_f1']:.3f} |")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    if args.model is not None:
        if args.weights and len(args.weights) > 1:
            raise DataError("--model scores one model: give at most one --weights")
        other = load_model(args.model, args.weights[0] if args.weights else None, "cpu")
        rows = [evaluate_folder_concepts(other, folder, args.programs) for folder in args.test]
    else:
        if not args.weights:
            raise DataError("give --weights (instrument CNN files) or --model NAME")
        models = [load_weights_file(w) for w in args.weights]
        rows = [evaluate_folder(models, folder, args.programs) for folder in args.test]
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2) + "\n")
    print("| test set | solo top-1 | mixture top-1 |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['folder']} | {_fmt_share(r['solo_top1'])} (n={r['n_solo']}) | "
              f"{_fmt_share(r['mix_top1'])} (n={r['n_mix']}) |")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    folds = sub.add_parser("folds", help="train on two soundfonts, test on the third")
    folds.add_argument("--train-root", type=Path, required=True)
    folds.add_argument("--test-root", type=Path, required=True)
    folds.add_argument("--out", type=Path, required=True)
    folds.add_argument("--folds", nargs="*",
                       help="held-out soundfont folder names (default: all with a test set)")
    folds.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    folds.add_argument("--patience", type=int, default=DEFAULT_PATIENCE)
    folds.add_argument("--batch-size", type=int, default=64)
    folds.add_argument("--lr", type=float, default=3e-3)
    folds.add_argument("--crops-per-clip", type=int, default=1)
    folds.add_argument("--seed", type=int, default=0)
    folds.add_argument("--distil", type=float, default=0.0,
                       help="share of each target from the sets' teacher.csv (dreamsound train "
                            "--distil)")
    folds.add_argument("--distil-label", choices=DISTIL_LABELS, default="blend",
                       help="dreamsound train --distil-label")
    evaluate = sub.add_parser("evaluate", help="top-1 of a trained model on rendered test sets")
    evaluate.add_argument("--weights", type=Path, nargs="+",
                          help="instrument CNN file(s); several are averaged (mean clip "
                               "score); with --model, that model's weights")
    evaluate.add_argument("--model", help="score another registered model (yamnet, musicnn, "
                          "irmas-pons, ...) among the 11 instruments through the concept map")
    evaluate.add_argument("--test", type=Path, nargs="+", required=True)
    evaluate.add_argument("--json-out", type=Path)
    evaluate.add_argument("--programs", type=int, nargs="+",
                          help="score only clips whose predominant part plays these GM programs")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        return run_folds(args) if args.command == "folds" else run_evaluate(args)
    except (DreamsoundError, OSError) as exc:  # bad input: one line, exit 2
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
