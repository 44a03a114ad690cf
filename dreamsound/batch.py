"""Batch dreaming: every input x target of ``dreamsound dream`` (or ``sonify``) as one job, run
inline, in worker processes or on a Ray cluster by the executors of
:mod:`dreamsound.experiments.executors` -- the same ones ``dreamsound evaluate`` uses.

Each job is one :func:`~dreamsound.streaming.dream_file` (or
:func:`~dreamsound.streaming.sonify_file`) call; each worker builds its
:class:`~dreamsound.api.Dreamer` once (:class:`DreamerRef`) and runs its jobs in the folder the
command ran in, so a job writes the same files and returns the same report wherever it runs
(every job uses the configuration's seed, as a sequential run does). The reports come back in
job order (inputs x targets), whatever order the jobs finish in.

Every input file is checked before any job starts (:func:`check_sources`): a missing, empty,
damaged or unreadable file stops the batch with one line, and nothing is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamsound.api import Dreamer
from dreamsound.config import DreamConfig
from dreamsound.errors import DreamsoundError, OutputError
from dreamsound.events import ProgressCallback, ProgressEvent
from dreamsound.experiments.executors import (
    check_digest,
    import_ray,
    make_executor,
    model_digest,
    uses_workers,
)
from dreamsound.inputs import expand_inputs, is_generated
from dreamsound.segments import SEGMENT_SECONDS

__all__ = [
    "BatchJob",
    "BatchSettings",
    "DreamerRef",
    "batch_jobs",
    "check_sources",
    "run_batch",
    "run_batch_job",
]

#: ``job_progress(job)``: a context that shows one job's progress, giving its callback.
JobProgress = Callable[["BatchJob"], AbstractContextManager[ProgressCallback]]


@dataclass(frozen=True)
class DreamerRef:
    """The :class:`~dreamsound.api.Dreamer` a worker builds once: everything needed to build it
    again, elsewhere (a :class:`~dreamsound.experiments.executors.Loader`).

    Attributes
    ----------
    models : tuple of (name, weight)
        The dreaming model(s), registry names (an ensemble when several).
    config : DreamConfig
    weights : str, optional
        The primary model's weights file (absolute: on a cluster, at this path on every node).
    device : str
        ``"cpu"``, ``"cuda"``, ... (resolved: not ``"auto"``).
    judges : tuple of str
    threads : int
        torch threads of a worker (:meth:`load`).
    sha256 : str, optional
        The primary model's :func:`~dreamsound.experiments.executors.model_digest` a worker
        must find.
    """

    models: tuple[tuple[str, float], ...]
    config: DreamConfig
    weights: str | None = None
    device: str = "cpu"
    judges: tuple[str, ...] = ()
    threads: int = 1
    sha256: str | None = None

    def build(self) -> Dreamer:
        """The Dreamer, in this process as it is (its torch threads untouched)."""
        return Dreamer(list(self.models), self.config, weights=self.weights, device=self.device,
                       judges=list(self.judges))

    def load(self) -> Dreamer:
        """Set this worker's torch threads and build the Dreamer (checking ``sha256``)."""
        import torch

        from dreamsound.allocator import reuse_freed_memory

        reuse_freed_memory()  # as the CLI does in its own process
        torch.set_num_threads(self.threads)
        dreamer = self.build()
        check_digest(dreamer.model, self.sha256, name=self.models[0][0], weights=self.weights)
        return dreamer


@dataclass(frozen=True)
class BatchJob:
    """One dream (or sonification): an input toward a target (None: a layer, or the input's own
    top class). ``index`` is its place in the batch, ``label`` names it on a progress bar."""

    index: int
    source: str
    target: str | None
    label: str


@dataclass(frozen=True)
class BatchSettings:
    """What every job of a batch shares (the keywords of :func:`~dreamsound.streaming.dream_file`
    and :func:`~dreamsound.streaming.sonify_file`, and where the files go).

    Attributes
    ----------
    command : {"dream", "sonify"}
    out : str, optional
        As ``--out`` (:func:`dreamsound.outputs.output_stem`); ``several`` says whether the batch
        has more than one job (then ``out`` must be a folder).
    steps : int
        Sonify only: gradients to sonify.
    cwd : str, optional
        The folder relative inputs and outputs are relative to (default: each worker's own).
    """

    command: str = "dream"
    layer: str | None = None
    channel: int | None = None
    target_sound: Path | None = None
    plot: bool = False
    steps: int = 1
    out: str | None = None
    several: bool = False
    max_seconds: float | None = None
    cwd: str | None = None


def batch_jobs(inputs: Sequence[str], targets: Sequence[str] | None,
               layer: str | None = None) -> list[BatchJob]:
    """Every input x target, in that order (folders expanded, :func:`expand_inputs`)."""
    if layer is not None and targets:
        raise DreamsoundError("give --target or --layer, not both")
    wanted: list[str | None] = list(targets) if targets else [None]
    sources = expand_inputs(list(inputs))
    pairs = [(source, target) for source in sources for target in wanted]
    return [BatchJob(i, source, target, f"{Path(source).name} → {target or layer or 'top class'}")
            for i, (source, target) in enumerate(pairs)]


def check_sources(sources: Sequence[str], *, max_seconds: float | None = None,
                  segment_s: float = SEGMENT_SECONDS) -> None:
    """Check that every input file can be dreamed before any is: a file up to one segment long
    is decoded whole; a longer one (streamed) has its header and length checked. Generated
    starts pass.

    Raises
    ------
    AudioError
        The first input that is missing, empty, a folder, damaged, unreadable or too long.
    """
    from dreamsound.audio import DEFAULT_MAX_SECONDS, read_audio, sound_file_info
    from dreamsound.inputs import FileBlocks
    from dreamsound.segments import check_max_seconds

    for source in dict.fromkeys(sources):
        if is_generated(source):
            continue
        path = Path(source).expanduser()
        # None: not a file libsndfile reads; the decoders below say what it is.
        info = sound_file_info(path)
        long = (info is not None and info.samplerate > 0
                and info.frames / info.samplerate > segment_s)
        if long:
            check_max_seconds(path, max_seconds)
            FileBlocks(path, info.samplerate, max_seconds=max_seconds).close()
        else:
            read_audio(path, max_seconds=DEFAULT_MAX_SECONDS if max_seconds is None
                       else max_seconds)


@contextlib.contextmanager
def _in_folder(folder: str | None) -> Iterator[None]:
    """Run in ``folder`` (the driver's working folder), then go back."""
    here = os.getcwd()
    if folder is None or folder == here:
        yield
        return
    try:
        os.chdir(folder)
    except OSError:
        raise OutputError(f"{folder} (where the command ran) is not on {socket.gethostname()}; "
                          "inputs and --out must be at the same paths on every machine") from None
    try:
        yield
    finally:
        os.chdir(here)


def run_batch_job(job: BatchJob, *, model: Dreamer, settings: BatchSettings,
                  progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Dream (or sonify) one job with ``model``, write its files, return its report."""
    from dreamsound.outputs import output_stem
    from dreamsound.streaming import dream_file, sonify_file

    s = settings

    def stem(input_label: str, name: str) -> Path:
        return output_stem(input_label, name, s.out, several=s.several)

    with _in_folder(s.cwd):
        if s.command == "sonify":
            return sonify_file(model, job.source, target=job.target, layer=s.layer,
                               channel=s.channel, steps=s.steps, progress=progress,
                               max_seconds=s.max_seconds, stem=stem)
        return dream_file(model, job.source, target=job.target, layer=s.layer,
                          channel=s.channel, target_sound=s.target_sound, plot=s.plot,
                          progress=progress, max_seconds=s.max_seconds, stem=stem)


def _indexed(job: BatchJob, *, model: Dreamer, settings: BatchSettings
             ) -> tuple[int, dict[str, Any]]:
    """What a worker runs: the job's report, with the job's place in the batch."""
    return job.index, run_batch_job(job, model=model, settings=settings)


def run_batch(ref: DreamerRef, jobs: Sequence[BatchJob], settings: BatchSettings, *,
              workers: int | None = None, ray: bool = False, ray_address: str | None = None,
              progress: ProgressCallback | None = None, job_progress: JobProgress | None = None,
              on_report: Callable[[dict[str, Any]], None] | None = None
              ) -> list[dict[str, Any]]:
    """Run every job: inline, in ``workers`` processes, or on a Ray cluster; the reports in job
    order.

    Parameters
    ----------
    ref : DreamerRef
        The Dreamer: built here (one model load, which also checks the settings before any job
        runs) and, with workers, once in each worker.
    workers, ray, ray_address
        As for :func:`~dreamsound.experiments.executors.make_executor`.
    progress : callable(ProgressEvent), optional
        After each finished job (stage ``"batch"``, ``step`` jobs done of ``total``).
    job_progress : callable(BatchJob) -> context giving a ProgressCallback, optional
        Inline only: each job runs inside it, its callback fed the job's own steps.
    on_report : callable(dict), optional
        Each report, in job order, as soon as it and every job before it are finished.

    Raises
    ------
    DreamsoundError
        The first error of any job (the executor stops); any bad input file, bad setting, a
        missing Ray extra or ``workers`` below 1 before any job runs.
    """
    if workers is not None and workers < 1:
        raise DreamsoundError(f"--workers must be at least 1, got {workers}")
    if ray:
        import_ray()
    check_sources([job.source for job in jobs], max_seconds=settings.max_seconds)
    dreamer = ref.build()
    if uses_workers(len(jobs), workers=workers, ray=ray):
        ref = dataclasses.replace(ref, sha256=model_digest(dreamer.model))

    def inline(job: BatchJob, *, model: Dreamer) -> tuple[int, dict[str, Any]]:
        if job_progress is None:
            return _indexed(job, model=model, settings=settings)
        with job_progress(job) as update:
            return job.index, run_batch_job(job, model=model, settings=settings,
                                            progress=update)

    runner = make_executor(ref, functools.partial(_indexed, settings=settings), jobs=len(jobs),
                           workers=workers, ray=ray, ray_address=ray_address,
                           local=lambda: dreamer, local_work=inline)
    place = {job.index: i for i, job in enumerate(jobs)}
    reports: list[dict[str, Any] | None] = [None] * len(jobs)
    done = handed = 0

    def finish(result: tuple[int, dict[str, Any]]) -> None:
        nonlocal done, handed
        index, report = result
        reports[place[index]] = report
        done += 1
        if progress is not None:
            progress(ProgressEvent(stage="batch", step=done, total=len(jobs),
                                   message=jobs[place[index]].label))
        while handed < len(jobs) and reports[handed] is not None:
            if on_report is not None:
                on_report(reports[handed])  # type: ignore[arg-type]
            handed += 1

    if progress is not None:
        progress(ProgressEvent(stage="batch", step=0, total=len(jobs)))
    runner.run(list(jobs), finish)
    return [report for report in reports if report is not None]
