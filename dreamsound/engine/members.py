"""Who takes part in a dream: the models that dream it (an ensemble, each with a weight) and
the judges that score it without taking part (:class:`dreamsound.api.Dreamer`).

Each rule is one line of error for the command line and the studio, checked on names (or the
loaded objects given) before any weights load or download."""

from __future__ import annotations

from typing import Any

import numpy as np

from dreamsound.errors import ConfigError
from dreamsound.models.base import AudioClassifier


def check_members(pairs: list[tuple[str | AudioClassifier, Any]],
                  judges: list[str | AudioClassifier]) -> None:
    """Refuse, before anything loads, a member's weight that is not a number > 0 (a member
    that takes no part, or pushes away from the target, is not what an ensemble means), a
    model given twice among the members or among the judges, and a judge that also dreams."""
    both = {_name_of(entry) for entry, _ in pairs} & {_name_of(j) for j in judges}
    if both:
        raise ConfigError("a judge never takes part in the dream it judges: "
                          f"{', '.join(sorted(both))} both dreams and judges")
    for n, judge in enumerate(judges):
        if any(_same(judge, other) for other in judges[:n]):
            raise ConfigError(f"{_name_of(judge)} is a judge twice; give each judge once")
    seen: list[str | AudioClassifier] = []
    for entry, weight in pairs:
        name = _name_of(entry)
        try:
            value = float(weight)
        except (TypeError, ValueError):
            value = float("nan")
        if not (np.isfinite(value) and value > 0):
            raise ConfigError(f"the weight of {name} in the ensemble must be a number > 0, "
                              f"got {weight!r}")
        if any(_same(entry, other) for other in seen):
            raise ConfigError(f"{name} is in the ensemble twice; give it once, with a weight "
                              f"(e.g. --model {name}:2)")
        seen.append(entry)


def _name_of(model: str | AudioClassifier) -> str:
    return model if isinstance(model, str) else model.name


def _same(one: str | AudioClassifier, other: str | AudioClassifier) -> bool:
    """The same model: one registry name, or one loaded object (two loaded models of one
    name, say two training seeds, are two models)."""
    return one is other or (isinstance(one, str) and one == other)

