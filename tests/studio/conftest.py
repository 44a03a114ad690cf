"""A real ``dreamsound studio`` server for the studio's end-to-end tests.

The server runs in a subprocess, started through the command line (``dreamsound studio --model
debug``), with a Python audit hook that logs every attempt to reach another machine (a socket
connect or a DNS lookup of a non-local host) to its stderr: the tests assert there is none, from
start-up to the last click.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOOP = REPO / "examples" / "loop.wav"

#: An audit hook that reports non-local network attempts on stderr as ``NETWORK ...``.
AUDIT_HOOK = r"""
import sys
LOCAL = {"127.0.0.1", "::1", "localhost", "0.0.0.0", "::"}
def _host(value):
    return value.decode() if isinstance(value, bytes) else str(value)
def hook(event, args):
    if event == "socket.connect" and isinstance(args[1], tuple):
        if _host(args[1][0]) not in LOCAL:
            print(f"NETWORK connect {args[1]!r}", file=sys.stderr, flush=True)
    elif event == "socket.getaddrinfo" and args[0] is not None:
        if _host(args[0]) not in LOCAL:
            print(f"NETWORK lookup {_host(args[0])}", file=sys.stderr, flush=True)
sys.addaudithook(hook)
"""
#: The command line under that hook.
_LAUNCHER = AUDIT_HOOK + r"""
from dreamsound.cli import main
sys.argv = ["dreamsound", *sys.argv[1:]]
main()
"""


@dataclass
class StudioServer:
    """A running studio: its URL, its log, and the process."""

    url: str
    log: Path
    process: subprocess.Popen
    started_s: float

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def network_attempts(self) -> list[str]:
        """Lines the audit hook wrote: attempts to reach a non-local host."""
        return [line for line in self.log_text().splitlines() if line.startswith("NETWORK")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _served(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_studio(log: Path, *, model: str = "debug", timeout: float = 180.0,
                 env: dict[str, str] | None = None) -> StudioServer:
    """Start ``dreamsound studio --model MODEL`` on a free port; return once the page is served."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    started = time.perf_counter()
    handle = log.open("w", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, "studio", "--model", model, "--port", str(port),
         "--device", "cpu"],
        stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        # Not the checkout: `python -c` puts its working folder first on sys.path, and the
        # source tree lacks the installed package's shipped weights.
        cwd=log.parent)
    handle.close()
    while not _served(url):
        if process.poll() is not None:
            raise RuntimeError(f"the studio exited ({process.returncode}):\n"
                               + log.read_text(errors="replace"))
        if time.perf_counter() - started > timeout:
            process.kill()
            raise RuntimeError(f"the studio did not serve {url} within {timeout:.0f} s:\n"
                               + log.read_text(errors="replace"))
        time.sleep(0.25)
    return StudioServer(url, log, process, time.perf_counter() - started)


def stop_studio(server: StudioServer) -> int:
    """Ctrl-C, as a user stops it; returns the exit code."""
    server.process.send_signal(signal.SIGINT)
    try:
        return server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        return server.process.wait()


@pytest.fixture(scope="session")
def studio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioServer]:
    """``dreamsound studio --model debug`` on 127.0.0.1, shared by the studio's tests."""
    pytest.importorskip("gradio", reason="the studio extra is not installed: "
                                         "pip install '.[studio]'")
    folder = tmp_path_factory.mktemp("studio")
    # Gradio's upload cache goes to the test's folder, not /tmp/gradio; YAMNet's weights are
    # missing on every machine (a model the picker offers that cannot load).
    server = start_studio(folder / "server.log",
                          env={"GRADIO_TEMP_DIR": str(folder / "gradio-cache"),
                               "DREAMSOUND_YAMNET_WEIGHTS": str(folder / "no-yamnet.h5")})
    yield server
    stop_studio(server)
