"""How many CPU threads torch uses, and how its idle threads wait.

The policy (issue 17, "no slowdown cliff under load"):

* **Wait policy**: OpenMP threads that *spin* while waiting for the next parallel region make a
  step 3-40x slower as soon as another process keeps one core busy (a spinning thread loses its
  priority to the other process, and every parallel region waits for it).
  ``OMP_WAIT_POLICY=PASSIVE`` makes them sleep instead; it must be in the environment before
  torch loads (the CLI sets it in :mod:`dreamsound.cli.common`), and :func:`set_wait_policy`
  does the same for other entry points.
* **Thread count**: the cores this process may actually run on -- its CPU affinity
  (``os.sched_getaffinity``, e.g. ``taskset`` or a container's cpuset), lowered to a cgroup CPU
  quota when there is one (``docker --cpus``) -- capped at :data:`MAX_DEFAULT_THREADS`: a YAMNet or
  instrument step on 10 s of audio gains little beyond a few threads.
* **Overrides**, first one wins: ``--threads N`` (the CLI's global option), the environment
  variable :data:`ENV_VAR` (``DREAMSOUND_THREADS``), then ``OMP_NUM_THREADS`` when a user set it.

Measured (``python -m scripts.bench.bench_tf_yamnet``, YAMNet step on 10 s of audio, 2-core
AMD EPYC VM, 2 threads): idle 67 ms with PASSIVE against 55-62 ms for spinning policies
(``GOMP_SPINCOUNT`` 10^3-3*10^5, ``ACTIVE``), whose wake-ups are cheaper; with a busy loop on one
core PASSIVE takes 99-110 ms while a spin of 10^3 takes 111-117 ms, 10^4 185 ms and libgomp's
default 0.2-2.7 s. A single thread takes ~95 ms either way. PASSIVE is the only choice without a
cliff, so it stays. Choosing the count from the load at each step (2 threads when the other core
is free, 1 when it is busy) would let a spin policy keep its idle speed; it was tried and left
out: the step loop belongs to the engine, a per-step ``/proc`` probe costs ~0.4 ms, and results
would then depend on the machine's load from run to run.

Nothing here imports torch unless asked: :func:`configure_threads` sets torch's intra-op (and
inter-op) threads directly when torch is loaded, and otherwise puts the count where torch reads it
when it loads (``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``), so ``dreamsound --help`` stays instant.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from dreamsound.errors import DreamsoundError

log = logging.getLogger(__name__)

#: Environment variable that sets the thread count (the CLI's ``--threads`` wins over it).
ENV_VAR = "DREAMSOUND_THREADS"
#: The default never uses more threads than this, however many cores there are.
MAX_DEFAULT_THREADS = 8
#: Where cgroup v2 and v1 keep the CPU quota.
_CGROUP_V2_MAX = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
_CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


@dataclass(frozen=True)
class ThreadChoice:
    """A thread count and where it came from.

    Attributes
    ----------
    threads : int
        Intra-op threads for torch (>= 1).
    source : str
        ``"--threads"``, ``"DREAMSOUND_THREADS"``, ``"OMP_NUM_THREADS"`` or ``"cores"``.
    """

    threads: int
    source: str


def set_wait_policy(policy: str = "PASSIVE") -> None:
    """Make OpenMP threads sleep (not spin) while they wait, unless the user chose otherwise.

    Only effective before torch is first imported (OpenMP reads it once); call it at the top of
    an entry point.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", policy)


def cgroup_cpu_limit(v2_max: Path = _CGROUP_V2_MAX, v1_quota: Path = _CGROUP_V1_QUOTA,
                     v1_period: Path = _CGROUP_V1_PERIOD) -> float | None:
    """CPUs allowed by this process's cgroup quota (``2.5`` for ``docker --cpus 2.5``), or None
    when there is no quota or it cannot be read."""
    try:
        if v2_max.is_file():
            quota, _, period = v2_max.read_text().strip().partition(" ")
            if quota != "max" and period:
                return int(quota) / int(period)
            return None
        if v1_quota.is_file() and v1_period.is_file():
            quota_us = int(v1_quota.read_text().strip())
            period_us = int(v1_period.read_text().strip())
            if quota_us > 0 and period_us > 0:
                return quota_us / period_us
    except (OSError, ValueError, ZeroDivisionError):
        return None
    return None


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, lowered to its cgroup CPU quota
    (rounded up), at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, math.ceil(limit))
    return max(1, cores)


def default_threads() -> int:
    """The policy's thread count when nobody asked for one: available cores, capped."""
    return min(available_cores(), MAX_DEFAULT_THREADS)


def _positive_int(text: str, what: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise DreamsoundError(f"{what} must be a whole number of threads >= 1, got {text!r}")
    return value


def resolve_threads(requested: int | None = None) -> ThreadChoice:
    """The thread count to use: ``requested`` (``--threads``), else :data:`ENV_VAR`, else a
    user's ``OMP_NUM_THREADS``, else :func:`default_threads`.

    Raises
    ------
    DreamsoundError
        If ``requested`` or ``DREAMSOUND_THREADS`` is not a whole number >= 1.
    """
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise DreamsoundError(f"--threads must be a whole number >= 1, got {requested!r}")
        return ThreadChoice(requested, "--threads")
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return ThreadChoice(_positive_int(env, ENV_VAR), ENV_VAR)
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:
        return ThreadChoice(int(omp), "OMP_NUM_THREADS")
    return ThreadChoice(default_threads(), "cores")


def configure_threads(requested: int | None = None, *, load_torch: bool = True) -> ThreadChoice:
    """Apply the thread policy (see the module docstring) and return what was chosen.

    The count goes into ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` (read by torch when it loads,
    and inherited by child processes). When torch is loaded -- or ``load_torch`` is true, which
    loads it -- torch's intra-op threads are set directly, and its inter-op threads too unless
    inter-op work has already started (torch allows that once).

    Parameters
    ----------
    requested : int, optional
        An explicit count (the CLI's ``--threads``).
    load_torch : bool
        Import torch to set the counts now. The CLI passes False, so that commands which never
        load torch (``--help``, ``models``) do not pay for it; torch then starts with the count
        from the environment.
    """
    choice = resolve_threads(requested)
    os.environ["OMP_NUM_THREADS"] = str(choice.threads)
    os.environ["MKL_NUM_THREADS"] = str(choice.threads)
    if load_torch or "torch" in sys.modules:
        import torch

        if torch.get_num_threads() != choice.threads:
            torch.set_num_threads(choice.threads)
        try:
            torch.set_num_interop_threads(choice.threads)
        except RuntimeError:  # already set, or inter-op work has started: keep torch's
            log.debug("torch inter-op threads stay at %d", torch.get_num_interop_threads())
    log.info("using %d CPU thread(s) (from %s)", choice.threads, choice.source)
    return choice
