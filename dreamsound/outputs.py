"""Output names and files: where a dream's or a sonification's files go, and writing them.

Every file is written atomically and never over an input (:mod:`dreamsound.io_utils`). Nothing
here analyses sound: judging the written audio is the caller's explicit step
(:meth:`dreamsound.api.Dreamer.save`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dreamsound.audio import save_audio
from dreamsound.engine.objectives import parse_target_spec
from dreamsound.engine.result import DreamReport, DreamResult
from dreamsound.errors import OutputError
from dreamsound.inputs import is_generated
from dreamsound.io_utils import PathLike, atomic_write

_AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".aif", ".aiff", ".w64", ".caf"}


def slug(text: str) -> str:
    """A file-name-safe version of a class or layer name (``"Violin, fiddle"`` -> ``violin``)."""
    first = str(text).split(",")[0]
    cleaned = re.sub(r"[^a-z0-9+]+", "_", first.lower()).strip("_")
    return cleaned or "dream"


def _objective_name(*, layer: str | None, channel: int | None, query: str | None,
                    target_names: list[str]) -> str:
    if layer is not None:
        name = f"layer-{slug(layer.replace('/', '_'))}"
        return name + (f"-c{channel}" if channel is not None else "")
    if query:
        return "+".join(slug(q) for q, _ in parse_target_spec(query))
    return "+".join(slug(t) for t in target_names)


def dream_name(report: DreamReport, *, query: str | None = None) -> str:
    """The ``dream-...`` part of default output names: ``dream-violin``, ``dream-violin+flute``,
    ``dream-layer-layer10_pointwise-c5``; ``-waveform-<rule>[-flip]`` in the waveform domain.
    ``query`` is the target as the user typed it (names the file as asked)."""
    name = _objective_name(layer=report.layer, channel=report.channel, query=query,
                           target_names=[t["name"] for t in report.targets])
    if report.domain == "waveform":
        name += f"-waveform-{report.rule}" + ("-flip" if report.flip else "")
    return f"dream-{name}"


def sonify_name(report: dict, *, query: str | None = None) -> str:
    """``sonify-violin``, ``sonify-layer-conv1-c3``; ``-waveform`` in the waveform domain."""
    name = _objective_name(layer=report["layer"], channel=report["channel"], query=query,
                           target_names=[report["target"] or ""])
    return f"sonify-{name}" + ("-waveform" if report["domain"] == "waveform" else "")


def output_stem(input_label: str, name: str, out: str | Path | None, *, several: bool) -> Path:
    """Where a dream's files go: a path *without* extension (``.wav``/``.json``/... are added).

    ``out`` None: beside the input (``loop.dream-violin``); a generated start goes to the current
    folder (``noise-3s.dream-violin``). ``out`` an existing folder or ending in ``/``: that
    folder. Otherwise ``out`` is the stem itself (a ``.wav``-like suffix is dropped), allowed
    for one output only.
    """
    if is_generated(input_label):
        base_dir = Path(".")
        stem = re.sub(r"[^a-z0-9]+", "-", input_label.lower()).strip("-")
    else:
        source = Path(input_label)
        base_dir, stem = source.parent, source.stem
    if out is None:
        return base_dir / f"{stem}.{name}"
    target = Path(out).expanduser()
    if target.is_dir() or str(out).endswith(("/", "\\")):
        return target / f"{stem}.{name}"
    if several:
        raise OutputError(f"--out {out}: with several inputs or targets, --out must be a folder "
                          "(end it with /)")
    return target.with_suffix("") if target.suffix.lower() in _AUDIO_SUFFIXES else target


def _beside(stem: Path, suffix: str) -> Path:
    return stem.with_name(stem.name + suffix)


def write_audio(result: DreamResult, stem: PathLike, *, inputs: Sequence[PathLike] = (),
                subtype: str = "PCM_16") -> Path:
    """Write the dreamed sound to ``<stem>.wav``."""
    protected = [p for p in (result.input_path, *inputs) if p is not None]
    return save_audio(_beside(Path(stem), ".wav"), result.audio, result.sample_rate,
                      inputs=protected, subtype=subtype)


def write_companions(result: DreamResult, stem: PathLike, *, gradient: bool = True,
                     plot: bool = False, inputs: Sequence[PathLike] = (),
                     subtype: str = "PCM_16") -> dict[str, Any]:
    """Write ``<stem>.gradient.wav``, ``<stem>.stepNNNN.wav`` per snapshot and, with ``plot``,
    ``<stem>.png``; return their paths by kind (``gradient``, ``snapshots``, ``plot``)."""
    stem = Path(stem)
    protected = [p for p in (result.input_path, *inputs) if p is not None]
    written: dict[str, Any] = {}
    if gradient:
        written["gradient"] = str(save_audio(_beside(stem, ".gradient.wav"),
                                             result.gradient_audio, result.sample_rate,
                                             inputs=protected, subtype=subtype))
    if result.snapshots:
        written["snapshots"] = [
            str(save_audio(_beside(stem, f".step{step:04d}.wav"), audio, result.sample_rate,
                           inputs=protected, subtype=subtype))
            for step, audio in result.snapshots]
    if plot:
        from dreamsound.viz import plot_dream

        written["plot"] = str(plot_dream(result, _beside(stem, ".png"), inputs=protected))
    return written


def write_json(data: Any, path: PathLike, *, inputs: Sequence[PathLike] = ()) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    target = Path(path)
    with atomic_write(target, inputs=inputs) as temp:
        temp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return target


def report_path(stem: PathLike) -> Path:
    """Where a dream's report goes: ``<stem>.json``."""
    return _beside(Path(stem), ".json")


def write_sonification(result: Any, stem: PathLike) -> dict[str, Any]:
    """Write a :class:`~dreamsound.api.SonifyResult` to ``<stem>.wav``; return its report with
    ``outputs`` filled in (a new dict)."""
    path = save_audio(_beside(Path(stem), ".wav"), result.audio, result.sample_rate,
                      inputs=[result.input_path] if result.input_path else [])
    return {**result.report, "outputs": {"audio": str(path)}}
