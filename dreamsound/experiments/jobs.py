"""The jobs of the probing experiment: what they are, how they are drawn, how one runs.

A job is one clip (both of its dreams, toward its true class and a seeded wrong class, so the
distance between the two dreamed versions can be measured) or one noise target. The job list is
fixed entirely by the data, the options and the seed (:func:`build_jobs`); every job carries its
own seed, so where and in which order it runs (inline, a process pool, a Ray cluster) never
changes its result. :func:`run_job` turns a job into its record (shapes in
:mod:`dreamsound.experiments.evaluate`); it is a plain function of (job, model, settings), which
is what every executor runs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamsound.config import DreamConfig
from dreamsound.errors import DataError, DreamsoundError
from dreamsound.experiments.dataset import LabelledClip
from dreamsound.experiments.seeds import derive_seed

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_STEPS",
    "DEFAULT_THRESHOLD",
    "ClipJob",
    "Job",
    "JobSettings",
    "NoiseJob",
    "build_jobs",
    "protocol_config",
    "run_job",
]

#: Target confidence a dream runs until (0..1); the published bar is "> 90 %".
DEFAULT_THRESHOLD = 0.9
#: Most gradient steps per dream when the threshold is not reached first.
DEFAULT_MAX_STEPS = 300


@dataclass(frozen=True)
class ClipJob:
    """Dream one clip toward its true class and toward ``wrong``.

    Attributes
    ----------
    job : str
        The job's id, ``"clip:<rel>"``: its key in the results file.
    path : str
        The sound file (as the driver sees it; workers elsewhere need the same path).
    rel : str
        The clip's path relative to the data folder.
    labels : tuple of str
        Its class codes, the true class first.
    wrong : str
        The seeded wrong class (never one of ``labels``).
    seed : int
        The job's own seed (each dream's seed is derived from it).
    """

    job: str
    path: str
    rel: str
    labels: tuple[str, ...]
    wrong: str
    seed: int

    @property
    def true(self) -> str:
        """The clip's true class: its first label."""
        return self.labels[0]


@dataclass(frozen=True)
class NoiseJob:
    """Dream white noise, as long as the clip ``reference``, toward ``target``.

    Attributes
    ----------
    job : str
        The job's id, ``"noise:<target>"``.
    target : str
        The class code dreamed toward.
    reference : str
        A clip of that class (or the first clip): the noise has its length.
    seed : int
        Fixes the noise and the dream.
    """

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
        The selected clips (:func:`dreamsound.experiments.dataset.select_clips`).
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
        pick = np.random.default_rng(derive_seed(seed, "wrong", clip.rel)).integers(
            len(candidates))
        job_id = f"clip:{clip.rel}"
        jobs.append(ClipJob(job=job_id, path=str(clip.path), rel=clip.rel, labels=clip.labels,
                            wrong=candidates[int(pick)], seed=derive_seed(seed, job_id)))
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
                                 seed=derive_seed(seed, job_id)))
    return jobs


def protocol_config(*, style: str = "exact", domain: str | None = None,
                    step_size: float | None = None) -> DreamConfig:
    """The probing protocol's dream settings.

    ``exact`` is Cochran & Kim's protocol, unchanged: the experiment judges the audio as
    written, so a dream only stops once the rendered file (re-analysed) reaches the threshold too
    (``until_rendered``), with finer spectrogram steps (0.1 dB unless given) that land closer to
    the original. ``robust`` dreams a sound (``--style robust``: the envelope domain with random
    changes), which is its own rendering. ``until`` and ``steps`` are set by
    :func:`dreamsound.experiments.evaluate.evaluate` from its threshold and step limit.
    """
    if style == "robust":
        return DreamConfig(style="robust", domain=domain, step_size=step_size,
                           until=DEFAULT_THRESHOLD)
    domain = domain or "spectrogram"
    if step_size is None and domain == "spectrogram":
        step_size = 0.1
    return DreamConfig(style="exact", domain=domain, step_size=step_size,
                       until=DEFAULT_THRESHOLD, until_rendered=True)


@dataclass(frozen=True)
class JobSettings:
    """What every job needs besides the model (picklable: sent once to every worker).

    Attributes
    ----------
    threshold : float
        Target confidence (0..1) a dream runs until.
    max_steps : int
        Most steps per dream.
    class_index : dict of str -> int
        Data-set class code -> the model's output index.
    audio_dir : str, optional
        Where to write the dreamed sounds (None: not written).
    config : DreamConfig
        How to dream; each dream sets ``until``, ``steps`` and its own seed on it.
    judges : tuple of str
        Models outside the dream that score each dreamed sound and its null baseline (loaded
        once per worker process, with their registry weights).
    references : dict of str -> tuple of str
        Class code -> clips of that class: each judged dream is also read against one of them
        (seeded, never the dream's own clip) mixed into its start at the dream's own rmse_db.
    """

    threshold: float
    max_steps: int
    class_index: dict[str, int]
    audio_dir: str | None
    config: DreamConfig = field(default_factory=lambda: protocol_config())
    judges: tuple[str, ...] = ()
    references: dict[str, tuple[str, ...]] = field(default_factory=dict)


#: Judge models loaded in this (worker) process, by name: each worker loads a judge once.
_LOADED_JUDGES: dict[str, Any] = {}


def _judge_models(names: Sequence[str], device: Any) -> list[Any]:
    from dreamsound.models.registry import load_model

    for name in names:
        if name not in _LOADED_JUDGES:
            _LOADED_JUDGES[name] = load_model(name, None, device)
    return [_LOADED_JUDGES[name] for name in names]


def _reference(settings: JobSettings, target: str, *, seed: int, own: str | None,
               rate: int) -> np.ndarray | None:
    """A seeded clip of class ``target`` other than ``own`` at ``rate`` Hz, or None (no such
    clip, or one that cannot be read: the reference is left out, the dream is not)."""
    from dreamsound.audio import load_audio

    candidates = [c for c in settings.references.get(target, ()) if c != own]
    if not candidates:
        return None
    chosen = candidates[int(np.random.default_rng(seed).integers(len(candidates)))]
    try:
        return load_audio(chosen, sample_rate=rate)
    except DreamsoundError as exc:
        log.warning("reference %s left out: %s", chosen, exc)
        return None


def _transfer(model: Any, index: int, start: np.ndarray, dreamed: np.ndarray, rmse_db: float,
              *, judges: Sequence[str], seed: int, reference: np.ndarray | None
              ) -> dict[str, Any]:
    """Per judge: what it hears of the target in the dream, in the null baseline (the start
    plus white noise of the dream's own rmse_db, :func:`matched_noise`) and, given a
    ``reference`` clip of the target class, in the start with that clip mixed in at the same
    rmse_db (:func:`mixed_at_distance`)."""
    from dreamsound.engine.transfer import (
        judge_knows,
        judge_sound,
        matched_noise,
        mixed_at_distance,
        target_concept,
    )

    concept = target_concept(model, index)
    null = matched_noise(start, rmse_db, model, seed=seed)
    real = None if reference is None else mixed_at_distance(start, reference, rmse_db, model)
    out: dict[str, Any] = {}
    for judge in _judge_models(judges, model.device):
        if not judge_knows(judge, concept):
            continue
        dream = judge_sound(judge, concept, start, dreamed, model.sample_rate)
        chance = judge_sound(judge, concept, start, null, model.sample_rate)
        out[judge.name] = {"confidence_before": dream.confidence_before,
                           "confidence_after": dream.confidence_after,
                           "gain": dream.confidence_after - dream.confidence_before,
                           "moved": dream.moved,
                           "null_gain": chance.confidence_after - chance.confidence_before,
                           "null_moved": chance.moved}
        if real is not None:
            added = judge_sound(judge, concept, start, real, model.sample_rate)
            out[judge.name].update(
                reference_gain=added.confidence_after - added.confidence_before,
                reference_moved=added.moved)
    return out


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


def _dream_toward(model: Any, start: np.ndarray, target: str, *, settings: JobSettings,
                  seed: int, audio_path: Path | None, source: str | None = None
                  ) -> tuple[dict[str, Any], Any]:
    """Dream ``start`` toward class code ``target``: ``(record entry, DreamResult)``.

    The entry judges the audio as rendered (what a listener gets and what is written), using
    the engine's own analysis of it: ``confidence`` and ``success`` are measured on the rendered
    sound, ``rmse_db``/``mse_db2`` from the start to the rendered sound; the engine's figures for
    the ascended spectrogram are kept as ``confidence_after`` and ``rmse_db_spectrogram``.
    ``source`` is the start's own clip (never its own reference; None for noise).
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
    if settings.judges and entry["rmse_db"] is not None:
        reference = _reference(settings, target, seed=derive_seed(seed, "reference"),
                               own=source, rate=model.sample_rate)
        entry["judges"] = _transfer(model, index, start, result.audio, entry["rmse_db"],
                                    judges=settings.judges, seed=seed, reference=reference)
    if audio_path is not None:
        save_audio(audio_path, result.audio, result.sample_rate, subtype="FLOAT")
        entry["audio"] = str(audio_path)
    return entry, result


def _audio_path(settings: JobSettings, stem: str, target: str) -> Path | None:
    """Where a dreamed sound is written (None when sounds are not kept)."""
    if settings.audio_dir is None:
        return None
    return Path(settings.audio_dir) / f"{stem}__to_{target}.wav"


def run_job(job: Job, *, model: Any, settings: JobSettings) -> dict[str, Any]:
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
                    seed=derive_seed(job.seed, kind),
                    audio_path=_audio_path(settings, stem, target), source=job.path)
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
                                 seed=derive_seed(job.seed, "dream"),
                                 audio_path=_audio_path(settings, "noise/noise", job.target))
        return {"job": job.job, "kind": "noise", "target": job.target, "seconds": n / rate,
                "dream": entry}
    except DreamsoundError as exc:
        log.warning("%s failed: %s", job.job, exc)
        kind = "clip" if isinstance(job, ClipJob) else "noise"
        return {"job": job.job, "kind": kind, "error": f"{type(exc).__name__}: {exc}"}
