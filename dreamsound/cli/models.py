"""``dreamsound models`` and ``dreamsound models fetch``: which models exist, and their weights."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from dreamsound.cli.common import (
    JsonOpt,
    QuietOpt,
    models_app,
    out_console,
    print_json,
    progress_bar,
)
from dreamsound.errors import DreamsoundError
from dreamsound.events import ProgressEvent


@models_app.callback(invoke_without_command=True)
def models_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the models and whether their weights are present."""
    if ctx.invoked_subcommand is not None:
        return
    from dreamsound.models.registry import DEFAULT_MODEL, get_spec, model_names
    from dreamsound.models.weights import find_weights

    rows = []
    for name in model_names():
        try:
            spec = get_spec(name)
        except DreamsoundError as exc:
            rows.append({"name": name, "summary": f"(broken: {exc})", "weights": None,
                         "present": False, "default": False})
            continue
        found = find_weights(spec.weights) if spec.weights is not None else None
        rows.append({"name": name, "summary": spec.summary, "default": name == DEFAULT_MODEL,
                     "weights": str(found) if found else None,
                     "present": spec.weights is None or found is not None})
    if as_json:
        print_json(rows)
        return
    table = Table(title="dreamsound models", title_justify="left")
    for col in ("model", "weights", "about"):
        table.add_column(col)
    for row in rows:
        state = ("[green]present[/]" if row["present"] else
                 f"[yellow]missing[/] — `dreamsound models fetch {row['name']}`")
        label = row["name"] + (" (default)" if row["default"] else "")
        table.add_row(label, state, row["summary"])
    out_console.print(table)


@models_app.command("fetch")
def models_fetch(
    name: Annotated[str, typer.Argument(help="Model whose weights to download.")],
    force: Annotated[bool, typer.Option("--force", help="Download even if present.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Download a model's weights into the cache (checksum verified)."""
    from dreamsound.models.registry import get_spec
    from dreamsound.models.weights import fetch_weights

    spec = get_spec(name)
    if spec.weights is None:
        out_console.print(f"{name} needs no weights file.")
        return
    with progress_bar(f"fetching {name}", quiet=quiet) as update:
        path = fetch_weights(spec.weights, force=force, progress=lambda done, total: update(
            ProgressEvent(stage="download", step=done, total=total)))
    out_console.print(f"{name}: {path}")
