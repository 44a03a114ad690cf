"""``dreamsound dream`` and ``dreamsound sonify``: thin commands over
:class:`dreamsound.api.Dreamer`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    OutOpt,
    QuietOpt,
    TargetOpt,
    WeightsOpt,
    app,
    fmt,
    model_choices,
    out_console,
    print_json,
    progress_bar,
)
from dreamsound.cli.options import with_config
from dreamsound.config import DreamConfig
from dreamsound.errors import DreamsoundError
from dreamsound.metric_defs import METRIC_DEFINITIONS

METRIC_HELP = "Metrics: " + "; ".join(METRIC_DEFINITIONS.values()) + "."


def _jobs(inputs: list[str], target: list[str] | None, layer: str | None
          ) -> list[tuple[str, str | None, str]]:
    """Every (input, target, progress label) of a dream/sonify call: inputs x targets."""
    if layer is not None and target:
        raise DreamsoundError("give --target or --layer, not both")
    targets: list[str | None] = list(target) if target else [None]
    return [(source, wanted, f"{Path(source).name} → {wanted or layer or 'top class'}")
            for source in inputs for wanted in targets]


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


@app.command(epilog=METRIC_HELP)
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
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Dream sounds toward a class (or a layer): writes the dreamed audio, the sonified
    gradient and a JSON report (and a PNG with --plot), never over the input. Files longer
    than 10 s stream: dreamed in cross-faded segments, in bounded memory.

    One model load serves every input x target. The report gives the target confidence before,
    after (on the dreamed spectrogram) and rendered (the written file, re-analysed), and the
    distance to the original (rmse_db, mse_db2).
    """
    from dreamsound.api import Dreamer
    from dreamsound.outputs import output_stem
    from dreamsound.streaming import dream_file

    jobs = _jobs(inputs, target, layer)
    dreamer = Dreamer(model_choices(model), config, weights=weights, device=device,
                      judges=judge or [])
    several = len(jobs) > 1
    reports = []
    for source, wanted, label in jobs:
        with progress_bar(label, quiet=quiet or as_json) as update:
            report = dream_file(dreamer, source, target=wanted, layer=layer, channel=channel,
                                target_sound=target_sound, plot=plot, progress=update,
                                max_seconds=max_seconds, stem=lambda input_label, name:
                                output_stem(input_label, name, out, several=several))
        reports.append(report)
        if not as_json:
            out_console.print(_dream_table(report))
            _print_outputs(report["outputs"])
    if as_json:
        print_json(reports[0] if len(reports) == 1 else reports)


@app.command()
@with_config(knobs=("domain", "step_size", "normalize", "seed"))
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
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Turn the gradient of a class (or a layer) into sound, peak-normalised, for composition:
    writes e.g. loop.sonify-violin.wav.

    Spectrogram domain: the positive part of d objective / d log-mel (where the model wants more
    energy), spread onto linear bins and rendered with the original's phase. Waveform domain:
    the gradient of the samples itself.
    """
    from dreamsound.api import Dreamer
    from dreamsound.outputs import output_stem
    from dreamsound.streaming import sonify_file

    jobs = _jobs(inputs, target, layer)
    dreamer = Dreamer(model, config, weights=weights, device=device, judges=judge or [])
    several = len(jobs) > 1
    reports = []
    for source, wanted, label in jobs:
        with progress_bar(label, quiet=quiet or as_json) as update:
            report = sonify_file(dreamer, source, target=wanted, layer=layer, channel=channel,
                                 steps=steps, progress=update, max_seconds=max_seconds,
                                 stem=lambda input_label, name:
                                 output_stem(input_label, name, out, several=several))
        reports.append(report)
        if not as_json:
            what = report["target"] or f"layer {layer}"
            out_console.print(f"wrote {report['outputs']['audio']} ({what}, {report['steps']} "
                              f"step(s), {report['duration_s']:.1f} s)", soft_wrap=True,
                              highlight=False)
    if as_json:
        print_json(reports[0] if len(reports) == 1 else reports)
