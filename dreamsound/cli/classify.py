"""``dreamsound classify`` and ``dreamsound classes``: what a model hears, what it can hear."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from dreamsound.cli.common import (
    DeviceOpt,
    JsonOpt,
    MaxSecondsOpt,
    ModelOpt,
    WeightsOpt,
    app,
    out_console,
    print_json,
)
from dreamsound.errors import DreamsoundError


@app.command()
def classify(
    files: Annotated[list[str], typer.Argument(
        help="Sound file(s) to classify, or a generated start (noise:3s, sine:440:2s).")],
    model: ModelOpt = "instrument",
    weights: WeightsOpt = None,
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="How many classes to show.")] = 5,
    frames: Annotated[bool, typer.Option("--frames", help="Also show scores per patch.")] = False,
    device: DeviceOpt = "auto",
    max_seconds: MaxSecondsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what a model hears in a sound: top classes for the whole file (and per patch).
    Files longer than 10 s are read in blocks (same scores, bounded memory)."""
    from dreamsound.api import Dreamer
    from dreamsound.audio import DEFAULT_MAX_SECONDS
    from dreamsound.streaming import classify_source

    dreamer = Dreamer(model, weights=weights, device=device)
    results = [classify_source(dreamer.model, f, max_seconds=max_seconds)
               or dreamer.classify(f, max_seconds=max_seconds or DEFAULT_MAX_SECONDS)
               for f in files]
    if as_json:
        docs = [dict(file=f, **r.to_json(frames=frames, top=top))
                for f, r in zip(files, results)]
        print_json(docs[0] if len(docs) == 1 else docs)
        return
    for file, result in zip(files, results):
        out_console.print(f"[bold]{escape(file)}[/] — {result.model}", highlight=False,
                          soft_wrap=True)
        table = Table()
        table.add_column("#", justify="right")
        table.add_column("class")
        table.add_column("score", justify="right")
        for rank, (_, name, score) in enumerate(result.top(top), 1):
            table.add_row(str(rank), name, f"{score:.3f}")
        out_console.print(table)
        if frames:
            patch = Table(title="per patch", title_justify="left")
            patch.add_column("start (s)", justify="right")
            patch.add_column("top classes")
            for start, row in zip(result.frame_starts_s, result.frame_scores):
                best = row.argsort()[::-1][:3]
                patch.add_row(f"{start:.2f}", ", ".join(
                    f"{result.class_names[i]} {row[i]:.2f}" for i in best))
            out_console.print(patch)


@app.command()
def classes(
    model: ModelOpt = "instrument",
    search: Annotated[str | None, typer.Option("--search",
                                               help="Only names containing this text.")] = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a model's class names (what `--target` accepts)."""
    from dreamsound.models.registry import class_names_and_codes

    names, codes = class_names_and_codes(model, weights)
    rows = [(i, n, codes[i] if codes else "") for i, n in enumerate(names)
            if search is None or search.lower() in n.lower()
            or (codes and search.lower() == codes[i].lower())]
    if as_json:
        print_json([{"index": i, "name": n, "code": c} for i, n, c in rows])
        return
    if not rows:
        raise DreamsoundError(f"no {model} class contains {search!r}")
    table = Table(title=f"{model}: {len(rows)} of {len(names)} classes", title_justify="left")
    table.add_column("index", justify="right")
    table.add_column("name")
    if codes:
        table.add_column("code")
    for i, n, c in rows:
        table.add_row(str(i), n, *([c] if codes else []))
    out_console.print(table)
