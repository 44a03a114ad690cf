"""What a dream ascends: objectives over a model's log-mel.

An :class:`Objective` maps the log-mel ``[T, F]`` a model sees to a scalar to ascend, and says how
confident the model is of the target. Three kinds: a target class (its **logit**, mean over
patches; several classes with weights, negative weights push away), a layer's activation energy
(mean of squared activations, optionally of one channel), or, with neither, the input's own top
class (a target resolved by :func:`top_class_target`). Adding a kind of objective is one class
here with ``__call__``, ``confidence`` and ``confidences``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dreamsound import metrics
from dreamsound.errors import DreamsoundError, TargetError, did_you_mean
from dreamsound.models.base import AudioClassifier

_WEIGHTED_RE = re.compile(r"\s*(.+?)\s*:\s*([-+]?(?:\d+\.?\d*|\.\d+))\s*(?:,|$)")


def parse_target_spec(spec: str) -> list[tuple[str, float]]:
    """Split ``"violin:1,flute:0.5"`` into ``[("violin", 1.0), ("flute", 0.5)]``.

    A spec without ``:weight`` is one class of weight 1 (class names may contain commas, as in
    YAMNet's ``"Violin, fiddle"``). Weights may be negative (push away from a class).
    """
    text = str(spec).strip()
    if not text:
        raise TargetError("empty target; give a class name (see `dreamsound classes`)")
    terms, position = [], 0
    for match in _WEIGHTED_RE.finditer(text):
        if match.start() != position:
            break
        terms.append((match.group(1), float(match.group(2))))
        position = match.end()
    if terms and position == len(text):
        return terms
    if re.search(r":\s*[-+]?(?:\d+\.?\d*|\.\d+)\s*(,|$)", text):
        raise TargetError(f"cannot read the weighted target {text!r}; write it like "
                          "'violin:1,flute:0.5'")
    return [(text, 1.0)]


@dataclass(frozen=True)
class TargetTerm:
    """One class of a target objective: ``weight · mean-over-patches logit[index]``."""

    index: int
    name: str
    weight: float
    query: str


def resolve_targets(model: AudioClassifier,
                    target: str | int | Sequence[Any] | Mapping[str, float]) -> list[TargetTerm]:
    """Turn any accepted target form into :class:`TargetTerm` s.

    Accepted: a class name or index, a weighted spec ``"violin:1,flute:0.5"``, a mapping
    ``{"violin": 1, "flute": 0.5}``, or a sequence of names or ``(name, weight)`` pairs.
    """
    pairs: list[tuple[str, float]]
    if isinstance(target, Mapping):
        pairs = [(str(k), float(v)) for k, v in target.items()]
    elif isinstance(target, int | np.integer):
        pairs = [(str(int(target)), 1.0)]
    elif isinstance(target, str):
        pairs = parse_target_spec(target)
    else:
        pairs = []
        for item in target:
            if isinstance(item, tuple | list):
                pairs.append((str(item[0]), float(item[1])))
            else:
                pairs.append((str(item), 1.0))
    if not pairs:
        raise TargetError("no target class given")
    terms = []
    for query, weight in pairs:
        if not math.isfinite(weight) or weight == 0:
            raise TargetError(f"target {query!r}: the weight must be a finite non-zero number")
        index = model.resolve_class(query)
        terms.append(TargetTerm(index, model.class_names[index], weight, query))
    if not any(t.weight > 0 for t in terms):
        raise TargetError("at least one target needs a positive weight")
    return terms


class _StopForward(Exception):
    """Raised by a layer hook to skip the rest of the network (its output is not needed)."""


class Objective:
    """What a dream ascends, as a function of the log-mel ``[T, F]``.

    Parameters
    ----------
    model : AudioClassifier
    targets : list of TargetTerm, optional
        Ascend ``Σ weight · mean_patches(logit[index])``.
    layer : str, optional
        Ascend the mean squared activation of this named layer (``model.named_layers()``).
    channel : int, optional
        Only this channel (dimension 1 of the layer's output).

    Calling it returns ``(value, logits or None)``; for a layer objective the network stops at
    the layer (the rest is not computed) and ``logits`` is None.
    """

    def __init__(self, model: AudioClassifier, *, targets: list[TargetTerm] | None = None,
                 layer: str | None = None, channel: int | None = None):
        if (targets is None) == (layer is None):
            raise DreamsoundError("an objective needs exactly one of a target or a layer")
        if channel is not None and layer is None:
            raise TargetError("--channel needs --layer")
        self.model = model
        self.targets = targets or []
        self.layer = layer
        self.channel = channel
        self._module: torch.nn.Module | None = None
        if layer is not None:
            layers = model.named_layers()
            if layer not in layers:
                raise TargetError(f"{model.name} has no layer {layer!r}."
                                  + (did_you_mean(layer, layers)
                                     or f" Layers: {', '.join(layers)}"))
            self._module = layers[layer]

    @property
    def kind(self) -> str:
        return "layer" if self.layer is not None else "target"

    def __call__(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._module is None:
            logits = self.model.logits_from_log_mel(log_mel)
            value = sum(t.weight * logits[:, t.index].mean() for t in self.targets)
            return value, logits  # type: ignore[return-value]
        captured: list[torch.Tensor] = []

        def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
            captured.append(output if isinstance(output, torch.Tensor) else output[0])
            raise _StopForward

        handle = self._module.register_forward_hook(hook)
        try:
            self.model.logits_from_log_mel(log_mel)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if not captured:
            raise DreamsoundError(f"layer {self.layer!r} did not run in {self.model.name}'s "
                                  "forward pass")
        activation = captured[0]
        if self.channel is not None:
            if activation.dim() < 2 or not 0 <= self.channel < activation.shape[1]:
                size = activation.shape[1] if activation.dim() >= 2 else 0
                raise TargetError(f"layer {self.layer!r} has {size} channels; --channel "
                                  f"{self.channel} is out of range")
            activation = activation[:, self.channel]
        return activation.square().mean(), None

    def confidences(self, logits: torch.Tensor) -> list[float]:
        """Target confidence per target term (:func:`dreamsound.metrics.target_confidence`)."""
        scores = self.model.scores_from_logits(logits)
        return [metrics.target_confidence(scores, t.index) for t in self.targets]

    def confidence_of(self, log_mel: torch.Tensor) -> float | None:
        """The confidence of a log-mel, without gradients (see :meth:`confidence`)."""
        with torch.no_grad():
            return self.confidence(self.model.logits_from_log_mel(log_mel.detach()))

    def confidence(self, logits: torch.Tensor | None) -> float | None:
        """The one confidence ``until`` is compared with: the minimum over positively weighted
        targets (so ``until`` means *every* wanted class got there); None for a layer."""
        if logits is None or not self.targets:
            return None
        values = self.confidences(logits)
        return min(v for v, t in zip(values, self.targets) if t.weight > 0)


def ensemble_objective(model: AudioClassifier, primary: Objective) -> Objective:
    """The primary objective's targets in another model's vocabulary: each class through the
    concept map (:mod:`dreamsound.models.concepts`), else by its name; a layer cannot be shared."""
    from dreamsound.models.concepts import concept_of_class

    if primary.layer is not None:
        raise TargetError("a layer objective belongs to one model; dream on one model")
    terms = []
    for term in primary.targets:
        codes = primary.model.class_codes
        concept = concept_of_class(term.name, codes[term.index] if codes else "")
        query = concept.name if concept is not None else term.name
        index = model.resolve_class(query)
        terms.append(TargetTerm(index, model.class_names[index], term.weight, query))
    return Objective(model, targets=terms)


def top_class_target(model: AudioClassifier, log_mel: torch.Tensor) -> int:
    """Index of the class the model hears most in ``log_mel`` (the "top-class" objective)."""
    with torch.no_grad():
        logits = model.logits_from_log_mel(log_mel)
    return int(model.scores_from_logits(logits).mean(dim=0).argmax())


def build_objective(model: AudioClassifier, log_mel: torch.Tensor, *,
                    target: str | int | Sequence[Any] | Mapping[str, float] | None = None,
                    layer: str | None = None, channel: int | None = None) -> Objective:
    """The objective a user asked for: a layer, a target, or the input's own top class."""
    if target is not None and layer is not None:
        raise TargetError("give a target class or a layer, not both")
    if layer is not None:
        return Objective(model, layer=layer, channel=channel)
    if channel is not None:
        raise TargetError("--channel needs --layer")
    if target is None:
        target = top_class_target(model, log_mel)
    return Objective(model, targets=resolve_targets(model, target))


# ---------------------------------------------------------------------------------------------
# Objectives of a sound heard by one or several models
# ---------------------------------------------------------------------------------------------

SCORES = ("logit", "log-prob")


@dataclass(frozen=True)
class Member:
    """One model of an ensemble: its target objective (classes resolved in its own vocabulary)
    and its weight in the sum."""

    objective: Objective
    weight: float = 1.0

    @property
    def model(self) -> AudioClassifier:
        return self.objective.model


class SoundObjective:
    """What a dream on a *sound* ascends: the sound ``[n]`` at ``rate`` Hz is heard by every
    member model through its own resampling and front-end, optionally as ``changes`` (random
    changed copies, averaged: expectation over transformations).

    ``score="logit"`` ascends each member's target logits (as :class:`Objective`);
    ``"log-prob"`` their log-probabilities, which saturate once a model is convinced so the
    others get the gradient (and put models with different logit scales on one scale).
    ``confidence`` is the *least* convinced member's: ``until`` means every model got there.
    """

    def __init__(self, members: Sequence[Member], rate: int, *, score: str = "logit",
                 changes: Any = None, generator: torch.Generator | None = None):
        if not members:
            raise DreamsoundError("a sound objective needs at least one model")
        if score not in SCORES:
            raise DreamsoundError(f"unknown score {score!r}; choose {' or '.join(SCORES)}")
        if any(m.objective.layer is not None for m in members) and len(members) > 1:
            raise TargetError("a layer objective belongs to one model; dream on one model")
        self.members = list(members)
        self.rate = int(rate)
        self.score = score
        self.changes = changes
        self.generator = generator if generator is not None else torch.Generator()

    @property
    def model(self) -> AudioClassifier:
        """The primary model (the first): distances and the report are on its scale."""
        return self.members[0].model

    @property
    def targets(self) -> list[TargetTerm]:
        return self.members[0].objective.targets

    def _heard(self, member: Member, audio: torch.Tensor) -> torch.Tensor:
        from dreamsound.spectral.resample import resample_fft

        return member.model.log_mel(resample_fft(audio, self.rate, member.model.sample_rate))

    def _value(self, member: Member, log_mel: torch.Tensor) -> tuple[torch.Tensor, Any]:
        objective = member.objective
        if self.score == "logit" or objective.layer is not None:
            return objective(log_mel)
        logits = member.model.logits_from_log_mel(log_mel)
        log_scores = member.model.log_scores_from_logits(logits)
        value = sum(t.weight * log_scores[:, t.index].mean() for t in objective.targets)
        return value, logits  # type: ignore[return-value]

    def __call__(self, audio: torch.Tensor) -> tuple[torch.Tensor, list | None]:
        copies = [audio] if self.changes is None else \
            self.changes.draw(audio, self.rate, self.generator)
        total: Any = 0.0
        logits: list = []
        for copy in copies:
            for member in self.members:
                value, member_logits = self._value(member, self._heard(member, copy))
                total = total + member.weight * value
                logits.append(member_logits)
        # Confidences of changed copies are not the sound's: the loop then asks confidence_of.
        return total / len(copies), (logits if self.changes is None else None)

    def confidence(self, logits: list | None) -> float | None:
        if logits is None:
            return None
        values = [m.objective.confidence(lg) for m, lg in zip(self.members, logits)]
        return None if any(v is None for v in values) else min(values)  # type: ignore[type-var]

    def confidence_of(self, audio: torch.Tensor) -> float | None:
        """The least convinced member's confidence in the unchanged sound (no gradients)."""
        with torch.no_grad():
            values = [m.objective.confidence_of(self._heard(m, audio.detach()))
                      for m in self.members]
        return None if any(v is None for v in values) else min(values)  # type: ignore[type-var]

    def member_confidences(self, audio: torch.Tensor) -> list[float | None]:
        """Each member's confidence in the unchanged sound (for the report)."""
        with torch.no_grad():
            return [m.objective.confidence_of(self._heard(m, audio.detach()))
                    for m in self.members]
