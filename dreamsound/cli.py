"""The ``dreamsound`` command line: thin commands over the library.

Each command parses its options, calls one library function and prints the result (a rich table,
or one JSON object on stdout with ``--json``). Library errors (:class:`DreamsoundError`) become one
red line on stderr and exit code 2. torch is imported inside the commands so ``--help`` is instant.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from dreamsound import __version__
from dreamsound.errors import DreamsoundError

# OpenMP threads that spin while waiting make torch 8-20x slower on a busy 2-core machine;
# passive waiting costs nothing measurable when the machine is idle. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
        out_console.print(f"[bold]{escape(str(file))}[/] — {result.model}", highlight=False,
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


# -- dream and sonify -------------------------------------------------------------------------
def _metric_help() -> str:
    """The metric definitions of dreamsound.metrics, read without importing it (torch)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("dreamsound.metrics")
    if spec is None or spec.origin is None:
        return ""
    for node in ast.parse(Path(spec.origin).read_text(encoding="utf-8")).body:
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and node.target.id == "METRIC_DEFINITIONS" and node.value is not None):
            definitions = ast.literal_eval(node.value)
            return "Metrics: " + "; ".join(definitions.values()) + "."
    return ""


InputsArg = Annotated[list[str], typer.Argument(
    help="Sound file(s), or a generated start: noise:3s, silence:2s, sine:440:2s.",
    show_default=False)]
TargetOpt = Annotated[list[str] | None, typer.Option(
    "--target", "-t", help="Class to dream toward (repeat for one dream each); weights combine "
    "classes in one dream: 'violin:1,flute:0.5'. Default: the input's own top class.")]
LayerOpt = Annotated[str | None, typer.Option(
    "--layer", "-l", help="Ascend this layer's activation energy instead of a class.")]
ChannelOpt = Annotated[int | None, typer.Option("--channel", min=0,
                                                help="Only this channel of --layer.")]
DomainOpt = Annotated[str, typer.Option(
    "--domain", "-d", help="spectrogram (ascend the log-mel, render with fast Griffin-Lim) or "
    "waveform (ascend the samples, DreamSound's rules).")]
StepSizeOpt = Annotated[float | None, typer.Option(
    "--step-size", "-s", help="Per step: dB of mean change (spectrogram, default 0.25) or a "
    "fraction of the input RMS (waveform, default 0.05).", show_default=False)]
NormalizeOpt = Annotated[str, typer.Option("--normalize", help="Gradient normalisation: mean "
                                           "(g / mean|g|) or max (g / max|g|).")]
# A str, not a Path: Path would drop the trailing "/" that marks a folder still to be created.
OutOpt = Annotated[str | None, typer.Option(
    "--out", "-o", help="Output folder (existing, or ending in /), or file stem for one output. "
    "Default: beside the input, e.g. loop.dream-violin.wav.", show_default=False)]
SeedOpt = Annotated[int, typer.Option("--seed", help="Fixes every random choice (same seed, "
                                      "same bytes).")]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _dream_table(report: dict) -> Table:
    title = f"{report['input']} → {report['target'] or 'layer ' + str(report['layer'])}"
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    top = ", ".join(f"{t['name']} {t['score']:.2f}" for t in report["top_before"])
    rows = [
        ("model", report["model"]),
        ("domain", report["domain"] + (f" ({report['rule']}{', flip' if report['flip'] else ''})"
                                       if report["rule"] else "")),
        ("steps", f"{report['steps']}" + (" (reached --until)" if report["stopped"] == "until"
                                          else "")),
        ("seconds", f"{report['seconds']:.1f}"),
        ("top-3 before", top),
        ("confidence before", _fmt(report["confidence_before"])),
        ("confidence after (dreamed)", _fmt(report["confidence_after"])),
        ("confidence rendered (file)", _fmt(report["confidence_rendered"])),
        ("rmse_db / mse_db2", f"{report['rmse_db']:.2f} dB / {report['mse_db2']:.2f} dB²"),
    ]
    if report["objective"] == "layer":
        rows.append(("layer energy before → after",
                     f"{report['objective_before']:.4g} → {report['objective_after']:.4g}"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def _print_outputs(outputs: dict) -> None:
    """One ``wrote`` line per file (full paths, never cut to the terminal width)."""
    for key, path in outputs.items():
        for item in (path if isinstance(path, list) else [path]):
            out_console.print(f"wrote {key}: {item}", soft_wrap=True, highlight=False)

def _input_target_jobs(inputs: list[str], target: list[str] | None, layer: str | None
                       ) -> list[tuple[str, str | None, str]]:
    """Every (input, target, progress label) of a dream/sonify call: inputs x targets."""
    if layer is not None and target:
        raise DreamsoundError("give --target or --layer, not both")
    targets: list[str | None] = list(target) if target else [None]
    return [(source, wanted, f"{Path(source).name} → {wanted or layer or 'top class'}")
            for source in inputs for wanted in targets]


@app.command(epilog=_metric_help())
def dream(
    inputs: InputsArg,
    target: TargetOpt = None,
    layer: LayerOpt = None,
    channel: ChannelOpt = None,
    model: ModelOpt = "instrument",
    weights: WeightsOpt = None,
    domain: DomainOpt = "spectrogram",
    rule: Annotated[str, typer.Option(
        "--rule", "-r", help="Waveform update: additive, filter, filter-add or target.")
    ] = "additive",
    flip: Annotated[bool, typer.Option(
        "--flip", help="Waveform filter rules: swap mask and signal (mask from the sound, "
        "applied to the gradient).")] = False,
    target_sound: Annotated[Path | None, typer.Option(
        "--target-sound", help="Second sound whose spectrum masks the gradient (--rule target).",
        show_default=False)] = None,
    steps: Annotated[int, typer.Option("--steps", "-n", min=0,
                                       help="Gradient steps (per octave).")] = 50,
    step_size: StepSizeOpt = None,
    normalize: NormalizeOpt = "mean",
    until: Annotated[float | None, typer.Option(
        "--until", min=0.0, max=1.0, help="Stop once the target confidence reaches this.",
        show_default=False)] = None,
    until_rendered: Annotated[bool, typer.Option(
        "--until-rendered", help="With --until: stop only once the rendered audio reaches it "
        "too (renders to check).")] = False,
    max_rmse_db: Annotated[float | None, typer.Option(
        "--max-rmse-db", help="Stay within this rmse (dB) of the original's log-mel.",
        show_default=False)] = None,
    distance_weight: Annotated[float, typer.Option(
        "--distance-weight", min=0.0, help="Penalty weight on mse_db2 to the original.")] = 0.0,
    octaves: Annotated[int, typer.Option("--octaves", min=1, help="Coarse-to-fine time "
                                         "scales (spectrogram domain).")] = 1,
    octave_scale: Annotated[float, typer.Option("--octave-scale",
                                                help="Time scale between octaves.")] = 1.4,
    jitter: Annotated[float, typer.Option("--jitter", min=0.0, help="Random time roll per "
                                          "step, up to this many seconds.")] = 0.0,
    smooth: Annotated[int, typer.Option("--smooth", min=0, help="Passes of a [1,2,1] blur of "
                                        "the log-mel gradient (spectrogram domain; 0: raw)."
                                        )] = 1,
    seed: SeedOpt = 0,
    mask_threshold: Annotated[float, typer.Option(
        "--mask-threshold", min=0.0, max=1.0, help="Waveform masks: keep bins at least this "
        "fraction of the maximum.")] = 0.1,
    gl_iterations: Annotated[int, typer.Option("--gl-iterations", min=0, help="Fast "
                                               "Griffin-Lim iterations when rendering.")] = 32,
    fit_iterations: Annotated[int, typer.Option("--fit-iterations", min=0, help="Then steps "
                                                "fitting the audio's log-mel to the dream's "
                                                "(0: none).")] = 50,
    no_limit: Annotated[bool, typer.Option("--no-limit", help="Do not peak-limit the result "
                                           "to -1 dBFS.")] = False,
    save_every: Annotated[int | None, typer.Option(
        "--save-every", min=1, help="Also write a numbered snapshot every K steps.",
        show_default=False)] = None,
    out: OutOpt = None,
    plot: Annotated[bool, typer.Option("--plot", help="Also write a PNG: original, dreamed, "
                                       "difference and gradient spectrograms.")] = False,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Dream sounds toward a class (or a layer): writes the dreamed audio, the sonified
    gradient and a JSON report (and a PNG with --plot), never over the input.

    One model load serves every input x target. The report gives the target confidence before,
    after (on the dreamed spectrogram) and rendered (the written file, re-analysed), and the
    distance to the original (rmse_db, mse_db2).
    """
    from dreamsound.dream import dream as run_dream
    from dreamsound.dream import dream_name, output_stem, save_dream
    from dreamsound.models.registry import load_model

    jobs = _input_target_jobs(inputs, target, layer)
    net = load_model(model, weights, device)
    several = len(jobs) > 1
    reports = []
    for source, wanted, label in jobs:
        with progress_bar(label, quiet=quiet or as_json) as update:
            result = run_dream(
                source, model=net, target=wanted, layer=layer, channel=channel,
                domain=domain, rule=rule, flip=flip, target_sound=target_sound, steps=steps,
                step_size=step_size, normalize=normalize, until=until,
                max_rmse_db=max_rmse_db, distance_weight=distance_weight, octaves=octaves,
                octave_scale=octave_scale, jitter=jitter, seed=seed,
                mask_threshold=mask_threshold, gl_iterations=gl_iterations,
                fit_iterations=fit_iterations, limit=not no_limit, snapshot_every=save_every,
                smooth=smooth, until_rendered=until_rendered,
                progress=lambda step, total, _info, update=update: update(step, total))
        stem = output_stem(result.report["input"], dream_name(result, query=wanted), out,
                           several=several)
        save_dream(result, stem, plot=plot, inputs=[target_sound] if target_sound else [],
                   model=net)
        reports.append(result.report)
        if not as_json:
            out_console.print(_dream_table(result.report))
            _print_outputs(result.report["outputs"])
    if as_json:
        print_json(reports[0] if len(reports) == 1 else reports)


@app.command()
def sonify(
    inputs: InputsArg,
    target: TargetOpt = None,
    layer: LayerOpt = None,
    channel: ChannelOpt = None,
    steps: Annotated[int, typer.Option(
        "--steps", "-n", min=1, help="1: the gradient at the sound; N: the evolving gradient "
        "of N dream steps, as one sequence.")] = 1,
    model: ModelOpt = "instrument",
    weights: WeightsOpt = None,
    domain: DomainOpt = "spectrogram",
    step_size: StepSizeOpt = None,
    normalize: NormalizeOpt = "mean",
    seed: SeedOpt = 0,
    out: OutOpt = None,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Turn the gradient of a class (or a layer) into sound, peak-normalised, for composition:
    writes e.g. loop.sonify-violin.wav.

    Spectrogram domain: the positive part of d objective / d log-mel (where the model wants more
    energy), spread onto linear bins and rendered with the original's phase. Waveform domain:
    the gradient of the samples itself.
    """
    from dreamsound.audio import save_audio
    from dreamsound.dream import dream_name, output_stem
    from dreamsound.models.registry import load_model
    from dreamsound.sonify import sonify as run_sonify

    jobs = _input_target_jobs(inputs, target, layer)
    net = load_model(model, weights, device)
    several = len(jobs) > 1
    reports = []
    for source, wanted, label in jobs:
        with progress_bar(label, quiet=quiet or as_json) as update:
            result = run_sonify(
                source, model=net, target=wanted, layer=layer, channel=channel, steps=steps,
                domain=domain, step_size=step_size, normalize=normalize, seed=seed,
                progress=lambda step, total, _info, update=update: update(step, total))
        naming = {"layer": layer, "channel": channel, "domain": "spectrogram",
                  "targets": [{"name": result.report["target"] or ""}]}
        name = dream_name(naming, query=wanted).replace("dream-", "sonify-", 1)
        if domain == "waveform":
            name += "-waveform"
        stem = output_stem(result.report["input"], name, out, several=several)
        path = save_audio(stem.with_name(stem.name + ".wav"), result.audio,
                          result.sample_rate,
                          inputs=[result.input_path] if result.input_path else [])
        result.report["outputs"] = {"audio": str(path)}
        reports.append(result.report)
        if not as_json:
            what = result.report["target"] or f"layer {layer}"
            out_console.print(f"wrote {path} ({what}, {result.report['steps']} step(s), "
                              f"{result.report['duration_s']:.1f} s)", soft_wrap=True,
                              highlight=False)
    if as_json:
        print_json(reports[0] if len(reports) == 1 else reports)


# -- evaluate ---------------------------------------------------------------------------------
@app.command()
def evaluate(
    data_dir: Annotated[Path, typer.Argument(
        help="IRMAS-layout folder: class folders of wavs (training layout), or wavs with "
             "same-named .txt label files (testing layout).")],
    model: ModelOpt = "instrument",
    weights: WeightsOpt = None,
    per_class: Annotated[int | None, typer.Option(
        "--per-class", "-n", min=1, help="Clips per class: the first N after a seeded "
        "shuffle (default: all).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Fixes the clips, wrong classes, noise "
                                      "and dreams.")] = 0,
    workers: Annotated[int, typer.Option("--workers", "-j", min=1, help="Worker processes "
                                         "(each loads the model once).")] = 1,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder; run the same "
                                      "command again to resume.")] = Path("evaluation"),
    threshold: Annotated[float, typer.Option(
        "--threshold", min=0.0, max=1.0, help="Dream until the target confidence reaches "
        "this ...")] = 0.9,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1,
                                           help="... or this many steps.")] = 300,
    noise: Annotated[bool, typer.Option("--noise/--no-noise", help="Also dream white noise "
                                        "toward every class.")] = True,
    keep_audio: Annotated[bool, typer.Option("--keep-audio", help="Keep the dreamed sounds "
                                             "under OUT/audio/.")] = False,
    domain: Annotated[str, typer.Option("--domain", help="Dream on the spectrogram or the "
                                        "waveform (as `dreamsound dream`).")] = "spectrogram",
    step_size: Annotated[float | None, typer.Option(
        "--step-size", help="dB per step (spectrogram) or fraction of the input RMS "
        "(waveform); default: the engine's.")] = None,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Probe a classifier: dream every clip toward its correct class and a random wrong class,
    and noise toward every class; report success, confidence and dB distance.

    Writes OUT/report.md, report.json, heatmap.png and results.jsonl (one line per finished
    clip, so an interrupted run resumes where it stopped).
    """
    import shlex

    from dreamsound.evaluate import evaluate as run_evaluate

    argv = ["dreamsound", "evaluate", str(data_dir), "--model", model]
    argv += ["--weights", str(weights)] if weights is not None else []
    argv += ["--per-class", str(per_class)] if per_class is not None else []
    argv += ["--seed", str(seed), "--threshold", f"{threshold:g}", "--max-steps", str(max_steps),
             "--noise" if noise else "--no-noise", "--out", str(out), "--workers", str(workers)]
    argv += ["--keep-audio"] if keep_audio else []
    argv += ["--domain", domain] if domain != "spectrogram" else []
    argv += ["--step-size", f"{step_size:g}"] if step_size is not None else []
    argv += ["--device", device] if device != "auto" else []
    options: dict[str, Any] = {"domain": domain} if domain != "spectrogram" else {}
    if step_size is not None:
        options["step_size"] = step_size
    with progress_bar("dreaming", quiet=quiet) as update:
        result = run_evaluate(data_dir, out=out, model=model, weights=weights, device=device,
                              per_class=per_class, seed=seed, threshold=threshold,
                              max_steps=max_steps, noise=noise, keep_audio=keep_audio,
                              workers=workers, dream_options=options,
                              command=shlex.join(argv), progress=update)
    summary = result.summary
    if as_json:
        print_json({"out": str(out), "model": model, "jobs": result.total_jobs,
                    "resumed": result.resumed, "ran": result.ran, "complete": result.complete,
                    **summary})
        return

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f} %"

    def num(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"

    table = Table(title=f"{model} on {data_dir}: {summary['clips']} clips", title_justify="left")
    for col in ("dream toward", "success", f"≥ {threshold:g}", "mean rmse_db", "mean steps"):
        table.add_column(col, justify="left" if col == "dream toward" else "right")
    for kind, label in (("correct", "correct class"), ("wrong", "random wrong class")):
        table.add_row(label, pct(summary[f"success_rate_{kind}"]),
                      pct(summary[f"reached_threshold_rate_{kind}"]),
                      num(summary[f"mean_rmse_db_{kind}"]), num(summary[f"mean_steps_{kind}"]))
    if summary["noise_dreams"]:
        table.add_row("noise → each class", pct(summary["noise_success_rate"]),
                      pct(summary["noise_reached_threshold_rate"]), "",
                      num(summary["noise_mean_steps"]))
    out_console.print(table)
    if result.resumed:
        out_console.print(f"resumed: {result.resumed} of {result.total_jobs} jobs were already "
                          "done")
    if summary["errors"]:
        err_console.print(f"[yellow]{summary['errors']} job(s) failed; see report.md[/]")
    out_console.print(f"report: {result.paths['markdown']}  heatmap: {result.paths['heatmap']}")


# -- train ------------------------------------------------------------------------------------
@app.command()
def train(
    data_dirs: Annotated[list[Path], typer.Argument(
        help="IRMAS training-layout folder(s): class folders cel, cla, ... voi of .wav files "
             "(the real IRMAS-TrainingData, or sets rendered by scripts/render_trainset.py).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: model.safetensors, "
                                      "config.json, train_log.json.")],
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Maximum epochs.")] = 60,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1,
                                            help="1 s windows per step.")] = 64,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Adam learning rate.")] = 3e-3,
    patience: Annotated[int, typer.Option("--patience", min=1, help="Stop after this many "
                                          "epochs without a better validation loss.")] = 8,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.01, max=0.9,
                                                help="Share of songs held out.")] = 0.15,
    seed: Annotated[int, typer.Option("--seed", help="Fixes split, init and augmentation.")] = 0,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train the instrument CNN on IRMAS-layout data (early stopping, checkpoint per improvement).

    Use the result with `--model instrument --weights OUT/model.safetensors`.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dreamsound.train import TrainProgress
    from dreamsound.train import train as run_train

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True,
                  disable=quiet) as bar:
        task = bar.add_task("loading", total=None)

        def progress(event: TrainProgress) -> None:
            if event.stage == "load":
                bar.update(task, completed=event.done, total=event.total)
            elif event.stage == "epoch":
                bar.update(task, description=f"epoch {event.epoch}/{event.epochs}",
                           completed=event.done, total=event.total)
            elif not quiet:
                m = event.metrics
                bar.console.print(
                    f"epoch {m['epoch']:>3}: train loss {m['train_loss']:.4f}  val loss "
                    f"{m['val_loss']:.4f}  val acc {m['val_accuracy']:.3f}  micro-F1 "
                    f"{m['val_micro_f1']:.3f} (θ {m['threshold']:.2f})"
                    + ("  [green]saved[/]" if m["improved"] else ""), highlight=False,
                    soft_wrap=True)

        result = run_train(data_dirs, out, epochs=epochs, batch_size=batch_size, lr=lr,
                           val_fraction=val_fraction, seed=seed, patience=patience,
                           device=device, progress=progress)
    if as_json:
        print_json(result.to_json())
        return
    table = Table(title=f"trained {len(result.classes)} classes on {result.n_train} files "
                  f"(+{result.n_val} validation)", title_justify="left")
    table.add_column("")
    table.add_column("value", justify="right")
    for name, value in (("best epoch", f"{result.best_epoch} of {result.epochs_run}"),
                        ("validation accuracy (top-1)", f"{result.val_accuracy:.3f}"),
                        ("validation micro-F1 / macro-F1",
                         f"{result.val_micro_f1:.3f} / {result.val_macro_f1:.3f}"),
                        ("threshold θ", f"{result.threshold:.2f}"),
                        ("time per epoch", f"{result.seconds_per_epoch:.1f} s")):
        table.add_row(name, value)
    out_console.print(table)
    out_console.print(f"model: {result.weights_path}", soft_wrap=True, highlight=False)


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
