"""Scoring a sound with a model: what a judge hears in a log-mel or a waveform.

The dream's own model judges its progress (before, after, rendered); other models judge the
written audio without taking part in the dream (:mod:`dreamsound.engine.transfer`). Both go
through :class:`Judge`, so "confidence", "top-3" and "success" mean the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dreamsound import metrics
from dreamsound.engine.objectives import Objective
from dreamsound.models.base import AudioClassifier


@dataclass(frozen=True)
class Analysis:
    """What a judge hears in one sound.

    Attributes
    ----------
    top : list of dict
        The three best classes, ``{"name", "score"}``, best first.
    objective : float
        The objective's value (logit sum or layer energy).
    confidence : float or None
        The target confidence ``until`` is compared with (None for a layer objective).
    confidences : list of float
        Per target term.
    success : bool or None
        Whether the (single positive) target is the top-1 class; None otherwise.
    """

    top: list[dict]
    objective: float
    confidence: float | None
    confidences: list[float]
    success: bool | None


class Judge:
    """A model and an objective, scoring sounds without gradients."""

    def __init__(self, model: AudioClassifier, objective: Objective):
        self.model = model
        self.objective = objective

    def analyze(self, log_mel: torch.Tensor) -> Analysis:
        """Scores of a log-mel ``[T, F]`` of this judge's model."""
        model, objective = self.model, self.objective
        with torch.no_grad():
            logits = model.logits_from_log_mel(log_mel)
            value, _ = objective(log_mel)
        clip = model.scores_from_logits(logits).mean(dim=0)
        top = [{"name": name, "score": score}
               for name, score in metrics.top_k(clip, model.class_names, 3)]
        positives = [t for t in objective.targets if t.weight > 0]
        success = metrics.is_success(clip, positives[0].index) if len(positives) == 1 else None
        return Analysis(top=top, objective=float(value), confidence=objective.confidence(logits),
                        confidences=objective.confidences(logits) if objective.targets else [],
                        success=success)

    def log_mel(self, waveform: np.ndarray, *, n_frames: int | None = None) -> torch.Tensor:
        """The log-mel of a waveform at the model's rate, trimmed or padded (with the floor) to
        ``n_frames`` so that distances compare like with like."""
        model = self.model
        wave = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)).to(
            model.device)
        with torch.no_grad():
            log_mel = model.log_mel(wave)
        if n_frames is not None and log_mel.shape[-2] != n_frames:
            if log_mel.shape[-2] > n_frames:
                log_mel = log_mel[:n_frames]
            else:
                log_mel = F.pad(log_mel, (0, 0, 0, n_frames - log_mel.shape[-2]),
                                value=model.front_end.floor)
        return log_mel

    def analyze_waveform(self, waveform: np.ndarray, *, n_frames: int | None = None
                         ) -> tuple[Analysis, torch.Tensor]:
        """``(analysis, log-mel)`` of a waveform (see :meth:`log_mel`)."""
        log_mel = self.log_mel(waveform, n_frames=n_frames)
        return self.analyze(log_mel), log_mel
