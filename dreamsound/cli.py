"""The ``dreamsound`` command line: thin commands over the library.

Each command parses its options, calls one library function and prints the result (a rich table,
or one JSON object on stdout with ``--json``). Library errors (:class:`DreamsoundError`) become one
red line on stderr and exit code 2. torch is imported inside the commands so ``--help`` is instant.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from dreamsound import __version__
from dreamsound.errors import DreamsoundError

out_console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


class _ErrorsAsOneLine(TyperGroup):
    """Turn library errors into one red line and exit code 2 (a traceback only with --debug)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except DreamsoundError as exc:
            if _state["debug"]:
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True,
                              markup=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_ErrorsAsOneLine,
    name="dreamsound",
    help="Audio deep dreaming: make a sound more like what a classifier hears, sonify its "
    "gradients, and measure what changed.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="List models and fetch their weights.",
                         context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(models_app, name="models")

# -- options shared by several commands (defined once) ---------------------------------------
ModelOpt = Annotated[str, typer.Option("--model", "-m",
                                       help="Model name (see `dreamsound models`).")]
WeightsOpt = Annotated[Path | None, typer.Option(
    "--weights", help="Weights file to use instead of the registry's (e.g. yamnet.h5).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
MaxSecondsOpt = Annotated[float, typer.Option(
    "--max-seconds", min=0.1, help="Refuse input files longer than this (seconds).")]


def _version(value: bool) -> None:
    if value:
        out_console.print(f"dreamsound {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO if verbose else
                        logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def print_json(obj: Any) -> None:
    """One JSON object on stdout (no rich markup, no wrapping)."""
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


@contextmanager
def progress_bar(description: str, *, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar; yields ``update(done, total)`` (a no-op when quiet)."""
    if quiet:
        yield lambda done, total: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err_console,
                  transient=True) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


# -- classify ---------------------------------------------------------------------------------
@app.command()
def classify(
    files: Annotated[list[Path], typer.Argument(help="Sound file(s) to classify.")],
    model: ModelOpt = "instrument",
    weights: WeightsOpt = None,
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="How many classes to show.")] = 5,
    frames: Annotated[bool, typer.Option("--frames", help="Also show scores per patch.")] = False,
    device: DeviceOpt = "auto",
    max_seconds: MaxSecondsOpt = 600.0,
    as_json: JsonOpt = False,
) -> None:
    """Show what a model hears in a sound: top classes for the whole file (and per patch)."""
    from dreamsound.classify import classify as run_classify
    from dreamsound.models.registry import load_model

    net = load_model(model, weights, device)
    results = [run_classify(f, model=net, max_seconds=max_seconds) for f in files]
    if as_json:
        docs = [dict(file=str(f), **r.to_json(frames=frames, top=top))
                for f, r in zip(files, results)]
        print_json(docs[0] if len(docs) == 1 else docs)
        return
    for file, result in zip(files, results):
        out_console.print(f"[bold]{file}[/] — {result.model}", highlight=False, soft_wrap=True)
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


# -- classes ----------------------------------------------------------------------------------
@app.command()
def classes(
    model: ModelOpt = "instrument",
    search: Annotated[str | None, typer.Option("--search", "-s",
                                               help="Only names containing this text.")] = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a model's class names (what `--target` accepts)."""
    from dreamsound.models.registry import get_spec

    names, codes = _class_names(get_spec(model), weights)
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


def _class_names(spec: Any, weights: Path | None) -> tuple[list[str], list[str]]:
    """Class names without building the network when the model module offers them."""
    import importlib

    module = importlib.import_module(spec.factory.__module__)
    if hasattr(module, "class_names_and_codes"):
        return module.class_names_and_codes()
    from dreamsound.models.registry import load_model

    net = load_model(spec.name, weights, "cpu")
    return net.class_names, net.class_codes


# -- models -----------------------------------------------------------------------------------
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
        path = fetch_weights(spec.weights, force=force, progress=update)
    out_console.print(f"{name}: {path}")


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/]")
        sys.exit(130)
