"""What a dream gives back: :class:`DreamResult` (audio, spectrograms) and :class:`DreamReport`
(the numbers; ``to_json()`` is the ``dream --json`` object, its keys documented in the README).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class DreamReport:
    """The report of one dream. Confidences are in [0, 1]; distances in dB (``rmse_db``) and dB²
    (``mse_db2``) on the model's own mel scale (:mod:`dreamsound.metrics`).

    Attributes
    ----------
    model : str
        Registry name of the model.
    input : str
        The input file path, or the generated start (``"noise:3s"``), or ``"array"``.
    objective : str
        ``"target"``, ``"layer"`` or ``"top-class"``.
    target : str or None
        The target class name(s) joined with ``" + "`` (None for a layer).
    targets : list of dict
        Per class: ``name``, ``index``, ``weight`` and its three confidences.
    layer, channel : str or None, int or None
        The layer objective (None otherwise).
    domain : str
        ``"spectrogram"`` or ``"waveform"``.
    rule : str or None
        The waveform update rule (None in the spectrogram domain).
    flip : bool
        Whether the waveform rule's roles were swapped.
    steps : int
        Gradient steps taken (summed over octaves).
    steps_requested : int
        Steps asked for (per octave).
    stopped : str
        ``"until"`` when ``until`` was reached, else ``"steps"``.
    seconds : float
        Wall-clock seconds of the dream (loop + rendering).
    seconds_per_step : float or None
        Mean seconds per gradient step.
    confidence_before : float or None
        Target confidence of the original (the minimum over positively weighted targets when
        there are several; None for a layer objective).
    confidence_after : float or None
        ... of the dreamed spectrogram (spectrogram domain: the ascended log-mel; waveform
        domain: the log-mel of the dreamed samples, before limiting).
    confidence_rendered : float or None
        ... of the rendered audio: after peak limiting, and once the file is written and judged
        again (:meth:`dreamsound.api.Dreamer.judge_written`), re-loaded from it.
    rendered_from : str
        ``"memory"`` or ``"file"``: where ``confidence_rendered`` was measured.
    success_after, success_rendered : bool or None
        :func:`dreamsound.metrics.is_success` on the dreamed spectrogram / the rendered audio.
    top_before, top_after, top_rendered : list of dict
        Top-3 classes ``[{"name", "score"}]`` of the original, the dream, the rendered audio.
    objective_before, objective_after : float
        Objective value (logit or energy) before and after (dreamed spectrogram).
    rmse_db, mse_db2 : float
        Distance original -> dreamed spectrogram (dB, dB²).
    rmse_db_rendered, mse_db2_rendered : float
        Distance original -> rendered audio.
    sample_rate : int
        Hz of the written audio (the model's rate).
    duration_s : float
        Seconds of audio.
    settings : dict
        Every knob used (:meth:`dreamsound.config.DreamConfig.to_json`).
    outputs : dict
        Paths written (``audio``, ``gradient``, ``report``, ``plot``, ``snapshots``); empty
        until the files are written (:mod:`dreamsound.outputs`).
    judges : list of dict
        What models outside the dream heard in the written audio
        (:class:`dreamsound.engine.transfer.Verdict`); a judge with no class for the target's
        concept gets ``target`` and ``moved`` None and a ``note``; empty without ``--judge``.
    ensemble : list of dict
        With several dreaming models: per model ``model``, ``weight``, ``target`` (its class
        for the dream's target) and its ``confidence_before`` / ``confidence_rendered``;
        empty for one model.
    """

    model: str
    input: str
    objective: str
    target: str | None
    targets: list[dict]
    layer: str | None
    channel: int | None
    domain: str
    rule: str | None
    flip: bool
    steps: int
    steps_requested: int
    stopped: str
    seconds: float
    seconds_per_step: float | None
    confidence_before: float | None
    confidence_after: float | None
    confidence_rendered: float | None
    rendered_from: str
    success_after: bool | None
    success_rendered: bool | None
    top_before: list[dict]
    top_after: list[dict]
    top_rendered: list[dict]
    objective_before: float
    objective_after: float
    rmse_db: float
    mse_db2: float
    rmse_db_rendered: float
    mse_db2_rendered: float
    sample_rate: int
    duration_s: float
    settings: dict
    outputs: dict = field(default_factory=dict)
    judges: list[dict] = field(default_factory=list)
    ensemble: list[dict] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The documented ``dream --json`` object (``judges`` and ``ensemble`` only when there
        are any)."""
        out = dataclasses.asdict(self)
        for key in ("judges", "ensemble"):
            if not out[key]:
                del out[key]
        return out

    def __getitem__(self, key: str) -> Any:
        """``report["rmse_db"]``: reports were plain dicts before the engine's restructuring, and
        scripts written then keep working."""
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.__dataclass_fields__

    def get(self, key: str, default: Any = None) -> Any:
        """Like ``dict.get`` (see :meth:`__getitem__`)."""
        return getattr(self, key) if key in self.__dataclass_fields__ else default

    def replace(self, **changes: Any) -> DreamReport:
        """A copy with some fields changed (reports are not edited in place)."""
        return dataclasses.replace(self, **changes)


@dataclass
class DreamResult:
    """What a dream gives back.

    Attributes
    ----------
    audio : ndarray float32 [n]
        The dreamed sound at :attr:`sample_rate` (peak-limited to -1 dBFS unless asked not to).
    sample_rate : int
        Hz (the model's rate).
    original : ndarray float32 [n]
        The input at :attr:`sample_rate`.
    gradient_audio : ndarray float32 [n]
        The sonified gradient of the first step (see :mod:`dreamsound.sonification`), -1 dBFS.
    spectrograms : dict of str -> ndarray [T, F]
        ``"original"``, ``"dreamed"``, ``"rendered"``: the model's log-mels (its front-end's
        ``mel_db`` gives dB); ``"gradient"``: the first step's gradient as a log-mel-shaped array
        (spectrogram domain: d objective / d log-mel; waveform domain: the log-mel of the
        gradient waveform).
    frame_rate : float
        Spectrogram frames per second.
    band_hz : ndarray [F]
        Centre frequency of each mel band (Hz), for axes.
    report : DreamReport
    gradient : ndarray
        The raw first-step gradient: ``[T, F]`` (spectrogram) or ``[n]`` (waveform).
    front_end : LogMelFrontEnd or None
        The model's front-end: its ``mel_db`` turns the spectrograms into dB (figures).
    input_path : Path or None
        The input file (outputs never overwrite it).
    snapshots : list of (int, ndarray [n])
        ``(step, audio)`` every ``snapshot_every`` steps, peak-limited like the result.
    """

    audio: np.ndarray
    sample_rate: int
    original: np.ndarray
    gradient_audio: np.ndarray
    spectrograms: dict[str, np.ndarray]
    frame_rate: float
    band_hz: np.ndarray
    report: DreamReport
    gradient: np.ndarray
    front_end: Any = None
    input_path: Path | None = None
    snapshots: list[tuple[int, np.ndarray]] = field(default_factory=list)
