"""The one progress event type: what long work (dreams, sonifications, evaluations, training,
downloads) tells the caller while it runs.

The library never prints; it calls ``progress(event)`` with a :class:`ProgressEvent`. The CLI
renders every kind with one progress bar (:func:`dreamsound.cli.common.progress_bar`), the studio
streams them to the page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ProgressEvent:
    """One step of some long work.

    Attributes
    ----------
    stage : str
        What is running: ``"dream"``, ``"render"``, ``"sonify"``, ``"evaluate"``, ``"train"``,
        ``"download"``.
    step : int
        Units done so far (steps, jobs, epochs, bytes).
    total : int or None
        Units in all, when known.
    objective : float, optional
        The objective's value at this step (logit or layer energy).
    confidence : float, optional
        The target confidence the step saw (0..1).
    rmse_db : float, optional
        Distance of the current state from the original (dB).
    seconds : float, optional
        Wall time of this step (s).
    model : int, optional
        Index of the model (in an ensemble) the event is about.
    segment : int, optional
        Index of the segment of a long file being processed (0-based).
    segments : int, optional
        Number of segments of that file.
    message : str, optional
        A short human line (a file name, a job label, a training metric).
    """

    stage: str
    step: int
    total: int | None = None
    objective: float | None = None
    confidence: float | None = None
    rmse_db: float | None = None
    seconds: float | None = None
    model: int | None = None
    segment: int | None = None
    segments: int | None = None
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The event as a plain dict (for logs and the studio)."""
        return asdict(self)


#: A progress callback.
ProgressCallback = Callable[[ProgressEvent], None]
