"""Transfer in an evaluation: how often judges outside the dream heard it move, against chance.

Each dream of an evaluation run with ``--judge`` carries, per judge, the target's confidence
before and after, whether the judge moved (:func:`dreamsound.metrics.judge_moved`) and the same
for the null baseline (the start plus white noise of the dream's own rmse_db). This module
summarises them per kind of dream (correct class, wrong class, noise) and per target class,
writes the Markdown section, and draws ``transfer.png``: the mean judge gain per judge and
target class, beside the null baseline's on the same colour scale.
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
    if not n:
        return {"n": 0, "rate": None, "gain": None, "null_rate": None, "null_gain": None}
    return {"n": n,
            "rate": sum(bool(v["moved"]) for v in verdicts) / n,
            "gain": statistics.fmean(v["gain"] for v in verdicts),
            "null_rate": sum(bool(v["null_moved"]) for v in verdicts) / n,
            "null_gain": statistics.fmean(v["null_gain"] for v in verdicts)}


def summarize_transfer(records: Iterable[Mapping[str, Any]], *, judges: Sequence[str],
                       classes: Sequence[str]) -> dict[str, Any]:
    """``{"judges", "by_kind": {kind: {judge: stats}}, "by_class": {judge: {class: stats}}}``
    where stats are ``n`` (dreams the judge could hear), ``rate`` (share it moved on), ``gain``
    (mean target confidence after - before) and ``null_rate`` / ``null_gain`` for the null
    baseline. ``by_class`` covers the wrong-class dreams (the transfer question)."""
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
    return (f"{100 * stats['rate']:.0f} % ({100 * stats['null_rate']:.0f} %), "
            f"{stats['gain']:+.3f} ({stats['null_gain']:+.3f})")


def transfer_markdown(transfer: Mapping[str, Any]) -> list[str]:
    """The report's "Transfer" section as Markdown lines."""
    judges = transfer["judges"]
    lines = ["## Transfer to judges outside the dream", "",
             "Per judge: the share of dreams it *moved* on (its target score at least doubles, "
             "rises by >= 0.02 and climbs among the comparable classes) and its mean target "
             "gain; in brackets the same for the null baseline (the start plus white noise of "
             "the dream's own rmse_db). `transfer.png` maps the wrong-class gains.", "",
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
    wrong-class dreams, and the null baseline's, on one diverging colour scale."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    judges = transfer["judges"]

    def matrix(key: str) -> list[list[float]]:
        return [[transfer["by_class"][j][c][key] if transfer["by_class"][j][c]["n"]
                 else math.nan for c in classes] for j in judges]

    gains, nulls = matrix("gain"), matrix("null_gain")
    finite = [abs(v) for row in gains + nulls for v in row if not math.isnan(v)]
    span = max(finite, default=0.0) or 1e-3
    fig = Figure(figsize=(2.5 + 0.7 * len(classes), 2.0 + 1.1 * len(judges)),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 1, sharex=True)
    for ax, values, name in ((axes[0], gains, "dreams"), (axes[1], nulls, "null baseline")):
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
    axes[1].set_xlabel("target class of the wrong-class dreams (–: no dream the judge can hear)")
    fig.colorbar(shown, ax=axes, label="target confidence\nafter - before")
    if title:
        fig.suptitle(title, fontsize=11)
    target = Path(path)
    with atomic_write(target) as temp:
        fig.savefig(temp, format="png", dpi=110)
    return target
