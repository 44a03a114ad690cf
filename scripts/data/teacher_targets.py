#!/usr/bin/env python
"""Write YAMNet's view of every clip of a rendered set, for ``dreamsound train --distil``.

YAMNet learnt from real recordings. Asked about a render in its own words, it says how much the
render sounds like each of the 11 IRMAS instruments; a student trained toward that view as well
as toward the label learns less of a render's quirks (the experiment log,
docs/instrument_experiments.md, *Distilling YAMNet's view*).

Per clip: the 11 concept logits of :func:`scripts.data.select_renders.concept_logits` (YAMNet's
logits averaged over the clip's patches; per concept the highest of its AudioSet classes). They
go to ``<set>/teacher.csv`` (``class, file, cel, cla, ..., voi``; logits, not probabilities:
the trainer applies its own temperature), written whole or not at all.

Usage::

    python -m scripts.data.teacher_targets work_data/render/train_l/* \\
        --weights ../shared/yamnet/yamnet.h5
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see dreamsound.threads

from dreamsound.data.irmas import IRMAS_CODES
from dreamsound.train.data import TEACHER_FILE
from scripts.data.select_renders import class_items, concept_logits, with_yamnet


def write_teacher(model, folder: Path, items: list[tuple[int, Path]]) -> Path:
    """Compute and write ``folder/teacher.csv`` for ``items``; returns its path."""
    logits = concept_logits(model, items)
    target = folder / TEACHER_FILE
    temporary = target.with_name(target.name + ".partial")
    with open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "file", *IRMAS_CODES])
        for row, (label, path) in enumerate(items):
            writer.writerow([IRMAS_CODES[label], path.name, *(f"{v:.4f}" for v in logits[row])])
    temporary.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", type=Path, help="rendered sets (IRMAS layout)")
    parser.add_argument("--weights", type=Path, default=None,
                        help="YAMNet weights (default: the cached download)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    items = {}
    for folder in args.sets:  # every set is checked before anything is computed or written
        items[folder] = class_items(folder)
        if not items[folder]:
            parser.error(f"no wavs in class folders under {folder}")
    def write(model, folder: Path) -> str:
        path = write_teacher(model, folder, items[folder])
        return f"{folder.name}: {len(items[folder])} clips -> {path}"

    return with_yamnet(args.sets, args.weights, args.threads, write)


if __name__ == "__main__":
    sys.exit(main())
