"""Fixtures of the experiment tests: a tiny data set, and a local Ray cluster on 127.0.0.1."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.experiments.irmas_sets import write_training_set

# Ray settings for the session, set before anything imports ray (it reads some of them once):
# a light test cluster (no memory monitor killing workers on a busy machine, no usage reports)
# with token authentication, as Ray does by default, but with a token of the session's own
# rather than one saved in ~/.ray; drivers that join by address must say so (RAY_AUTH_MODE).
for _key, _value in {"RAY_memory_monitor_refresh_ms": "0", "RAY_USAGE_STATS_ENABLED": "0",
                     "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}.items():
    os.environ.setdefault(_key, _value)

# The head runs in its own process, so this test process is an ordinary driver that joins by
# address (as `dreamsound evaluate --ray HOST:PORT` does), and so the cluster is stopped by the
# process that started it: closing its stdin makes it call ray.shutdown().
_HEAD = """
import sys, ray
ray.init(address="local", num_cpus=2, include_dashboard=False,
         object_store_memory=80 * 2**20, _node_ip_address="127.0.0.1",
         logging_level="WARNING")
print(ray.get_runtime_context().gcs_address.rsplit(":", 1)[1], flush=True)
sys.stdin.read()
ray.shutdown()
"""


@pytest.fixture
def train_dir(tmp_path: Path) -> Path:
    return write_training_set(tmp_path / "train", {"cel": 2, "flu": 2, "vio": 2})


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """The address (``127.0.0.1:PORT``) of a local two-CPU Ray cluster, for the session."""
    pytest.importorskip("ray", reason="the Ray tests need the extra: pip install '.[ray]'")
    head = subprocess.Popen([sys.executable, "-c", _HEAD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert head.stdout is not None
        port = head.stdout.readline().strip()
        assert port.isdigit(), f"the Ray head did not start (exit code {head.poll()})"
        yield f"127.0.0.1:{port}"
    finally:
        assert head.stdin is not None
        head.stdin.close()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
