"""The thread policy (issue 17): where the count comes from, and the CLI's ``--threads``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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


def test_wait_policy_respects_the_user(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    threads.set_wait_policy()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    threads.set_wait_policy()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


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
print(json.dumps({"threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS"),
                  "wait": os.environ.get("OMP_WAIT_POLICY")}))
"""


def _run_cli_child(args: list[str], env: dict[str, str]) -> dict:
    full_env = {k: v for k, v in os.environ.items()
                if k not in (threads.ENV_VAR, "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
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
    assert out == {"threads": 1, "omp": "1", "wait": "PASSIVE"}
    out = _run_cli_child(["classify", str(tone_wav), "--model", "debug", "--json"],
                         {threads.ENV_VAR: "1"})
    assert out["threads"] == 1


def test_callback_does_not_import_torch():
    code = ("import sys\nfrom dreamsound.cli.common import _root\n"
            "_root(version=False, debug=False, verbose=False, threads=2)\n"
            "sys.exit(10 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
