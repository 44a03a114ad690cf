"""What the studio does, without a page: load models, run dreams, sonifications and
classifications through :class:`dreamsound.api.Dreamer`, and write their files.

The page (:mod:`dreamsound.studio.app`) is a skin over this module, and this module is a thin
layer over the library: it adds what a web page needs and the command line does not —

- a cache of loaded models;
- a :class:`Job`: a dream running on the studio's torch thread whose
  :class:`~dreamsound.events.ProgressEvent` s can be read while it runs, and which can be
  cancelled between steps;
- one thread for all torch work (:func:`on_torch_thread`: loading models, classifying,
  dreaming), whichever page thread asks, so that several browser tabs take turns on the model
  (a cancelled dream finishes its step before the next work starts). libgomp gives every
  thread that starts parallel work a team of threads of its own, and once the teams' threads
  outnumber the cores every team spins ~100 times shorter before sleeping between the pieces
  of a step. With the model
  loaded by the page's thread and the dream in a job's own thread (the previous design), the
  default dream of ``examples/loop.wav`` toward violin took 7.3-9.2 s against 6.0-6.9 s here
  (``Studio.start`` + ``dream``, the report's seconds, three processes of three dreams each,
  alternating; ``scripts/bench/bench_studio_threads.py``: 1.22x); a YAMNet step took 63-65
  against 51 ms once another live thread had run one parallel operation;
- an output folder per browser session, where every dream's files go through
  :meth:`dreamsound.api.Dreamer.save` (written atomically, never over an input, the written file
  judged), each dream under its own number so that the session gallery keeps all of them.

Nothing here imports gradio.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import queue
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from dreamsound.config import DreamConfig
from dreamsound.errors import AudioError, DreamsoundError, TargetError
from dreamsound.events import ProgressEvent

T = TypeVar("T")

#: The ``Start from`` choices of the page: a sound the user gives, or a generated one.
GENERATED_STARTS = ("noise:3s", "sine:440:3s", "silence:3s")


class Cancelled(DreamsoundError):
    """The user cancelled the work (raised inside the worker by the progress callback)."""


@dataclass(frozen=True)
class ModelChoice:
    """A model of the registry as the model picker shows it.

    Attributes
    ----------
    name : str
        Registry name.
    label : str
        ``"instrument (default)"``, ``"yamnet — weights not downloaded"``, ...
    available : bool
        False when its weights are missing (loading it would try to download them).
    """

    name: str
    label: str
    available: bool


def model_choices() -> list[ModelChoice]:
    """Every registered model, with whether its weights are present (as ``dreamsound models``)."""
    from dreamsound.models.registry import DEFAULT_MODEL, get_spec, model_names
    from dreamsound.models.weights import find_weights

    choices = []
    for name in model_names():
        try:
            spec = get_spec(name)
        except DreamsoundError:
            choices.append(ModelChoice(name, f"{name} — broken plug-in", False))
            continue
        present = spec.weights is None or find_weights(spec.weights) is not None
        label = name + (" (default)" if name == DEFAULT_MODEL else "")
        if not present:
            label += f" — weights not downloaded (dreamsound models fetch {name})"
        choices.append(ModelChoice(name, label, present))
    return choices


@dataclass(frozen=True)
class DreamEntry:
    """One dream of a session, as the gallery keeps it (plain data: paths and the report).

    Attributes
    ----------
    number : int
        1, 2, ... within the session.
    title : str
        ``"#1 loop → violin (instrument)"``.
    original, audio, gradient : str
        Paths of the input at the model's rate, the dream, and the sonified gradient (WAV).
    plot, report_path : str
        The spectrogram figure (PNG) and the report (JSON).
    report : dict
        :meth:`dreamsound.engine.result.DreamReport.to_json` of the judged, written dream.
    files : list of str
        Every file of the dream, for downloading.
    """

    number: int
    title: str
    original: str
    audio: str
    gradient: str
    plot: str
    report_path: str
    report: dict
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SonifyEntry:
    """A written sonification: its audio file and its report."""

    audio: str
    report: dict


_torch_jobs: queue.SimpleQueue[tuple[Future, Callable[[], Any]]] = queue.SimpleQueue()
_torch_thread: threading.Thread | None = None
_torch_thread_start = threading.Lock()


def _run_into(future: Future, fn: Callable[[], Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn())
    except BaseException as exc:  # handed to whoever waits on the future
        future.set_exception(exc)


def _serve_torch_jobs() -> None:
    while True:
        _run_into(*_torch_jobs.get())


def on_torch_thread(fn: Callable[[], T]) -> Future[T]:
    """Run ``fn()`` on the studio's one torch thread (started on first use, a daemon), after
    the work queued before it; its future. Called on that thread, ``fn`` runs at once."""
    global _torch_thread
    with _torch_thread_start:
        if _torch_thread is None:
            _torch_thread = threading.Thread(target=_serve_torch_jobs, name="dreamsound-torch",
                                             daemon=True)
            _torch_thread.start()
    future: Future[T] = Future()
    if threading.current_thread() is _torch_thread:
        _run_into(future, fn)
    else:
        _torch_jobs.put((future, fn))
    return future


def runs_on_torch_thread(method: Callable[..., T]) -> Callable[..., T]:
    """Make a method run on the torch thread (:func:`on_torch_thread`) and wait for it."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        return on_torch_thread(lambda: method(*args, **kwargs)).result()

    return wrapper


class Job(Generic[T]):
    """Work on the studio's torch thread (:func:`on_torch_thread`) that reports
    :class:`ProgressEvent` s and can be cancelled.

    ``work(progress)`` runs there; ``progress`` is the callback to hand to the library.
    Once :meth:`cancel` is called, the next progress event raises :class:`Cancelled` inside the
    work, which stops a dream after its current step. Warnings the library logs from the worker
    thread (``dreamsound.*`` loggers) are kept in :attr:`warnings`.
    """

    def __init__(self, work: Callable[[Callable[[ProgressEvent], None]], T]):
        self._work = work
        self._events: queue.Queue[ProgressEvent] = queue.Queue()
        self._cancel = threading.Event()
        self._result: T | None = None
        self._error: BaseException | None = None
        self.warnings: list[str] = []
        self.last_event: ProgressEvent | None = None
        self._future: Future[None] | None = None

    def start(self) -> Job[T]:
        """Queue the work on the torch thread; returns the job."""
        self._future = on_torch_thread(self._run)
        return self

    def _progress(self, event: ProgressEvent) -> None:
        if self._cancel.is_set():
            raise Cancelled(f"cancelled after step {event.step}")
        self._events.put(event)

    def _run(self) -> None:
        handler = _ThreadWarnings(threading.get_ident(), self.warnings)
        logger = logging.getLogger("dreamsound")
        logger.addHandler(handler)
        try:
            self._result = self._work(self._progress)
        except BaseException as exc:  # handed to the reader thread by result()
            self._error = exc
        finally:
            logger.removeHandler(handler)

    def cancel(self) -> None:
        """Ask the work to stop at its next progress event."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancel.is_set()

    def running(self) -> bool:
        """Whether the work is queued or running."""
        return self._future is not None and not self._future.done()

    def updates(self, interval: float = 0.2) -> Iterator[ProgressEvent | None]:
        """Until the work ends: the latest event at most every ``interval`` seconds (None when
        no new event came in that time, so a page can still show that it is alive)."""
        while self.running() or not self._events.empty():
            latest = None
            try:
                latest = self._events.get(timeout=interval)
                while True:
                    latest = self._events.get_nowait()
            except queue.Empty:
                pass
            if latest is not None:
                self.last_event = latest
            yield latest

    def result(self) -> T:
        """Wait for the work; return its result or raise its exception."""
        if self._future is not None:
            self._future.result()
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]


class _ThreadWarnings(logging.Handler):
    """Collects the warning messages one thread logs."""

    def __init__(self, thread_id: int, sink: list[str]):
        super().__init__(level=logging.WARNING)
        self._thread_id = thread_id
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self._thread_id:
            self._sink.append(record.getMessage())


def resolve_source(sound: str | None, start: str | None) -> str:
    """The input as the library takes it: the uploaded or recorded file, or a generated start
    (``noise:3s``). A generated start wins when one is chosen."""
    if start and start.strip():
        return start.strip()
    if sound:
        return str(sound)
    raise AudioError("no sound: upload or record one, or choose a generated start "
                     f"({', '.join(GENERATED_STARTS)})")


def parse_channel(value: str | float | None) -> int | None:
    """A layer channel from the page: empty means every channel."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        number = -1.0
    if not number.is_integer() or number < 0:
        raise TargetError(f"--channel must be a whole number >= 0, got {text!r}")
    return int(number)


def _parse_target(target: str | None) -> str | None:
    text = (target or "").strip()
    return text or None


_NUMBER_PREFIX = re.compile(r"^\d{3,}-")


class Studio:
    """The server side of the studio: loaded models, their one thread, and the session folders.

    Parameters
    ----------
    default_model : str
        The model the page starts with.
    device : str, optional
        For :func:`dreamsound.load_model` (default: auto).
    out_dir : path, optional
        Where session folders go. Default: a new temporary folder, removed by :meth:`close`.
    """

    def __init__(self, default_model: str = "instrument", *, device: str | None = None,
                 out_dir: str | Path | None = None):
        self.default_model = default_model
        self.device = device
        self._own_dir = out_dir is None
        self.out_dir = Path(tempfile.mkdtemp(prefix="dreamsound-studio-")) if out_dir is None \
            else Path(out_dir).expanduser()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._models: dict[str, Any] = {}
        self._jobs: dict[str, Job] = {}
        self._counters: dict[str, int] = {}

    # -- models --------------------------------------------------------------------------------
    @runs_on_torch_thread
    def model(self, name: str | None) -> Any:
        """The loaded model ``name`` (loaded once; the library's errors pass through)."""
        from dreamsound.models.registry import load_model

        name = name or self.default_model
        if name not in self._models:
            self._models[name] = load_model(name, device=self.device)
        return self._models[name]

    def _names_and_codes(self, name: str) -> tuple[list[str], list[str]]:
        """A model's class names and codes (without building it when its module lists them)."""
        from dreamsound.models.registry import class_names_and_codes

        if name in self._models:
            net = self._models[name]
            return list(net.class_names), list(net.class_codes or [])
        return class_names_and_codes(name)

    def class_names(self, name: str | None) -> list[str]:
        """What the target box offers for model ``name``: its class names, then the names of
        the concept map (:mod:`dreamsound.models.concepts`) that reach one of its classes and are
        not class names themselves (``violin`` on YAMNet, whose class is ``Violin, fiddle``)."""
        from dreamsound.models.concepts import CONCEPTS, concept_indices

        names, codes = self._names_and_codes(name or self.default_model)
        known = {n.lower() for n in names}
        extra = [c.name for c in CONCEPTS
                 if c.name.lower() not in known and concept_indices(c, names, codes)]
        return names + extra

    def layer_names(self, name: str | None) -> list[str]:
        """The layers a layer objective can ascend (``--layer``) on model ``name``."""
        return list(self.model(name).named_layers())

    # -- sessions ------------------------------------------------------------------------------
    def session_dir(self, session: str) -> Path:
        """The output folder of one browser session (created on first use)."""
        safe = re.sub(r"[^A-Za-z0-9_-]+", "", session)[:32] or "session"
        folder = self.out_dir / safe
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _next_number(self, session: str) -> int:
        self._counters[session] = self._counters.get(session, 0) + 1
        return self._counters[session]

    def _stem(self, session: str, number: int, input_label: str, name: str) -> Path:
        """``<session>/<NNN>-<input>.<name>``: numbered so no dream replaces another; a dream of
        a dream drops the earlier number (``002-loop.dream-violin.dream-flute``)."""
        from dreamsound.outputs import output_stem

        folder = self.session_dir(session)
        stem = output_stem(input_label, name, folder, several=False)
        base = _NUMBER_PREFIX.sub("", stem.name)
        return folder / f"{number:03d}-{base}"

    def start(self, session: str, work: Callable[[Callable[[ProgressEvent], None]], T]
              ) -> Job[T]:
        """Start ``work`` as the session's current job (what :meth:`cancel` stops)."""
        job = Job(work)
        self._jobs[session] = job
        return job.start()

    def cancel(self, session: str) -> bool:
        """Cancel the session's running job; returns whether one was running."""
        job = self._jobs.get(session)
        if job is None or not job.running():
            return False
        job.cancel()
        return True

    # -- the work --------------------------------------------------------------------------------
    @runs_on_torch_thread
    def dream(self, session: str, *, sound: str | None, start: str | None,
              model: str | None, target: str | None, layer: str | None,
              channel: str | float | None, config: DreamConfig, judges: Sequence[str] = (),
              progress: Callable[[ProgressEvent], None] | None = None) -> DreamEntry:
        """Dream, write every file through :meth:`Dreamer.save` (figure included; ``judges``,
        models outside the dream, listen to the written file) and return the gallery entry. The
        library's errors pass through unchanged."""
        from dreamsound.api import Dreamer
        from dreamsound.audio import save_audio
        from dreamsound.outputs import dream_name

        source = resolve_source(sound, start)
        wanted = _parse_target(target)
        layer = (layer or "").strip() or None
        dreamer = Dreamer(self.model(model), config,
                          judges=[self.model(j) for j in judges or ()])
        result = dreamer.dream(source, target=wanted, layer=layer,
                               channel=parse_channel(channel), progress=progress)
        if result.input_path is not None:
            # The report names the file as the user gave it ("loop.wav"), not the upload
            # cache's path; the path itself stays in input_path, which outputs protect.
            result = dataclasses.replace(result, report=result.report.replace(
                input=result.input_path.name))
        number = self._next_number(session)
        stem = self._stem(session, number, result.report.input,
                          dream_name(result.report, query=wanted))
        result = dreamer.save(result, stem, plot=True)
        protected = [result.input_path] if result.input_path is not None else []
        original = save_audio(stem.with_name(stem.name + ".original.wav"), result.original,
                              result.sample_rate, inputs=protected)
        report = result.report.to_json()
        outputs = report["outputs"]
        files = [outputs["audio"], outputs["gradient"], str(original), outputs["plot"],
                 outputs["report"], *outputs.get("snapshots", [])]
        what = report["target"] or (f"layer {layer}" if layer else "top class")
        title = f"#{number} {_input_name(report['input'])} → {what} ({report['model']})"
        return DreamEntry(number=number, title=title, original=str(original),
                          audio=outputs["audio"], gradient=outputs["gradient"],
                          plot=outputs["plot"], report_path=outputs["report"], report=report,
                          files=files)

    @runs_on_torch_thread
    def sonify(self, session: str, *, sound: str | None, start: str | None, model: str | None,
               target: str | None, layer: str | None, channel: str | float | None, steps: int,
               config: DreamConfig,
               progress: Callable[[ProgressEvent], None] | None = None) -> SonifyEntry:
        """Sonify the gradient (:meth:`Dreamer.sonify`) and write it to the session folder."""
        from dreamsound.api import Dreamer
        from dreamsound.outputs import sonify_name, write_sonification

        source = resolve_source(sound, start)
        wanted = _parse_target(target)
        layer = (layer or "").strip() or None
        dreamer = Dreamer(self.model(model), config)
        result = dreamer.sonify(source, target=wanted, layer=layer,
                                channel=parse_channel(channel), steps=int(steps),
                                progress=progress)
        number = self._next_number(session)
        stem = self._stem(session, number, result.report["input"],
                          sonify_name(result.report, query=wanted))
        report = write_sonification(result, stem)
        return SonifyEntry(audio=report["outputs"]["audio"], report=report)

    @runs_on_torch_thread
    def classify(self, *, sound: str | None, start: str | None, model: str | None) -> Any:
        """What the model hears (:meth:`Dreamer.classify`): a
        :class:`~dreamsound.classification.Classification`."""
        from dreamsound.api import Dreamer

        source = resolve_source(sound, start)
        return Dreamer(self.model(model)).classify(source)

    def close(self) -> None:
        """Remove the output folder if the studio made it."""
        if self._own_dir:
            shutil.rmtree(self.out_dir, ignore_errors=True)


def _input_name(label: str) -> str:
    """A short name of an input for titles: the file's stem without the studio's number."""
    from dreamsound.inputs import is_generated

    if is_generated(label):
        return label
    return _NUMBER_PREFIX.sub("", Path(label).stem)
