"""Judges: models that took no part in a dream score it, before and after.

A dream convinces the model that dreamed it; whether it carries over is told by other models.
:func:`judge_sound` scores the original and the dreamed sound (as written) with a judge model,
the target mapped through the concept map (:mod:`dreamsound.models.concepts`: IRMAS ``vio`` ↔
AudioSet "Violin, fiddle" ↔ MTT "violin"), and says whether it moved
(:func:`dreamsound.metrics.judge_moved`). A judge must never be one of the dreaming models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from dreamsound import metrics
from dreamsound.audio import resample
from dreamsound.errors import TargetError
from dreamsound.models.base import AudioClassifier
from dreamsound.models.concepts import (
    Concept,
    comparable_indices,
    concept_indices,
    concept_of_class,
)


@dataclass(frozen=True)
class Verdict:
    """What one judge heard (the ``judges`` entries of a report).

    Attributes
    ----------
    model : str
        The judge's registry name.
    target : str
        The judge's class(es) for the dream's target, joined with ``" / "``.
    concept : str
        The concept the target was mapped through.
    confidence_before, confidence_after : float
        The judge's clip score for the target (the best of its classes for the concept) on the
        original and on the dream, 0..1.
    rank_before, rank_after : int
        The target's rank (1 = first) among the judge's comparable classes (every class the
        concept map knows for it).
    top_before, top_after : list of dict
        The judge's three best classes overall, ``{"name", "score"}``.
    moved : bool
        :func:`dreamsound.metrics.judge_moved`.
    """

    model: str
    target: str
    concept: str
    confidence_before: float
    confidence_after: float
    rank_before: int
    rank_after: int
    top_before: list[dict]
    top_after: list[dict]
    moved: bool

    def to_json(self) -> dict:
        return asdict(self)


def target_concept(model: AudioClassifier, index: int) -> Concept:
    """The concept of a dreaming model's target class (a :class:`TargetError` when the concept
    map does not know it, e.g. a layer objective or an AudioSet class outside it)."""
    codes = model.class_codes
    concept = concept_of_class(model.class_names[index], codes[index] if codes else "")
    if concept is None:
        raise TargetError(f"judges compare concepts across models; {model.name}'s class "
                          f"{model.class_names[index]!r} is not in the concept map "
                          "(dreamsound.models.concepts)")
    return concept


def judge_knows(judge: AudioClassifier, concept: Concept) -> bool:
    """Whether ``judge`` has a class for ``concept`` (MagnaTagATune has no organ, say)."""
    return bool(concept_indices(concept, judge.class_names, judge.class_codes))


def _clip_scores(model: AudioClassifier, audio: np.ndarray, rate: int) -> torch.Tensor:
    # A judge at a higher rate than the dream hears an empty top band; that is the dream.
    wave = resample(np.asarray(audio, dtype=np.float32), rate, model.sample_rate,
                    what="judged audio", warn_upsampling=False)
    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(wave)).to(model.device))
    return out.clip_scores.double().cpu()


def _score_and_rank(scores: torch.Tensor, wanted: list[int], comparable: list[int]
                    ) -> tuple[float, int]:
    """The best score among ``wanted`` and its rank among the comparable classes, where the
    concept's classes count as one."""
    best = max(float(scores[i]) for i in wanted)
    others = [float(scores[i]) for i in comparable if i not in wanted]
    return best, 1 + sum(1 for s in others if s > best)


def judge_sound(judge: AudioClassifier, concept: Concept, original: np.ndarray,
                dreamed: np.ndarray, rate: int) -> Verdict:
    """Score ``original`` and ``dreamed`` (mono float32 at ``rate`` Hz) with ``judge``.

    Raises :class:`TargetError` when the judge has no class for the concept.
    """
    wanted = concept_indices(concept, judge.class_names, judge.class_codes)
    if not wanted:
        raise TargetError(f"judge {judge.name} has no class for {concept.name!r}; choose a "
                          "judge that knows it (see `dreamsound classes --model ...`)")
    comparable = comparable_indices(judge.class_names, judge.class_codes)
    before_scores = _clip_scores(judge, original, rate)
    after_scores = _clip_scores(judge, dreamed, rate)
    before, rank_before = _score_and_rank(before_scores, wanted, comparable)
    after, rank_after = _score_and_rank(after_scores, wanted, comparable)

    def top(scores: torch.Tensor) -> list[dict]:
        return [{"name": n, "score": s} for n, s in metrics.top_k(scores, judge.class_names, 3)]

    return Verdict(model=judge.name, target=" / ".join(judge.class_names[i] for i in wanted),
                   concept=concept.name, confidence_before=before, confidence_after=after,
                   rank_before=rank_before, rank_after=rank_after,
                   top_before=top(before_scores), top_after=top(after_scores),
                   moved=metrics.judge_moved(before, after, rank_before, rank_after))


def matched_noise(original: np.ndarray, rmse_db: float, model: AudioClassifier, *,
                  seed: int) -> np.ndarray:
    """The null baseline of a dream: ``original`` plus white noise scaled so that its rmse_db
    from the original, on ``model``'s log-mel, equals the dream's ``rmse_db``.

    A judge's gain on a dream is read against its gain on a change of the same size at random.

    Parameters
    ----------
    original : ndarray float32 [n]
        At ``model``'s rate.
    rmse_db : float
        The dream's distance from the original (dB).
    seed : int
        Seeds the noise.
    """
    noise = np.random.default_rng(seed).standard_normal(original.size).astype(np.float32)
    return mixed_at_distance(original, noise, rmse_db, model)


def mixed_at_distance(original: np.ndarray, addition: np.ndarray, rmse_db: float,
                      model: AudioClassifier) -> np.ndarray:
    """``original + gain * addition``, the gain chosen so that the mixture's rmse_db from the
    original, on ``model``'s log-mel, equals ``rmse_db``.

    With white noise as the addition this is the null baseline (:func:`matched_noise`); with a
    recording of the target instrument it is the reference a dream is read against: what the
    real thing, added at the dream's own distance, makes a judge hear. The gain is found by
    bisection (30 halvings) after doubling until the addition is loud enough (at most 1000).

    Parameters
    ----------
    original : ndarray float32 [n]
        At ``model``'s rate.
    addition : ndarray float32 [m]
        At the same rate; repeated or cut to ``n`` samples.
    rmse_db : float
        The wanted distance from the original (dB).
    """
    addition = np.resize(np.asarray(addition, dtype=np.float32), original.size)
    with torch.no_grad():
        reference = model.log_mel(torch.from_numpy(original).to(model.device))

        def distance(gain: float) -> float:
            changed = torch.from_numpy(original + gain * addition).to(model.device)
            return metrics.rmse_db(model.log_mel(changed), reference, front_end=model.front_end)

        low, high = 0.0, 1.0
        while distance(high) < rmse_db and high < 1e3:
            high *= 2.0
        for _ in range(30):
            middle = 0.5 * (low + high)
            low, high = (middle, high) if distance(middle) < rmse_db else (low, middle)
    return (original + 0.5 * (low + high) * addition).astype(np.float32)
