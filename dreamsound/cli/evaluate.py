"""``dreamsound evaluate``: the probing experiment over a labelled data set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dreamsound.cli.common import (
    DeviceOpt,
    JsonOpt,
    JudgeOpt,
    ModelOpt,
    OptionalRayAddress,
    QuietOpt,
    RayOpt,
    WeightsOpt,
    WorkersOpt,
    app,
    err_console,
    out_console,
    print_json,
    progress_bar,
)
from dreamsound.cli.options import with_config
from dreamsound.config import DreamConfig


@app.command(cls=OptionalRayAddress)
@with_config(knobs=("style", "domain", "step_size"), defaults={"style": "exact"})
def evaluate(
    data_dir: Annotated[Path, typer.Argument(
        help="IRMAS-layout folder: class folders of wavs (training layout), or wavs with "
             "same-named .txt label files (testing layout).")],
    config: DreamConfig,
    model: ModelOpt = "instrument",
    judge: JudgeOpt = None,
    weights: WeightsOpt = None,
    per_class: Annotated[int | None, typer.Option(
        "--per-class", min=1, help="Clips per class: the first N after a seeded "
        "shuffle (default: all).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Fixes the clips, wrong classes, noise "
                                      "and dreams.")] = 0,
    workers: WorkersOpt = None,
    ray: RayOpt = None,
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
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Probe a classifier: dream every clip toward its correct class and a random wrong class,
    and noise toward every class; report success, confidence and dB distance.

    Writes OUT/report.md, report.json, heatmap.png and results.jsonl (one line per finished
    clip, so an interrupted run resumes where it stopped); with --judge, transfer.png and a
    transfer table (each judge against its null baseline, white noise at the dream's distance,
    and its reference, another clip of the target class at that distance). --style exact
    (default) is Cochran & Kim's protocol; --style robust dreams sounds other models may hear.
    """
    import shlex

    from dreamsound.experiments.evaluate import evaluate as run_evaluate
    from dreamsound.experiments.evaluate import protocol_config

    style, domain, step_size = config.style, config.domain, config.step_size
    argv = ["dreamsound", "evaluate", str(data_dir), "--model", model]
    argv += ["--weights", str(weights)] if weights is not None else []
    argv += ["--per-class", str(per_class)] if per_class is not None else []
    argv += ["--seed", str(seed), "--threshold", f"{threshold:g}", "--max-steps", str(max_steps),
             "--noise" if noise else "--no-noise", "--out", str(out)]
    argv += ["--workers", str(workers)] if workers is not None else []
    argv += ["--ray", *([ray] if ray else [])] if ray is not None else []
    argv += ["--keep-audio"] if keep_audio else []
    argv += ["--style", style] if style != "exact" else []
    argv += [arg for name in judge or [] for arg in ("--judge", name)]
    argv += ["--domain", domain] if domain != ("spectrogram" if style == "exact" else "envelope") \
        else []
    argv += ["--step-size", f"{step_size:g}"] if step_size is not None else []
    argv += ["--device", device] if device != "auto" else []
    with progress_bar("dreaming", quiet=quiet) as update:
        result = run_evaluate(data_dir, out=out, model=model, weights=weights, device=device,
                              per_class=per_class, seed=seed, threshold=threshold,
                              max_steps=max_steps, noise=noise, keep_audio=keep_audio,
                              workers=workers, executor="local" if ray is None else "ray",
                              ray_address=ray or None,
                              config=protocol_config(style=style, domain=domain,
                                                     step_size=step_size),
                              judges=judge or [],
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
    transfer = summary.get("transfer")
    if transfer:
        for name in transfer["judges"]:
            stats = transfer["by_kind"]["wrong"][name]
            if stats["n"]:
                out_console.print(
                    f"judge {name}: moved on {pct(stats['rate'])} of {stats['n']} wrong-class "
                    f"dreams (null baseline {pct(stats['null_rate'])}, reference "
                    f"{pct(stats['reference_rate'])}); mean gain {stats['gain']:+.3f} (null "
                    f"{stats['null_gain']:+.3f})", highlight=False)
    if result.resumed:
        out_console.print(f"resumed: {result.resumed} of {result.total_jobs} jobs were already "
                          "done")
    if summary["errors"]:
        err_console.print(f"[yellow]{summary['errors']} job(s) failed; see report.md[/]")
    out_console.print(f"report: {result.paths['markdown']}  heatmap: {result.paths['heatmap']}")
