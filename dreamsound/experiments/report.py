"""Aggregate the results of ``dreamsound evaluate`` and write its report files.

:func:`summarize` turns the per-job records (one per clip, one per noise dream; see
:mod:`dreamsound.evaluate` for their shape) into the summary: overall rates and means, per true
class, per (true class, target class) pair, and the noise experiment. :func:`write_report` writes
``report.json`` (summary + every record), ``report.md`` (readable tables) and ``heatmap.png``
(mean ``rmse_db`` by true class x target class). Every number is computed here from the records;
the metrics inside a record come from :mod:`dreamsound.metrics`, whose definitions the markdown
report repeats.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dreamsound.io_utils import PathLike, atomic_write

__all__ = ["plot_heatmap", "render_markdown", "summarize", "write_report"]

#: Which dream of a clip record holds which kind of target.
DREAM_KINDS = ("correct", "wrong")


# --------------------------------------------------------------------------------------------
# Small statistics that ignore missing values
# --------------------------------------------------------------------------------------------


def _values(entries: Iterable[Mapping[str, Any]], key: str) -> list[float]:
    out = []
    for entry in entries:
        value = entry.get(key)
        if value is None or isinstance(value, bool):
            continue
        value = float(value)
        if math.isfinite(value):
            out.append(value)
    return out


def _mean(values: Sequence[float]) -> float | None:
    return float(statistics.fmean(values)) if values else None


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _rate(entries: Sequence[Mapping[str, Any]], key: str) -> float | None:
    """Share of ``entries`` whose boolean ``key`` is true (None for no entries)."""
    flags = [bool(e.get(key)) for e in entries if e.get(key) is not None]
    return sum(flags) / len(flags) if flags else None


def _dream_stats(dreams: Sequence[Mapping[str, Any]], suffix: str = "", *,
                 threshold: float | None = None) -> dict[str, Any]:
    """Rates and means of a group of dream entries, keys suffixed with ``suffix``.

    Besides the figures of the rendered audio, the engine's own figures for the ascended
    spectrogram (before it was turned into sound) are summarised as ``*_spectrogram``, so a
    report shows how much rendering costs.
    """
    rmse = _values(dreams, "rmse_db")
    after = _values(dreams, "confidence_after")
    spectrogram_rate = (None if threshold is None or not after else
                        sum(c >= threshold for c in after) / len(after))
    return {
        f"success_rate{suffix}": _rate(dreams, "success"),
        f"reached_threshold_rate{suffix}": _rate(dreams, "reached_threshold"),
        f"mean_rmse_db{suffix}": _mean(rmse),
        f"median_rmse_db{suffix}": _median(rmse),
        f"max_rmse_db{suffix}": max(rmse) if rmse else None,
        f"mean_steps{suffix}": _mean(_values(dreams, "steps")),
        # Dreams that needed no step (the start already reached the threshold) count with a
        # distance of 0 dB; their share says how much of a mean distance is such zeros.
        f"no_step_rate{suffix}": _rate([{"n": e.get("steps") == 0} for e in dreams
                                        if e.get("steps") is not None], "n"),
        f"mean_confidence_before{suffix}": _mean(_values(dreams, "confidence_before")),
        f"mean_confidence{suffix}": _mean(_values(dreams, "confidence")),
        f"reached_threshold_rate_spectrogram{suffix}": spectrogram_rate,
        f"mean_rmse_db_spectrogram{suffix}": _mean(_values(dreams, "rmse_db_spectrogram")),
    }


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------


def summarize(records: Iterable[Mapping[str, Any]], *, classes: Sequence[str],
              threshold: float) -> dict[str, Any]:
    """Aggregate evaluation records.

    Parameters
    ----------
    records : iterable of dict
        Finished jobs as :mod:`dreamsound.evaluate` writes them: ``kind == "clip"`` records
        with ``true``, ``correct``, ``wrong`` and ``between``; ``kind == "noise"`` records with
        ``target`` and ``dream``; either may instead carry an ``error`` message.
    classes : sequence of str
        The data set's class codes in report order (rows and columns of the pair table).
    threshold : float
        The confidence threshold the run used (0..1), repeated in the summary.

    Returns
    -------
    dict
        ``clips``, ``noise_dreams``, ``errors``, overall ``success_rate_correct`` /
        ``success_rate_wrong`` (target top-1 after dreaming), ``reached_threshold_rate_*``
        (confidence >= threshold), ``mean_rmse_db_*``, ``median_rmse_db_*``, ``mean_steps_*``,
        ``mean_confidence_*``, ``mean_rmse_db_between`` (the two dreamed versions of a clip),
        ``noise_success_rate``, ``per_class`` (code -> the same statistics for clips of that
        true class, plus that class's noise dream), ``per_pair`` (one row per (true, target)
        pair seen, ``kind`` "correct" on the diagonal) and ``noise`` (code -> noise dream).
        Rates are 0..1, distances in dB, ``None`` where there is nothing to average.
    """
    records = list(records)
    failed = [r for r in records if r.get("error")]
    clips = [r for r in records if r.get("kind") == "clip" and not r.get("error")]
    noise = [r for r in records if r.get("kind") == "noise" and not r.get("error")]
    order = {code: i for i, code in enumerate(classes)}

    summary: dict[str, Any] = {"clips": len(clips), "noise_dreams": len(noise),
                               "errors": len(failed), "threshold": float(threshold)}
    for kind in DREAM_KINDS:
        summary.update(_dream_stats([c[kind] for c in clips], f"_{kind}", threshold=threshold))
    summary["mean_rmse_db_between"] = _mean(_values([c["between"] for c in clips], "rmse_db"))
    noise_dreams = [n["dream"] for n in noise]
    summary["noise_success_rate"] = _rate(noise_dreams, "success")
    summary["noise_reached_threshold_rate"] = _rate(noise_dreams, "reached_threshold")
    summary["noise_mean_steps"] = _mean(_values(noise_dreams, "steps"))
    summary["noise_mean_confidence"] = _mean(_values(noise_dreams, "confidence"))

    noise_by_class = {n["target"]: n["dream"] for n in noise}
    per_class: dict[str, Any] = {}
    for code in classes:
        mine = [c for c in clips if c["true"] == code]
        if not mine and code not in noise_by_class:
            continue
        row: dict[str, Any] = {"clips": len(mine)}
        for kind in DREAM_KINDS:
            row.update(_dream_stats([c[kind] for c in mine], f"_{kind}", threshold=threshold))
        row["mean_rmse_db_between"] = _mean(_values([c["between"] for c in mine], "rmse_db"))
        dream = noise_by_class.get(code)
        row["noise_success"] = None if dream is None else bool(dream.get("success"))
        row["noise_confidence"] = None if dream is None else dream.get("confidence")
        per_class[code] = row
    summary["per_class"] = per_class

    pairs: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for clip in clips:
        for kind in DREAM_KINDS:
            pairs.setdefault((clip["true"], clip[kind]["target"]), []).append(clip[kind])

    def pair_order(key: tuple[str, str]) -> tuple[int, int, str, str]:
        return (order.get(key[0], len(order)), order.get(key[1], len(order)), *key)

    summary["per_pair"] = [
        {"true": true, "target": target, "kind": "correct" if true == target else "wrong",
         "n": len(dreams), **_dream_stats(dreams, threshold=threshold)}
        for (true, target), dreams in sorted(pairs.items(), key=lambda kv: pair_order(kv[0]))
    ]
    summary["noise"] = {code: dict(noise_by_class[code]) for code in
                        sorted(noise_by_class, key=lambda c: (order.get(c, len(order)), c))}
    summary["failed"] = [{"job": r.get("job"), "error": r.get("error")} for r in failed]
    return summary


def rmse_matrix(summary: Mapping[str, Any], classes: Sequence[str]
                ) -> tuple[list[list[float]], list[list[int]]]:
    """Mean ``rmse_db`` and dream counts by (true class row, target class column).

    Returns ``(values, counts)`` as ``len(classes) x len(classes)`` nested lists; cells with no
    dreams hold NaN and 0.
    """
    index = {code: i for i, code in enumerate(classes)}
    size = len(classes)
    values = [[math.nan] * size for _ in range(size)]
    counts = [[0] * size for _ in range(size)]
    for row in summary.get("per_pair", []):
        i, j = index.get(row["true"]), index.get(row["target"])
        if i is None or j is None:
            continue
        mean = row.get("mean_rmse_db")
        values[i][j] = math.nan if mean is None else float(mean)
        counts[i][j] = int(row["n"])
    return values, counts


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100.0 * value:.1f} %"


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]],
           align: Sequence[str] | None = None) -> str:
    align = align or ["l"] + ["r"] * (len(header) - 1)
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |",
             "| " + " | ".join(marks[a] for a in align) + " |"]
    # A "|" inside a cell (a file name, a class name) would end the cell early.
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in rows]
    return "\n".join(lines)


def render_markdown(summary: Mapping[str, Any], info: Mapping[str, Any]) -> str:
    """The readable report: settings, overall, per class, per pair, noise, metric definitions.

    Parameters
    ----------
    summary : dict
        From :func:`summarize`.
    info : dict
        Run facts: ``command``, ``model``, ``data_dir``, ``seed``, ``threshold``, ``max_steps``,
        ``per_class``, ``class_names`` (code -> the model's class name), ``metric_definitions``
        (name -> one line), and optionally ``dream_options``, ``version``, ``seconds``.
    """
    names: Mapping[str, str] = info.get("class_names", {})

    def label(code: str) -> str:
        name = names.get(code)
        return f"{code} ({name})" if name and name.lower() != code.lower() else code

    out = ["# dreamsound evaluation", ""]
    out.append("Every clip is dreamed toward its own (correct) class and toward one seeded random "
               "wrong class; white noise is dreamed toward every class. *Success* means the target "
               "is the model's top-1 class after dreaming; *≥ threshold* means its confidence "
               f"reached {info.get('threshold', summary.get('threshold'))}. Confidences are "
               "measured on the dreamed audio as written (rendered), distances on the model's "
               "own mel scale in dB.")
    out += ["", "## Run", ""]
    settings = [
        ("command", f"`{info.get('command', '')}`"),
        ("model", f"`{info.get('model', '')}`" + (f" (weights `{info['weights']}`)"
                                                  if info.get("weights") else "")),
        ("data", f"`{info.get('data_dir', '')}`"),
        ("clips per class", str(info.get("per_class") or "all")),
        ("seed", str(info.get("seed"))),
        ("threshold", str(info.get("threshold"))),
        ("max steps", str(info.get("max_steps"))),
    ]
    if info.get("dream_options"):
        settings.append(("dream options", ", ".join(f"{k}={v}" for k, v in
                                                    info["dream_options"].items())))
    if info.get("version"):
        settings.append(("dreamsound", str(info["version"])))
    out.append(_table(["setting", "value"], settings, ["l", "l"]))

    out += ["", "## Overall", ""]
    rows = []
    for kind, title in (("correct", "correct class"), ("wrong", "random wrong class")):
        rows.append([title, str(summary["clips"]), _pct(summary[f"success_rate_{kind}"]),
                     _pct(summary[f"reached_threshold_rate_{kind}"]),
                     _num(summary[f"mean_confidence_before_{kind}"], 3),
                     _num(summary[f"mean_confidence_{kind}"], 3),
                     _num(summary[f"mean_rmse_db_{kind}"]), _num(summary[f"median_rmse_db_{kind}"]),
                     _num(summary[f"max_rmse_db_{kind}"]), _num(summary[f"mean_steps_{kind}"], 1),
                     _pct(summary[f"no_step_rate_{kind}"])])
    if summary.get("noise_dreams"):
        noise = list(summary["noise"].values())
        rmse = _values(noise, "rmse_db")
        rows.append(["noise → each class", str(summary["noise_dreams"]),
                     _pct(summary["noise_success_rate"]),
                     _pct(summary["noise_reached_threshold_rate"]),
                     _num(_mean(_values(noise, "confidence_before")), 3),
                     _num(summary["noise_mean_confidence"], 3), _num(_mean(rmse)),
                     _num(_median(rmse)), _num(max(rmse) if rmse else None),
                     _num(summary["noise_mean_steps"], 1),
                     _pct(_dream_stats(noise)["no_step_rate"])])
    out.append(_table(["dream toward", "dreams", "success", "≥ threshold", "conf. before",
                       "conf. after", "mean rmse_db", "median rmse_db", "max rmse_db",
                       "mean steps", "no step needed"], rows))
    out += ["", f"Mean distance between the two dreamed versions of a clip: "
                f"{_num(summary.get('mean_rmse_db_between'))} dB rmse."]
    threshold = info.get("threshold", summary.get("threshold"))
    rows = [[title, _pct(summary.get(f"reached_threshold_rate_spectrogram_{kind}")),
             _pct(summary[f"reached_threshold_rate_{kind}"]),
             _num(summary.get(f"mean_rmse_db_spectrogram_{kind}")),
             _num(summary[f"mean_rmse_db_{kind}"])]
            for kind, title in (("correct", "correct class"), ("wrong", "random wrong class"))]
    if summary.get("noise_dreams"):
        noise_stats = _dream_stats(list(summary["noise"].values()), threshold=threshold)
        rows.append(["noise → each class", _pct(noise_stats["reached_threshold_rate_spectrogram"]),
                     _pct(noise_stats["reached_threshold_rate"]),
                     _num(noise_stats["mean_rmse_db_spectrogram"]),
                     _num(noise_stats["mean_rmse_db"])])
    out += ["", "What rendering costs: the engine stops once its own dream (the ascended "
                "spectrogram, or in the waveform domain the samples before peak limiting) reaches "
                "the threshold; the sound written from it is then measured again.", ""]
    out.append(_table(["dream toward", "≥ threshold (spectrogram)", "≥ threshold (audio)",
                       "mean rmse_db (spectrogram)", "mean rmse_db (audio)"], rows))
    if summary.get("errors"):
        out += ["", f"**{summary['errors']} job(s) failed** and are left out of every figure:", ""]
        out += [f"- `{f['job']}`: {f['error']}" for f in summary.get("failed", [])]

    out += ["", "## Per class", "",
            "Rows are the clips' true class. *conf. before* is the model's confidence in the true "
            "class on the original clip.", ""]
    rows = []
    for code, row in summary["per_class"].items():
        rows.append([label(code), str(row["clips"]), _num(row["mean_confidence_before_correct"], 3),
                     _pct(row["success_rate_correct"]), _num(row["mean_rmse_db_correct"]),
                     _num(row["median_rmse_db_correct"]), _num(row["mean_steps_correct"], 1),
                     _pct(row["success_rate_wrong"]), _num(row["mean_rmse_db_wrong"]),
                     _num(row["median_rmse_db_wrong"]), _num(row["mean_steps_wrong"], 1),
                     _num(row["mean_rmse_db_between"]),
                     "–" if row["noise_success"] is None else
                     ("yes" if row["noise_success"] else "no")])
    out.append(_table(["true class", "clips", "conf. before", "correct: success", "rmse_db mean",
                       "rmse_db median", "steps", "wrong: success", "rmse_db mean",
                       "rmse_db median", "steps", "between (dB)", "noise success"], rows))

    out += ["", "## Per class pair", "",
            "One row per (true class, target class) pair dreamed; the diagonal (kind *correct*) is "
            "the correct-class dream. `heatmap.png` shows the mean rmse_db of this table.", ""]
    rows = [[label(p["true"]), label(p["target"]), p["kind"], str(p["n"]),
             _pct(p["success_rate"]), _pct(p["reached_threshold_rate"]),
             _num(p["mean_confidence"], 3), _num(p["mean_rmse_db"]), _num(p["median_rmse_db"]),
             _num(p["mean_steps"], 1)] for p in summary["per_pair"]]
    out.append(_table(["true", "target", "kind", "n", "success", "≥ threshold", "conf. after",
                       "rmse_db mean", "rmse_db median", "mean steps"], rows,
                      ["l", "l", "l"] + ["r"] * 7))

    out += ["", "## Noise", ""]
    if summary.get("noise"):
        out += ["White noise (seeded, the length of a clip of the class) dreamed toward each "
                "class.", ""]
        rows = [[label(code), "yes" if d.get("success") else "no",
                 "yes" if d.get("reached_threshold") else "no", _num(d.get("confidence_before"), 3),
                 _num(d.get("confidence"), 3), str(d.get("top1", "–")), _num(d.get("steps"), 0),
                 _num(d.get("rmse_db"))] for code, d in summary["noise"].items()]
        out.append(_table(["target", "success", "≥ threshold", "conf. before", "conf. after",
                           "top-1 after", "steps", "rmse_db to the noise"], rows))
    else:
        out.append("Not run (`--no-noise`).")

    if summary.get("transfer"):
        from dreamsound.experiments.transfer import transfer_markdown

        out += ["", *transfer_markdown(summary["transfer"])]
    out += ["", "## Metric definitions", ""]
    for name, text in info.get("metric_definitions", {}).items():
        # The definitions start with their own name ("rmse_db: ..."); do not say it twice.
        head, sep, rest = text.partition(": ")
        out.append(f"- **{name}** — {rest if sep and len(head) < 40 else text}")
    out += ["- **between** — rmse_db between the correct-class and the wrong-class dreamed "
            "versions of the same clip.",
            "- **≥ threshold** — share of dreams whose rendered target confidence reached the "
            "threshold.", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Heatmap
# --------------------------------------------------------------------------------------------


def plot_heatmap(summary: Mapping[str, Any], path: PathLike, *, classes: Sequence[str],
                 title: str = "") -> Path:
    """Write a PNG of mean ``rmse_db`` by (true class, target class), values in the cells.

    Rows are true classes, columns target classes; the diagonal holds the correct-class dreams,
    the rest the wrong-class dreams. Empty cells (pairs never drawn) are grey. Written
    atomically with matplotlib's Agg backend (no display needed).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    values, counts = rmse_matrix(summary, classes)
    grid = np.ma.masked_invalid(np.array(values, dtype=float))
    size = max(len(classes), 1)
    cell = 0.62
    fig = Figure(figsize=(2.4 + cell * size * 1.15, 1.9 + cell * size), dpi=130)
    ax = fig.add_subplot()
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    finite = grid.compressed()
    vmax = float(finite.max()) if finite.size else 1.0
    image = ax.imshow(grid, cmap=cmap, vmin=0.0, vmax=max(vmax, 1e-6), aspect="equal")
    ax.set_xticks(range(len(classes)), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), labels=list(classes))
    ax.set_xlabel("target class (dreamed toward)")
    ax.set_ylabel("true class of the clip")
    ax.set_title(title or "mean rmse_db to the original (dB)", fontsize=11)
    # Thin white grid lines between cells make a large matrix easier to read across.
    ax.set_xticks(np.arange(-0.5, len(classes), 1), minor=True)
    ax.set_yticks(np.arange(-0.5, len(classes), 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.0)
    ax.tick_params(which="minor", length=0)
    norm = image.norm
    for i in range(len(classes)):
        for j in range(len(classes)):
            if counts[i][j] == 0 or not math.isfinite(values[i][j]):
                continue
            # Dark text on the bright end of viridis, white on the dark end.
            shade = cmap(norm(values[i][j]))
            luminance = 0.2126 * shade[0] + 0.7152 * shade[1] + 0.0722 * shade[2]
            ax.text(j, i, f"{values[i][j]:.1f}", ha="center", va="center", fontsize=8,
                    color="black" if luminance > 0.5 else "white")
        # Outline the diagonal: those cells are the correct-class dreams.
        if counts[i][i]:
            ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black",
                                   linewidth=1.6, zorder=4))
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("mean rmse_db (dB)")
    fig.text(0.01, 0.01, "outlined: correct-class dreams    grey: pair never drawn",
             fontsize=7, color="#555555", ha="left", va="bottom")
    fig.tight_layout(rect=(0.0, 0.03, 1.0, 1.0))
    target = Path(path).expanduser()
    with atomic_write(target) as temp:
        fig.savefig(temp, format="png")
    return target


# --------------------------------------------------------------------------------------------
# All files
# --------------------------------------------------------------------------------------------


def write_report(out_dir: PathLike, *, summary: Mapping[str, Any],
                 records: Sequence[Mapping[str, Any]], info: Mapping[str, Any],
                 classes: Sequence[str]) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``heatmap.png`` and, with judges,
    ``transfer.png`` into ``out_dir`` (atomically).

    ``report.json`` holds ``{"summary", "info", "records"}``. Returns the paths by name
    (``"json"``, ``"markdown"``, ``"heatmap"``).
    """
    folder = Path(out_dir).expanduser()
    paths = {"json": folder / "report.json", "markdown": folder / "report.md",
             "heatmap": folder / "heatmap.png"}
    document = {"summary": summary, "info": info, "records": list(records)}
    with atomic_write(paths["json"]) as temp:
        temp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    with atomic_write(paths["markdown"]) as temp:
        temp.write_text(render_markdown(summary, info), encoding="utf-8")
    model = info.get("model", "")
    plot_heatmap(summary, paths["heatmap"], classes=classes,
                 title=f"mean rmse_db to the original (dB) — {model}" if model else "")
    if summary.get("transfer"):
        from dreamsound.experiments.transfer import plot_transfer

        paths["transfer"] = plot_transfer(
            summary["transfer"], folder / "transfer.png", classes=classes,
            title=f"what judges heard of {model}'s wrong-class dreams" if model else "")
    return paths
