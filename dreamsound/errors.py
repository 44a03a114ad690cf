"""The one exception hierarchy of dreamsound.

Library code raises these with messages a user can act on; the CLI turns any of them into one red
line and exit code 2. Anything else escaping is a bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DreamsoundError(Exception):
    """Root of every error dreamsound raises on purpose."""


class AudioError(DreamsoundError):
    """An input sound cannot be used: missing, empty, corrupt, silent, non-finite, too long."""


class OutputError(DreamsoundError):
    """An output cannot be written: same path as the input, unwritable folder, ..."""


class WeightsError(DreamsoundError):
    """Model weights are missing, corrupt, of the wrong shape or fail their checksum."""


class ModelError(DreamsoundError):
    """Unknown model name, broken plug-in, or a model that does not honour the contract."""


class TargetError(DreamsoundError):
    """A target class or layer name the model does not have."""


class ConfigError(DreamsoundError):
    """A dream setting out of range or inconsistent with another (names the flag)."""


class DataError(DreamsoundError):
    """A data set folder that cannot be used (empty, wrong layout, unreadable files)."""


def did_you_mean(word: str, choices: Iterable[str], *, n: int = 5) -> str:
    """Return ``" Did you mean: a, b?"`` for the closest ``choices`` to ``word`` (or ``""``)."""
    pool = list(choices)
    lowered = {c.lower(): c for c in pool}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.5)
    # Substring hits are often what a user meant ("guitar" -> "Electric guitar").
    close += [k for k in lowered if word.lower() in k and k not in close]
    picks = [lowered[k] for k in close[:n]]
    return f" Did you mean: {', '.join(picks)}?" if picks else ""
