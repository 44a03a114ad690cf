"""How many CPU threads torch uses, how its idle threads wait, and how the count follows load.

The policy (issue 17, "no slowdown cliff under load"):

* **Thread count**: the cores this process may actually run on -- its CPU affinity
  (``os.sched_getaffinity``, e.g. ``taskset`` or a container's cpuset), lowered to a cgroup CPU
  quota when there is one (``docker --cpus``) -- capped at :data:`MAX_DEFAULT_THREADS`: a YAMNet or
  instrument step on 10 s of audio gains little beyond a few threads.
* **Overrides**, first one wins: ``--threads N`` (the CLI's global option), the environment
  variable :data:`ENV_VAR` (``DREAMSOUND_THREADS``), then ``OMP_NUM_THREADS`` when a user set it.
* **The default count follows the load** (:class:`LoadGovernor`): every
  :data:`ADAPT_INTERVAL_S` the dream loop asks :func:`adapt_threads`, which reads how much CPU
  *other* processes took on our cores since the last look (``/proc/stat`` minus our own CPU
  time) and uses the cores they left free, at least one. A count the user chose is never
  changed (``--threads N`` also makes runs repeat bit for bit: a few kernels, e.g. YAMNet's
  dense layer, sum in an order that depends on the thread count, ~1e-5 on a logit).
* **Wait policy**: how an OpenMP thread waits for the next parallel region. Spinning a little
  (``GOMP_SPINCOUNT`` = :data:`SPIN_COUNT`, ~0.1 ms) catches the next region of a step without
  a wake-up; sleeping at once (``OMP_WAIT_POLICY=PASSIVE``) costs a wake-up per region but never
  fights another process for a core. The default count (governed) spins; a count the user fixed
  (not governed) sleeps, since nothing would take a thread off a busy core. Either must be in
  the environment before torch loads: :func:`set_wait_policy`.

Measured (``python -m scripts.bench.bench_tf_yamnet``, YAMNet step from the log-mel on 10 s of
audio, 2-core Sapphire Rapids VM, against TensorFlow 2.21's compiled step in the same run):
PASSIVE with 2 threads 53.7 ms idle / 71.3 ms with a busy loop on one core (TensorFlow 50.4 /
79.6); spinning 10^4 with 2 threads 37.6 / 112 ms (3*10^4: 37.9 / 166 ms; 10^3: 51.4 / 80.5);
one thread 66.7 / 65.2 ms. Spinning with the governor takes the best of both: two spinning
threads while the cores are free, one while another process holds the other core -- 37.8 ms idle
and 63.4 ms busy (TensorFlow 50.4 / 74.9, PASSIVE with 2 threads 52.2 / 70.9 in the same run;
``--baseline 58ab9b9 --rounds 6``).

Nothing here imports torch unless asked: :func:`configure_threads` sets torch's intra-op (and
inter-op) threads directly when torch is loaded, and otherwise puts the count where torch reads it
when it loads (``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``), so ``dreamsound --help`` stays instant.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable
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
#: libgomp's spin count while a governed (default) count of threads waits: ~0.1 ms.
SPIN_COUNT = 10_000
#: Seconds between two looks at the load (a look reads ``/proc/stat``: ~0.1 ms). Short, so a
#: busy neighbour costs a few slow steps at most; long enough for ``/proc/stat``'s 10 ms ticks
#: (20 per window on 2 cores) to tell a busy core from a free one.
ADAPT_INTERVAL_S = 0.1
_PROC_STAT = Path("/proc/stat")


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


def set_wait_policy(governed: bool = False) -> None:
    """Choose how OpenMP threads wait, unless the user already chose (``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT`` set): a short spin (:data:`SPIN_COUNT`) when :class:`LoadGovernor` will
    take threads off busy cores (``governed``), else sleep at once (``PASSIVE``).

    Only effective before torch is first imported (OpenMP reads it once); call it at the top of
    an entry point.
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    if governed:
        os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    else:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


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


def busy_seconds(cpus: frozenset[int], stat: Path = _PROC_STAT) -> float | None:
    """CPU seconds that ``cpus`` spent busy since boot (every process: user, system, interrupts,
    time stolen by a hypervisor; not idle, not waiting for I/O), from ``/proc/stat``; None when
    it cannot be read (not Linux) or lists none of ``cpus``."""
    try:
        text = stat.read_text()
    except OSError:
        return None
    ticks, found = 0, False
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        # user nice system idle iowait irq softirq steal (guest time is inside user already)
        fields = [int(v) for v in rest.split()[:8]]
        fields += [0] * (8 - len(fields))
        ticks += sum(fields) - fields[3] - fields[4]
        found = True
    return ticks / os.sysconf("SC_CLK_TCK") if found else None


_OWN_TASKS = Path("/proc/self/task")


def own_runnable(tasks: Path = _OWN_TASKS) -> int:
    """This process's threads that are running or waiting for a CPU now (state ``R`` in
    ``/proc/self/task/*/stat``), the caller included; 1 when they cannot be read."""
    count = 0
    try:
        for task in tasks.iterdir():
            try:
                state = (task / "stat").read_text().rpartition(")")[2].split(None, 1)[0]
            except (OSError, IndexError):
                continue  # the thread ended between the listing and the read
            count += state == "R"
    except OSError:
        return 1
    return max(1, count)


def others_runnable(cpus: frozenset[int], stat: Path = _PROC_STAT, *, looks: int = 6,
                    gap_s: float = 0.001, tasks: Path = _OWN_TASKS) -> int | None:
    """Threads of other processes that are running or waiting for a CPU now: the fewest, over
    ``looks`` readings ``gap_s`` apart, of ``/proc/stat``'s ``procs_running`` less our own
    running threads (:func:`own_runnable`: the caller, and threads that still spin, e.g.
    under ``OMP_WAIT_POLICY=ACTIVE``).

    The fewest, because a process that just handed us work (a parent writing to our pipe) is
    still runnable for a few microseconds; a process that keeps a core busy is there at every
    look. None when it cannot be read, or when ``cpus`` are not all the online CPUs (the count
    is machine-wide).
    """
    if len(cpus) != os.cpu_count():
        return None
    fewest: int | None = None
    for look in range(looks):
        if look:
            time.sleep(gap_s)
        try:
            text = stat.read_text()
        except OSError:
            return None
        running = next((int(value) for name, _, value in
                        (line.partition(" ") for line in text.splitlines())
                        if name == "procs_running" and value.strip().isdigit()), None)
        if running is None:
            return None
        others = max(0, running - own_runnable(tasks))
        fewest = others if fewest is None else min(fewest, others)
    return fewest


class LoadGovernor:
    """Gives torch the cores that other processes leave free, between 1 and ``threads``.

    Each :meth:`poll` at least ``interval`` seconds after the last compares the busy CPU time of
    ``cpus`` with this process's own CPU time over that window: the difference is what other
    processes took (in cores), and the count becomes the cores left, rounded, at least one.
    A window more than four intervals old is not trusted (the load then says nothing about
    now): the poll starts a new one, and when this process was mostly idle in it (between two
    dreams, two segments, two benchmark requests) -- or at the very first poll -- the count
    becomes the cores left by the threads of other processes that are runnable at that moment
    (``others_runnable``): otherwise the count of an old load would last a whole window (a
    step or two at one thread on cores now free, or at two threads on a core another process
    has since taken). Our own running threads are not counted as others (:func:`own_runnable`).

    Parameters
    ----------
    threads : int
        The most threads (the policy's default count).
    cpus : frozenset of int
        The CPUs this process may run on.
    set_threads : callable
        Applies a count (``torch.set_num_threads``).
    busy, runnable, cpu_time, clock : callables
        Busy CPU seconds of ``cpus`` (:func:`busy_seconds`), other processes' runnable threads
        now (:func:`others_runnable`, None when unknown), this process's CPU seconds (all its
        threads) and a monotonic clock (s); replaceable in tests.
    interval : float
        Seconds between looks.
    """

    def __init__(self, threads: int, cpus: frozenset[int], set_threads: Callable[[int], None],
                 *, busy: Callable[[], float | None] | None = None,
                 runnable: Callable[[], int | None] | None = None,
                 cpu_time: Callable[[], float] = time.process_time,
                 clock: Callable[[], float] = time.monotonic,
                 interval: float = ADAPT_INTERVAL_S):
        self.threads = self.current = threads
        self.cpus = cpus
        self._set = set_threads
        self._busy = busy or (lambda: busy_seconds(cpus))
        self._runnable = runnable or (lambda: others_runnable(cpus))
        self._cpu_time = cpu_time
        self._clock = clock
        self.interval = interval
        self._window: tuple[float, float, float] | None = None  # (clock, busy, own) at start

    def poll(self) -> int:
        """Look at the load if a window has passed, apply the count it calls for, return it."""
        now = self._clock()
        if self._window is not None and now - self._window[0] < self.interval:
            return self.current
        busy = self._busy()
        if busy is None:
            return self.current
        window, self._window = self._window, (now, busy, self._cpu_time())
        if window is None or now - window[0] > 4 * self.interval:
            idle = window is None or self._window[2] - window[2] < 0.5 * (now - window[0])
            others_now = self._runnable() if idle else None
            if others_now is None:
                return self.current
            return self._apply(len(self.cpus) - others_now, others_now)
        others = max(0.0, (busy - window[1]) - (self._window[2] - window[2])) / (now - window[0])
        return self._apply(math.floor(len(self.cpus) - others + 0.5), others)

    def _apply(self, free_cores: int, others: float) -> int:
        wanted = max(1, min(self.threads, free_cores))
        if wanted != self.current:
            log.debug("other processes use %.1f of %d cores: %d thread(s)", others,
                      len(self.cpus), wanted)
            self._set(wanted)
            self.current = wanted
        return self.current


_governor: LoadGovernor | None = None


def adapt_threads() -> int | None:
    """Let the default thread count follow the load (see :class:`LoadGovernor`); the loops that
    do the work call it once per step. A no-op (None) when the user chose the count, when torch
    is not loaded, or without ``/proc/stat``; costs a clock read between looks."""
    if _governor is None or "torch" not in sys.modules:
        return None
    return _governor.poll()


def governed() -> bool:
    """Whether the thread count follows the load (:func:`configure_threads` installed a
    :class:`LoadGovernor`)."""
    return _governor is not None


def _set_torch_threads(count: int) -> None:
    import torch

    torch.set_num_threads(count)


def _governor_for(choice: ThreadChoice) -> LoadGovernor | None:
    """A governor for the default count of several threads, when ``/proc/stat`` tells the load
    of our CPUs (not under a cgroup quota: other tenants' load on the same CPUs would count
    against a share that the quota, not the CPUs, limits)."""
    if choice.source != "cores" or choice.threads < 2 or cgroup_cpu_limit() is not None:
        return None
    try:
        cpus = frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    if busy_seconds(cpus) is None:
        return None
    return LoadGovernor(choice.threads, cpus, _set_torch_threads)


def configure_threads(requested: int | None = None, *, load_torch: bool = True) -> ThreadChoice:
    """Apply the thread policy (see the module docstring) and return what was chosen.

    The default count (source ``"cores"``) of two threads or more gets a :class:`LoadGovernor`
    that :func:`adapt_threads` consults; a count the user chose does not.

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
    global _governor
    choice = resolve_threads(requested)
    _governor = _governor_for(choice)
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
