"""The studio's one torch thread against torch work spread over two threads, alternating.

libgomp (PyTorch's OpenMP on Linux) gives every thread that starts parallel work a team of its
own; while the teams' threads outnumber the cores, every team spins ~100 times shorter before
sleeping between the pieces of a step. The studio therefore runs all model work on one thread
(:func:`dreamsound.studio.workbench.on_torch_thread`). This benchmark dreams the same dream
(``examples/loop.wav`` toward violin, default settings, instrument model) in fresh processes:

* **one thread**: as the studio does now -- ``Studio.model`` then ``Studio.start(dream)``;
* **two threads**: as it did before -- the model loaded by the calling thread, each dream in a
  thread of its own (``Dreamer.dream`` there).

It prints the median of the reports' ``seconds`` per side and their ratio::

    python -m scripts.bench.bench_studio_threads --rounds 3 --dreams 3
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOOP = str(REPO / "examples" / "loop.wav")
SIDES = ("one-thread", "two-threads")


def worker(side: str, dreams: int) -> list[float]:
    """Dream ``dreams`` times the way ``side`` says; the reports' seconds."""
    from dreamsound.allocator import reuse_freed_memory
    from dreamsound.threads import configure_threads, governed, set_wait_policy

    reuse_freed_memory()
    configure_threads(None, load_torch=False)  # the CLI's policy, as `dreamsound studio` runs it
    set_wait_policy(governed=governed())
    from dreamsound.api import Dreamer
    from dreamsound.config import DreamConfig
    from dreamsound.studio.workbench import Studio

    seconds = []
    if side == "one-thread":
        studio = Studio("instrument")
        studio.model(None)
        try:
            for _ in range(dreams):
                job = studio.start("bench", lambda progress: studio.dream(
                    "bench", sound=LOOP, start=None, model=None, target="violin", layer=None,
                    channel=None, config=DreamConfig(), progress=progress))
                seconds.append(job.result().report["seconds"])
        finally:
            studio.close()
        return seconds
    from dreamsound.models.registry import load_model

    model = load_model("instrument")  # on this thread: its OpenMP team stays alive

    def dream_once() -> None:
        seconds.append(Dreamer(model, DreamConfig()).dream(LOOP, target="violin").report.seconds)

    for _ in range(dreams):
        thread = threading.Thread(target=dream_once)
        thread.start()
        thread.join()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="processes per side, alternating")
    parser.add_argument("--dreams", type=int, default=3, help="dreams per process")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.dreams)))
        return
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    for round_index in range(args.rounds):
        for side in SIDES if round_index % 2 == 0 else SIDES[::-1]:
            out = subprocess.run([sys.executable, "-m", "scripts.bench.bench_studio_threads",
                                  "--worker", side, "--dreams", str(args.dreams)], cwd=REPO,
                                 check=True, capture_output=True, text=True).stdout
            times[side].extend(json.loads(out.strip().splitlines()[-1]))
    for side in SIDES:
        print(f"{side:12s} median {statistics.median(times[side]):.2f} s  "
              f"[{min(times[side]):.2f}-{max(times[side]):.2f}] over {len(times[side])} dreams")
    ratio = statistics.median(times["two-threads"]) / statistics.median(times["one-thread"])
    print(f"two threads / one thread: {ratio:.2f}x")
    print("command: python -m scripts.bench.bench_studio_threads "
          + " ".join(shlex.quote(a) for a in sys.argv[1:]))


if __name__ == "__main__":
    main()
