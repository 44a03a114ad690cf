"""The Python API: a :class:`Dreamer` holds a loaded model and a :class:`DreamConfig` and runs
dreams, sonifications and classifications; :func:`dream`, :func:`sonify` and :func:`classify`
are one-shot wrappers with the keyword names of the command line.

Everything here composes the engine's parts (:mod:`dreamsound.engine`): it loads the input,
builds the objective and the domain, runs the one ascent loop, renders, and judges the result
with the dream's own model. It writes no files (see :mod:`dreamsound.outputs`) and never prints.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamsound.audio import DEFAULT_MAX_SECONDS, is_silent, limit_peaks
from dreamsound.classification import Classification, classify_waveform
from dreamsound.config import SONIFY_STYLE, DreamConfig
from dreamsound.engine.domains import Domain, SpectrogramDomain, WaveformDomain
from dreamsound.engine.judge import Analysis, Judge
from dreamsound.engine.loop import Ascent, Hooks, ascend
from dreamsound.engine.members import check_members
from dreamsound.engine.objectives import (
    Member,
    Objective,
    SoundObjective,
    TargetTerm,
    build_objective,
    ensemble_objective,
)
from dreamsound.engine.result import DreamReport, DreamResult
from dreamsound.engine.sound import EnvelopeDomain, SamplesDomain, SoundDomain
from dreamsound.engine.transfer import judge_knows, judge_sound, target_concept
from dreamsound.engine.transforms import SOUND_CHANGES, RandomChanges
from dreamsound.errors import AudioError, ConfigError, DreamsoundError, TargetError
from dreamsound.events import ProgressCallback
from dreamsound.inputs import LoadedInput, load_input, match_length
from dreamsound.models.base import AudioClassifier
from dreamsound.models.registry import DEFAULT_MODEL, load_model
from dreamsound.sonification import gradient_to_audio, join_segments

log = logging.getLogger(__name__)

Target = str | int | Sequence[Any] | Mapping[str, float]
ModelChoice = str | AudioClassifier | tuple[str | AudioClassifier, float]
#: ``on_snapshot(step, audio ndarray [n])``: the dream as sound every ``snapshot_every`` steps.
SnapshotCallback = Callable[[int, np.ndarray], None]


@dataclass
class SonifyResult:
    """What :meth:`Dreamer.sonify` gives back.

    Attributes
    ----------
    audio : ndarray float32 [steps * n]
        The sonified gradients, one segment per step, concatenated.
    sample_rate : int
        Hz (the model's rate).
    segments : list of ndarray float32 [n]
        Each step's sonification (peak -1 dBFS each).
    spectrograms : dict of str -> ndarray
        ``"original"``: the input's log-mel ``[T, F]``; ``"gradients"``: ``[steps, T, F]``, the
        log-mel-domain gradients (spectrogram domain) or the log-mel of each gradient waveform.
    report : dict
        ``model``, ``input``, ``objective``, ``target``, ``layer``, ``channel``, ``domain``,
        ``steps``, ``seconds``, ``sample_rate``, ``duration_s``, ``outputs``.
    input_path : Path or None
    """

    audio: np.ndarray
    sample_rate: int
    segments: list[np.ndarray]
    spectrograms: dict[str, np.ndarray]
    report: dict
    input_path: Path | None = None


class Dreamer:
    """Loaded models and a dream configuration, reused for many sounds.

    Parameters
    ----------
    model : str, AudioClassifier, or a sequence of them (or of ``(model, weight)`` pairs)
        The dreaming model(s): a registry name (default ``"instrument"``) or a loaded model.
        Several models make an ensemble that hears one sound (sound domains only); the first is
        the primary model, on whose scale distances and the report's confidences are given.
    config : DreamConfig, optional
        How to dream (default: :class:`DreamConfig` ()).
    weights, device
        For :func:`dreamsound.load_model` when the primary model is a name (``weights``) and
        for every model loaded by name (``device``).
    judges : sequence of str or AudioClassifier
        Models that take no part in the dream and judge it (:meth:`judge_transfer`).
    """

    def __init__(self, model: ModelChoice | Sequence[ModelChoice] = DEFAULT_MODEL,
                 config: DreamConfig | None = None, *, weights: str | Path | None = None,
                 device: str | None = None, judges: Sequence[str | AudioClassifier] = ()):
        choices = list(model) if isinstance(model, list | tuple) else [model]
        if not choices:
            raise ConfigError("give at least one model to dream on")
        pairs = [choice if isinstance(choice, tuple) else (choice, 1.0) for choice in choices]
        judges = list(judges)
        check_members(pairs, judges)
        self.models: list[AudioClassifier] = []
        self.model_weights: list[float] = []
        for position, (entry, weight) in enumerate(pairs):
            self.models.append(_loaded(entry, weights if position == 0 else None, device))
            self.model_weights.append(float(weight))
        self.model = self.models[0]
        self.config = config if config is not None else DreamConfig()
        self.judges = [_loaded(j, None, device) for j in judges]
        if len(self.models) > 1 and not self.config.is_sound:
            raise ConfigError("dreaming on several models needs a sound they all hear: "
                              "--style robust, or --domain envelope or samples")

    # -- inputs -----------------------------------------------------------------------------------
    def load(self, audio: str | Path | np.ndarray, *, sample_rate: int | None = None,
             max_seconds: float | None = DEFAULT_MAX_SECONDS) -> LoadedInput:
        """Any accepted sound at the model's rate (see :func:`dreamsound.inputs.load_input`)."""
        return load_input(audio, sample_rate=self.model.sample_rate, input_rate=sample_rate,
                          seed=self.config.seed, max_seconds=max_seconds)

    # -- dream ------------------------------------------------------------------------------------
    def dream(self, audio: str | Path | np.ndarray, *, target: Target | None = None,
              layer: str | None = None, channel: int | None = None,
              target_sound: str | Path | np.ndarray | None = None,
              sample_rate: int | None = None, progress: ProgressCallback | None = None,
              on_snapshot: SnapshotCallback | None = None,
              on_gradient: Callable[[int, torch.Tensor], None] | None = None) -> DreamResult:
        """Dream a sound toward a class (or a layer's activation energy).

        Parameters
        ----------
        audio : path, str or ndarray [n]
            A sound file; a generated start ``"noise:3s"``, ``"silence:2s"``,
            ``"sine:440:2s"``; or a mono float waveform at ``sample_rate`` Hz.
        target : str, int, mapping or sequence, optional
            Class(es) to ascend: ``"violin"``, ``"violin:1,flute:0.5"``, ``{"violin": 1}``.
            With neither ``target`` nor ``layer``: the input's own top class. In an ensemble
            each model ascends its own class for the same concept (``violin`` -> "Violin,
            fiddle" on YAMNet).
        layer, channel : str, int, optional
            Ascend this named layer's activation energy (one channel of it) instead.
        target_sound : path or ndarray, optional
            The second sound of the waveform ``target`` rule (looped or trimmed to length).
        sample_rate : int, optional
            Rate of an ndarray ``audio`` (default: the model's rate).
        progress : callable(ProgressEvent), optional
            After each step.
        on_snapshot : callable(step, audio ndarray [n]), optional
            Every ``config.snapshot_every`` steps.
        on_gradient : callable(step, gradient Tensor), optional
            The raw gradient of each step.
        """
        started = time.perf_counter()
        c = self.config
        _check_request(c, target=target, layer=layer, target_sound=target_sound)
        source = self.load(audio, sample_rate=sample_rate)
        silent = is_silent(source.waveform)
        if silent:
            if c.domain != "spectrogram":
                raise AudioError(f"{source.label}: is silent; only the spectrogram domain can "
                                 "grow a sound from digital silence (elsewhere its gradient is "
                                 "zero or it has no spectrum to shape). Use --domain "
                                 "spectrogram or start from noise (noise:3s)")
            log.warning("%s is silent: dreaming from silence (random initial phase)",
                        source.label)
        net = self.model
        wave = torch.from_numpy(source.waveform).to(net.device)
        generator = torch.Generator().manual_seed(c.seed)
        domain = self._domain(wave, silent, target_sound, sample_rate)
        primary = build_objective(net, domain.original, target=target, layer=layer,
                                  channel=channel)
        objective: Any = primary if not c.is_sound else SoundObjective(
            [Member(primary, self.model_weights[0])]
            + [Member(ensemble_objective(m, primary), w)
               for m, w in zip(self.models[1:], self.model_weights[1:])],
            net.sample_rate, score=c.score,
            changes=RandomChanges.named(list(SOUND_CHANGES), samples=c.changes)
            if c.changes else None, generator=generator)
        snapshots: list[tuple[int, np.ndarray]] = []
        hooks = Hooks(progress=progress, on_gradient=on_gradient,
                      on_snapshot=self._snapshot_keeper(snapshots, on_snapshot)
                      if c.snapshot_every else None)
        judge = Judge(net, primary)
        before = judge.analyze(domain.original)
        ascent = ascend(domain, objective, c, generator=generator, hooks=hooks)
        dreamed_log_mel, dreamed_wave = domain.finish(ascent.param)
        rendered = domain.render(dreamed_log_mel, dreamed_wave, ascent.steps)
        after = judge.analyze(dreamed_log_mel)
        audio_out = self._limited(rendered)
        heard, rendered_log_mel = judge.analyze_waveform(
            audio_out, n_frames=domain.original.shape[-2])
        gradient = ascent.first_gradient
        if gradient is None:  # zero steps: the gradient at the original, for the outputs
            gradient = _gradient_at(domain, objective)
        report = self._report(source, primary, ascent, (before, after, heard),
                              (domain.original, dreamed_log_mel, rendered_log_mel),
                              layer=layer, channel=channel, target=target, started=started)
        if isinstance(objective, SoundObjective) and len(self.models) > 1:
            report = report.replace(ensemble=self._ensemble_report(objective, wave, audio_out))
        gradient_audio = self._gradient_audio(domain, gradient, wave, silent)
        cfg = net.front_end.config
        return DreamResult(
            audio=audio_out, sample_rate=net.sample_rate, original=source.waveform,
            gradient_audio=gradient_audio,
            spectrograms={"original": domain.original.cpu().numpy(),
                          "dreamed": dreamed_log_mel.cpu().numpy(),
                          "rendered": rendered_log_mel.cpu().numpy(),
                          "gradient": self._gradient_view(gradient, gradient_audio)},
            frame_rate=cfg.sample_rate / cfg.hop_length,
            band_hz=net.front_end.band_centres_hz(), report=report,
            gradient=gradient.cpu().numpy(), front_end=net.front_end,
            input_path=source.path, snapshots=snapshots)

    def _domain(self, wave: torch.Tensor, silent: bool,
                target_sound: str | Path | np.ndarray | None,
                sample_rate: int | None) -> Domain:
        c = self.config
        if c.domain == "spectrogram":
            return SpectrogramDomain(self.model, c, wave, silent=silent)
        if c.domain == "envelope":
            return EnvelopeDomain(self.model, c, wave)
        if c.domain == "samples":
            return SamplesDomain(self.model, c, wave)
        second = None
        if target_sound is not None:
            second = self._target_sound(target_sound, wave, sample_rate)
        return WaveformDomain(self.model, c, wave, target_sound=second)

    def _ensemble_report(self, objective: SoundObjective, wave: torch.Tensor,
                         audio_out: np.ndarray) -> list[dict]:
        """Each dreaming model's confidence in the original and in the rendered sound."""
        rendered = torch.from_numpy(audio_out).to(wave.device)
        before = objective.member_confidences(wave)
        after = objective.member_confidences(rendered)
        return [{"model": m.model.name, "weight": m.weight,
                 "target": " + ".join(t.name for t in m.objective.targets),
                 "confidence_before": b, "confidence_rendered": a}
                for m, b, a in zip(objective.members, before, after)]

    def _target_sound(self, sound: str | Path | np.ndarray, wave: torch.Tensor,
                      sample_rate: int | None) -> torch.Tensor:
        """The target rule's second sound: looped or trimmed to the input, loudness-matched so
        step sizes mean the same with every target sound."""
        loaded = self.load(sound, sample_rate=sample_rate).waveform
        loaded = match_length(loaded, wave.shape[-1])
        if is_silent(loaded):
            raise AudioError("the target sound is silent; its mask would be empty")
        input_rms = max(float(np.sqrt(np.mean(wave.cpu().numpy().astype(np.float64) ** 2))),
                        1e-3)
        target_rms = float(np.sqrt(np.mean(loaded.astype(np.float64) ** 2)))
        scaled = (loaded * (input_rms / target_rms)).astype(np.float32)
        return torch.from_numpy(scaled).to(self.model.device)

    def _limited(self, audio: torch.Tensor) -> np.ndarray:
        """The rendered audio as float32 samples, checked and (unless asked not to) limited."""
        samples = audio.detach().cpu().numpy().astype(np.float32)
        if not np.isfinite(samples).all():
            raise DreamsoundError("the rendered audio holds NaN/Inf samples; lower --step-size")
        return limit_peaks(samples, self.model.sample_rate) if self.config.limit else samples

    def _snapshot_keeper(self, snapshots: list[tuple[int, np.ndarray]],
                         on_snapshot: SnapshotCallback | None
                         ) -> Callable[[int, torch.Tensor], None]:
        def keep(step: int, audio: torch.Tensor) -> None:
            samples = audio.detach().cpu().numpy().astype(np.float32)
            if self.config.limit and np.isfinite(samples).all():
                samples = limit_peaks(samples, self.model.sample_rate)
            snapshots.append((step, samples))
            if on_snapshot is not None:
                on_snapshot(step, samples)
        return keep

    def _gradient_audio(self, domain: Domain, gradient: torch.Tensor, wave: torch.Tensor,
                        silent: bool) -> np.ndarray:
        """The first step's gradient as sound (:mod:`dreamsound.sonification`)."""
        c, net = self.config, self.model
        if isinstance(domain, SoundDomain):
            return gradient_to_audio(domain.gradient_sound(gradient), model=net,
                                     domain="waveform", reference=None, length=wave.shape[-1])
        return gradient_to_audio(gradient, model=net, domain=c.domain,
                                 reference=None if silent else wave, length=wave.shape[-1],
                                 seed=c.seed)

    def _gradient_view(self, gradient: torch.Tensor, gradient_audio: np.ndarray) -> np.ndarray:
        """The first gradient as a log-mel-shaped array: itself in the spectrogram domain, else
        the log-mel of its sound."""
        if self.config.domain == "spectrogram":
            return gradient.cpu().numpy()
        if self.config.domain == "waveform":
            with torch.no_grad():
                peak = gradient.abs().max().clamp(min=torch.finfo(gradient.dtype).tiny)
                return self.model.log_mel(gradient / peak).cpu().numpy()
        with torch.no_grad():
            return self.model.log_mel(torch.from_numpy(gradient_audio).to(
                self.model.device)).cpu().numpy()

    def _report(self, source: LoadedInput, objective: Objective, ascent: Ascent,
                analyses: tuple[Analysis, Analysis, Analysis],
                log_mels: tuple[torch.Tensor, torch.Tensor, torch.Tensor], *,
                layer: str | None, channel: int | None, target: Target | None,
                started: float) -> DreamReport:
        from dreamsound import metrics

        before, after, heard = analyses
        original, dreamed, rendered = log_mels
        c, net = self.config, self.model
        fe = net.front_end
        kind = "layer" if layer is not None else "target" if target is not None else "top-class"
        return DreamReport(
            model=net.name, input=source.label, objective=kind,
            target=" + ".join(t.name for t in objective.targets) if objective.targets else None,
            targets=[{"name": t.name, "index": t.index, "weight": t.weight,
                      "confidence_before": before.confidences[i],
                      "confidence_after": after.confidences[i],
                      "confidence_rendered": heard.confidences[i]}
                     for i, t in enumerate(objective.targets)],
            layer=layer, channel=channel, domain=c.domain,
            rule=c.rule if c.domain == "waveform" else None, flip=c.flip,
            steps=ascent.steps, steps_requested=c.steps, stopped=ascent.stopped,
            seconds=time.perf_counter() - started,
            seconds_per_step=(float(np.mean(ascent.step_seconds)) if ascent.step_seconds
                              else None),
            confidence_before=before.confidence, confidence_after=after.confidence,
            confidence_rendered=heard.confidence, rendered_from="memory",
            success_after=after.success, success_rendered=heard.success,
            top_before=before.top, top_after=after.top, top_rendered=heard.top,
            objective_before=before.objective, objective_after=after.objective,
            rmse_db=metrics.rmse_db(original, dreamed, front_end=fe),
            mse_db2=metrics.mse_db2(original, dreamed, front_end=fe),
            rmse_db_rendered=metrics.rmse_db(original, rendered, front_end=fe),
            mse_db2_rendered=metrics.mse_db2(original, rendered, front_end=fe),
            sample_rate=net.sample_rate, duration_s=source.waveform.shape[0] / net.sample_rate,
            settings=c.to_json())

    # -- judging the written file -------------------------------------------------------------
    def judge_written(self, result: DreamResult, path: str | Path) -> DreamResult:
        """The result with its ``*_rendered`` numbers (and the judges') measured on the file.

        The file is re-loaded (decoded, resampled to the model's rate) and re-analysed, so
        ``confidence_rendered`` is what a listener gets after quantisation to the file's sample
        format (``rendered_from = "file"``), and ``spectrograms["rendered"]`` is the file's
        log-mel; the judges (:meth:`judge_transfer`) hear the same file. Returns a new result;
        ``result`` is not changed.
        """
        from dreamsound import metrics
        from dreamsound.audio import load_audio

        report = result.report
        net = self.model
        reloaded = load_audio(path, sample_rate=net.sample_rate, allow_silence=True,
                              max_seconds=None)
        targets = [TargetTerm(t["index"], t["name"], t["weight"], t["name"])
                   for t in report.targets]
        objective = Objective(net, targets=targets) if report.layer is None else \
            Objective(net, layer=report.layer, channel=report.channel)
        original = torch.from_numpy(result.spectrograms["original"])
        heard, log_mel = Judge(net, objective).analyze_waveform(
            reloaded, n_frames=original.shape[-2])
        log_mel = log_mel.cpu()
        targets_json = [{**entry, "confidence_rendered": heard.confidences[i]}
                        for i, entry in enumerate(report.targets)]
        judged = report.replace(
            confidence_rendered=heard.confidence, top_rendered=heard.top,
            success_rendered=heard.success, targets=targets_json,
            rmse_db_rendered=metrics.rmse_db(original, log_mel, front_end=net.front_end),
            mse_db2_rendered=metrics.mse_db2(original, log_mel, front_end=net.front_end),
            rendered_from="file")
        spectrograms = {**result.spectrograms, "rendered": log_mel.numpy()}
        return self.judge_transfer(
            dataclasses.replace(result, report=judged, spectrograms=spectrograms),
            audio=reloaded)

    def judge_transfer(self, result: DreamResult, *, audio: np.ndarray | None = None
                       ) -> DreamResult:
        """The result with ``report.judges``: what each judge (a model outside the dream) hears
        of the target in the original and in the dream (:mod:`dreamsound.engine.transfer`).

        ``audio`` is the dream as heard (default ``result.audio``; :meth:`judge_written` passes
        the written file). Without judges the result comes back unchanged.
        """
        if not self.judges:
            return result
        report = result.report
        positives = [t for t in report.targets if t["weight"] > 0]
        if not positives:
            raise TargetError("judges compare a target class across models; a layer dream has "
                              "none")
        concept = target_concept(self.model, positives[0]["index"])
        dreamed = result.audio if audio is None else audio
        verdicts = [judge_sound(j, concept, result.original, dreamed, result.sample_rate)
                    .to_json() if judge_knows(j, concept) else
                    {"model": j.name, "concept": concept.name, "target": None, "moved": None,
                     "note": f"{j.name} has no class for {concept.name}"}
                    for j in self.judges]
        return dataclasses.replace(result, report=report.replace(judges=verdicts))

    def save(self, result: DreamResult, stem: str | Path, *, plot: bool = False,
             gradient: bool = True, inputs: Sequence[str | Path] = ()) -> DreamResult:
        """Write a dream's files (:mod:`dreamsound.outputs`) and judge the written audio.

        Writes ``<stem>.wav``, judges it (:meth:`judge_written`), then ``<stem>.gradient.wav``,
        the snapshots, ``<stem>.png`` with ``plot``, and last ``<stem>.json`` (the report with
        ``outputs`` filled in). Never writes over an input (``result.input_path``, ``inputs``).
        Returns the result with the judged report.
        """
        from dreamsound import outputs

        audio_path = outputs.write_audio(result, stem, inputs=inputs)
        result = self.judge_written(result, audio_path)
        written: dict[str, Any] = {"audio": str(audio_path)}
        written.update(outputs.write_companions(result, stem, gradient=gradient, plot=plot,
                                                inputs=inputs))
        report_file = outputs.report_path(stem)
        written["report"] = str(report_file)
        report = result.report.replace(outputs=written)
        protected = [p for p in (result.input_path, *inputs) if p is not None]
        outputs.write_json(report.to_json(), report_file, inputs=protected)
        return dataclasses.replace(result, report=report)

    # -- sonify -----------------------------------------------------------------------------------
    def sonify(self, audio: str | Path | np.ndarray, *, target: Target | None = None,
               layer: str | None = None, channel: int | None = None, steps: int = 1,
               sample_rate: int | None = None,
               progress: ProgressCallback | None = None) -> SonifyResult:
        """Sonify the gradient of a sound toward a class or a layer.

        With ``steps=1`` the result is the gradient at the sound itself; with ``steps=N`` the
        sound is dreamed for N steps (this dreamer's configuration, without rendering) and the
        gradient of every step becomes one segment of an evolving sequence
        (:mod:`dreamsound.sonification`).
        """
        if steps < 1:
            raise DreamsoundError(f"--steps must be >= 1 to sonify, got {steps}")
        self.config.check_sonifiable()
        started = time.perf_counter()
        net = self.model
        gradients: list[torch.Tensor] = []
        # The dream's last update is not needed: its gradients are. `steps` dream steps give
        # exactly `steps` gradients (the first at the original sound).
        dreamer = Dreamer(self.models[0] if len(self.models) == 1 else
                          list(zip(self.models, self.model_weights)),
                          self.config.replace(steps=steps, gl_iterations=0, fit_iterations=0))
        result = dreamer.dream(audio, target=target, layer=layer, channel=channel,
                               sample_rate=sample_rate, progress=progress,
                               on_gradient=lambda _step, g: gradients.append(g.clone()))
        reference = None if float(np.max(np.abs(result.original), initial=0.0)) == 0.0 else \
            torch.from_numpy(result.original).to(net.device)
        n = result.original.shape[0]
        domain = self.config.domain
        segments = [gradient_to_audio(g, model=net, domain=domain, reference=reference,
                                      length=n, seed=self.config.seed) for g in gradients]
        sequence = join_segments(segments, net.sample_rate)
        if domain == "spectrogram":
            views = np.stack([g.cpu().numpy() for g in gradients])
        else:
            with torch.no_grad():
                views = np.stack([net.log_mel(g / g.abs().max().clamp(min=1e-30)).cpu().numpy()
                                  for g in gradients])
        report = {key: getattr(result.report, key) for key in (
            "model", "input", "objective", "target", "layer", "channel", "domain")}
        report.update(steps=len(segments), seconds=time.perf_counter() - started,
                      sample_rate=net.sample_rate,
                      duration_s=sequence.shape[0] / net.sample_rate, outputs={})
        if self.judges:
            # Does the gradient, played, sound like the target to models outside the dream?
            judged = self.judge_transfer(dataclasses.replace(result, audio=sequence))
            report["judges"] = judged.report.judges
        return SonifyResult(audio=sequence.astype(np.float32), sample_rate=net.sample_rate,
                            segments=segments,
                            spectrograms={"original": result.spectrograms["original"],
                                          "gradients": views},
                            report=report, input_path=result.input_path)

    # -- classify ---------------------------------------------------------------------------------
    def classify(self, audio: str | Path | np.ndarray, *, sample_rate: int | None = None,
                 max_seconds: float | None = DEFAULT_MAX_SECONDS) -> Classification:
        """What the model hears in a sound (clip-level and per-patch scores)."""
        source = load_input(audio, sample_rate=self.model.sample_rate, input_rate=sample_rate,
                            allow_silence=False, max_seconds=max_seconds)
        return classify_waveform(self.model, source.waveform)


def _loaded(model: str | AudioClassifier, weights: str | Path | None,
            device: str | None) -> AudioClassifier:
    """A loaded model: itself, or the registry's model of that name."""
    return model if isinstance(model, AudioClassifier) else load_model(model, weights, device)


def _check_request(config: DreamConfig, *, target: Target | None, layer: str | None,
                   target_sound: object) -> None:
    """Errors that depend on what is asked as well as on the config (one line each)."""
    if target is not None and layer is not None:
        raise TargetError("give a target class or a layer, not both")
    if config.until is not None and layer is not None:
        raise TargetError("--until needs a target class (a layer has no confidence)")
    if config.rule == "target" and target_sound is None:
        raise DreamsoundError("the target rule needs a second sound: --target-sound FILE")
    if target_sound is not None and config.rule != "target":
        raise DreamsoundError("--target-sound is used by the target rule only; add --rule target")


def _gradient_at(domain: Domain, objective: Objective) -> torch.Tensor:
    """The objective's gradient at the original (log-mel or samples): the outputs of a dream of
    zero steps still carry a gradient."""
    start = domain.begin_stage(domain.stages - 1).detach().clone().requires_grad_(True)
    value, _ = objective(domain.view(start, 0))
    (gradient,) = torch.autograd.grad(value, start)
    return gradient.detach()


# -- one-shot wrappers --------------------------------------------------------------------------
def dream(audio: str | Path | np.ndarray, *, model: str | AudioClassifier = DEFAULT_MODEL,
          target: Target | None = None, layer: str | None = None, channel: int | None = None,
          target_sound: str | Path | np.ndarray | None = None,
          weights: str | Path | None = None, device: str | None = None,
          sample_rate: int | None = None, progress: ProgressCallback | None = None,
          on_snapshot: SnapshotCallback | None = None,
          on_gradient: Callable[[int, torch.Tensor], None] | None = None,
          **settings: Any) -> DreamResult:
    """Dream a sound toward a class or a layer in one call.

    ``settings`` are the knobs of :class:`~dreamsound.config.DreamConfig` by name (``steps``,
    ``step_size``, ``until``, ``max_rmse_db``, ``domain``, ``rule``, ...); everything else is as
    for :meth:`Dreamer.dream`. Load the model once (``model=load_model(...)``) or use a
    :class:`Dreamer` for many dreams.
    """
    dreamer = Dreamer(model, DreamConfig.from_kwargs(**settings), weights=weights, device=device)
    return dreamer.dream(audio, target=target, layer=layer, channel=channel,
                         target_sound=target_sound, sample_rate=sample_rate, progress=progress,
                         on_snapshot=on_snapshot, on_gradient=on_gradient)


def sonify(audio: str | Path | np.ndarray, *, model: str | AudioClassifier = DEFAULT_MODEL,
           target: Target | None = None, layer: str | None = None, channel: int | None = None,
           steps: int = 1, weights: str | Path | None = None, device: str | None = None,
           sample_rate: int | None = None, progress: ProgressCallback | None = None,
           **settings: Any) -> SonifyResult:
    """Sonify the gradient toward a class or a layer in one call (see :meth:`Dreamer.sonify`);
    ``settings`` are :class:`~dreamsound.config.DreamConfig` knobs (``domain``, ``step_size``,
    ``normalize``, ``seed``, ...)."""
    config = DreamConfig.from_kwargs(**{"style": SONIFY_STYLE, **settings})
    dreamer = Dreamer(model, config, weights=weights, device=device)
    return dreamer.sonify(audio, target=target, layer=layer, channel=channel, steps=steps,
                          sample_rate=sample_rate, progress=progress)


def classify(audio: str | Path | np.ndarray, *, model: str | AudioClassifier = DEFAULT_MODEL,
             weights: str | Path | None = None, device: str | None = None,
             sample_rate: int | None = None,
             max_seconds: float | None = DEFAULT_MAX_SECONDS) -> Classification:
    """What a model hears in a sound file or waveform (see :meth:`Dreamer.classify`)."""
    return Dreamer(model, weights=weights, device=device).classify(
        audio, sample_rate=sample_rate, max_seconds=max_seconds)
