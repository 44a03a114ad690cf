"""Seeds for an experiment's random choices, derived from the run's one seed.

Every choice (the shuffle of a class, the wrong class of a clip, the dream of a job) gets its own
seed, hashed from the run's seed and what the choice is for, so no choice depends on any other.
"""

from __future__ import annotations

import hashlib

__all__ = ["derive_seed"]


def derive_seed(seed: int, *parts: str) -> int:
    """A 31-bit seed for one random choice, fixed by the run's seed and what it is for.

    Hashing (seed, purpose, clip) rather than drawing from one stream keeps every choice
    independent of the others: adding clips, changing ``--per-class``, the number of workers or
    the executor never changes the wrong class or the dream of a clip already in the list.

    Parameters
    ----------
    seed : int
        The run's seed.
    *parts : str
        What the seed is for, e.g. ``("wrong", "cel/x.wav")``.
    """
    text = "\x1f".join([str(int(seed)), *parts]).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little") & 0x7FFFFFFF
