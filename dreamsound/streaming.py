"""Long sounds in bounded memory: dream, sonify and classify a sound file of any length.

A file longer than one segment (:data:`~dreamsound.segments.SEGMENT_SECONDS`, 10 s) is read in
blocks (:class:`~dreamsound.inputs.FileBlocks`: decoded, mixed to mono and resampled to the
model's rate as it streams) and cut into segments that overlap by
:data:`~dreamsound.segments.OVERLAP_SECONDS` (1 s) (:class:`~dreamsound.segments.SegmentPlan`).
Each segment is dreamed by the one-shot path (:meth:`dreamsound.api.Dreamer.dream`) in its own
context: the objective sees the whole segment, overlap included. The rendered segments are joined
by a raised-cosine cross-fade over the whole overlap (:class:`~dreamsound.segments.Crossfade`)
and written as they are finished (:func:`~dreamsound.segments.open_writer`: a temporary file
beside the output, renamed at the end, removed on any error, never over an input). Memory holds
one segment's dream whatever the file's length. Segment ``i`` is dreamed with the seed
:func:`~dreamsound.segments.segment_seed` ``(seed, i)``: the same seed gives the same bytes.

Files that fit in one segment, arrays and generated starts take the one-shot path unchanged.

The report of a long dream has the documented ``dream --json`` keys plus ``segments``:

* measured on the whole files, exactly as the one-shot path measures a short one:
  ``confidence_before`` / ``top_before`` (the original), ``confidence_rendered``,
  ``top_rendered``, ``success_rendered``, ``rmse_db_rendered`` and ``mse_db2_rendered`` (the
  written file, re-read; ``rendered_from`` is ``"file"``). A clip score is the mean over every
  patch of the file; ``mse_db2_rendered`` is the mean of the squared dB differences over every
  frame and band of the two whole-file log-mels, summed block by block in float64
  (:func:`~dreamsound.segments.measure_rendered`), and ``rmse_db_rendered`` its root.
* aggregated over the segments' dreamed spectrograms (there is no whole-file dreamed
  spectrogram; overlaps count in both segments): ``confidence_after`` / ``top_after`` /
  ``success_after`` from the mean over every patch of every segment's dreamed log-mel;
  ``mse_db2`` is the frame-weighted mean of the segments' ``mse_db2`` (so the mean squared dB
  change over every dreamed frame) and ``rmse_db`` its root; ``objective_before`` /
  ``objective_after`` are patch-weighted means of the segments'; ``steps`` is the sum over
  segments, ``seconds_per_step`` the mean over all steps, ``stopped`` is ``"until"`` only when
  every segment reached ``until``, ``seconds`` the wall time of the whole dream.
* ``segments``: ``count``, ``length_s``, ``hop_s``, ``overlap_s``, ``crossfade`` (``"hann"``),
  the smallest segment confidences (``confidence_after_min``, ``confidence_rendered_min``) and
  ``items``, one per segment: ``index``, ``start_s``, ``end_s``, ``seed``, ``steps``,
  ``stopped``, ``seconds``, ``confidence_before`` / ``_after`` / ``_rendered`` and ``rmse_db`` /
  ``rmse_db_rendered`` of that segment's own one-shot dream (rendered in memory).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dreamsound import metrics
from dreamsound.audio import is_silent
from dreamsound.classification import Classification
from dreamsound.errors import ConfigError, TargetError
from dreamsound.events import ProgressCallback, ProgressEvent
from dreamsound.inputs import FileBlocks
from dreamsound.segments import (
    OVERLAP_SECONDS,
    SEGMENT_SECONDS,
    Crossfade,
    SegmentPlan,
    StepFiles,
    check_max_seconds,
    classify_file,
    is_long,
    join_step_files,
    measure_rendered,
    open_writer,
    segment_progress,
    segment_seed,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from dreamsound.api import Dreamer, Target
    from dreamsound.engine.objectives import TargetTerm
    from dreamsound.models.base import AudioClassifier

    #: Where a dream's files go: a stem, or ``stem(input label, name)`` of the input as the
    #: report names it and the ``dream-...`` / ``sonify-...`` part of the file name.
    StemChoice = Path | str | Callable[[str, str], Path]

__all__ = ["classify_file", "dream_file", "is_long", "sonify_file"]


def dream_file(dreamer: Dreamer, source: str | Path, *, target: Target | None = None,
               layer: str | None = None, channel: int | None = None,
               target_sound: str | Path | None = None, stem: StemChoice,
               plot: bool = False, progress: ProgressCallback | None = None,
               segment_s: float = SEGMENT_SECONDS, overlap_s: float = OVERLAP_SECONDS,
               max_seconds: float | None = None) -> dict[str, Any]:
    """Dream a sound file (or generated start) of any length, write its files, return the
    report (the ``dream --json`` object).

    Up to ``segment_s`` seconds (and for anything but a long file libsndfile reads):
    :meth:`Dreamer.dream` then :meth:`Dreamer.save`, exactly as before. Longer files stream
    (module docstring) and write ``<stem>.wav``, ``<stem>.gradient.wav`` (each segment's
    first-step sonified gradient, cross-faded alike) and ``<stem>.json``.

    Parameters
    ----------
    stem : path or callable(input label, name) -> path
        Where the files go (no extension), or a function of the input as the report names it
        and the ``dream-...`` part of the name (:func:`dreamsound.outputs.dream_name`), as the
        CLI's ``output_stem``.
    progress : callable(ProgressEvent), optional
        One bar over the whole file: ``step`` / ``total`` count the steps of every segment,
        ``segment`` / ``segments`` say which segment runs.
    segment_s, overlap_s : float
        Segment length and overlap, s.
    max_seconds : float, optional
        Refuse longer files (default: no limit).
    """
    from dreamsound.outputs import dream_name

    query = target if isinstance(target, str) else None
    check_max_seconds(source, max_seconds)
    if not is_long(source, dreamer.model, segment_s=segment_s):
        result = dreamer.dream(source, target=target, layer=layer, channel=channel,
                               target_sound=target_sound, progress=progress)
        path = _stem(stem, result.report.input, dream_name(result.report, query=query))
        result = dreamer.save(result, path, plot=plot,
                              inputs=[target_sound] if target_sound else [])
        return result.report.to_json()
    c = dreamer.config
    for flag, asked in (("--plot", plot), ("--save-every", c.snapshot_every)):
        if asked:
            raise ConfigError(f"{flag} keeps whole spectrograms or snapshots in memory; it is "
                              f"available for files up to {segment_s:g} s, not for streamed "
                              "long files")
    job = LongDream(dreamer, source, target=target, layer=layer, channel=channel,
                    target_sound=target_sound, max_seconds=max_seconds, segment_s=segment_s,
                    overlap_s=overlap_s)
    name = dream_name(SimpleNamespace(  # type: ignore[arg-type]  # the fields dream_name reads
        layer=layer, channel=channel, targets=[{"name": t.name} for t in job.targets],
        domain=c.domain, rule=c.rule, flip=c.flip), query=query)
    return job.dream(_stem(stem, str(job.path), name), progress=progress)


def sonify_file(dreamer: Dreamer, source: str | Path, *, target: Target | None = None,
                layer: str | None = None, channel: int | None = None, steps: int = 1,
                stem: StemChoice, progress: ProgressCallback | None = None,
                segment_s: float = SEGMENT_SECONDS, overlap_s: float = OVERLAP_SECONDS,
                max_seconds: float | None = None) -> dict[str, Any]:
    """Sonify the gradient of a sound file of any length, write ``<stem>.wav``, return the
    report (the ``sonify --json`` object, plus ``segments`` for a long file).

    Up to ``segment_s``: :meth:`Dreamer.sonify` and :func:`dreamsound.outputs.
    write_sonification`, exactly as before. Longer files stream: each segment is sonified (its
    ``steps`` gradients, each peak-normalised on its own as in the one-shot path), the segments
    of each step are cross-faded, and with ``steps > 1`` the steps' whole-file sequences wait
    in temporary float files and are joined as :func:`dreamsound.sonification.join_segments`
    joins them (10 ms fades at each end of each step).
    """
    from dreamsound.outputs import sonify_name, write_sonification

    if steps < 1:
        raise ConfigError(f"--steps must be >= 1 to sonify, got {steps}")
    dreamer.config.check_sonifiable()
    query = target if isinstance(target, str) else None
    check_max_seconds(source, max_seconds)
    if not is_long(source, dreamer.model, segment_s=segment_s):
        result = dreamer.sonify(source, target=target, layer=layer, channel=channel,
                                steps=steps, progress=progress)
        return write_sonification(result, _stem(stem, result.report["input"],
                                                sonify_name(result.report, query=query)))
    job = LongDream(dreamer, source, target=target, layer=layer, channel=channel,
                    target_sound=None, max_seconds=max_seconds, segment_s=segment_s,
                    overlap_s=overlap_s)
    name = sonify_name({"layer": layer, "channel": channel, "domain": dreamer.config.domain,
                        "target": job.targets[0].name if job.targets else None}, query=query)
    return job.sonify(_stem(stem, str(job.path), name), steps=steps, progress=progress)


def classify_source(model: AudioClassifier, source: str | Path, *,
                    max_seconds: float | None = None) -> Classification | None:
    """:func:`~dreamsound.segments.classify_file` for a file longer than one segment (same clip
    and patch scores as the one-shot path, in bounded memory); None for anything else (the
    caller takes the one-shot path)."""
    check_max_seconds(source, max_seconds)
    if not is_long(source, model):
        return None
    return classify_file(model, source, max_seconds=max_seconds)


def _stem(stem: StemChoice, label: str, name: str) -> Path:
    return stem(label, name) if callable(stem) else Path(stem)


def _beside(stem: Path, suffix: str) -> Path:
    return stem.with_name(stem.name + suffix)


def _fit(audio: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad to ``n`` samples (a segment's outputs cover exactly its span)."""
    return audio[:n] if audio.shape[0] >= n else np.pad(audio, (0, n - audio.shape[0]))


@dataclass
class SegmentOutcome:
    """What one segment's dream adds to the report."""

    entry: dict[str, Any]
    patches: int
    frames: int
    after_sum: np.ndarray  # sum over the segment's patches of its dreamed scores [C]
    mse_db2: float
    objectives: tuple[float, float] | None
    step_seconds: float
    ensemble: list[dict] = field(default_factory=list)


class LongDream:
    """One long file's dream or sonification: the plan, the objective resolved on the whole
    file (a layer, the targets, or the original's top class over every patch), the whole-file
    classification of the original, and the loop over segments. Every check that can fail
    runs here, before a file is opened for writing."""

    def __init__(self, dreamer: Dreamer, source: str | Path, *, target: Target | None,
                 layer: str | None, channel: int | None, target_sound: str | Path | None,
                 max_seconds: float | None, segment_s: float, overlap_s: float):
        from dreamsound.api import _check_request
        from dreamsound.engine.objectives import Objective, resolve_targets
        from dreamsound.engine.transfer import target_concept

        self.started = time.perf_counter()
        _check_request(dreamer.config, target=target, layer=layer, target_sound=target_sound)
        self.dreamer, net = dreamer, dreamer.model
        self.path = Path(source).expanduser()
        self.layer, self.channel, self.max_seconds = layer, channel, max_seconds
        with FileBlocks(self.path, net.sample_rate, max_seconds=max_seconds) as probe:
            n_samples = probe.n_samples
        self.plan = SegmentPlan.for_model(n_samples, net, segment_s=segment_s,
                                          overlap_s=overlap_s)
        self.before = classify_file(net, self.path, max_seconds=max_seconds)
        self.targets: list[TargetTerm] = []
        self.segment_target: Any = None
        if layer is not None:
            Objective(net, layer=layer, channel=channel)  # a wrong layer fails here
            self.objective = "layer"
        else:
            if channel is not None:
                raise TargetError("--channel needs --layer")
            self.segment_target = target if target is not None \
                else int(np.argmax(self.before.scores))
            self.targets = resolve_targets(net, self.segment_target)
            self.objective = "target" if target is not None else "top-class"
        self.positives = [t for t in self.targets if t.weight > 0]
        if dreamer.judges:
            if not self.positives:
                raise TargetError("judges compare a target class across models; a layer dream "
                                  "has none")
            self.concept = target_concept(net, self.positives[0].index)
        self.target_sound = target_sound
        self.target_wave = None if target_sound is None else \
            dreamer.load(target_sound).waveform

    # -- segments -----------------------------------------------------------------------------
    def _segment_dreamer(self, index: int) -> Dreamer:
        """The dreamer of segment ``index``: the same models (no judges: they hear the whole
        written file) and settings, with the segment's seed."""
        from dreamsound.api import Dreamer

        d = self.dreamer
        config = d.config.replace(seed=segment_seed(d.config.seed, index))
        return Dreamer(list(zip(d.models, d.model_weights)), config)

    def _target_slice(self, start: int, n: int) -> np.ndarray | None:
        """The target rule's second sound under this segment (looped to the file's length)."""
        if self.target_wave is None:
            return None
        return self.target_wave[np.arange(start, start + n) % self.target_wave.shape[0]]

    def _passes(self, wave: np.ndarray) -> bool:
        # Digital silence in the envelope and samples domains: a gain or a step on nothing is
        # nothing (the one-shot path refuses it); a long recording passes it through.
        return self.dreamer.config.domain != "spectrogram" and is_silent(wave)

    def _per_segment(self, steps: int) -> int:
        c = self.dreamer.config
        return steps * (c.octaves if c.domain == "spectrogram" else 1)

    def _end_of_segment(self, progress: ProgressCallback | None, index: int, per: int) -> None:
        if progress is not None:
            count = self.plan.count
            progress(ProgressEvent(stage="dream", step=(index + 1) * per, total=count * per,
                                   segment=index, segments=count))

    def _entry(self, index: int, report: Any) -> dict[str, Any]:
        start, end = self.plan.bounds(index)
        rate = self.dreamer.model.sample_rate
        keys = ("steps", "stopped", "seconds", "confidence_before", "confidence_after",
                "confidence_rendered", "rmse_db", "rmse_db_rendered")
        return {"index": index, "start_s": start / rate, "end_s": end / rate,
                "seed": segment_seed(self.dreamer.config.seed, index),
                **{k: report.get(k) for k in keys}}

    def _outcome(self, index: int, wave: np.ndarray, result: Any) -> SegmentOutcome:
        net = self.dreamer.model
        dreamed = torch.from_numpy(result.spectrograms["dreamed"]).to(net.device) \
            if result is not None else net.log_mel(torch.from_numpy(wave).to(net.device))
        with torch.no_grad():
            scores = net.scores_from_logits(net.logits_from_log_mel(dreamed)).double().cpu()
        if result is None:  # passed through: the dream is the original
            entry = self._entry(index, {"steps": 0, "stopped": "steps", "seconds": 0.0})
            return SegmentOutcome(entry, scores.shape[0], dreamed.shape[-2],
                                  scores.sum(dim=0).numpy(), 0.0, None, 0.0)
        r = result.report
        return SegmentOutcome(self._entry(index, r), scores.shape[0], dreamed.shape[-2],
                              scores.sum(dim=0).numpy(), r.mse_db2,
                              (r.objective_before, r.objective_after),
                              (r.seconds_per_step or 0.0) * r.steps, list(r.ensemble))

    # -- dream --------------------------------------------------------------------------------
    def dream(self, stem: Path, *, progress: ProgressCallback | None) -> dict[str, Any]:
        """Dream every segment, write ``<stem>.wav``, ``.gradient.wav`` and ``.json``."""
        from dreamsound.outputs import report_path, write_json

        net, plan = self.dreamer.model, self.plan
        rate = net.sample_rate
        audio_path, gradient_path = _beside(stem, ".wav"), _beside(stem, ".gradient.wav")
        json_path = report_path(stem)
        protected = [self.path, self.target_sound]
        per = self._per_segment(self.dreamer.config.steps)
        outcomes: list[SegmentOutcome] = []
        with FileBlocks(self.path, rate, max_seconds=self.max_seconds) as reader, \
                open_writer(audio_path, rate, inputs=protected) as write_audio, \
                open_writer(gradient_path, rate, inputs=protected) as write_gradient:
            audio = Crossfade(write_audio, plan.overlap)
            gradient = Crossfade(write_gradient, plan.overlap)
            for index in range(plan.count):
                start, end = plan.bounds(index)
                wave = reader.window(start, end)
                last = index == plan.count - 1
                if self._passes(wave):
                    audio.add(wave, last=last)
                    gradient.add(np.zeros_like(wave), last=last)
                    outcomes.append(self._outcome(index, wave, None))
                else:
                    result = self._segment_dreamer(index).dream(
                        wave, target=self.segment_target, layer=self.layer,
                        channel=self.channel, target_sound=self._target_slice(start, end - start),
                        progress=segment_progress(progress, index, plan.count, per))
                    audio.add(_fit(result.audio, end - start), last=last)
                    gradient.add(_fit(result.gradient_audio, end - start), last=last)
                    outcomes.append(self._outcome(index, wave, result))
                self._end_of_segment(progress, index, per)
        seconds = time.perf_counter() - self.started
        with FileBlocks(self.path, rate) as original, FileBlocks(audio_path, rate) as written:
            rendered, mse_rendered = measure_rendered(net, original, written)
        report = self._dream_report(outcomes, rendered, mse_rendered, seconds)
        report["outputs"] = {"audio": str(audio_path), "gradient": str(gradient_path),
                             "report": str(json_path)}
        if self.dreamer.judges:
            report["judges"] = self._verdicts(audio_path)
        write_json(report, json_path, inputs=[p for p in protected if p is not None])
        return report

    def _clip_json(self, clip: np.ndarray) -> tuple[float | None, list[dict], bool | None]:
        """``(confidence, top-3, success)`` of clip scores, as :class:`~dreamsound.engine.judge.
        Judge` gives them for a whole sound."""
        names = self.dreamer.model.class_names
        confidence = min(float(clip[t.index]) for t in self.positives) if self.positives \
            else None
        top = [{"name": n, "score": s} for n, s in metrics.top_k(torch.from_numpy(clip), names,
                                                                 3)]
        success = metrics.is_success(torch.from_numpy(clip), self.positives[0].index) \
            if len(self.positives) == 1 else None
        return confidence, top, success

    def _dream_report(self, outcomes: list[SegmentOutcome], rendered: np.ndarray,
                      mse_rendered: float, seconds: float) -> dict[str, Any]:
        from dreamsound.engine.result import DreamReport

        c, net = self.dreamer.config, self.dreamer.model
        before = self.before.scores.astype(np.float64)
        patches = sum(o.patches for o in outcomes)
        after = sum(o.after_sum for o in outcomes) / patches
        mse = sum(o.mse_db2 * o.frames for o in outcomes) / sum(o.frames for o in outcomes)
        dreamed = [o for o in outcomes if o.objectives is not None]
        weight = sum(o.patches for o in dreamed) or 1
        objective_before, objective_after = (
            sum(o.objectives[i] * o.patches for o in dreamed) / weight  # type: ignore[index]
            for i in (0, 1))
        steps = sum(o.entry["steps"] for o in outcomes)
        (conf_before, top_before, _), (conf_after, top_after, ok_after), \
            (conf_rendered, top_rendered, ok_rendered) = map(self._clip_json,
                                                             (before, after, rendered))
        report = DreamReport(
            model=net.name, input=str(self.path), objective=self.objective,
            target=" + ".join(t.name for t in self.targets) if self.targets else None,
            targets=[{"name": t.name, "index": t.index, "weight": t.weight,
                      "confidence_before": float(before[t.index]),
                      "confidence_after": float(after[t.index]),
                      "confidence_rendered": float(rendered[t.index])} for t in self.targets],
            layer=self.layer, channel=self.channel, domain=c.domain,
            rule=c.rule if c.domain == "waveform" else None, flip=c.flip, steps=steps,
            steps_requested=c.steps,
            stopped="until" if all(o.entry["stopped"] == "until" for o in outcomes)
            else "steps", seconds=seconds,
            seconds_per_step=sum(o.step_seconds for o in outcomes) / steps if steps else None,
            confidence_before=conf_before, confidence_after=conf_after,
            confidence_rendered=conf_rendered, rendered_from="file", success_after=ok_after,
            success_rendered=ok_rendered, top_before=top_before, top_after=top_after,
            top_rendered=top_rendered, objective_before=objective_before,
            objective_after=objective_after, rmse_db=float(np.sqrt(mse)), mse_db2=mse,
            rmse_db_rendered=float(np.sqrt(mse_rendered)), mse_db2_rendered=mse_rendered,
            sample_rate=net.sample_rate, duration_s=self.plan.n_samples / net.sample_rate,
            settings=c.to_json(), ensemble=self._ensemble(outcomes))
        return {**report.to_json(), "segments": self._segments_json(outcomes)}

    def _ensemble(self, outcomes: list[SegmentOutcome]) -> list[dict]:
        """Each dreaming model's confidences, patch-weighted means over the segments."""
        rows = [(o.patches, o.ensemble) for o in outcomes if o.ensemble]
        if not rows:
            return []
        total = sum(p for p, _ in rows)
        return [{**{k: member[k] for k in ("model", "weight", "target")},
                 **{k: sum(p * e[i][k] for p, e in rows) / total
                    for k in ("confidence_before", "confidence_rendered")}}
                for i, member in enumerate(rows[0][1])]

    def _segments_json(self, outcomes: list[SegmentOutcome]) -> dict[str, Any]:
        rate = self.dreamer.model.sample_rate
        items = [o.entry for o in outcomes]

        def least(key: str) -> float | None:
            values = [i[key] for i in items if i.get(key) is not None]
            return min(values) if values else None

        return {"count": self.plan.count, "length_s": self.plan.length / rate,
                "hop_s": self.plan.hop / rate, "overlap_s": self.plan.overlap / rate,
                "crossfade": "hann", "confidence_after_min": least("confidence_after"),
                "confidence_rendered_min": least("confidence_rendered"), "items": items}

    def _verdicts(self, written: Path) -> list[dict]:
        """What each judge hears of the target in the original and in the written file, whole
        files in blocks (:func:`dreamsound.engine.transfer.judge_sound` on clip scores)."""
        from dreamsound.engine.transfer import Verdict, _score_and_rank, judge_knows
        from dreamsound.models.concepts import comparable_indices, concept_indices

        concept, out = self.concept, []
        for judge in self.dreamer.judges:
            if not judge_knows(judge, concept):
                out.append({"model": judge.name, "concept": concept.name, "target": None,
                            "moved": None, "note": f"{judge.name} has no class for "
                                                   f"{concept.name}"})
                continue
            wanted = concept_indices(concept, judge.class_names, judge.class_codes)
            comparable = comparable_indices(judge.class_names, judge.class_codes)
            scores = [torch.from_numpy(classify_file(judge, p).scores).double()
                      for p in (self.path, written)]
            (b, rank_b), (a, rank_a) = (_score_and_rank(s, wanted, comparable) for s in scores)
            tops = [[{"name": n, "score": v} for n, v in metrics.top_k(s, judge.class_names, 3)]
                    for s in scores]
            out.append(Verdict(
                model=judge.name, target=" / ".join(judge.class_names[i] for i in wanted),
                concept=concept.name, confidence_before=b, confidence_after=a,
                rank_before=rank_b, rank_after=rank_a, top_before=tops[0], top_after=tops[1],
                moved=metrics.judge_moved(b, a, rank_b, rank_a)).to_json())
        return out

    # -- sonify -------------------------------------------------------------------------------
    def sonify(self, stem: Path, *, steps: int, progress: ProgressCallback | None
               ) -> dict[str, Any]:
        """Sonify every segment's ``steps`` gradients and write ``<stem>.wav``."""
        net, plan = self.dreamer.model, self.plan
        rate = net.sample_rate
        path = _beside(stem, ".wav")
        per = self._per_segment(steps)
        entries = []
        with FileBlocks(self.path, rate, max_seconds=self.max_seconds) as reader, \
                StepFiles(steps) as files, \
                open_writer(path, rate, inputs=[self.path]) as write:
            fades = [Crossfade(files.writer(k), plan.overlap) for k in range(steps)]
            for index in range(plan.count):
                start, end = plan.bounds(index)
                wave = reader.window(start, end)
                if self._passes(wave):
                    pieces = [np.zeros_like(wave)] * steps
                    entries.append(self._entry(index, {"steps": 0, "seconds": 0.0}))
                else:
                    result = self._segment_dreamer(index).sonify(
                        wave, target=self.segment_target, layer=self.layer,
                        channel=self.channel, steps=steps,
                        progress=segment_progress(progress, index, plan.count, per))
                    pieces = result.segments
                    entries.append(self._entry(index, result.report))
                for fade, piece in zip(fades, pieces):
                    fade.add(_fit(piece, end - start), last=index == plan.count - 1)
                self._end_of_segment(progress, index, per)
            join_step_files(files.paths, write, rate)
        report = {"model": net.name, "input": str(self.path), "objective": self.objective,
                  "target": " + ".join(t.name for t in self.targets) if self.targets else None,
                  "layer": self.layer, "channel": self.channel,
                  "domain": self.dreamer.config.domain, "steps": steps,
                  "seconds": time.perf_counter() - self.started, "sample_rate": rate,
                  "duration_s": steps * plan.n_samples / rate, "outputs": {"audio": str(path)}}
        if self.dreamer.judges:
            report["judges"] = self._verdicts(path)
        keep = ("index", "start_s", "end_s", "seed", "steps", "seconds")
        report["segments"] = {"count": plan.count, "length_s": plan.length / rate,
                              "hop_s": plan.hop / rate, "overlap_s": plan.overlap / rate,
                              "crossfade": "hann",
                              "items": [{k: e[k] for k in keep} for e in entries]}
        return report
