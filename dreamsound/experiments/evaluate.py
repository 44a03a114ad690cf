"""The classifier-probing experiment behind ``dreamsound evaluate``.

After Cochran & Kim's DreamSound study: dream every clip of a labelled data set toward its correct
class and toward a seeded random wrong class, and dream white noise toward every class; then read
how often the model was pushed there (success: the target is top-1 afterwards), how confident it
became, how many steps it took, and how far the sound had to move (``rmse_db`` on the model's mel
scale, :mod:`dreamsound.metrics`).

The work is a list of *jobs* -- one per clip (both of its dreams, so the distance between the two
dreamed versions can be measured) and one per noise target -- fixed entirely by the data, the
options and the seed. Jobs run in worker processes, each holding its own copy of the model. Every
finished job is appended as one JSON line to ``OUT/results.jsonl`` (flushed and fsynced), so an
interrupted run is resumed by running the same command again: finished jobs are skipped, and the
report (:mod:`dreamsound.report`) is always built from that file. ``OUT/run.json`` records the
settings and a digest of the model's weights; a folder from another run is refused.

Record shapes (one JSON object per line)::

    {"job": "clip:cel/x.wav", "kind": "clip", "file": "cel/x.wav", "true": "cel",
     "labels": ["cel"], "seconds": 3.0, "confidence_true_before": 0.41,
     "correct": DREAM, "wrong": DREAM, "between": {"rmse_db": .., "mse_db2": ..}}
    {"job": "noise:cel", "kind": "noise", "target": "cel", "seconds": 3.0, "dream": DREAM}
    {"job": ..., "kind": ..., "error": "one line"}          # a job that could not run

    DREAM = {"target", "target_name", "target_index", "steps", "stopped", "seconds_taken",
             "confidence_before", "confidence_after", "confidence", "top1", "success",
             "reached_threshold", "rmse_db", "mse_db2", "rmse_db_spectrogram", "audio"}

``confidence``, ``top1`` and ``success`` are measured on the dreamed audio as written (rendered),
``confidence_after`` and ``rmse_db_spectrogram`` on the engine's ascended spectrogram before
rendering; ``rmse_db``/``mse_db2`` compare the rendered audio with the start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from dreamsound.config import DreamConfig
from dreamsound.data.irmas import (
    IRMAS_CODES,
    IRMAS_NAMES,
    detect_layout,
    read_testing_set,
    read_training_set,
)
from dreamsound.errors import (
    DataError,
    DreamsoundError,
    ModelError,
    OutputError,
    TargetError,
)
from dreamsound.events import ProgressCallback, ProgressEvent
from dreamsound.io_utils import PathLike, atomic_write

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_STEPS",
    "DEFAULT_THRESHOLD",
    "RESULTS_FILE",
    "YAMNET_CLASSES",
    "ClipJob",
    "Evaluation",
    "LabelledClip",
    "NoiseJob",
    "build_jobs",
    "class_indices",
    "evaluate",
    "list_clips",
    "read_results",
    "select_clips",
]

#: Target confidence a dream runs until (0..1); the published bar is "> 90 %".
DEFAULT_THRESHOLD = 0.9
#: Most gradient steps per dream when the threshold is not reached first.
DEFAULT_MAX_STEPS = 300
#: One JSON line per finished job, in the output folder.
RESULTS_FILE = "results.jsonl"
#: The settings of the run whose results are in the output folder.
RUN_FILE = "run.json"

#: IRMAS class code -> YAMNet (AudioSet) display name, for dreaming IRMAS clips with YAMNet.
#: Voice maps to "Singing": IRMAS's voice class is sung vocals.
YAMNET_CLASSES: dict[str, str] = {
    "cel": "Cello", "cla": "Clarinet", "flu": "Flute", "gac": "Acoustic guitar",
    "gel": "Electric guitar", "org": "Organ", "pia": "Piano", "sax": "Saxophone",
    "tru": "Trumpet", "vio": "Violin, fiddle", "voi": "Singing",
}



# --------------------------------------------------------------------------------------------
# The data set
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelledClip:
    """A clip of the data set and its labels.

    Attributes
    ----------
    path : Path
        The sound file.
    rel : str
        Its path relative to the data folder (POSIX separators): the clip's stable id.
    labels : tuple of str
        Class codes; the first is the true class (the training layout has exactly one, a
        testing-layout clip may have several).
    """

    path: Path
    rel: str
    labels: tuple[str, ...]

    @property
    def true(self) -> str:
        return self.labels[0]


def list_clips(data_dir: PathLike) -> list[LabelledClip]:
    """Every labelled clip of an IRMAS-layout folder (training or testing layout).

    Raises
    ------
    DataError
        Missing or empty folder, neither layout, no clips, bad label files.
    """
    root = Path(data_dir).expanduser()
    layout = detect_layout(root)
    base = root.resolve()
    if layout == "training":
        pairs = [(e.path, (e.label,)) for e in read_training_set(root)]
    else:
        pairs = [(e.path, tuple(e.labels)) for e in read_testing_set(root)]
    clips = [LabelledClip(path=p, rel=Path(p).resolve().relative_to(base).as_posix(),
                          labels=labels) for p, labels in pairs]
    if not clips:
        raise DataError(f"no labelled clips in {root}")
    return clips


def _derive_seed(seed: int, *parts: str) -> int:
    """A 31-bit seed for one random choice, fixed by the run's seed and what it is for.

    Hashing (seed, purpose, clip) rather than drawing from one stream keeps every choice
    independent of the others: adding clips, changing ``--per-class`` or the number of workers
    never changes the wrong class or the dream of a clip already in the list.
    """
    text = "\x1f".join([str(int(seed)), *parts]).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little") & 0x7FFFFFFF


def _class_order(codes: Iterable[str]) -> list[str]:
    """IRMAS codes in IRMAS order, then any others alphabetically."""
    present = set(codes)
    return [c for c in IRMAS_CODES if c in present] + sorted(present - set(IRMAS_CODES))


def select_clips(clips: Sequence[LabelledClip], *, per_class: int | None,
                 seed: int) -> list[LabelledClip]:
    """The first ``per_class`` clips of each true class after a seeded shuffle (all if None).

    Returns the chosen clips grouped by class (IRMAS order), each group in shuffled order.
    """
    if per_class is not None and per_class < 1:
        raise DataError(f"--per-class must be at least 1, got {per_class}")
    by_class: dict[str, list[LabelledClip]] = {}
    for clip in sorted(clips, key=lambda c: c.rel):
        by_class.setdefault(clip.true, []).append(clip)
    chosen: list[LabelledClip] = []
    for code in _class_order(by_class):
        group = by_class[code]
        order = np.random.default_rng(_derive_seed(seed, "shuffle", code)).permutation(len(group))
        picked = [group[i] for i in order]
        chosen += picked if per_class is None else picked[:per_class]
    return chosen


# --------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipJob:
    """Dream one clip toward its true class and toward ``wrong``."""

    job: str
    path: str
    rel: str
    labels: tuple[str, ...]
    wrong: str
    seed: int

    @property
    def true(self) -> str:
        return self.labels[0]


@dataclass(frozen=True)
class NoiseJob:
    """Dream white noise, as long as the clip ``reference``, toward ``target``."""

    job: str
    target: str
    reference: str
    seed: int


Job = ClipJob | NoiseJob


def build_jobs(clips: Sequence[LabelledClip], *, classes: Sequence[str], seed: int,
               noise: bool = True) -> list[Job]:
    """The run's job list: one :class:`ClipJob` per clip, then one :class:`NoiseJob` per class.

    Parameters
    ----------
    clips : sequence of LabelledClip
        The selected clips (:func:`select_clips`).
    classes : sequence of str
        The data set's classes: wrong classes and noise targets are drawn from these.
    seed : int
        Fixes every wrong class and every dream's seed.
    noise : bool
        Add the noise jobs.

    Raises
    ------
    DataError
        A clip whose labels cover every class (no wrong class to draw).
    """
    jobs: list[Job] = []
    for clip in clips:
        candidates = [c for c in classes if c not in clip.labels]
        if not candidates:
            raise DataError(f"{clip.rel}: no wrong class to dream toward (its labels "
                            f"{', '.join(clip.labels)} cover every class of the data set); "
                            "a data set needs at least two classes")
        pick = np.random.default_rng(_derive_seed(seed, "wrong", clip.rel)).integers(
            len(candidates))
        job_id = f"clip:{clip.rel}"
        jobs.append(ClipJob(job=job_id, path=str(clip.path), rel=clip.rel, labels=clip.labels,
                            wrong=candidates[int(pick)], seed=_derive_seed(seed, job_id)))
    if noise:
        first_of_class: dict[str, LabelledClip] = {}
        for clip in clips:
            first_of_class.setdefault(clip.true, clip)
        fallback = clips[0] if clips else None
        for code in classes:
            reference = first_of_class.get(code, fallback)
            if reference is None:
                continue
            job_id = f"noise:{code}"
            jobs.append(NoiseJob(job=job_id, target=code, reference=str(reference.path),
                                 seed=_derive_seed(seed, job_id)))
    return jobs


def class_indices(model: Any, classes: Sequence[str]) -> dict[str, int]:
    """Map data-set class codes to the model's output indices.

    Tried per code, in order: the model's own class codes (the instrument and debug models use
    the IRMAS codes); :data:`YAMNET_CLASSES` (AudioSet display names); the IRMAS display name
    (``"violin"``); the code itself -- each through ``model.resolve_class``.

    Raises
    ------
    TargetError
        A code the model has no class for.
    ModelError
        Two codes that land on the same model class.
    """
    own_codes = [c.lower() for c in getattr(model, "class_codes", [])]
    irmas_names = dict(zip(IRMAS_CODES, IRMAS_NAMES))
    out: dict[str, int] = {}
    for code in classes:
        if code.lower() in own_codes:
            out[code] = own_codes.index(code.lower())
            continue
        for query in (YAMNET_CLASSES.get(code), irmas_names.get(code), code):
            if query is None:
                continue
            try:
                out[code] = model.resolve_class(query)
                break
            except TargetError:
                continue
        else:
            raise TargetError(f"model {model.name!r} has no class for the data set's class "
                              f"{code!r} ({irmas_names.get(code, code)}); use a model with "
                              "these classes")
    taken: dict[int, str] = {}
    for code, index in out.items():
        if index in taken:
            raise ModelError(f"classes {taken[index]!r} and {code!r} both map to "
                             f"{model.class_names[index]!r} of model {model.name!r}")
        taken[index] = code
    return out


# --------------------------------------------------------------------------------------------
# Running one job (in a worker process or inline)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    """What every job needs besides the model (picklable, sent to the workers)."""

    threshold: float
    max_steps: int
    class_index: dict[str, int]
    audio_dir: str | None
    config: DreamConfig = field(default_factory=lambda: protocol_config())


def _fit_length(waveform: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad to ``n`` samples, so two versions of a clip are analysed alike."""
    if waveform.shape[0] >= n:
        return waveform[:n]
    return np.pad(waveform, (0, n - waveform.shape[0]))


def _finite(value: Any) -> float | None:
    """A float for JSON, or None for a missing / non-finite value (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _dream_toward(model: Any, start: np.ndarray, target: str, *, settings: _Settings,
                  seed: int, audio_path: Path | None) -> tuple[dict[str, Any], Any]:
    """Dream ``start`` toward class code ``target``: ``(record entry, DreamResult)``.

    The entry judges the audio as rendered (what a listener gets and what is written), using
    the engine's own analysis of it: ``confidence`` and ``success`` are measured on the rendered
    sound, ``rmse_db``/``mse_db2`` from the start to the rendered sound; the engine's figures for
    the ascended spectrogram are kept as ``confidence_after`` and ``rmse_db_spectrogram``.
    """
    from dreamsound.api import Dreamer
    from dreamsound.audio import save_audio

    index = settings.class_index[target]
    config = settings.config.replace(until=settings.threshold, steps=settings.max_steps,
                                     seed=seed)
    result = Dreamer(model, config).dream(start, target=index, sample_rate=model.sample_rate)
    report = result.report.to_json()
    confidence = _finite(report.get("confidence_rendered"))
    top = report.get("top_rendered") or [{}]
    entry = {
        "target": target,
        "target_name": model.class_names[index],
        "target_index": index,
        "steps": int(report.get("steps", 0)),
        "stopped": report.get("stopped"),
        "seconds_taken": _finite(report.get("seconds")),
        "confidence_before": _finite(report.get("confidence_before")),
        "confidence_after": _finite(report.get("confidence_after")),
        "confidence": confidence,
        "top1": top[0].get("name"),
        "success": bool(report.get("success_rendered")),
        "reached_threshold": confidence is not None and confidence >= settings.threshold,
        "rmse_db": _finite(report.get("rmse_db_rendered")),
        "mse_db2": _finite(report.get("mse_db2_rendered")),
        "rmse_db_spectrogram": _finite(report.get("rmse_db")),
        "audio": None,
    }
    if audio_path is not None:
        save_audio(audio_path, result.audio, result.sample_rate, subtype="FLOAT")
        entry["audio"] = str(audio_path)
    return entry, result


def _audio_path(settings: _Settings, stem: str, target: str) -> Path | None:
    if settings.audio_dir is None:
        return None
    return Path(settings.audio_dir) / f"{stem}__to_{target}.wav"


def run_job(job: Job, *, model: Any, settings: _Settings) -> dict[str, Any]:
    """Run one job and return its record (an ``error`` record for a clip that cannot be used).

    Only :class:`DreamsoundError` (a bad file, a failed dream) becomes an error record; anything
    else is a bug and propagates.
    """
    from dreamsound.audio import load_audio
    from dreamsound.inputs import generate_start
    from dreamsound.metrics import distance_report

    rate = model.sample_rate
    try:
        if isinstance(job, ClipJob):
            waveform = load_audio(job.path, sample_rate=rate)
            stem = job.rel.rsplit(".", 1)[0]
            entries, results = {}, {}
            for kind, target in (("correct", job.true), ("wrong", job.wrong)):
                entries[kind], results[kind] = _dream_toward(
                    model, waveform, target, settings=settings,
                    seed=_derive_seed(job.seed, kind),
                    audio_path=_audio_path(settings, stem, target))
            # Both rendered log-mels are analysed at the original's frame count, so they compare
            # like with like.
            between = distance_report(results["correct"].spectrograms["rendered"],
                                      results["wrong"].spectrograms["rendered"],
                                      front_end=model.front_end)
            return {"job": job.job, "kind": "clip", "file": job.rel, "true": job.true,
                    "labels": list(job.labels), "seconds": waveform.shape[0] / rate,
                    "confidence_true_before": entries["correct"]["confidence_before"],
                    "correct": entries["correct"], "wrong": entries["wrong"],
                    "between": {k: _finite(v) for k, v in between.items()}}
        # White noise as long as a clip of the class (the engine's own noise start, seeded).
        n = load_audio(job.reference, sample_rate=rate).shape[0]
        noise = generate_start(f"noise:{n / rate:.6f}s", sample_rate=rate, seed=job.seed)
        noise = _fit_length(noise, n)
        entry, _ = _dream_toward(model, noise, job.target, settings=settings,
                                 seed=_derive_seed(job.seed, "dream"),
                                 audio_path=_audio_path(settings, "noise/noise", job.target))
        return {"job": job.job, "kind": "noise", "target": job.target, "seconds": n / rate,
                "dream": entry}
    except DreamsoundError as exc:
        log.warning("%s failed: %s", job.job, exc)
        kind = "clip" if isinstance(job, ClipJob) else "noise"
        return {"job": job.job, "kind": kind, "error": f"{type(exc).__name__}: {exc}"}


# Worker-process state: the model, loaded once per process by the pool initializer.
_WORKER: dict[str, Any] = {}


def _init_worker(model: str, weights: str | None, device: str, threads: int) -> None:
    import torch

    from dreamsound.models.registry import load_model

    # Each worker is one job at a time on one core; more threads per worker would only make
    # the workers fight over the same cores.
    torch.set_num_threads(threads)
    _WORKER["model"] = load_model(model, weights, device)


def _run_in_worker(job: Job, settings: _Settings) -> dict[str, Any]:
    return run_job(job, model=_WORKER["model"], settings=settings)


# --------------------------------------------------------------------------------------------
# The results file
# --------------------------------------------------------------------------------------------


def read_results(path: PathLike) -> list[dict[str, Any]]:
    """The records of a results file, in file order.

    A last line cut short by a crash is ignored (its job simply runs again); a damaged line
    elsewhere raises :class:`DataError`. Later records of the same job replace earlier ones.
    """
    file = Path(path)
    if not file.exists():
        return []
    lines = file.read_text(encoding="utf-8").split("\n")
    records: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # the unterminated tail of an interrupted write
                log.info("%s: ignoring an incomplete last line", file)
                continue
            raise DataError(f"{file} line {number} is not valid JSON; the results file is "
                            "damaged (delete it to start the run again)") from None
        if not isinstance(record, dict) or "job" not in record:
            raise DataError(f"{file} line {number} is not a dreamsound result")
        records[record["job"]] = record
    return list(records.values())


class _ResultsWriter:
    """Appends one JSON line per record; each line is flushed and fsynced before it counts."""

    def __init__(self, path: Path):
        self.path = path
        self._repair()
        self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def _repair(self) -> None:
        """Cut an unterminated last line (a crash mid-write) so new lines start clean."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as handle:
                handle.truncate(keep)

    def append(self, record: Mapping[str, Any]) -> None:
        self._handle.write(json.dumps(record, allow_nan=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def _model_digest(net: Any) -> str:
    """sha256 of a model's parameters and buffers (names and raw bytes), in state-dict order.

    It says which weights produced a run's results whatever their source: ``--weights``, an
    environment variable, the package or the cache (a retrained default has the same name).
    """
    import torch

    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()


def _check_run_file(folder: Path, settings: dict[str, Any]) -> None:
    """Refuse to mix results of a run with other settings into this one."""
    path = folder / RUN_FILE
    results = folder / RESULTS_FILE
    if path.exists() and results.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = None
        if isinstance(previous, dict):
            for key, value in settings.items():
                if previous.get(key) != value:
                    raise OutputError(
                        f"{folder} holds results of another run ({key}: {previous.get(key)!r} "
                        f"there, {value!r} now); use another --out, or delete {results} to "
                        "start again")
    with atomic_write(path) as temp:
        temp.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """What :func:`evaluate` did.

    Attributes
    ----------
    summary : dict
        :func:`dreamsound.report.summarize` of every finished job.
    records : list of dict
        Finished jobs in job-list order.
    paths : dict of str -> Path
        ``results``, ``json``, ``markdown``, ``heatmap``.
    total_jobs : int
        Jobs in the run's job list.
    resumed : int
        Jobs found finished in the results file and skipped.
    ran : int
        Jobs run by this call.
    complete : bool
        Whether every job of the list is finished.
    """

    summary: dict[str, Any]
    records: list[dict[str, Any]]
    paths: dict[str, Path]
    total_jobs: int
    resumed: int
    ran: int
    complete: bool
    info: dict[str, Any] = field(default_factory=dict)


def evaluate(
    data_dir: PathLike,
    *,
    out: PathLike,
    model: str = "instrument",
    weights: PathLike | None = None,
    device: str | None = None,
    per_class: int | None = None,
    seed: int = 0,
    threshold: float = DEFAULT_THRESHOLD,
    max_steps: int = DEFAULT_MAX_STEPS,
    noise: bool = True,
    keep_audio: bool = False,
    workers: int = 1,
    config: DreamConfig | None = None,
    command: str | None = None,
    progress: ProgressCallback | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    max_jobs: int | None = None,
) -> Evaluation:
    """Dream a labelled data set toward correct and wrong classes (and noise toward each class).

    Parameters
    ----------
    data_dir : path
        An IRMAS-layout folder: class folders of wavs (training layout) or wavs with same-named
        ``.txt`` label files (testing layout; the first label is the true class, and no label
        of a clip is ever drawn as its wrong class).
    out : path
        Output folder: ``results.jsonl``, ``run.json``, ``report.json``, ``report.md``,
        ``heatmap.png`` and, with ``keep_audio``, ``audio/``. Running again with the same
        settings resumes an interrupted run.
    model, weights, device
        As for :func:`dreamsound.load_model`. The data set's classes are mapped onto the model's
        with :func:`class_indices`.
    per_class : int, optional
        Clips per class: the first N after a seeded shuffle (default: all).
    seed : int
        Fixes the selection, the wrong classes, the noise and every dream.
    threshold : float
        Dream until the target confidence reaches this (0..1) ...
    max_steps : int
        ... or this many steps.
    noise : bool
        Also dream seeded white noise (the length of a clip of the class) toward every class.
    keep_audio : bool
        Write every dreamed sound (32-bit float WAV) under ``out/audio/``.
    workers : int
        Worker processes; each loads the model once and uses one torch thread. 1 runs in this
        process.
    config : DreamConfig, optional
        How to dream (domain, step size, ...; default :func:`protocol_config`). The experiment
        sets ``until`` (the threshold), ``steps`` (``max_steps``) and the seed of every job.
    command : str, optional
        The command line to print in the report (default: the equivalent Python call).
    progress : callable(ProgressEvent), optional
        After each job this call runs (stage ``"evaluate"``, ``step`` jobs done of ``total``).
    on_record : callable, optional
        Called with each new record after it is safely in the results file (raising from it
        stops the run there, as an interruption would).
    max_jobs : int, optional
        Run at most this many of the pending jobs, then write the (partial) report.

    Returns
    -------
    Evaluation

    Raises
    ------
    DataError
        Missing/empty folder, no usable clips, a single class.
    ModelError, WeightsError, TargetError
        Unknown model, missing weights, a data-set class the model lacks.
    OutputError
        ``out`` cannot be written, or holds results of a run with other settings.
    """
    from dreamsound import __version__
    from dreamsound.experiments.report import summarize, write_report
    from dreamsound.metric_defs import METRIC_DEFINITIONS
    from dreamsound.models.registry import load_model, resolve_device

    if not 0.0 < threshold < 1.0:
        raise DreamsoundError(f"--threshold must be between 0 and 1 (exclusive), got {threshold}")
    if max_steps < 1:
        raise DreamsoundError(f"--max-steps must be at least 1, got {max_steps}")
    if workers < 1:
        raise DreamsoundError(f"--workers must be at least 1, got {workers}")
    config = (config if config is not None else protocol_config()).replace(
        until=threshold, steps=max_steps)

    clips = list_clips(data_dir)
    selected = select_clips(clips, per_class=per_class, seed=seed)
    classes = _class_order(code for clip in clips for code in clip.labels)
    dev = resolve_device(device)
    net = load_model(model, weights, dev)
    index = class_indices(net, classes)
    jobs = build_jobs(selected, classes=classes, seed=seed, noise=noise)

    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--out {folder} is a file; give a folder")
    data_root = str(Path(data_dir).expanduser().resolve())
    run_settings = {"data_dir": data_root, "model": model,
                    "weights": None if weights is None else str(Path(weights).expanduser()),
                    "model_sha256": _model_digest(net), "per_class": per_class, "seed": seed,
                    "threshold": threshold,
                    "max_steps": max_steps, "noise": noise, "classes": classes,
                    "dream_config": config.to_json()}
    _check_run_file(folder, run_settings)
    results_path = folder / RESULTS_FILE
    job_ids = {job.job for job in jobs}
    finished = {r["job"] for r in read_results(results_path)} & job_ids
    pending = [job for job in jobs if job.job not in finished]
    if max_jobs is not None:
        pending = pending[:max(0, max_jobs)]
    log.info("%d jobs: %d finished before, %d to run", len(jobs), len(finished), len(pending))

    settings = _Settings(threshold=threshold, max_steps=max_steps, class_index=index,
                         audio_dir=str(folder / "audio") if keep_audio else None,
                         config=config)
    ran = _run_jobs(pending, net=net, model=model, weights=weights, device=str(dev),
                    settings=settings, workers=workers, results_path=results_path,
                    progress=progress, on_record=on_record)

    by_id = {r["job"]: r for r in read_results(results_path)}
    records = [by_id[job.job] for job in jobs if job.job in by_id]
    summary = summarize(records, classes=classes, threshold=threshold)
    if command is None:
        command = (f"dreamsound.evaluate({data_root!r}, out={str(folder)!r}, model={model!r}, "
                   f"per_class={per_class!r}, seed={seed!r}, threshold={threshold!r}, "
                   f"max_steps={max_steps!r}, noise={noise!r})")
    info = {"command": command, "model": model,
            "weights": run_settings["weights"], "model_sha256": run_settings["model_sha256"],
            "data_dir": data_root,
            "per_class": per_class, "seed": seed, "threshold": threshold,
            "max_steps": max_steps, "noise": noise, "dream_config": config.to_json(),
            "classes": classes, "class_names": {c: net.class_names[i] for c, i in index.items()},
            "class_indices": index, "jobs": len(jobs), "complete": len(records) == len(jobs),
            "version": __version__, "metric_definitions": dict(METRIC_DEFINITIONS)}
    paths = write_report(folder, summary=summary, records=records, info=info, classes=classes)
    paths["results"] = results_path
    return Evaluation(summary=summary, records=records, paths=paths, total_jobs=len(jobs),
                      resumed=len(finished), ran=ran, complete=len(records) == len(jobs),
                      info=info)


def protocol_config(*, domain: str = "spectrogram", step_size: float | None = None
                    ) -> DreamConfig:
    """The probing protocol's dream settings.

    The experiment judges the audio as written, so a dream only stops once the rendered file
    (re-analysed) reaches the threshold too (``until_rendered``), with finer spectrogram steps
    (0.1 dB unless given) that land closer to the original. ``until`` and ``steps`` are set by
    :func:`evaluate` from its threshold and step limit.
    """
    if step_size is None and domain == "spectrogram":
        step_size = 0.1
    return DreamConfig(domain=domain, step_size=step_size, until=DEFAULT_THRESHOLD,
                       until_rendered=True)


def _run_jobs(pending: Sequence[Job], *, net: Any, model: str, weights: PathLike | None,
              device: str, settings: _Settings, workers: int, results_path: Path,
              progress: ProgressCallback | None,
              on_record: Callable[[dict[str, Any]], None] | None) -> int:
    """Run ``pending`` jobs inline or in a process pool; append each record as it finishes."""
    if not pending:
        return 0
    writer = _ResultsWriter(results_path)
    done = 0

    def finish(record: dict[str, Any]) -> None:
        nonlocal done
        writer.append(record)
        done += 1
        if progress is not None:
            progress(ProgressEvent(stage="evaluate", step=done, total=len(pending),
                                   message=record["job"]))
        if on_record is not None:
            on_record(record)

    try:
        if progress is not None:
            progress(ProgressEvent(stage="evaluate", step=0, total=len(pending)))
        if workers == 1 or len(pending) == 1:
            for job in pending:
                finish(run_job(job, model=net, settings=settings))
            return done
        _run_pool(pending, model=model, weights=weights, device=device, settings=settings,
                  workers=min(workers, len(pending)), finish=finish)
        return done
    finally:
        writer.close()


def _run_pool(pending: Sequence[Job], *, model: str, weights: PathLike | None, device: str,
              settings: _Settings, workers: int,
              finish: Callable[[dict[str, Any]], None]) -> None:
    # "spawn", not "fork": forking a process that has already run torch (OpenMP thread pools,
    # possibly CUDA) can deadlock the children.
    executor = ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker,
        initargs=(model, None if weights is None else str(weights), device, 1))
    try:
        futures: set[Future] = {executor.submit(_run_in_worker, job, settings)
                                for job in pending}
        while futures:
            finished, futures = wait(futures, return_when=FIRST_COMPLETED)
            for future in finished:
                finish(future.result())
    finally:
        # On an error or an interruption, drop the queued jobs; what finished is in the file.
        executor.shutdown(wait=True, cancel_futures=True)
