"""The studio's server side without a page: jobs with progress and cancel, session folders, and
dreams written through Dreamer.save (debug model; no gradio needed)."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest

from dreamsound.config import DreamConfig
from dreamsound.errors import AudioError, TargetError
from dreamsound.events import ProgressEvent
from dreamsound.studio.workbench import (
    Cancelled,
    Job,
    Studio,
    model_choices,
    parse_channel,
    resolve_source,
)
from tests.studio.conftest import LOOP

FAST = DreamConfig(steps=2, gl_iterations=2, fit_iterations=0)


def test_resolve_source():
    assert resolve_source("/x/loop.wav", None) == "/x/loop.wav"
    assert resolve_source("/x/loop.wav", " noise:2s ") == "noise:2s"
    with pytest.raises(AudioError, match="no sound: upload or record one"):
        resolve_source(None, "")


@pytest.mark.parametrize(("text", "channel"), [(None, None), ("", None), (" 3 ", 3), (4.0, 4)])
def test_parse_channel(text, channel):
    assert parse_channel(text) == channel


@pytest.mark.parametrize("text", ["-1", "2.5", "left"])
def test_parse_channel_refuses(text):
    with pytest.raises(TargetError, match="--channel must be a whole number"):
        parse_channel(text)


def test_job_streams_events_and_returns():
    def work(progress):
        for step in range(1, 4):
            progress(ProgressEvent(stage="dream", step=step, total=3))
        return "dreamt"

    job = Job(work).start()
    seen = [e.step for e in job.updates(interval=0.01) if e is not None]
    assert seen and seen[-1] == 3 and job.last_event.step == 3
    assert job.result() == "dreamt" and not job.running()


def test_job_cancel_stops_at_the_next_event():
    gate, steps = threading.Event(), []

    def work(progress):
        for step in range(1, 1000):
            progress(ProgressEvent(stage="dream", step=step, total=999))
            steps.append(step)
            gate.wait()
        return "finished"

    job = Job(work).start()
    job.cancel()
    gate.set()
    with pytest.raises(Cancelled, match="cancelled after step"):
        job.result()
    assert job.cancelled and len(steps) <= 1


def test_job_keeps_its_own_thread_warnings():
    def work(progress):
        logging.getLogger("dreamsound.api").warning("loop.wav is silent")
        return None

    logging.getLogger("dreamsound.api").warning("another thread's warning")
    job = Job(work).start()
    job.result()
    assert job.warnings == ["loop.wav is silent"]


def test_job_passes_the_library_error_through():
    def work(progress):
        raise TargetError("debug has no class 'kazoo'")

    with pytest.raises(TargetError, match="kazoo"):
        Job(work).start().result()


@pytest.fixture
def studio(tmp_path: Path) -> Studio:
    return Studio("debug", device="cpu", out_dir=tmp_path / "out")


def test_all_torch_work_runs_on_one_thread(studio: Studio, tmp_path: Path, monkeypatch):
    # Each thread that starts parallel torch work gets a libgomp team of its own, and more team
    # threads than cores make every team spin ~100x shorter: so models load, clips classify
    # and dreams run on one thread, whichever page thread asks.
    import dreamsound.api
    import dreamsound.models.registry

    threads_seen: set[str] = set()

    def recording(fn):
        def wrapper(*args, **kwargs):
            threads_seen.add(threading.current_thread().name)
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(dreamsound.models.registry, "load_model",
                        recording(dreamsound.models.registry.load_model))
    for name in ("classify", "dream"):
        monkeypatch.setattr(dreamsound.api.Dreamer, name,
                            recording(getattr(dreamsound.api.Dreamer, name)))
    source = tmp_path / "loop.wav"
    source.write_bytes(LOOP.read_bytes())
    callers = [threading.Thread(target=studio.classify,
                                kwargs={"sound": str(source), "start": None, "model": "debug"})
               for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    studio.layer_names("debug")
    job = studio.start("s1", lambda progress: studio.dream(
        "s1", sound=str(source), start=None, model="debug", target="violin", layer=None,
        channel=None, config=FAST, progress=progress))
    assert job.result().number == 1  # the job's own model lookup runs inline, no deadlock
    assert threads_seen == {"dreamsound-torch"}


def test_torch_thread_passes_errors_and_queues_in_order():
    from dreamsound.studio.workbench import on_torch_thread

    order: list[int] = []
    futures = [on_torch_thread(lambda i=i: order.append(i)) for i in range(5)]
    for future in futures:
        future.result()
    assert order == [0, 1, 2, 3, 4]
    with pytest.raises(TargetError, match="kazoo"):
        on_torch_thread(lambda: (_ for _ in ()).throw(TargetError("no class 'kazoo'"))).result()


def test_dreams_are_numbered_written_and_never_replaced(studio: Studio, tmp_path: Path):
    source = tmp_path / "loop.wav"
    source.write_bytes(LOOP.read_bytes())
    events: list[ProgressEvent] = []
    first = studio.dream("s1", sound=str(source), start=None, model="debug", target="violin",
                         layer=None, channel=None, config=FAST, progress=events.append)
    second = studio.dream("s1", sound=str(source), start=None, model="debug", target="violin",
                          layer=None, channel=None, config=FAST)
    assert [e.step for e in events] == [1, 2]
    assert (first.number, second.number) == (1, 2)
    assert first.title == "#1 loop → violin (debug)"
    assert first.report["input"] == "loop.wav"  # as the user named it, not the cache path
    folder = studio.out_dir / "s1"
    assert Path(first.audio) == folder / "001-loop.dream-violin.wav"
    assert Path(second.audio) == folder / "002-loop.dream-violin.wav"
    for entry in (first, second):
        assert all(Path(f).is_file() and Path(f).parent == folder for f in entry.files)
        written = json.loads(Path(entry.report_path).read_text())
        assert written == entry.report and written["rendered_from"] == "file"
    assert source.read_bytes() == LOOP.read_bytes()  # the input is never touched

    # A dream of a dream: named after both, without the first number.
    third = studio.dream("s1", sound=first.audio, start=None, model="debug", target="flute",
                         layer=None, channel=None, config=FAST)
    assert Path(third.audio).name == "003-loop.dream-violin.dream-flute.wav"
    assert third.title == "#3 loop.dream-violin → flute (debug)"
    # Another session has its own folder and numbers.
    other = studio.dream("s2", sound=None, start="noise:1s", model="debug", target=None,
                         layer="conv1", channel="2", config=FAST)
    assert Path(other.audio) == studio.out_dir / "s2" / "001-noise-1s.dream-layer-conv1-c2.wav"


def test_sonify_and_classify(studio: Studio):
    entry = studio.sonify("s", sound=str(LOOP), start=None, model="debug", target="violin",
                          layer=None, channel=None, steps=2,
                          config=DreamConfig(style="exact", steps=2))
    assert Path(entry.audio).name == "001-loop.sonify-violin.wav"
    assert entry.report["steps"] == 2
    found = studio.classify(sound=str(LOOP), start=None, model="debug")
    assert found.model == "debug" and len(found.top(3)) == 3


def test_models_load_once_and_list_their_classes(studio: Studio):
    assert studio.model("debug") is studio.model(None)
    assert "violin" in studio.class_names("debug")
    assert studio.layer_names("debug") == ["conv1", "conv2", "logits"]
    # Targets on a tagger: its tags, then the concept names that reach one of them.
    musicnn = studio.class_names("musicnn")
    assert "violin" in musicnn and musicnn.count("violin") == 1
    assert "acoustic guitar" in musicnn and "guitar" in musicnn
    assert "clarinet" not in musicnn  # MagnaTagATune has no clarinet tag
    choices = {c.name: c for c in model_choices()}
    assert choices["debug"].available and choices["instrument"].label.startswith(
        "instrument (default)")


def test_close_removes_only_a_folder_it_made(tmp_path: Path):
    own = Studio("debug")
    assert own.out_dir.is_dir()
    own.close()
    assert not own.out_dir.exists()
    given = Studio("debug", out_dir=tmp_path / "keep")
    given.close()
    assert (tmp_path / "keep").is_dir()
