"""Transfer in an evaluation: how often judges outside the dream heard it move, against chance
and against the real thing.

Each dream of an evaluation run with ``--judge`` carries, per judge, the target's confidence
before and after, whether the judge moved (:func:`dreamsound.metrics.judge_moved`) and the same
for the null baseline (the start plus white noise of the dream's own rmse_db) and for the
reference (the start plus another clip of the target class at the dream's own rmse_db, when the
data set has one). This module summarises them per kind of dream (correct class, wrong class,
noise) and per target class, writes the Markdown section, and draws ``transfer.png``: the mean
judge gain per judge and target class, beside the reference's and the null baseline's on the
same colour scale.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dreamsound.io_utils import PathLike, atomic_write

KINDS = ("correct", "wrong", "noise")


def _dreams(records: Iterable[Mapping[str, Any]]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """``(kind, dream entry)`` of every finished dream."""
    for record in records:
        if record.get("error"):
            continue
        if record.get("kind") == "clip":
            yield "correct", record["correct"]
            yield "wrong", record["wrong"]
        elif record.get("kind") == "noise":
            yield "noise", record["dream"]


def _stats(verdicts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    n = len(verdicts)
    referenced = [v for v in verdicts if "reference_moved" in v]
    m = len(referenced)
    return {"n": n,
            "rate": sum(bool(v["moved"]) for v in verdicts) / n if n else None,
            "gain": statistics.fmean(v["gain"] for v in verdicts) if n else None,
            "null_rate": sum(bool(v["null_moved"]) for v in verdicts) / n if n else None,
            "null_gain": statistics.fmean(v["null_gain"] for v in verdicts) if n else None,
            "n_reference": m,
            "reference_rate": sum(bool(v["reference_moved"]) for v in referenced) / m
            if m else None,
            "reference_gain": statistics.fmean(v["reference_gain"] for v in referenced)
            if m else None}


def summarize_transfer(records: Iterable[Mapping[str, Any]], *, judges: Sequence[str],
                       classes: Sequence[str]) -> dict[str, Any]:
    """``{"judges", "by_kind": {kind: {judge: stats}}, "by_class": {judge: {class: stats}}}``
    where stats are ``n`` (dreams the judge could hear), ``rate`` (share it moved on), ``gain``
    (mean target confidence after - before), ``null_rate`` / ``null_gain`` for the null
    baseline and ``reference_rate`` / ``reference_gain`` over the ``n_reference`` dreams that
    have a reference. ``by_class`` covers the wrong-class dreams (the transfer question)."""
    dreams = list(_dreams(records))
    by_kind = {kind: {judge: _stats([d["judges"][judge] for k, d in dreams
                                     if k == kind and judge in d.get("judges", {})])
                      for judge in judges}
               for kind in KINDS}
    by_class = {judge: {code: _stats([d["judges"][judge] for k, d in dreams
                                      if k == "wrong" and d["target"] == code
                                      and judge in d.get("judges", {})])
                        for code in classes}
                for judge in judges}
    return {"judges": list(judges), "by_kind": by_kind, "by_class": by_class}


def _cell(stats: Mapping[str, Any]) -> str:
    if not stats["n"]:
        return "–"
    reference = ("–" if stats["reference_rate"] is None
                 else f"{100 * stats['reference_rate']:.0f} %")
    return (f"{100 * stats['rate']:.0f} % ({100 * stats['null_rate']:.0f} % / {reference}), "
            f"{stats['gain']:+.3f} ({stats['null_gain']:+.3f})")


def transfer_markdown(transfer: Mapping[str, Any]) -> list[str]:
    """The report's "Transfer" section as Markdown lines."""
    judges = transfer["judges"]
    lines = ["## Transfer to judges outside the dream", "",
             "Per judge: the share of dreams it *moved* on (its target score at least doubles, "
             "rises by >= 0.02 and climbs among the comparable classes) and its mean target "
             "gain; in brackets the share for the null baseline (the start plus white noise of "
             "the dream's own rmse_db) / for the reference (the start plus another clip of the "
             "target class at the dream's own rmse_db: the real thing at the same distance), "
             "and the null baseline's gain. `transfer.png` maps the wrong-class gains.", "",
             "| dreams toward | " + " | ".join(judges) + " |",
             "| :--- | " + " | ".join("---:" for _ in judges) + " |"]
    labels = {"correct": "correct class", "wrong": "random wrong class",
              "noise": "noise → each class"}
    for kind in KINDS:
        row = transfer["by_kind"][kind]
        if any(row[j]["n"] for j in judges):
            lines.append(f"| {labels[kind]} | " + " | ".join(_cell(row[j]) for j in judges)
                         + " |")
    lines.append("")
    return lines


def plot_transfer(transfer: Mapping[str, Any], path: PathLike, *, classes: Sequence[str],
                  title: str = "") -> Path:
    """Write ``transfer.png``: mean judge gain (rows: judges, columns: target classes) on the
    wrong-class dreams, the reference's and the null baseline's, on one diverging colour
    scale."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    judges = transfer["judges"]

    def matrix(key: str) -> list[list[float]]:
        cells = transfer["by_class"]
        return [[math.nan if cells[j][c].get(key) is None else cells[j][c][key]
                 for c in classes] for j in judges]

    panels = [(matrix("gain"), "dreams"),
              (matrix("reference_gain"), "reference: a clip of the target class at the "
               "dream's distance"),
              (matrix("null_gain"), "null baseline: white noise at the dream's distance")]
    finite = [abs(v) for values, _ in panels for row in values for v in row
              if not math.isnan(v)]
    span = max(finite, default=0.0) or 1e-3
    fig = Figure(figsize=(2.5 + 0.7 * len(classes), 2.6 + 1.6 * len(judges)),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, sharex=True)
    for ax, (values, name) in zip(axes, panels):
        shown = ax.imshow(values, cmap="RdBu_r", vmin=-span, vmax=span, aspect="auto")
        ax.set_xticks(range(len(classes)))
        ax.set_xticklabels(classes)
        ax.set_yticks(range(len(judges)))
        ax.set_yticklabels(judges)
        ax.set_title(name, fontsize=10)
        for i, row in enumerate(values):
            for k, value in enumerate(row):
                text = "–" if math.isnan(value) else f"{value:+.2f}"
                colour = "white" if abs(value) > 0.6 * span else "black"
                ax.text(k, i, text, ha="center", va="center", fontsize=8, color=colour)
    axes[-1].set_xlabel("target class of the wrong-class dreams (–: no dream the judge can "
                        "hear, or no reference)")
    fig.colorbar(shown, ax=axes, label="target confidence\nafter - before")
    if title:
        fig.suptitle(title, fontsize=11)
    target = Path(path)
    with atomic_write(target) as temp:
        fig.savefig(temp, format="png", dpi=110)
    return target
