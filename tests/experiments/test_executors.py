"""Where the jobs run: inline, a process pool, a Ray cluster -- the same records either way.

The Ray tests use a local two-CPU cluster on 127.0.0.1 (the ``ray_cluster`` fixture) and the
random ``debug`` model; they need the ``ray`` extra (part of ``.[test]``).
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from dreamsound.cli import app
from dreamsound.errors import DreamsoundError, ModelError
from dreamsound.experiments import executors as ex
from dreamsound.experiments.jobs import JobSettings, run_job
from tests.experiments.irmas_sets import (
    FAST,
    file_lines,
    is_json,
    summary_without_timing,
    without_timing,
    write_training_set,
)

ev = importlib.import_module("dreamsound.experiments.evaluate")


def _double(job: int, *, model: Any) -> tuple[int, str]:
    return 2 * job, model


# --------------------------------------------------------------------------------------------
# Executors on their own
# --------------------------------------------------------------------------------------------


def test_inline_executor_runs_in_order_with_its_model() -> None:
    got: list[tuple[int, str]] = []
    ex.InlineExecutor("the model", _double).run([1, 2, 3], got.append)
    assert got == [(2, "the model"), (4, "the model"), (6, "the model")]


def test_a_worker_refuses_weights_other_than_the_drivers() -> None:
    from dreamsound.models.registry import load_model

    digest = ex.model_digest(load_model("debug", None, "cpu"))
    assert ex.ModelRef("debug", sha256=digest).load().name == "debug"
    with pytest.raises(ModelError, match="loaded other weights for model 'debug'"):
        ex.ModelRef("debug", sha256="0" * 64).load()


@pytest.mark.slow
def test_a_pool_workers_load_error_comes_back_as_itself() -> None:
    # An initializer that raises would only break the pool ("terminated abruptly").
    settings = JobSettings(threshold=0.9, max_steps=1, class_index={}, audio_dir=None)
    pool = ex.PoolExecutor(ex.ModelRef("debug", sha256="0" * 64),
                           functools.partial(run_job, settings=settings), workers=1)
    with pytest.raises(ModelError, match="other weights"):
        pool.run(["never run"], lambda record: None)


def test_ray_actors_never_outnumber_the_cluster_or_the_jobs() -> None:
    fake = SimpleNamespace(cluster_resources=lambda: {"CPU": 4.0, "GPU": 1.0})
    ref = ex.ModelRef("debug")

    def count(workers: int | None, jobs: int, gpu: bool = False) -> int:
        return ex.RayExecutor(ref, _double, workers=workers)._actor_count(fake, jobs, gpu=gpu)

    assert count(None, 100) == 4  # one per CPU of the cluster by default
    assert count(2, 100) == 2
    assert count(16, 100) == 4  # an actor the cluster cannot place would hold its jobs forever
    assert count(None, 3) == 3
    assert count(None, 100, gpu=True) == 1
    with pytest.raises(DreamsoundError, match="no CPU"):
        ex.RayExecutor(ref, _double)._actor_count(SimpleNamespace(cluster_resources=dict), 1,
                                                   gpu=False)


# --------------------------------------------------------------------------------------------
# --ray without a cluster
# --------------------------------------------------------------------------------------------


def test_cli_ray_takes_an_optional_address(train_dir: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    class Seen(Exception):
        pass

    def fake_evaluate(data_dir: Path, **kwargs: Any) -> None:
        seen.append({"data_dir": data_dir, **kwargs})
        raise Seen

    monkeypatch.setattr(ev, "evaluate", fake_evaluate)
    runner = CliRunner()
    out = str(tmp_path / "out")
    for args, executor, address in [
        ([str(train_dir), "--ray"], "ray", None),
        ([str(train_dir), "--ray", "--out", out], "ray", None),
        (["--ray", str(train_dir)], "ray", None),  # a path after --ray stays the data folder
        ([str(train_dir), "--ray", "auto"], "ray", "auto"),
        ([str(train_dir), "--ray", "10.0.0.7:6379", "-o", out], "ray", "10.0.0.7:6379"),
        ([str(train_dir), "--ray=ray://head:10001"], "ray", "ray://head:10001"),
        ([str(train_dir), "--workers", "2"], "local", None),
    ]:
        seen.clear()
        result = runner.invoke(app, ["evaluate", *args, "-m", "debug", "-q"])
        assert isinstance(result.exception, Seen), (args, result.output)
        call = seen[0]
        assert (call["data_dir"], call["executor"], call["ray_address"]) == (
            train_dir, executor, address), args
        if "-o" in args or "--out" in args:
            assert str(call["out"]) == out
        assert ("--ray" in call["command"]) == (executor == "ray")


def test_missing_ray_is_one_line_and_exit_2(train_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    result = CliRunner().invoke(app, ["evaluate", str(train_dir), "-m", "debug", "--ray",
                                      "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2
    assert 'pip install "dreamsound-ml[ray]"' in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # it failed before any work


def test_no_cluster_at_the_address_fails_at_once(train_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="needs the ray extra")
    started = time.monotonic()
    with pytest.raises(DreamsoundError, match=r"no Ray cluster at 127\.0\.0\.1:1 "):
        ev.evaluate(train_dir, out=tmp_path / "out", per_class=1, noise=False,
                    executor="ray", ray_address="127.0.0.1:1", **FAST)
    assert time.monotonic() - started < 30  # not Ray's minutes of retries
    with pytest.raises(DreamsoundError, match="unknown executor 'dask'"):
        ev.evaluate(train_dir, out=tmp_path / "out", executor="dask", **FAST)


# --------------------------------------------------------------------------------------------
# Slow: worker processes and a Ray cluster
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_worker_processes_give_the_same_results(train_dir: Path, tmp_path: Path) -> None:
    inline = ev.evaluate(train_dir, out=tmp_path / "one", per_class=1, workers=1, **FAST)
    pooled = ev.evaluate(train_dir, out=tmp_path / "two", per_class=1, workers=2, **FAST)
    assert [without_timing(r) for r in pooled.records] == \
        [without_timing(r) for r in inline.records]


def unjudged(document: dict) -> dict:
    """A record or summary without what judges heard (``judges``, ``transfer``)."""
    document = json.loads(json.dumps(document))
    document.pop("transfer", None)
    for key in ("correct", "wrong", "dream"):
        if isinstance(document.get(key), dict):
            document[key].pop("judges", None)
    return document


def _judged(record: dict) -> dict:
    dream = record.get("wrong") or record.get("dream") or {}
    return dream.get("judges", {}).get("instrument", {})


def verdict_of(record: dict) -> dict:
    """The instrument judge's yes/no verdicts on a record's wrong-class (or noise) dream."""
    return {k: v for k, v in _judged(record).items() if isinstance(v, bool)}


def scores_of(record: dict) -> dict:
    """The instrument judge's scores and gains on the same dream."""
    return {k: v for k, v in _judged(record).items() if not isinstance(v, bool)}


@pytest.mark.slow
def test_ray_gives_the_same_numbers_as_the_process_pool(train_dir: Path, tmp_path: Path,
                                                        ray_cluster: str) -> None:
    # A judge too: its verdicts, null baseline and reference (a seeded clip of the target class,
    # sent to the workers in the settings) must not depend on where a job runs either.
    judged = {**FAST, "judges": ["instrument"]}
    pooled = ev.evaluate(train_dir, out=tmp_path / "pool", per_class=1, seed=3, workers=2,
                         **judged)
    # Where the jobs run is not a setting of the run: two jobs here, the rest on the cluster.
    ev.evaluate(train_dir, out=tmp_path / "ray", per_class=1, seed=3, keep_audio=True,
                max_jobs=2, **judged)
    on_ray = ev.evaluate(train_dir, out=tmp_path / "ray", per_class=1, seed=3, executor="ray",
                         ray_address=ray_cluster, keep_audio=True, **judged)
    assert on_ray.complete and on_ray.total_jobs == 6
    assert (on_ray.resumed, on_ray.ran) == (2, 4)
    assert unjudged(summary_without_timing(on_ray.summary)) == \
        unjudged(summary_without_timing(pooled.summary))
    assert [unjudged(without_timing(r)) for r in on_ray.records] == \
        [unjudged(without_timing(r)) for r in pooled.records]
    # The judge's verdicts are the same; its scores differ only where a kernel's summation
    # order follows the worker's thread count (dreamsound.threads: ~1e-7 here).
    verdicts = [verdict_of(r) for r in on_ray.records]
    assert verdicts == [verdict_of(r) for r in pooled.records]
    assert all(v and "reference_moved" in v for v in verdicts)
    for ray_record, pool_record in zip(on_ray.records, pooled.records):
        ray_scores, pool_scores = scores_of(ray_record), scores_of(pool_record)
        assert ray_scores.keys() == pool_scores.keys()
        for key, value in ray_scores.items():
            assert value == pytest.approx(pool_scores[key], rel=1e-4, abs=1e-6), key
    # The driver wrote the journal; the workers wrote the sounds, at absolute paths.
    assert len(file_lines(tmp_path / "ray" / "results.jsonl")) == 6
    for record in on_ray.records:
        for dream in (record.get("correct"), record.get("wrong"), record.get("dream")):
            if dream is not None:
                assert Path(dream["audio"]).is_absolute() and Path(dream["audio"]).is_file()
    run = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert run == json.loads((tmp_path / "pool" / "run.json").read_text())


@pytest.mark.slow
def test_a_ray_worker_with_other_weights_stops_the_run(train_dir: Path, tmp_path: Path,
                                                       ray_cluster: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from dreamsound.models import registry

    original = registry.load_model

    def retrained(*args: Any, **kwargs: Any) -> Any:  # only this process's copy changes
        net = original(*args, **kwargs)
        with torch.no_grad():
            next(iter(net.parameters())).add_(0.01)
        return net

    monkeypatch.setattr(registry, "load_model", retrained)
    out = tmp_path / "out"
    with pytest.raises(ModelError, match="loaded other weights for model 'debug'"):
        ev.evaluate(train_dir, out=out, per_class=1, noise=False, executor="ray",
                    ray_address=ray_cluster, **FAST)
    assert file_lines(out / "results.jsonl") == []  # nothing from the wrong weights


@pytest.mark.slow
def test_killing_the_driver_on_ray_and_running_it_again(tmp_path: Path,
                                                        ray_cluster: str) -> None:
    data = write_training_set(tmp_path / "data", {"cel": 4, "flu": 4, "vio": 4}, seconds=1.0)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dreamsound", "evaluate", str(data), "--model", "debug",
           "--max-steps", "10", "--out", str(out), "--quiet", "--json", "--ray", ray_cluster]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if results.exists() and len(file_lines(results)) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished (or failed) before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = [line for line in file_lines(results) if is_json(line)]
    assert 3 <= len(before) < 15
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # stdout holds the report alone, nothing from Ray
    # Nothing redone: every job finished before the kill was skipped ...
    assert summary["resumed"] == len(before) and summary["ran"] == 15 - len(before)
    after = file_lines(results)
    assert after[:len(before)] == before
    # ... and nothing lost: every job is in the journal exactly once.
    assert len({json.loads(line)["job"] for line in after}) == len(after) == 15
    assert summary["complete"] and summary["clips"] == 12 and summary["noise_dreams"] == 3
