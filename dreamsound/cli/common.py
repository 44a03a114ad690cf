"""What every command shares: the Typer app, consoles, one-line errors, shared options, JSON
output and the one progress bar.

Library errors (:class:`DreamsoundError`) become one red line on stderr and exit code 2. torch is
imported inside the commands so ``--help`` is instant.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from dreamsound import __version__
from dreamsound.errors import ConfigError, DreamsoundError
from dreamsound.events import ProgressCallback, ProgressEvent

out_console = Console(emoji=False)  # a path or name like "a:fire:.wav" stays text
err_console = Console(stderr=True, emoji=False)
_state: dict[str, Any] = {"debug": False, "threads": None}


class _ErrorsAsOneLine(TyperGroup):
    """Turn library errors into one red line and exit code 2 (a traceback only with --debug)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except DreamsoundError as exc:
            if _state["debug"]:
                raise
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                              soft_wrap=True)
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
ModelsOpt = Annotated[list[str] | None, typer.Option(
    "--model", "-m", help="Model to dream on (see `dreamsound models`); repeat for an ensemble "
    "that hears one sound (sound domains, e.g. --style robust); NAME:WEIGHT weighs one. "
    "Default: instrument.", show_default=False, rich_help_panel="Models")]
JudgeOpt = Annotated[list[str] | None, typer.Option(
    "--judge", help="A model outside the dream that scores the written audio before and after, "
    "the target mapped through the concept map (repeatable).", show_default=False,
    rich_help_panel="Models")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
MaxSecondsOpt = Annotated[float | None, typer.Option(
    "--max-seconds", min=0.1, help="Refuse input files longer than this (seconds). Default: "
    "no limit; files longer than 10 s stream in bounded memory.", show_default=False)]
InputsArg = Annotated[list[str], typer.Argument(
    help="Sound file(s), folder(s) of them (their audio files, in name order, earlier outputs "
    "left out), or a generated start: noise:3s, silence:2s, sine:440:2s.",
    show_default=False)]
TargetOpt = Annotated[list[str] | None, typer.Option(
    "--target", "-t", help="Class to dream toward (repeat for one dream each); weights combine "
    "classes in one dream: 'violin:1,flute:0.5'. Default: the input's own top class.",
    rich_help_panel="Objective")]
LayerOpt = Annotated[str | None, typer.Option(
    "--layer", "-l", help="Ascend this layer's activation energy instead of a class.",
    rich_help_panel="Objective")]
ChannelOpt = Annotated[int | None, typer.Option("--channel", min=0,
                                                help="Only this channel of --layer.",
                                                rich_help_panel="Objective")]
# A str, not a Path: Path would drop the trailing "/" that marks a folder still to be created.
OutOpt = Annotated[str | None, typer.Option(
    "--out", "-o", help="Output folder (existing, or ending in /), or file stem for one output. "
    "Default: beside the input, e.g. loop.dream-violin.wav.", show_default=False,
    rich_help_panel="Rendering and output")]
WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", "-j", min=1, show_default=False,
    help="Workers, each loading the model once: processes on this machine (default 1: this "
    "process), or Ray actors with --ray (default: one per CPU of the cluster).",
    rich_help_panel="Where the jobs run")]
RayOpt = Annotated[str | None, typer.Option(
    "--ray", metavar="[ADDRESS]", show_default=False,
    help="Run the jobs on a Ray cluster (pip install \"dreamsound-ml[ray]\"): its head's "
    "HOST:PORT, or auto; alone: the cluster on this machine, or a new local one. Input files, "
    "--weights and --out must be at the same paths on every machine.",
    rich_help_panel="Where the jobs run")]

#: What ``--ray`` alone stands for: no address (join this machine's cluster, or start one).
_RAY_HERE = ""
#: A Ray address: ``auto``, ``local``, ``host:port`` or ``ray://host:port`` (never a generated
#: start such as ``noise:3``).
_RAY_ADDRESS = re.compile(r"^(auto|local|[a-z]+://\S+|(?!(noise|silence|sine):)[^\s/]+:\d+)$",
                          re.IGNORECASE)


class OptionalRayAddress(TyperCommand):
    """A command whose ``--ray`` (:data:`RayOpt`) takes an optional address: ``--ray``,
    ``--ray auto``, ``--ray HOST:PORT``.

    The parser has no options with an optional value, so ``--ray`` not followed by something
    that looks like a Ray address (``auto``, ``local``, ``host:port``, ``ray://...``) gets an
    empty one -- a following path stays an argument.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        fixed: list[str] = []
        for i, arg in enumerate(args):
            if arg == "--":
                fixed += args[i:]
                break
            fixed.append(arg)
            if arg == "--ray" and (i + 1 == len(args) or not _RAY_ADDRESS.match(args[i + 1])):
                fixed[-1] = f"--ray={_RAY_HERE}"
        return super().parse_args(ctx, fixed)


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
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, show_default=False,
        help="CPU threads for the models. Default: $DREAMSOUND_THREADS, else the cores this "
        "process may use (affinity, cgroup quota), at most 8.")] = None,
) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO if verbose else
                        logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Before any command loads torch (which reads the count from the environment then); torch
    # itself is not imported here, so commands that never need it stay instant.
    from dreamsound.allocator import reuse_freed_memory
    from dreamsound.threads import configure_threads, governed, set_wait_policy

    reuse_freed_memory()  # no page faults on a step's buffers (see dreamsound.allocator)
    _state["threads"] = configure_threads(threads, load_torch=False)
    # How OpenMP threads wait is read once, when torch loads: a short spin when the count
    # follows the load, else sleep at once (see dreamsound.threads).
    set_wait_policy(governed=governed())


def worker_threads() -> int:
    """torch threads of each worker (process or Ray actor) of a command: the count the user
    chose (``--threads``, ``DREAMSOUND_THREADS`` or ``OMP_NUM_THREADS``), so that workers compute
    exactly what this process would (CPU kernels sum in an order that depends on the thread
    count); else one, so that workers do not fight over the cores."""
    choice = _state["threads"]
    return 1 if choice is None or choice.source == "cores" else choice.threads


def print_json(obj: Any) -> None:
    """One JSON object on stdout (no rich markup, no wrapping)."""
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


@contextmanager
def progress_bar(description: str, *, quiet: bool) -> Iterator[ProgressCallback]:
    """A rich progress bar fed by :class:`~dreamsound.events.ProgressEvent` s (any stage); yields
    the callback (a no-op when quiet). A segment of a long file shows in the description."""
    if quiet:
        yield lambda event: None
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
                  TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                  console=err_console, transient=True) as progress:
        task = progress.add_task(description, total=None, info="")

        def update(event: ProgressEvent) -> None:
            info = []
            if event.segments:
                info.append(f"segment {event.segment + 1}/{event.segments}")
            if event.confidence is not None:
                info.append(f"conf {event.confidence:.2f}")
            if event.rmse_db is not None:
                info.append(f"{event.rmse_db:.2f} dB")
            progress.update(task, completed=event.step, total=event.total, info="  ".join(info))

        yield update


def model_choices(models: list[str] | None) -> list[tuple[str, float]]:
    """``--model`` values as ``(name, weight)``: ``yamnet:0.5`` weighs YAMNet by 0.5."""
    choices = []
    for text in models or ["instrument"]:
        name, colon, weight = text.rpartition(":")
        if not colon:
            choices.append((text, 1.0))
            continue
        try:
            choices.append((name, float(weight)))
        except ValueError:
            raise ConfigError(f"--model {text}: cannot read the weight {weight!r}; write NAME "
                              "or NAME:WEIGHT (e.g. yamnet:0.5)") from None
    return choices


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a table, or an en dash for none."""
    return "–" if value is None else f"{value:.{digits}f}"
