"""Executors: run a list of jobs somewhere and hand every result back to the driver as it arrives.

An executor is built from *what a worker loads* (a :class:`Loader`, e.g. :class:`ModelRef`: a
registered model name, a weights path, a device, the digest the weights must have; or
:class:`dreamsound.batch.DreamerRef`, a whole :class:`~dreamsound.api.Dreamer`) and *what a
worker runs* (a picklable ``work(job, *, model=...) -> result``, e.g.
``functools.partial(run_job, settings=...)``). Its :meth:`Executor.run` calls
``finish(result)`` in the driver once per job, in the order the jobs finish; the driver alone
writes results (a journal, a report), so where the jobs ran never changes what is written. Three
executors:

- :class:`InlineExecutor`: one after the other in this process, with a model already loaded.
- :class:`PoolExecutor`: worker processes on this machine ("spawn"), each loading the model once.
- :class:`RayExecutor`: a pool of Ray actors on a Ray cluster (an existing one, or a local one
  started for the run), each loading the model once. Ray is an optional dependency
  (``pip install "dreamsound-ml[ray]"``), imported only here and only when used.

Nothing here knows what a job is: the probing experiment (:mod:`dreamsound.experiments.evaluate`)
is one user, batch dreaming (:mod:`dreamsound.batch`) another; anything that runs many
independent jobs against one model can be a third. :func:`make_executor` picks the executor the
same way for all of them.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures import ProcessPoolExecutor as _ProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from types import ModuleType
from typing import Any, Protocol

from dreamsound.errors import DreamsoundError, ModelError

log = logging.getLogger(__name__)

__all__ = [
    "Executor",
    "InlineExecutor",
    "Loader",
    "ModelRef",
    "PoolExecutor",
    "RayExecutor",
    "Work",
    "check_digest",
    "import_ray",
    "make_executor",
    "model_digest",
    "uses_workers",
]

#: Where to get Ray when it is missing (the package's optional extra).
RAY_HINT = 'Ray is not installed; install the extra: pip install "dreamsound-ml[ray]"'


class Work(Protocol):
    """What a worker runs: one job against the worker's model, returning the job's result.

    It must be picklable (a module-level function, or a :func:`functools.partial` of one) for
    the process pool and Ray, and it is sent to each worker once.
    """

    def __call__(self, job: Any, *, model: Any) -> Any: ...


class Loader(Protocol):
    """What a worker loads once, before its first job (picklable: it is sent to each worker).

    :class:`ModelRef` is one. ``device`` says where it runs (a Ray actor on ``"cuda..."`` asks
    for a GPU); :meth:`load` sets the worker's torch threads and returns what ``work`` gets as
    ``model``, raising :class:`~dreamsound.errors.DreamsoundError` when it cannot.
    """

    @property
    def device(self) -> str: ...

    def load(self) -> Any: ...


class Executor(Protocol):
    """Runs jobs and calls ``finish(result)`` in the calling process as each one finishes.

    If ``finish`` raises (or the caller is interrupted), the executor stops: jobs not yet
    finished are dropped, workers are stopped, and the exception propagates.
    """

    def run(self, jobs: Sequence[Any], finish: Callable[[Any], None]) -> None:
        """Run every job of ``jobs``; ``finish`` gets each result, in the order they finish."""
        ...


def model_digest(net: Any) -> str:
    """sha256 of a model's parameters and buffers (names and raw bytes), in state-dict order.

    It says which weights produced a result whatever their source: ``--weights``, an environment
    variable, the package or the cache (a retrained default has the same name).
    """
    import torch

    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelRef:
    """The model a worker loads: everything needed to load it again, elsewhere.

    Attributes
    ----------
    name : str
        A registered model name (:func:`dreamsound.models.registry.load_model`).
    weights : str, optional
        A weights file; on a cluster it must exist at this path on every node (None: the
        model's default weights, resolved on the worker's machine; the debug model needs none).
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    threads : int
        torch threads per worker: each worker runs one job at a time on one core, and more
        threads would only make the workers fight over the same cores.
    sha256 : str, optional
        The :func:`model_digest` the loaded weights must have: a worker whose weights differ
        from the driver's (another file at that path on another node) refuses to run.
    """

    name: str
    weights: str | None = None
    device: str = "cpu"
    threads: int = 1
    sha256: str | None = None

    def load(self) -> Any:
        """Set this process's torch threads and load the model.

        Raises
        ------
        ModelError, WeightsError
            Unknown model, missing weights, or weights whose digest is not ``sha256``.
        """
        import torch

        from dreamsound.allocator import reuse_freed_memory
        from dreamsound.models.registry import load_model

        reuse_freed_memory()  # as the CLI does in its own process
        torch.set_num_threads(self.threads)
        net = load_model(self.name, self.weights, self.device)
        check_digest(net, self.sha256, name=self.name, weights=self.weights)
        return net


def check_digest(net: Any, sha256: str | None, *, name: str, weights: str | None) -> None:
    """Refuse a worker's model whose :func:`model_digest` is not the driver's ``sha256`` (None:
    no check).

    Raises
    ------
    ModelError
        Other weights (another file at that path on another node).
    """
    if sha256 is None:
        return
    found = model_digest(net)
    if found != sha256:
        raise ModelError(
            f"a worker on {socket.gethostname()} loaded other weights for model {name!r} "
            f"(sha256 {found[:12]}…, the driver's are {sha256[:12]}…); every machine needs "
            f"the same weights file at the same path ({weights or 'the default weights'})")


# --------------------------------------------------------------------------------------------
# In this process
# --------------------------------------------------------------------------------------------


class InlineExecutor:
    """Runs the jobs one after the other in this process, with a model already loaded."""

    def __init__(self, model: Any, work: Work):
        self.model = model
        self.work = work

    def run(self, jobs: Sequence[Any], finish: Callable[[Any], None]) -> None:
        """Run every job in order; ``finish`` gets each result as soon as it is computed."""
        for job in jobs:
            finish(self.work(job, model=self.model))


# --------------------------------------------------------------------------------------------
# Worker processes on this machine
# --------------------------------------------------------------------------------------------

# Pool-worker state: the model (or the error loading it) and the work, set once per process by
# the pool initializer.
_POOL_WORKER: dict[str, Any] = {}


def _init_pool_worker(model: Loader, work: Work) -> None:
    _POOL_WORKER["work"] = work
    try:
        _POOL_WORKER["model"] = model.load()
    except DreamsoundError as exc:
        # Raised from every job instead: an initializer that raises only breaks the pool, and
        # its message is lost.
        _POOL_WORKER["error"] = exc


def _run_in_pool_worker(job: Any) -> Any:
    if "error" in _POOL_WORKER:
        raise _POOL_WORKER["error"]
    return _POOL_WORKER["work"](job, model=_POOL_WORKER["model"])


class PoolExecutor:
    """Runs the jobs in worker processes on this machine; each loads the model once.

    Parameters
    ----------
    model : Loader
        What each worker loads (:class:`ModelRef`, ...).
    work : Work
        What each worker runs per job (picklable).
    workers : int
        Worker processes (at most one per job is started).
    """

    def __init__(self, model: Loader, work: Work, *, workers: int):
        if workers < 1:
            raise DreamsoundError(f"--workers must be at least 1, got {workers}")
        self.model = model
        self.work = work
        self.workers = workers

    def run(self, jobs: Sequence[Any], finish: Callable[[Any], None]) -> None:
        """Run every job in the pool; ``finish`` gets each result in this process."""
        if not jobs:
            return
        # "spawn", not "fork": forking a process that has already run torch (OpenMP thread
        # pools, possibly CUDA) can deadlock the children.
        pool = _ProcessPool(max_workers=min(self.workers, len(jobs)),
                            mp_context=get_context("spawn"), initializer=_init_pool_worker,
                            initargs=(self.model, self.work))
        try:
            futures: set[Future] = {pool.submit(_run_in_pool_worker, job) for job in jobs}
            while futures:
                finished, futures = wait(futures, return_when=FIRST_COMPLETED)
                for future in finished:
                    finish(future.result())
        finally:
            # On an error or an interruption, drop the queued jobs; what finished was handed
            # to ``finish``.
            pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------------------------
# A Ray cluster
# --------------------------------------------------------------------------------------------


def import_ray() -> ModuleType:
    """The ``ray`` module.

    Raises
    ------
    DreamsoundError
        Ray is not installed (one line saying how to install it).
    """
    try:
        import ray
    except ImportError:
        raise DreamsoundError(RAY_HINT) from None
    return ray


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail at once when nothing listens at a ``host:port`` address (:func:`ray.init` would
    retry for minutes before saying so)."""
    if address is None or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise DreamsoundError(f"--ray {address}: expected HOST:PORT (the head's GCS port, "
                              "6379 by default), auto, or nothing")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise DreamsoundError(f"no Ray cluster at {address} ({exc.strerror or exc}); start one "
                              f"there with `ray start --head --port {port}`") from None


class _RayWorker:
    """A Ray actor's state: the model, loaded once when the actor starts, and the work."""

    def __init__(self, model: Loader, work: Work):
        self._work = work
        self._model: Any = None
        self._error: DreamsoundError | None = None
        try:
            self._model = model.load()
        except DreamsoundError as exc:
            # Kept and raised from every call: a failed actor constructor reaches the driver as
            # a dead actor, without the message.
            self._error = exc

    def run(self, job: Any) -> Any:
        """Run one job against this worker's model."""
        if self._error is not None:
            raise self._error
        return self._work(job, model=self._model)


class RayExecutor:
    """Runs the jobs on a Ray cluster, in a pool of actors that each load the model once.

    Every actor takes one CPU (and one GPU when the device is CUDA) and holds at most two jobs
    (one running, one waiting), so a fast actor is never idle and an interrupted driver loses
    little; the next job goes to whichever actor finished first. Actors whose process dies are
    restarted and their job retried (``max_retries`` times). The driver alone sees the results:
    workers only need the package, the data files and the weights at the driver's paths.

    Parameters
    ----------
    model : Loader
        What each actor loads (:class:`ModelRef`, ...).
    work : Work
        What each actor runs per job (picklable).
    address : str, optional
        The cluster: ``"host:port"`` of its head (the GCS port, 6379 by default), ``"auto"``
        (the cluster started on this machine with ``ray start``), or None: ``RAY_ADDRESS``, else
        a cluster running on this machine, else a new local one for this run (as
        :func:`ray.init` resolves it). If Ray is already initialised in this process, that
        session is used and ``address`` is ignored.
    workers : int, optional
        Actors to start (default: one per CPU of the cluster, or per GPU for a CUDA device);
        never more than the cluster has or than there are jobs.
    init_options : mapping, optional
        More keyword arguments for :func:`ray.init` (e.g. ``num_cpus`` for a local cluster).
    max_retries : int
        Restarts of a dead actor, and retries of its job.
    """

    #: Jobs given to one actor at once: one running, one waiting.
    jobs_per_actor = 2

    def __init__(self, model: Loader, work: Work, *, address: str | None = None,
                 workers: int | None = None, init_options: Mapping[str, Any] | None = None,
                 max_retries: int = 2):
        if workers is not None and workers < 1:
            raise DreamsoundError(f"--workers must be at least 1, got {workers}")
        self.model = model
        self.work = work
        self.address = address
        self.workers = workers
        self.init_options = dict(init_options or {})
        self.max_retries = max_retries

    def run(self, jobs: Sequence[Any], finish: Callable[[Any], None]) -> None:
        """Run every job on the cluster; ``finish`` gets each result in this process.

        Raises
        ------
        DreamsoundError
            Ray is missing, the cluster cannot be reached, or a worker died more often than
            ``max_retries`` (finished results were handed to ``finish`` before).
        ModelError, WeightsError
            A worker could not load the model (or loaded other weights).
        """
        if not jobs:
            return
        ray = import_ray()
        started = self._connect(ray)
        actors: list[Any] = []
        try:
            gpu = self.model.device.startswith("cuda")
            actor_class = ray.remote(_RayWorker).options(
                num_cpus=1, num_gpus=1 if gpu else 0, max_restarts=self.max_retries,
                max_task_retries=self.max_retries)
            actors = [actor_class.remote(self.model, self.work)
                      for _ in range(self._actor_count(ray, len(jobs), gpu=gpu))]
            waiting = deque(jobs)
            running: dict[Any, Any] = {}

            def give(actor: Any) -> None:
                if waiting:
                    running[actor.run.remote(waiting.popleft())] = actor

            for _ in range(self.jobs_per_actor):
                for actor in actors:
                    give(actor)
            while running:
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    actor = running.pop(ref)
                    finish(self._result(ray, ref))
                    give(actor)
        finally:
            for actor in actors:
                try:
                    ray.kill(actor)
                except Exception as exc:  # a dead cluster must not hide the real error
                    log.debug("could not kill a Ray actor: %s", exc)
            if started:
                ray.shutdown()

    def _connect(self, ray: ModuleType) -> bool:
        """Join (or start) the cluster unless this process already has; True if we joined."""
        if ray.is_initialized():
            return False
        _check_reachable(self.address)
        options = {"logging_level": logging.WARNING, **self.init_options}
        try:
            ray.init(address=self.address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "this machine"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DreamsoundError(f"cannot use the Ray cluster at {where}: {first}") from None
        return True

    def _actor_count(self, ray: ModuleType, jobs: int, *, gpu: bool) -> int:
        """Actors to start: the request (or the cluster's CPUs/GPUs), capped by the cluster and
        the jobs -- an actor the cluster can never place would hold its jobs forever."""
        resources = ray.cluster_resources()
        capacity = int(resources.get("GPU" if gpu else "CPU", 0))
        if capacity < 1:
            raise DreamsoundError(f"the Ray cluster has no {'GPU' if gpu else 'CPU'} to run on")
        wanted = capacity if self.workers is None else self.workers
        if wanted > capacity:
            log.warning("--workers %d: the Ray cluster has %d %s; starting %d workers", wanted,
                        capacity, "GPUs" if gpu else "CPUs", capacity)
        return max(1, min(wanted, capacity, jobs))

    @staticmethod
    def _result(ray: ModuleType, ref: Any) -> Any:
        """A finished job's result; a worker's typed error comes back as itself."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, DreamsoundError):
                raise cause from None
            raise
        except ray.exceptions.RayActorError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise DreamsoundError(f"a Ray worker died ({first}); the finished jobs are saved, "
                                  "run the same command again to go on") from None


# --------------------------------------------------------------------------------------------
# Which one
# --------------------------------------------------------------------------------------------


def uses_workers(jobs: int, *, workers: int | None = None, ray: bool = False) -> bool:
    """Whether :func:`make_executor` runs ``jobs`` jobs outside this process: always on Ray,
    else with more than one worker and more than one job."""
    return ray or ((workers or 1) > 1 and jobs > 1)


def make_executor(model: Loader, work: Work, *, jobs: int, workers: int | None = None,
                  ray: bool = False, ray_address: str | None = None,
                  local: Callable[[], Any] | None = None,
                  local_work: Work | None = None) -> Executor:
    """The executor for ``jobs`` jobs: a Ray pool with ``ray``, a process pool with more than
    one worker (and job), else inline in this process.

    Parameters
    ----------
    model : Loader
        What each worker (process or Ray actor) loads.
    work : Work
        What each worker runs per job (picklable).
    jobs : int
        How many jobs will run (no more workers than jobs are started).
    workers : int, optional
        Worker processes, or Ray actors (default: one per CPU of the cluster); 1 (or None)
        without ``ray``: this process.
    ray, ray_address
        Run on a Ray cluster (:class:`RayExecutor`; its ``address``).
    local : callable, optional
        Inline only: gives the model already loaded in this process (default: ``model.load()``,
        which also sets this process's torch threads).
    local_work : Work, optional
        Inline only: what runs per job instead of ``work`` (need not be picklable, e.g. a
        closure that shows each job's progress).

    Raises
    ------
    DreamsoundError
        ``workers`` below 1; ``ray`` without Ray installed (:data:`RAY_HINT`).
    """
    if workers is not None and workers < 1:
        raise DreamsoundError(f"--workers must be at least 1, got {workers}")
    if ray:
        import_ray()  # a missing extra fails before any work
        return RayExecutor(model, work, address=ray_address, workers=workers)
    if uses_workers(jobs, workers=workers):
        return PoolExecutor(model, work, workers=min(workers or 1, jobs))
    return InlineExecutor(local() if local is not None else model.load(), local_work or work)
