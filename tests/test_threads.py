"""The thread policy (issue 17): where the count comes from, and the CLI's ``--threads``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from dreamsound import threads
from dreamsound.cli import app
from dreamsound.errors import DreamsoundError

runner = CliRunner()


@pytest.fixture
def clean_env(monkeypatch):
    """No thread variables set; whatever a test or the CLI writes is restored afterwards."""
    for name in (threads.ENV_VAR, "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, "")  # recorded, so restored at teardown
        monkeypatch.delenv(name)
    before = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(before)


@pytest.fixture
def cores(monkeypatch):
    """Pretend the process may run on ``n`` CPUs with an optional cgroup quota."""

    def pretend(n: int, quota: float | None = None) -> None:
        monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(n)))
        monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: quota)

    return pretend


@pytest.fixture
def tone_wav(tmp_path):
    t = np.arange(32000) / 16000
    path = tmp_path / "tone.wav"
    sf.write(path, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    return path


# -- the count -------------------------------------------------------------------------------------
def test_default_is_the_affinity_capped(clean_env, cores):
    cores(3)
    assert threads.resolve_threads() == threads.ThreadChoice(3, "cores")
    cores(64)
    assert threads.resolve_threads().threads == threads.MAX_DEFAULT_THREADS


def test_cgroup_quota_lowers_the_count(clean_env, cores):
    cores(16, quota=2.5)
    assert threads.available_cores() == 3  # rounded up
    cores(16, quota=0.2)
    assert threads.available_cores() == 1


def test_the_real_affinity_is_used(clean_env):
    assert threads.available_cores() <= len(os.sched_getaffinity(0))
    assert threads.default_threads() >= 1


def test_precedence_option_env_omp_cores(clean_env, cores):
    cores(4)
    clean_env.setenv("OMP_NUM_THREADS", "3")
    assert threads.resolve_threads() == threads.ThreadChoice(3, "OMP_NUM_THREADS")
    clean_env.setenv(threads.ENV_VAR, "2")
    assert threads.resolve_threads() == threads.ThreadChoice(2, threads.ENV_VAR)
    assert threads.resolve_threads(5) == threads.ThreadChoice(5, "--threads")


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_env_value_is_a_clear_error(clean_env, value):
    clean_env.setenv(threads.ENV_VAR, value)
    with pytest.raises(DreamsoundError, match="DREAMSOUND_THREADS"):
        threads.resolve_threads()


@pytest.mark.parametrize("value", [0, -2, True, 1.0])
def test_bad_requested_count_is_a_clear_error(clean_env, value):
    with pytest.raises(DreamsoundError, match="--threads"):
        threads.resolve_threads(value)


@pytest.mark.parametrize(("v2", "v1", "expected"), [
    ("200000 100000\n", None, 2.0),
    ("150000 100000\n", None, 1.5),
    ("max 100000\n", None, None),
    (None, ("-1", "100000"), None),
    (None, ("50000", "100000"), 0.5),
    (None, None, None),
])
def test_cgroup_cpu_limit(tmp_path, v2, v1, expected):
    v2_path, quota, period = tmp_path / "cpu.max", tmp_path / "quota", tmp_path / "period"
    if v2 is not None:
        v2_path.write_text(v2)
    if v1 is not None:
        quota.write_text(v1[0])
        period.write_text(v1[1])
    assert threads.cgroup_cpu_limit(v2_path, quota, period) == expected


def test_configure_sets_torch_and_the_environment(clean_env):
    target = 1 if torch.get_num_threads() != 1 else 2
    choice = threads.configure_threads(target)
    assert choice == threads.ThreadChoice(target, "--threads")
    assert torch.get_num_threads() == target
    assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == str(target)


@pytest.fixture
def no_wait_vars(monkeypatch):
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return monkeypatch


def test_wait_policy_respects_the_user(no_wait_vars):
    no_wait_vars.setenv("OMP_WAIT_POLICY", "ACTIVE")
    threads.set_wait_policy(governed=True)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE" and "GOMP_SPINCOUNT" not in os.environ
    no_wait_vars.delenv("OMP_WAIT_POLICY")
    no_wait_vars.setenv("GOMP_SPINCOUNT", "5")
    threads.set_wait_policy(governed=False)
    assert os.environ["GOMP_SPINCOUNT"] == "5" and "OMP_WAIT_POLICY" not in os.environ


def test_wait_policy_spins_only_when_governed(no_wait_vars):
    threads.set_wait_policy(governed=False)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in os.environ
    no_wait_vars.delenv("OMP_WAIT_POLICY")
    threads.set_wait_policy(governed=True)
    assert os.environ["GOMP_SPINCOUNT"] == str(threads.SPIN_COUNT)
    assert "OMP_WAIT_POLICY" not in os.environ


# -- the count follows the load --------------------------------------------------------------------
class FakeMachine:
    """A clock, the busy CPU seconds of our CPUs, our own CPU seconds and the other processes'
    runnable threads (None: unknown), moved by hand."""

    def __init__(self):
        self.now = self.busy = self.own = 0.0
        self.others_now: int | None = None
        self.looks = 0
        self.applied: list[int] = []

    def run(self, seconds: float, *, ours: float, others: float) -> None:
        """``seconds`` pass with ``ours`` and ``others`` cores busy."""
        self.now += seconds
        self.own += ours * seconds
        self.busy += (ours + others) * seconds

    def read_busy(self) -> float:
        self.looks += 1
        return self.busy

    def governor(self, threads_: int = 2, cpus: int = 2) -> threads.LoadGovernor:
        return threads.LoadGovernor(threads_, frozenset(range(cpus)), self.applied.append,
                                    busy=self.read_busy, runnable=lambda: self.others_now,
                                    cpu_time=lambda: self.own,
                                    clock=lambda: self.now, interval=0.1)


def test_governor_gives_up_a_core_that_another_process_holds_and_takes_it_back():
    machine = FakeMachine()
    governor = machine.governor()
    assert governor.poll() == 2 and machine.applied == []  # the first look starts a window
    machine.run(0.1, ours=1.0, others=1.0)  # a busy loop on the other core
    assert governor.poll() == 1 and machine.applied == [1]
    machine.run(0.1, ours=1.0, others=1.0)
    assert governor.poll() == 1 and machine.applied == [1]  # no needless re-apply
    machine.run(0.1, ours=1.0, others=0.0)  # the busy loop ended
    assert governor.poll() == 2 and machine.applied == [1, 2]


def test_governor_does_not_count_our_own_threads_as_load():
    machine = FakeMachine()
    governor = machine.governor()
    governor.poll()
    machine.run(0.1, ours=2.0, others=0.0)  # both our threads busy (or spinning)
    assert governor.poll() == 2
    machine.run(0.1, ours=2.0, others=0.3)  # a little background work keeps both cores ours
    assert governor.poll() == 2 and machine.applied == []


def test_governor_looks_once_per_interval_and_never_goes_below_one():
    machine = FakeMachine()
    governor = machine.governor(threads_=4, cpus=4)
    governor.poll()
    machine.run(0.05, ours=1.0, others=3.0)
    assert governor.poll() == 4 and machine.looks == 1  # inside the interval: no look
    machine.run(0.05, ours=1.0, others=3.0)
    assert governor.poll() == 1 and machine.looks == 2
    machine.run(0.1, ours=1.0, others=2.0)  # two of four cores free
    assert governor.poll() == 2
    machine.run(0.1, ours=1.0, others=9.0)  # more load than cores: still one thread
    assert governor.poll() == 1


def test_governor_distrusts_an_old_window():
    # Between two dreams other processes may use every core (a benchmark's other side, another
    # job that ended since): that says nothing about now, so the poll only starts a new window.
    machine = FakeMachine()
    governor = machine.governor()
    governor.poll()
    machine.run(2.0, ours=0.0, others=2.0)
    assert governor.poll() == 2 and machine.applied == []
    machine.run(0.1, ours=2.0, others=0.0)
    assert governor.poll() == 2 and machine.applied == []


def test_after_a_pause_the_count_follows_who_runs_now():
    # Between two benchmark requests (or two jobs) the load may change: the old window is not
    # used, the threads of other processes runnable at that moment decide.
    machine = FakeMachine()
    governor = machine.governor()
    governor.poll()
    machine.run(0.1, ours=1.0, others=1.0)
    assert governor.poll() == 1  # a busy neighbour while we work
    machine.run(2.0, ours=0.0, others=1.0)  # we pause; the neighbour stops just before we resume
    machine.others_now = 0
    assert governor.poll() == 2 and machine.applied == [1, 2]
    machine.run(2.0, ours=0.0, others=0.0)
    machine.others_now = 1  # a neighbour started during our pause
    assert governor.poll() == 1 and machine.applied == [1, 2, 1]
    machine.run(0.2, ours=1.0, others=0.0)  # then the windows take over again
    assert governor.poll() == 2


def test_the_first_look_follows_who_runs_now():
    machine = FakeMachine()
    machine.others_now = 3
    governor = machine.governor(threads_=4, cpus=4)
    assert governor.poll() == 1 and machine.applied == [1]


def test_a_long_step_of_ours_is_not_a_pause():
    # Steps longer than the window (a slow model at one thread) keep our own threads running:
    # the run queue would count them, so an old window in which we worked changes nothing.
    machine = FakeMachine()
    governor = machine.governor()
    governor.poll()
    machine.run(1.0, ours=2.0, others=0.0)
    machine.others_now = 1
    assert governor.poll() == 2 and machine.applied == []


def _task(root, tid: int, state: str) -> None:
    (root / str(tid)).mkdir()
    (root / str(tid) / "stat").write_text(f"{tid} (python (worker)) {state} 1 2 3 4 5\n")


def test_others_runnable_reads_the_run_queue_less_our_threads(tmp_path, monkeypatch):
    stat, tasks = tmp_path / "stat", tmp_path / "task"
    tasks.mkdir()
    _task(tasks, 100, "R")  # the caller
    _task(tasks, 101, "S")  # an OpenMP thread asleep
    stat.write_text("cpu  900 0 900 9000 10 0 0 0 0 0\nprocs_running 3\nprocs_blocked 0\n")
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    assert threads.others_runnable(frozenset({0, 1}), stat, tasks=tasks) == 2
    _task(tasks, 102, "R")  # one of ours still spinning (OMP_WAIT_POLICY=ACTIVE) is not others'
    assert threads.own_runnable(tasks) == 2
    assert threads.others_runnable(frozenset({0, 1}), stat, tasks=tasks) == 1
    assert threads.others_runnable(frozenset({0}), stat, tasks=tasks) is None  # machine-wide
    assert threads.others_runnable(frozenset({0, 1}), tmp_path / "missing", tasks=tasks) is None
    stat.write_text("cpu  900 0 900 9000 10 0 0 0 0 0\n")
    assert threads.others_runnable(frozenset({0, 1}), stat, tasks=tasks) is None
    assert threads.own_runnable(tmp_path / "no-such-dir") == 1


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_own_runnable_counts_the_caller():
    assert threads.own_runnable() >= 1


def test_busy_seconds_reads_our_cpus_only(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text("cpu  900 0 900 9000 10 0 0 0 0 0\n"
                    "cpu0 100 5 50 1000 7 3 2 1 40 0\n"
                    "cpu1 800 0 850 8000 3 0 0 0 0 0\n"
                    "intr 12345\nprocs_running 3\n")
    monkeypatch.setattr(threads.os, "sysconf", lambda name: 100)
    # user + nice + system + irq + softirq + steal; idle, iowait and guest (inside user) left out
    assert threads.busy_seconds(frozenset({0}), stat) == pytest.approx(1.61)
    assert threads.busy_seconds(frozenset({0, 1}), stat) == pytest.approx(1.61 + 16.5)
    assert threads.busy_seconds(frozenset({5}), stat) is None
    assert threads.busy_seconds(frozenset({0}), tmp_path / "missing") is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc/stat")
def test_busy_seconds_sees_real_work():
    cpus = frozenset(os.sched_getaffinity(0))
    before, own = threads.busy_seconds(cpus), time.process_time()
    while time.process_time() - own < 0.3:  # burn 0.3 s of CPU
        pass
    assert threads.busy_seconds(cpus) - before >= 0.2  # 10 ms ticks: allow for sampling


def test_only_the_default_count_is_governed(clean_env, cores):
    cores(2)
    threads.configure_threads()
    assert threads.governed() == os.path.exists("/proc/stat")
    threads.configure_threads(2)  # the user chose: never changed behind their back
    assert not threads.governed()
    assert threads.adapt_threads() is None
    cores(1)
    threads.configure_threads()  # one core: nothing to give up
    assert not threads.governed()
    cores(2, quota=1.5)
    threads.configure_threads()  # a quota: /proc/stat cannot tell our share
    assert not threads.governed()


def test_every_dream_step_asks_the_governor(clean_env, monkeypatch, tone_wav):
    import dreamsound

    polls = []

    class Recorder:
        def poll(self) -> int:
            polls.append(1)
            return 1

    monkeypatch.setattr(threads, "_governor", Recorder())
    dreamsound.dream(str(tone_wav), model="debug", target=0, steps=5)
    assert len(polls) >= 5


# -- the CLI ---------------------------------------------------------------------------------------
def test_cli_threads_option_sets_torch(clean_env, tone_wav):
    target = 1 if torch.get_num_threads() != 1 else 2
    result = runner.invoke(app, ["--threads", str(target), "classify", str(tone_wav),
                                 "--model", "debug", "--json"])
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == target


def test_cli_rejects_zero_threads(clean_env):
    result = runner.invoke(app, ["--threads", "0", "models"])
    assert result.exit_code == 2
    assert "--threads" in result.output


def test_cli_bad_env_is_one_line(clean_env):
    clean_env.setenv(threads.ENV_VAR, "many")
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 2
    assert "DREAMSOUND_THREADS" in result.output and "Traceback" not in result.output


_CHILD = """
import json, os, sys
from dreamsound.cli import app
app(sys.argv[1:], standalone_mode=False)
import torch
from dreamsound import threads
print(json.dumps({"threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS"),
                  "wait": os.environ.get("OMP_WAIT_POLICY"),
                  "spin": os.environ.get("GOMP_SPINCOUNT"), "governed": threads.governed()}))
"""


def _run_cli_child(args: list[str], env: dict[str, str]) -> dict:
    full_env = {k: v for k, v in os.environ.items()
                if k not in (threads.ENV_VAR, "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                             "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    full_env.update(env)
    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True,
                          env=full_env, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_torch_loaded_after_the_callback_gets_the_count(tone_wav):
    # A fresh process: the root callback runs before torch loads, so torch must pick the count
    # up from the environment when the command imports it.
    out = _run_cli_child(["--threads", "1", "classify", str(tone_wav), "--model", "debug",
                          "--json"], {})
    assert out == {"threads": 1, "omp": "1", "wait": "PASSIVE", "spin": None,
                   "governed": False}
    out = _run_cli_child(["classify", str(tone_wav), "--model", "debug", "--json"],
                         {threads.ENV_VAR: "1"})
    assert out["threads"] == 1


def test_the_default_count_spins_only_when_it_follows_the_load(tone_wav):
    out = _run_cli_child(["classify", str(tone_wav), "--model", "debug", "--json"], {})
    if out["governed"]:  # several cores, /proc/stat, no quota
        assert (out["spin"], out["wait"]) == (str(threads.SPIN_COUNT), None)
    else:
        assert (out["spin"], out["wait"]) == (None, "PASSIVE")


def test_callback_does_not_import_torch():
    code = ("import sys\nfrom dreamsound.cli.common import _root\n"
            "_root(version=False, debug=False, verbose=False, threads=2)\n"
            "sys.exit(10 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
