"""``dreamsound train``: train the instrument CNN on IRMAS-layout data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dreamsound.cli.common import (
    DeviceOpt,
    JsonOpt,
    QuietOpt,
    app,
    err_console,
    out_console,
    print_json,
)


def _distil_label(value: str) -> str:
    from dreamsound.train.data import DISTIL_LABELS  # torch: only once the command runs

    if value not in DISTIL_LABELS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(DISTIL_LABELS)}")
    return value


@app.command()
def train(
    data_dirs: Annotated[list[Path], typer.Argument(
        help="IRMAS training-layout folder(s): class folders cel, cla, ... voi of .wav files "
             "(the real IRMAS-TrainingData, or sets rendered by "
             "scripts/data/render_trainset.py).")],
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
    distil: Annotated[float, typer.Option(
        "--distil", min=0.0, max=0.99,
        help="Share of each target taken from a teacher's view of the clip (each folder's "
             "teacher.csv, written by scripts/data/teacher_targets.py); 0: labels only.")] = 0.0,
    distil_label: Annotated[str, typer.Option(
        "--distil-label", callback=_distil_label,
        help="blend: target (1-W) label + W teacher; keep: the label stays 1 and the other "
             "classes get W x the teacher's probability.")] = "blend",
    init: Annotated[Path | None, typer.Option(
        "--init", help="Start from these weights (same classes): fine-tune them instead of "
                       "training a new network.")] = None,
    adversarial_db: Annotated[float, typer.Option(
        "--adversarial-db", min=0.0, max=3.0,
        help="Also train on copies of each window moved against the model within this many "
             "dB rmse: a slightly robust model (e.g. 0.3 for 3 epochs with --init; its "
             "dreams moved musicnn more often; docs/transfer.md); 3x the time. 0: off.")] = 0.0,
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
                           distil=distil, distil_label=distil_label, init=init,
                           adversarial_db=adversarial_db, device=device, progress=progress)
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
