"""The classifier-probing experiment behind ``dreamsound evaluate``.

After Cochran & Kim's DreamSound study: dream every clip of a labelled data set toward its correct
class and toward a seeded random wrong class, and dream white noise toward every class; then read
how often the model was pushed there (success: the target is top-1 afterwards), how confident it
became, how many steps it took, and how far the sound had to move (``rmse_db`` on the model's mel
scale, :mod:`dreamsound.metrics`).

The work is a list of *jobs* (:mod:`~dreamsound.experiments.jobs`) -- one per clip (both of its
dreams, so the distance between the two dreamed versions can be measured) and one per noise
target -- fixed entirely by the data (:mod:`~dreamsound.experiments.dataset`), the options and the
seed. Jobs run inline, in worker processes or on a Ray cluster
(:mod:`~dreamsound.experiments.executors`), each worker holding its own copy of the model. Every
finished job is appended by this process as one JSON line to ``OUT/results.jsonl`` (flushed and
fsynced, :mod:`~dreamsound.experiments.journal`), so an interrupted run is resumed by running the
same command again: finished jobs are skipped, and the report
(:mod:`~dreamsound.experiments.report`) is always built from that file. ``OUT/run.json`` records
the settings and a digest of the model's weights; a folder from another run is refused. Where the
jobs ran is not a setting: a run started on a process pool can be finished on a Ray cluster.

Record shapes (one JSON object per line)::

    {"job": "clip:cel/x.wav", "kind": "clip", "file": "cel/x.wav", "true": "cel",
     "labels": ["cel"], "seconds": 3.0, "confidence_true_before": 0.41,
     "correct": DREAM, "wrong": DREAM, "between": {"rmse_db": .., "mse_db2": ..}}
    {"job": "noise:cel", "kind": "noise", "target": "cel", "seconds": 3.0, "dream": DREAM}
    {"job": ..., "kind": ..., "error": "one line"}          # a job that could not run

    DREAM = {"target", "target_name", "target_index", "steps", "stopped", "seconds_taken",
             "confidence_before", "confidence_after", "confidence", "top1", "success",
             "reached_threshold", "rmse_db", "mse_db2", "rmse_db_spectrogram", "audio"}

``confidence``, ``top1`` and ``success`` are measured on the dreamed audio as written (rendered),
``confidence_after`` and ``rmse_db_spectrogram`` on the engine's ascended spectrogram before
rendering; ``rmse_db``/``mse_db2`` compare the rendered audio with the start.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamsound.config import DreamConfig
from dreamsound.engine.members import check_members
from dreamsound.errors import DreamsoundError, OutputError
from dreamsound.events import ProgressCallback, ProgressEvent
from dreamsound.experiments.dataset import (
    LabelledClip,
    class_indices,
    class_order,
    list_clips,
    select_clips,
)
from dreamsound.experiments.executors import (
    Executor,
    ModelRef,
    import_ray,
    make_executor,
    model_digest,
)
from dreamsound.experiments.jobs import (
    DEFAULT_MAX_STEPS,
    DEFAULT_THRESHOLD,
    ClipJob,
    Job,
    JobSettings,
    NoiseJob,
    build_jobs,
    protocol_config,
    run_job,
)
from dreamsound.experiments.journal import (
    RESULTS_FILE,
    RUN_FILE,
    ResultsWriter,
    check_run_file,
    read_results,
)
from dreamsound.experiments.transfer import summarize_transfer
from dreamsound.io_utils import PathLike

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_STEPS",
    "DEFAULT_THRESHOLD",
    "EXECUTORS",
    "RESULTS_FILE",
    "RUN_FILE",
    "ClipJob",
    "Evaluation",
    "LabelledClip",
    "NoiseJob",
    "build_jobs",
    "class_indices",
    "evaluate",
    "list_clips",
    "protocol_config",
    "read_results",
    "run_job",
    "select_clips",
]

#: Where :func:`evaluate` runs its jobs: ``"local"`` (this process with one worker, else a
#: process pool) or ``"ray"`` (a Ray cluster).
EXECUTORS = ("local", "ray")


@dataclass
class Evaluation:
    """What :func:`evaluate` did.

    Attributes
    ----------
    summary : dict
        :func:`dreamsound.report.summarize` of every finished job.
    records : list of dict
        Finished jobs in job-list order.
    paths : dict of str -> Path
        ``results``, ``json``, ``markdown``, ``heatmap``.
    total_jobs : int
        Jobs in the run's job list.
    resumed : int
        Jobs found finished in the results file and skipped.
    ran : int
        Jobs run by this call.
    complete : bool
        Whether every job of the list is finished.
    """

    summary: dict[str, Any]
    records: list[dict[str, Any]]
    paths: dict[str, Path]
    total_jobs: int
    resumed: int
    ran: int
    complete: bool
    info: dict[str, Any] = field(default_factory=dict)


def evaluate(
    data_dir: PathLike,
    *,
    out: PathLike,
    model: str = "instrument",
    weights: PathLike | None = None,
    device: str | None = None,
    per_class: int | None = None,
    seed: int = 0,
    threshold: float = DEFAULT_THRESHOLD,
    max_steps: int = DEFAULT_MAX_STEPS,
    noise: bool = True,
    keep_audio: bool = False,
    workers: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    config: DreamConfig | None = None,
    judges: Sequence[str] = (),
    command: str | None = None,
    progress: ProgressCallback | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    max_jobs: int | None = None,
) -> Evaluation:
    """Dream a labelled data set toward correct and wrong classes (and noise toward each class).

    Parameters
    ----------
    data_dir : path
        An IRMAS-layout folder: class folders of wavs (training layout) or wavs with same-named
        ``.txt`` label files (testing layout; the first label is the true class, and no label
        of a clip is ever drawn as its wrong class).
    out : path
        Output folder: ``results.jsonl``, ``run.json``, ``report.json``, ``report.md``,
        ``heatmap.png`` and, with ``keep_audio``, ``audio/``. Running again with the same
        settings resumes an interrupted run.
    model, weights, device
        As for :func:`dreamsound.load_model`. The data set's classes are mapped onto the model's
        with :func:`class_indices`.
    per_class : int, optional
        Clips per class: the first N after a seeded shuffle (default: all).
    seed : int
        Fixes the selection, the wrong classes, the noise and every dream.
    threshold : float
        Dream until the target confidence reaches this (0..1) ...
    max_steps : int
        ... or this many steps.
    noise : bool
        Also dream seeded white noise (the length of a clip of the class) toward every class.
    keep_audio : bool
        Write every dreamed sound (32-bit float WAV) under ``out/audio/``.
    workers : int, optional
        Workers; each loads the model once and uses one torch thread. Locally: worker
        processes, and 1 (the default) runs in this process. On Ray: actors (default: one per
        CPU of the cluster).
    executor : {"local", "ray"}
        Where the jobs run: this machine, or a Ray cluster (needs the ``ray`` extra). The jobs,
        their seeds and the results are the same; the results file is written by this process
        either way, so a run can be interrupted on one and resumed on the other.
    ray_address : str, optional
        With ``executor="ray"``: the cluster's head, ``"host:port"`` (or ``"auto"``); None joins
        the cluster running on this machine or starts a local one for the run
        (:class:`~dreamsound.experiments.executors.RayExecutor`). On a cluster, the data folder,
        ``weights`` and (with ``keep_audio``) ``out`` must be at the same paths on every
        machine.
    config : DreamConfig, optional
        How to dream (domain, step size, ...; default :func:`protocol_config`). The experiment
        sets ``until`` (the threshold), ``steps`` (``max_steps``) and the seed of every job.
    judges : sequence of str
        Models outside the dream that score every dreamed sound and its null baseline (the
        start plus white noise of the dream's own rmse_db); the summary gains ``transfer`` and
        the report ``transfer.png`` (:mod:`dreamsound.experiments.transfer`).
    command : str, optional
        The command line to print in the report (default: the equivalent Python call).
    progress : callable(ProgressEvent), optional
        After each job this call runs (stage ``"evaluate"``, ``step`` jobs done of ``total``).
    on_record : callable, optional
        Called with each new record after it is safely in the results file (raising from it
        stops the run there, as an interruption would).
    max_jobs : int, optional
        Run at most this many of the pending jobs, then write the (partial) report.

    Returns
    -------
    Evaluation

    Raises
    ------
    DataError
        Missing/empty folder, no usable clips, a single class.
    ModelError, WeightsError, TargetError
        Unknown model, missing weights, a data-set class the model lacks (or, on Ray, a worker
        whose weights differ from this process's).
    OutputError
        ``out`` cannot be written, or holds results of a run with other settings.
    DreamsoundError
        Bad settings; on Ray: Ray missing, the cluster unreachable, a worker lost for good.
    """
    from dreamsound import __version__
    from dreamsound.experiments.report import summarize, write_report
    from dreamsound.metric_defs import METRIC_DEFINITIONS
    from dreamsound.models.registry import load_model, resolve_device

    if not 0.0 < threshold < 1.0:
        raise DreamsoundError(f"--threshold must be between 0 and 1 (exclusive), got {threshold}")
    if max_steps < 1:
        raise DreamsoundError(f"--max-steps must be at least 1, got {max_steps}")
    if workers is not None and workers < 1:
        raise DreamsoundError(f"--workers must be at least 1, got {workers}")
    if executor not in EXECUTORS:
        raise DreamsoundError(f"unknown executor {executor!r}; use one of "
                              f"{', '.join(EXECUTORS)}")
    if executor == "ray":
        import_ray()  # a missing extra fails before any work
    config = (config if config is not None else protocol_config()).replace(
        until=threshold, steps=max_steps)
    judges = tuple(judges)
    check_members([(model, 1.0)], list(judges))

    clips = list_clips(data_dir)
    selected = select_clips(clips, per_class=per_class, seed=seed)
    classes = class_order(code for clip in clips for code in clip.labels)
    dev = resolve_device(device)
    net = load_model(model, weights, dev)
    index = class_indices(net, classes)
    jobs = build_jobs(selected, classes=classes, seed=seed, noise=noise)

    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--out {folder} is a file; give a folder")
    data_root = str(Path(data_dir).expanduser().resolve())
    run_settings = {"data_dir": data_root, "model": model,
                    "weights": None if weights is None else str(Path(weights).expanduser()),
                    "model_sha256": model_digest(net), "per_class": per_class, "seed": seed,
                    "threshold": threshold,
                    "max_steps": max_steps, "noise": noise, "classes": classes,
                    "dream_config": config.to_json(), "judges": list(judges)}
    check_run_file(folder, run_settings)
    results_path = folder / RESULTS_FILE
    job_ids = {job.job for job in jobs}
    finished = {r["job"] for r in read_results(results_path)} & job_ids
    pending = [job for job in jobs if job.job not in finished]
    if max_jobs is not None:
        pending = pending[:max(0, max_jobs)]
    log.info("%d jobs: %d finished before, %d to run", len(jobs), len(finished), len(pending))

    # Workers on a cluster do not share this process's working directory: they get absolute
    # paths (clips are absolute already, see list_clips).
    audio_dir = folder / "audio" if executor == "local" else (folder / "audio").absolute()
    # The clips each judged dream may take its reference from: every clip of the target class
    # (listed, not only selected, so a small run still has one besides the dream's own).
    references = {code: tuple(str(c.path) for c in clips if c.true == code)
                  for code in classes} if judges else {}
    settings = JobSettings(threshold=threshold, max_steps=max_steps, class_index=index,
                           audio_dir=str(audio_dir) if keep_audio else None, config=config,
                           judges=judges, references=references)
    # Looked up here, at call time, so a replaced ``run_job`` (a test counting runs) is used.
    work = functools.partial(run_job, settings=settings)
    ref = ModelRef(name=model,
                   weights=None if weights is None else str(Path(weights).expanduser().absolute()),
                   device=str(dev), sha256=run_settings["model_sha256"])
    runner = make_executor(ref, work, jobs=len(pending), workers=workers,
                           ray=executor == "ray", ray_address=ray_address, local=lambda: net)
    ran = _run_jobs(pending, runner, results_path=results_path, progress=progress,
                    on_record=on_record)

    by_id = {r["job"]: r for r in read_results(results_path)}
    records = [by_id[job.job] for job in jobs if job.job in by_id]
    summary = summarize(records, classes=classes, threshold=threshold)
    if judges:
        summary["transfer"] = summarize_transfer(records, judges=judges, classes=classes)
    if command is None:
        command = (f"dreamsound.evaluate({data_root!r}, out={str(folder)!r}, model={model!r}, "
                   f"per_class={per_class!r}, seed={seed!r}, threshold={threshold!r}, "
                   f"max_steps={max_steps!r}, noise={noise!r})")
    info = {"command": command, "model": model,
            "weights": run_settings["weights"], "model_sha256": run_settings["model_sha256"],
            "data_dir": data_root,
            "per_class": per_class, "seed": seed, "threshold": threshold,
            "max_steps": max_steps, "noise": noise, "dream_config": config.to_json(),
            "judges": list(judges),
            "classes": classes, "class_names": {c: net.class_names[i] for c, i in index.items()},
            "class_indices": index, "jobs": len(jobs), "complete": len(records) == len(jobs),
            "version": __version__, "metric_definitions": dict(METRIC_DEFINITIONS)}
    paths = write_report(folder, summary=summary, records=records, info=info, classes=classes)
    paths["results"] = results_path
    return Evaluation(summary=summary, records=records, paths=paths, total_jobs=len(jobs),
                      resumed=len(finished), ran=ran, complete=len(records) == len(jobs),
                      info=info)


def _run_jobs(pending: Sequence[Job], runner: Executor, *, results_path: Path,
              progress: ProgressCallback | None,
              on_record: Callable[[dict[str, Any]], None] | None) -> int:
    """Run ``pending`` with ``runner``; append each record to the results file as it arrives.

    Returns the number of jobs finished (and saved) by this call.
    """
    if not pending:
        return 0
    done = 0
    with ResultsWriter(results_path) as writer:

        def finish(record: dict[str, Any]) -> None:
            nonlocal done
            writer.append(record)
            done += 1
            if progress is not None:
                progress(ProgressEvent(stage="evaluate", step=done, total=len(pending),
                                       message=record["job"]))
            if on_record is not None:
                on_record(record)

        if progress is not None:
            progress(ProgressEvent(stage="evaluate", step=0, total=len(pending)))
        runner.run(pending, finish)
    return done
