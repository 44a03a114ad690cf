#!/usr/bin/env python
"""Keep the renders that a model trained on real recordings recognises as their own instrument.

A render is only as good as its soundfont's samples and what the renderer does with them; a model
trained on renders learns every quirk it is shown (the experiment log: a head on YAMNet's or
musicnn's features learnt from all renders names real instruments *worse* than YAMNet's own
classifier). This script asks YAMNet, which learnt from real recordings, which renders sound
like their label, and links the most convincing share of each class into a new folder of the same
layout, to train on.

Score of a clip: YAMNet's logits averaged over its 0.96 s patches; per IRMAS concept the highest
of its AudioSet classes (``dreamsound.models.concepts``); the *margin* is the label's value minus
the highest of the other ten. Per rendered set and class, the ``--keep`` share with the largest
margins is kept (ties by file name; at least one clip). Output per set: ``OUT/<set>/<cls>/*.wav``
(links to the renders), ``manifest.csv`` (the kept rows of the set's manifest, when it has one)
and ``selection.csv`` (every clip: class, file, margin, kept).

Usage::

    python -m scripts.data.select_renders work_data/render/train_l/* --keep 0.6 \\
        --weights ../shared/yamnet/yamnet.h5 --out work_data/render/selected
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see dreamsound.threads

import numpy as np
import torch

from dreamsound.audio import load_audio
from dreamsound.data.irmas import IRMAS_CODES
from dreamsound.errors import DreamsoundError
from dreamsound.models.concepts import CONCEPTS, concept_indices
from dreamsound.models.registry import load_model


def concept_logits(model, items: list[tuple[int, Path]]) -> np.ndarray:
    """``[N, 11]``: per ``(label, wav path)`` and IRMAS concept (``CONCEPTS`` order), the
    highest of the concept's AudioSet logits, averaged over the clip's patches first; ``-inf``
    for a concept the model has no class for (musicnn's clarinet, say)."""
    columns = [concept_indices(c, model.class_names, ()) for c in CONCEPTS]
    values = np.empty((len(items), len(columns)))
    for row, (_, path) in enumerate(items):
        wave = torch.from_numpy(load_audio(path, sample_rate=model.sample_rate))
        with torch.inference_mode():
            logits = model(wave).logits.mean(0)
        values[row] = [float(logits[c].max()) if c else -np.inf for c in columns]
    return values


def concept_margins(model, items: list[tuple[int, Path]]) -> np.ndarray:
    """The margin (module docstring) of each ``(label, wav path)``, in YAMNet logit units."""
    logits = concept_logits(model, items)
    margins = np.empty(len(items))
    for row, (label, _) in enumerate(items):
        margins[row] = logits[row, label] - np.delete(logits[row], label).max()
    return margins


def kept_rows(labels: list[int], names: list[str], margins: np.ndarray, keep: float) -> set[int]:
    """Rows kept: per label, the ``keep`` share with the largest margins (at least one)."""
    kept: set[int] = set()
    for label in sorted(set(labels)):
        rows = [i for i, value in enumerate(labels) if value == label]
        rows.sort(key=lambda i: (-margins[i], names[i]))
        kept.update(rows[:max(1, round(keep * len(rows)))])
    return kept


def class_items(folder: Path) -> list[tuple[int, Path]]:
    """``(label, wav path)`` of every clip in a set's class folders, in IRMAS order."""
    return [(label, path) for label, code in enumerate(IRMAS_CODES)
            for path in sorted((folder / code).glob("*.wav"))]


def select_set(model, folder: Path, items: list[tuple[int, Path]], out: Path, keep: float
               ) -> tuple[int, int]:
    """Select one rendered set's ``items`` into ``out`` (must not exist yet); ``(kept, total)``."""
    margins = concept_margins(model, items)
    kept = kept_rows([label for label, _ in items], [p.name for _, p in items], margins, keep)
    temporary = out.with_name(out.name + ".partial")
    shutil.rmtree(temporary, ignore_errors=True)  # left by an interrupted run
    for row in sorted(kept):
        label, path = items[row]
        link = temporary / IRMAS_CODES[label] / path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path.resolve())
    with open(temporary / "selection.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "file", "margin", "kept"])
        for row, (label, path) in enumerate(items):
            writer.writerow([IRMAS_CODES[label], path.name, f"{margins[row]:.4f}",
                             int(row in kept)])
    manifest = folder / "manifest.csv"
    if manifest.is_file():
        names = {items[row][1].name for row in kept}
        with open(manifest, newline="") as source, \
                open(temporary / "manifest.csv", "w", newline="") as target:
            reader = csv.DictReader(source)
            writer = csv.DictWriter(target, fieldnames=reader.fieldnames or [])
            writer.writeheader()
            for record in reader:
                if Path(record.get("file", "")).name in names:
                    writer.writerow(record)
    temporary.rename(out)  # a set appears whole or not at all
    return len(kept), len(items)


def with_yamnet(sets: list[Path], weights: Path | None, threads: int,
                work: Callable[[object, Path], str]) -> int:
    """Load YAMNet once and run ``work(model, set)`` on each set, printing the line it returns;
    a missing weights file or an unreadable clip is one line on stderr and exit code 2."""
    torch.set_num_threads(threads)
    try:
        model = load_model("yamnet", weights=weights, device="cpu")
        for folder in sets:
            print(work(model, folder))
    except DreamsoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", type=Path, help="rendered sets (IRMAS layout)")
    parser.add_argument("--out", required=True, type=Path, help="where the selected sets go")
    parser.add_argument("--keep", type=float, default=0.6, help="share kept per class (0, 1]")
    parser.add_argument("--weights", type=Path, default=None,
                        help="YAMNet weights (default: the cached download)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if not 0.0 < args.keep <= 1.0:
        parser.error(f"--keep must be in (0, 1], got {args.keep}")
    # Every set is checked before anything is computed or written.
    items = {}
    for folder in args.sets:
        if (args.out / folder.name).exists():
            parser.error(f"{args.out / folder.name} exists; remove it or choose another --out")
        items[folder] = class_items(folder)
        if not items[folder]:
            parser.error(f"no wavs in class folders under {folder}")
    def select(model, folder: Path) -> str:
        kept, total = select_set(model, folder, items[folder], args.out / folder.name, args.keep)
        return f"{folder.name}: kept {kept} of {total} clips -> {args.out / folder.name}"

    return with_yamnet(args.sets, args.weights, args.threads, select)


if __name__ == "__main__":
    sys.exit(main())
