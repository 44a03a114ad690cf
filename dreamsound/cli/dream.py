"""``dreamsound dream`` and ``dreamsound sonify``: thin commands over
:class:`dreamsound.api.Dreamer`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from dreamsound.cli.common import (
    ChannelOpt,
    DeviceOpt,
    InputsArg,
    JsonOpt,
    JudgeOpt,
    LayerOpt,
    MaxSecondsOpt,
    ModelOpt,
    ModelsOpt,
    OptionalRayAddress,
    OutOpt,
    QuietOpt,
    RayOpt,
    TargetOpt,
    WeightsOpt,
    WorkersOpt,
    app,
    fmt,
    model_choices,
    out_console,
    print_json,
    progress_bar,
    worker_threads,
)
from dreamsound.cli.options import with_config
from dreamsound.config import SONIFY_STYLE, DreamConfig
from dreamsound.metric_defs import METRIC_DEFINITIONS

if TYPE_CHECKING:
    from dreamsound.batch import BatchSettings

METRIC_HELP = "Metrics: " + "; ".join(METRIC_DEFINITIONS.values()) + "."


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
        ("confidence before", fmt(report["confidence_before"])),
        ("confidence after (dreamed)", fmt(report["confidence_after"])),
        ("confidence rendered (file)", fmt(report["confidence_rendered"])),
        ("rmse_db / mse_db2", f"{report['rmse_db']:.2f} dB / {report['mse_db2']:.2f} dB²"),
    ]
    if report["objective"] == "layer":
        rows.append(("layer energy before → after",
                     f"{report['objective_before']:.4g} → {report['objective_after']:.4g}"))
    for judge in report.get("judges", []):
        if judge["target"] is None:  # the judge has no class for the target's concept
            rows.append((f"judge {judge['model']}", judge["note"]))
            continue
        rows.append((f"judge {judge['model']} ({judge['target']})",
                     f"{fmt(judge['confidence_before'])} → {fmt(judge['confidence_after'])}"
                     f"{' (moved)' if judge['moved'] else ''}"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def _print_outputs(outputs: dict) -> None:
    """One ``wrote`` line per file (full paths, never cut to the terminal width)."""
    for key, path in outputs.items():
        for item in (path if isinstance(path, list) else [path]):
            out_console.print(f"wrote {key}: {item}", soft_wrap=True, highlight=False)


def _run(inputs: list[str], config: DreamConfig, settings: BatchSettings, *,
         target: list[str] | None, model: list[tuple[str, float]], judge: list[str] | None,
         weights: Path | None, device: str, workers: int | None, ray: str | None, quiet: bool,
         show: Callable[[dict], None] | None) -> list[dict]:
    """Run every input x target through :func:`dreamsound.batch.run_batch`: one bar per job
    inline (``show`` each report as it comes), one bar over the jobs with workers (``show``
    them all, in order, at the end)."""
    import os

    from dreamsound.batch import DreamerRef, batch_jobs, run_batch
    from dreamsound.experiments.executors import uses_workers
    from dreamsound.models.registry import resolve_device

    jobs = batch_jobs(inputs, target, settings.layer)
    settings = replace(settings, several=len(jobs) > 1, cwd=os.getcwd())
    ref = DreamerRef(models=tuple(model), config=config, device=str(resolve_device(device)),
                     weights=None if weights is None else str(weights.expanduser().absolute()),
                     judges=tuple(judge or []), threads=worker_threads())
    options = {"workers": workers, "ray": ray is not None, "ray_address": ray or None}
    if not uses_workers(len(jobs), workers=workers, ray=ray is not None):
        return run_batch(ref, jobs, settings, **options, on_report=show,
                         job_progress=lambda job: progress_bar(job.label, quiet=quiet))
    with progress_bar(f"{settings.command}: {len(jobs)} jobs", quiet=quiet) as update:
        reports = run_batch(ref, jobs, settings, **options, progress=update)
    for report in reports if show is not None else ():
        show(report)
    return reports


@app.command(cls=OptionalRayAddress, epilog=METRIC_HELP)
@with_config()
def dream(
    inputs: InputsArg,
    config: DreamConfig,
    target: TargetOpt = None,
    layer: LayerOpt = None,
    channel: ChannelOpt = None,
    model: ModelsOpt = None,
    judge: JudgeOpt = None,
    weights: WeightsOpt = None,
    target_sound: Annotated[Path | None, typer.Option(
        "--target-sound", help="Second sound whose spectrum masks the gradient (--rule target).",
        show_default=False, rich_help_panel="Waveform rules")] = None,
    out: OutOpt = None,
    plot: Annotated[bool, typer.Option("--plot", help="Also write a PNG: original, dreamed, "
                                       "difference and gradient spectrograms.",
                                       rich_help_panel="Rendering and output")] = False,
    device: DeviceOpt = "auto",
    max_seconds: MaxSecondsOpt = None,
    workers: WorkersOpt = None,
    ray: RayOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Dream sounds toward a class (or a layer): writes the dreamed audio, the sonified
    gradient and a JSON report (and a PNG with --plot), never over the input. Files longer
    than 10 s stream: dreamed in cross-faded segments, in bounded memory.

    Every input (a folder: the audio files in it) x target is one dream; one model load serves
    them all, or one per worker with --workers N / --ray. Every input is checked before the
    first dream. Workers run one torch thread each, or the global --threads when given: then
    they write the bytes one process writes with it (dreamsound --threads 1 dream ...).

    The report gives the target confidence before, after (on the dreamed spectrogram) and
    rendered (the written file, re-analysed), and the distance to the original (rmse_db,
    mse_db2).
    """
    from dreamsound.batch import BatchSettings

    def show(report: dict) -> None:
        out_console.print(_dream_table(report))
        _print_outputs(report["outputs"])

    settings = BatchSettings("dream", layer=layer, channel=channel, target_sound=target_sound,
                             plot=plot, out=out, max_seconds=max_seconds)
    reports = _run(inputs, config, settings, target=target, model=model_choices(model),
                   judge=judge, weights=weights, device=device, workers=workers, ray=ray,
                   quiet=quiet or as_json, show=None if as_json else show)
    if as_json:
        print_json(reports[0] if len(reports) == 1 else reports)


@app.command(cls=OptionalRayAddress)
@with_config(knobs=("domain", "step_size", "normalize", "seed"),
             defaults={"style": SONIFY_STYLE})
def sonify(
    inputs: InputsArg,
    config: DreamConfig,
    target: TargetOpt = None,
    layer: LayerOpt = None,
    channel: ChannelOpt = None,
    steps: Annotated[int, typer.Option(
        "--steps", "-n", min=1, help="1: the gradient at the sound; N: the evolving gradient "
        "of N dream steps, as one sequence.", rich_help_panel="Dream")] = 1,
    model: ModelOpt = "instrument",
    judge: JudgeOpt = None,
    weights: WeightsOpt = None,
    out: OutOpt = None,
    device: DeviceOpt = "auto",
    max_seconds: MaxSecondsOpt = None,
    workers: WorkersOpt = None,
    ray: RayOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Turn the gradient of a class (or a layer) into sound, peak-normalised, for composition:
    writes e.g. loop.sonify-violin.wav.

    Spectrogram domain: the positive part of d objective / d log-mel (where the model wants more
    energy), spread onto linear bins and rendered with the original's phase. Waveform domain:
    the gradient of the samples itself.
    """

    from dreamsound.batch import BatchSettings

    def show(report: dict) -> None:
        what = report["target"] or f"layer {layer}"
        out_console.print(f"wrote {report['outputs']['audio']} ({what}, {report['steps']} "
                          f"step(s), {report['duration_s']:.1f} s)", soft_wrap=True,
                          highlight=False)

    settings = BatchSettings("sonify", layer=layer, channel=channel, steps=steps, out=out,
                             max_seconds=max_seconds)
    reports = _run(inputs, config, settings, target=target, model=[(model, 1.0)], judge=judge,
                   weights=weights, device=device, workers=workers, ray=ray,
                   quiet=quiet or as_json, show=None if as_json else show)
    if as_json:
        print_json(reports[0] if len(reports) == 1 else reports)
