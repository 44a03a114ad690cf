"""Parameterisations: what a dream changes, how a model sees it, how a step moves it, how it
becomes sound.

The loop (:mod:`dreamsound.engine.loop`) knows only this interface (:class:`Domain`):

* ``stages`` and :meth:`~Domain.begin_stage` / :meth:`~Domain.end_stage`: the parameter to
  ascend in each stage (coarse-to-fine octaves in the spectrogram domain; one stage otherwise);
* :meth:`~Domain.view`: the log-mel the model sees for the parameter, rolled by a jitter shift;
* :meth:`~Domain.clean_view`: the unshifted view (confidences);
* :meth:`~Domain.distance_terms`: the pair the distance penalty compares;
* :meth:`~Domain.update`: one step along a gradient, with the domain's constraints; returns the
  new parameter and its distance to the original (dB) where it is known;
* :meth:`~Domain.check_reached`: whether a state that reached ``until`` may stop (the
  spectrogram domain renders to check with ``until_rendered``);
* :meth:`~Domain.snapshot` and :meth:`~Domain.finish` / :meth:`~Domain.render`.

Two domains: :class:`SpectrogramDomain` (the model's own log-mel, rendered by mel inversion and
fast Griffin-Lim from the original's phase) and :class:`WaveformDomain` (the samples, moved by
DreamSound's rules). A new parameterisation is one class here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dreamsound import metrics
from dreamsound.audio import limit_peaks
from dreamsound.config import DreamConfig
from dreamsound.engine import constraints
from dreamsound.engine.objectives import Objective
from dreamsound.engine.rules import StftGeometry, rms, waveform_update
from dreamsound.engine.transforms import normalize_gradient, smooth_gradient
from dreamsound.errors import DreamsoundError
from dreamsound.models.base import AudioClassifier

#: With ``until_rendered``, steps between two render checks after one that fell short.
UNTIL_RENDERED_EVERY = 3
#: Floor of the waveform step's level reference (RMS), so a near-silent start can still move.
LEVEL_FLOOR = 1e-3


@dataclass
class Reached:
    """What :meth:`Domain.check_reached` decided: stop, go on from a new parameter, or step."""

    stop: bool
    restart_from: torch.Tensor | None = None


class Domain:
    """Base of the parameterisations (see the module docstring)."""

    stages: int = 1
    #: Random time roll limit per step, in the domain's own time units.
    jitter_limit: int = 0

    def __init__(self, model: AudioClassifier, config: DreamConfig, wave: torch.Tensor):
        self.model = model
        self.config = config
        self.wave = wave
        with torch.no_grad():
            self.original = model.log_mel(wave)

    def rmse(self, log_mel: torch.Tensor, reference: torch.Tensor) -> float:
        return metrics.rmse_db(log_mel, reference, front_end=self.model.front_end)

    def begin_stage(self, stage: int) -> torch.Tensor:
        raise NotImplementedError

    def end_stage(self, param: torch.Tensor) -> None:
        """Called after each stage's last step."""

    def view(self, param: torch.Tensor, shift: int) -> torch.Tensor:
        raise NotImplementedError

    def clean_view(self, param: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def distance_terms(self, param: torch.Tensor, seen: torch.Tensor,
                       shift: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def update(self, param: torch.Tensor, gradient: torch.Tensor, seen: torch.Tensor,
               shift: int) -> tuple[torch.Tensor, float | None]:
        raise NotImplementedError

    def check_reached(self, param: torch.Tensor, step: int, objective: Objective) -> Reached:
        return Reached(stop=True)

    def snapshot(self, param: torch.Tensor, last_stage: bool) -> torch.Tensor | None:
        raise NotImplementedError

    def finish(self, param: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(dreamed log-mel [T, F], dreamed samples [n] or None)`` after the last stage."""
        raise NotImplementedError

    def render(self, dreamed_log_mel: torch.Tensor, dreamed_wave: torch.Tensor | None,
               steps_done: int) -> torch.Tensor:
        """The dream as audio ``[n]`` at the model's rate (before peak limiting)."""
        raise NotImplementedError


class SpectrogramDomain(Domain):
    """Ascend on the model's own log-mel; render once at the end.

    Cheap per step (no STFT in the loop) and precise in dB. Each step moves by the normalised,
    smoothed gradient times the step size in dB; frames made only of end padding stay as they
    are (the audio stops at the input's length); the result stays above the log floor and, with
    ``max_rmse_db``, on the ball around the original. With ``octaves > 1`` the dream runs
    coarse-to-fine on time-scaled log-mels, carrying the change ("detail") between scales.
    """

    def __init__(self, model: AudioClassifier, config: DreamConfig, wave: torch.Tensor, *,
                 silent: bool):
        super().__init__(model, config, wave)
        cfg = model.front_end.config
        self.stages = config.octaves
        self.n_frames = self.original.shape[-2]
        # Frames that start before the input ends hold real samples.
        self.real_frames = min(self.n_frames, math.ceil(wave.shape[-1] / cfg.hop_length))
        self.floor = model.front_end.floor
        # The step size is in dB; the parameter is the front-end's own log-mel, whose dB per
        # unit differs between models (20/ln 10 for ln(mel), 10 for musicnn's log10 of power).
        self.step_nepers = config.effective_step_size / db_per_unit(model.front_end)
        self.jitter_limit = round(config.jitter * cfg.sample_rate / cfg.hop_length)
        #: Whose phase rendering starts from: the input, or the last render the dream went on
        #: from; None for a silent start (random phase).
        self.render_reference: torch.Tensor | None = None if silent else wave
        self.detail = torch.zeros_like(self.original)
        self.base = self.original
        self.keep = self.n_frames
        self.last_render_check: int | None = None
        #: ``(steps done, audio)`` of the ``until_rendered`` check that stopped the loop.
        self.kept_render: tuple[int, torch.Tensor] | None = None

    # -- stages -----------------------------------------------------------------------------------
    def begin_stage(self, stage: int) -> torch.Tensor:
        octave = self.stages - 1 - stage
        size = max(self.model.front_end.config.patch_frames,
                   round(self.n_frames * self.config.octave_scale ** -octave))
        self.base = resize_time(self.original, size)
        self.keep = kept_frames(size, self.n_frames, self.real_frames)
        return (self.base + resize_time(self.detail, size)).detach()

    def end_stage(self, param: torch.Tensor) -> None:
        self.detail = param.detach() - self.base

    # -- what the model sees ----------------------------------------------------------------------
    def view(self, param: torch.Tensor, shift: int) -> torch.Tensor:
        return torch.roll(param, shift, dims=-2) if shift else param

    def clean_view(self, param: torch.Tensor) -> torch.Tensor:
        return param

    def distance_terms(self, param: torch.Tensor, seen: torch.Tensor,
                       shift: int) -> tuple[torch.Tensor, torch.Tensor]:
        return param, self.base

    # -- a step -----------------------------------------------------------------------------------
    def update(self, param: torch.Tensor, gradient: torch.Tensor, seen: torch.Tensor,
               shift: int) -> tuple[torch.Tensor, float | None]:
        c = self.config
        gradient = smooth_gradient(gradient, c.smooth)
        size = param.shape[-2]
        if self.keep < size:
            gradient = torch.cat([gradient[:self.keep], torch.zeros_like(gradient[self.keep:])])
        current = param.detach() + self.step_nepers * normalize_gradient(
            gradient, c.normalize, rows=self.keep)
        current = constraints.clamp_to_floor(current, self.floor)
        rmse = self.rmse(current, self.base)
        if c.max_rmse_db is not None and rmse > c.max_rmse_db:
            current = constraints.project_to_ball(current, self.base, rmse, c.max_rmse_db)
            rmse = c.max_rmse_db
        return current, rmse

    def check_reached(self, param: torch.Tensor, step: int, objective: Objective) -> Reached:
        """With ``until_rendered``: render the current dream (peak-limited like the output) and
        stop only if *its* confidence reaches ``until``. A rendering that falls short becomes the
        new starting point (its log-mel, and its phase for the next rendering): part of what the
        dream added no sound carries, and dreaming on from there drifts further into such
        spectrograms (a voice -> clarinet dream reached 1.00 on its spectrogram while its
        rendering sank to 0.08). Rendering costs a Griffin-Lim run and a log-mel fit, so after a
        miss the next check waits :data:`UNTIL_RENDERED_EVERY` steps."""
        c = self.config
        if not c.until_rendered:
            return Reached(stop=True)
        if self.last_render_check is not None and \
                step - self.last_render_check < UNTIL_RENDERED_EVERY:
            return Reached(stop=False)
        self.last_render_check = step
        with torch.no_grad():
            audio = self.invert(param.detach(), self.render_reference)
            audio_np = audio.cpu().numpy().astype(np.float32)
            if not np.isfinite(audio_np).all():
                return Reached(stop=False)
            if c.limit:
                audio_np = limit_peaks(audio_np, self.model.sample_rate)
            tensor = torch.from_numpy(audio_np).to(self.model.device)
            heard = self.model.log_mel(tensor)
            confidence = objective.confidence(self.model.logits_from_log_mel(heard))
        if confidence is not None and confidence >= float(c.until):  # type: ignore[arg-type]
            self.kept_render = (step, audio)
            return Reached(stop=True)
        self.render_reference = tensor
        return Reached(stop=False, restart_from=heard)

    # -- sound ------------------------------------------------------------------------------------
    def invert(self, log_mel: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
        """Audio ``[n]`` for a log-mel, started from ``reference``'s phase (seeded otherwise)."""
        generator = torch.Generator(device=self.model.device).manual_seed(int(self.config.seed))
        return self.model.front_end.invert(
            log_mel, reference_waveform=reference, n_iter=self.config.gl_iterations,
            fit_iter=self.config.fit_iterations, generator=generator, length=self.wave.shape[-1])

    def snapshot(self, param: torch.Tensor, last_stage: bool) -> torch.Tensor | None:
        return self.invert(param, self.render_reference) if last_stage else None

    def finish(self, param: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return (self.original + resize_time(self.detail, self.n_frames)).detach(), None

    def render(self, dreamed_log_mel: torch.Tensor, dreamed_wave: torch.Tensor | None,
               steps_done: int) -> torch.Tensor:
        if self.kept_render is not None and self.kept_render[0] == steps_done:
            return self.kept_render[1]  # the until_rendered check already rendered it
        with torch.no_grad():
            return self.invert(dreamed_log_mel, self.render_reference)


class WaveformDomain(Domain):
    """Ascend on the samples through the differentiable front-end, as DreamSound did, with one of
    its update rules (:mod:`dreamsound.engine.rules`). Jitter rolls by whole hops so the rolled
    log-mel is the rolled log-mel of the original; ``max_rmse_db`` pulls a step back by
    bisection (the dB distance of a waveform change is not linear in its size)."""

    def __init__(self, model: AudioClassifier, config: DreamConfig, wave: torch.Tensor, *,
                 target_sound: torch.Tensor | None = None):
        super().__init__(model, config, wave)
        cfg = model.front_end.config
        self.hop = cfg.hop_length
        self.jitter_limit = round(config.jitter * cfg.sample_rate / cfg.hop_length)
        self.geometry = StftGeometry.of(model)
        self.level = max(float(rms(wave)), LEVEL_FLOOR)
        self.target_sound = target_sound

    def begin_stage(self, stage: int) -> torch.Tensor:
        return self.wave.clone()

    def view(self, param: torch.Tensor, shift: int) -> torch.Tensor:
        return self.model.log_mel(torch.roll(param, shift * self.hop) if shift else param)

    def clean_view(self, param: torch.Tensor) -> torch.Tensor:
        return self.model.log_mel(param.detach())

    def distance_terms(self, param: torch.Tensor, seen: torch.Tensor,
                       shift: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (seen if not shift else self.model.log_mel(param)), self.original

    def update(self, param: torch.Tensor, gradient: torch.Tensor, seen: torch.Tensor,
               shift: int) -> tuple[torch.Tensor, float | None]:
        c = self.config
        updated = waveform_update(param.detach(), normalize_gradient(gradient, c.normalize),
                                  rule=c.rule, step_size=c.effective_step_size, level=self.level,
                                  geometry=self.geometry, threshold=c.mask_threshold,
                                  flip=c.flip, target_sound=self.target_sound)
        if not torch.isfinite(updated).all():
            raise DreamsoundError("the dream diverged (NaN/Inf samples); lower --step-size")
        # The distance of the state this step's forward pass saw (free), unless the bound needs
        # the updated one (one more front-end pass).
        rmse = self.rmse(seen.detach(), self.original) if not shift else None
        if c.max_rmse_db is not None:
            rmse = self.rmse(self.model.log_mel(updated), self.original)
            if rmse > c.max_rmse_db:
                updated, rmse = constraints.pull_back(
                    self.wave, updated, float(c.max_rmse_db),
                    lambda candidate: self.rmse(self.model.log_mel(candidate), self.original))
        return updated, rmse

    def snapshot(self, param: torch.Tensor, last_stage: bool) -> torch.Tensor | None:
        return param.detach()

    def finish(self, param: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        wave = param.detach()
        with torch.no_grad():
            return self.model.log_mel(wave), wave

    def render(self, dreamed_log_mel: torch.Tensor, dreamed_wave: torch.Tensor | None,
               steps_done: int) -> torch.Tensor:
        assert dreamed_wave is not None
        return dreamed_wave


def db_per_unit(front_end: metrics.DbScale) -> float:
    """dB per unit of a front-end's log-mel (its ``mel_db`` is linear in the log-mel)."""
    one, zero = (torch.tensor(v, dtype=torch.float64) for v in (1.0, 0.0))
    return float(front_end.mel_db(one) - front_end.mel_db(zero))


def kept_frames(size: int, n_frames: int, real_frames: int) -> int:
    """How many of ``size`` frames (a time scale of ``size / n_frames``) hold real samples."""
    if real_frames >= n_frames:
        return size
    return min(size, math.ceil(real_frames * size / n_frames))


def resize_time(log_mel: torch.Tensor, frames: int) -> torch.Tensor:
    """Linearly interpolate ``[T, F]`` to ``[frames, F]`` along time (identity if equal)."""
    if log_mel.shape[-2] == frames:
        return log_mel
    resized = F.interpolate(log_mel.T[None], size=frames, mode="linear", align_corners=True)
    return resized[0].T.contiguous()
