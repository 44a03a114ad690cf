"""The one ascent loop: every dream, in every domain, runs through :func:`ascend`.

Per step: draw a jitter shift, let the domain show the model its input, evaluate the objective,
stop if ``until`` is reached (and the domain agrees), subtract the distance penalty, take the
gradient with respect to the parameter, let the domain step and constrain, emit a
:class:`~dreamsound.events.ProgressEvent`. No file I/O, no printing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from dreamsound.config import DreamConfig
from dreamsound.engine.constraints import DistancePenalty
from dreamsound.engine.domains import Domain
from dreamsound.engine.objectives import Objective
from dreamsound.engine.transforms import Jitter
from dreamsound.events import ProgressCallback, ProgressEvent
from dreamsound.threads import adapt_threads

#: Seconds between checks of the confidence shown in progress when a step's own logits are not
#: the sound's (robust dreams hear randomly changed copies): one forward pass of the unchanged
#: sound at most this often (and at the last step), so progress shows it at little cost.
LIVE_CONFIDENCE_S = 1.0

#: ``on_gradient(step, gradient)``: the raw gradient of each step (sonification uses it).
GradientCallback = Callable[[int, torch.Tensor], None]
#: ``on_snapshot(step, audio Tensor [n])``: the dream as sound every ``snapshot_every`` steps.
SnapshotCallback = Callable[[int, torch.Tensor], None]


@dataclass
class Ascent:
    """What :func:`ascend` did.

    Attributes
    ----------
    param : Tensor
        The parameter after the last step.
    steps : int
        Gradient steps taken (over all stages).
    stopped : str
        ``"until"`` when ``until`` was reached, else ``"steps"``.
    step_seconds : list of float
        Wall time of each step (s).
    first_gradient : Tensor or None
        The gradient of the first step (None after zero steps).
    """

    param: torch.Tensor
    steps: int = 0
    stopped: str = "steps"
    step_seconds: list[float] = field(default_factory=list)
    first_gradient: torch.Tensor | None = None


@dataclass
class Hooks:
    """Optional callbacks of a dream."""

    progress: ProgressCallback | None = None
    on_gradient: GradientCallback | None = None
    on_snapshot: SnapshotCallback | None = None


def ascend(domain: Domain, objective: Objective, config: DreamConfig, *,
           generator: torch.Generator, hooks: Hooks | None = None) -> Ascent:
    """Run the dream's steps over every stage of ``domain`` (see the module docstring)."""
    hooks = hooks or Hooks()
    jitter = Jitter(domain.jitter_limit, generator)
    penalty = DistancePenalty(config.distance_weight, objective.model.front_end)
    total_steps = config.steps * domain.stages
    result = Ascent(param=torch.empty(0))
    live = _LiveConfidence(objective, domain) if hooks.progress is not None else None
    for stage in range(domain.stages):
        param = domain.begin_stage(stage)
        last_stage = stage == domain.stages - 1
        # A restart from a rendering (``until_rendered``) uses up one of the stage's steps.
        for _ in range(config.steps):
            started = time.perf_counter()
            adapt_threads()  # the default thread count follows the machine's load
            shift = jitter.draw()
            param.requires_grad_(True)
            seen = domain.view(param, shift)
            value, logits = objective(seen)
            # None when the step heard randomly changed copies (robust dreams), not the sound.
            confidence = objective.confidence(logits)
            if last_stage and config.until is not None:
                heard = confidence if not shift and confidence is not None \
                    else objective.confidence_of(domain.clean_view(param))
                confidence = heard if confidence is None else confidence  # for progress too
                if heard is not None and heard >= config.until:
                    reached = domain.check_reached(param, result.steps, objective)
                    if reached.stop:
                        result.stopped, param = "until", param.detach()
                        break
                    if reached.restart_from is not None:
                        param = reached.restart_from
                        continue
            total = value
            if penalty:
                total = value - penalty(*domain.distance_terms(param, seen, shift))
            (gradient,) = torch.autograd.grad(total, param)
            gradient = gradient.detach()
            if hooks.on_gradient is not None:
                hooks.on_gradient(result.steps + 1, gradient)
            if result.first_gradient is None:
                result.first_gradient = gradient.clone()
            if confidence is None and live is not None:
                confidence = live(param, final=result.steps + 1 == total_steps)
            with torch.no_grad():
                param, rmse = domain.update(param, gradient, seen, shift)
            result.steps += 1
            result.step_seconds.append(time.perf_counter() - started)
            _emit(hooks, result.steps, total_steps, value, confidence, rmse, started)
            if (hooks.on_snapshot is not None and config.snapshot_every
                    and result.steps % config.snapshot_every == 0):
                audio = domain.snapshot(param, last_stage)
                if audio is not None:
                    hooks.on_snapshot(result.steps, audio)
        domain.end_stage(param)
        result.param = param.detach()
        if result.stopped == "until":
            break
    return result


class _LiveConfidence:
    """The confidence in the unchanged sound for progress, checked at most every
    :data:`LIVE_CONFIDENCE_S` seconds (the last value in between)."""

    def __init__(self, objective: Objective, domain: Domain):
        self.objective, self.domain = objective, domain
        self.checked = -float("inf")
        self.value: float | None = None

    def __call__(self, param: torch.Tensor, *, final: bool) -> float | None:
        now = time.perf_counter()
        if final or now - self.checked >= LIVE_CONFIDENCE_S:
            self.value = self.objective.confidence_of(self.domain.clean_view(param))
            self.checked = now
        return self.value


def _emit(hooks: Hooks, step: int, total: int, value: torch.Tensor, confidence: float | None,
          rmse: float | None, started: float) -> None:
    if hooks.progress is not None:
        hooks.progress(ProgressEvent(stage="dream", step=step, total=total,
                                     objective=float(value.detach()), confidence=confidence,
                                     rmse_db=rmse, seconds=time.perf_counter() - started))
