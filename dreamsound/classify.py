"""What does a model hear in a sound? Clip-level and per-patch scores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dreamsound.models.base import AudioClassifier
from dreamsound.models.registry import DEFAULT_MODEL, load_model


@dataclass
class Classification:
    """Scores of one clip.

    Attributes
    ----------
    model : str
        Registry name of the model.
    class_names : list of str
        All class names, in index order.
    scores : ndarray [C]
        Clip-level score per class: the mean of the patch scores.
    frame_scores : ndarray [N, C]
        Score per patch.
    frame_starts_s : ndarray [N]
        Start time of each patch in seconds.
    """

    model: str
    class_names: list[str]
    scores: np.ndarray
    frame_scores: np.ndarray
    frame_starts_s: np.ndarray

    def top(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The ``k`` best classes as ``(index, name, score)``, best first."""
        order = np.argsort(-self.scores, kind="stable")[:k]
        return [(int(i), self.class_names[i], float(self.scores[i])) for i in order]

    def to_json(self, *, frames: bool = False, top: int = 5) -> dict:
        """The stable JSON shape of ``dreamsound classify --json`` (see README)."""
        out: dict = {
            "model": self.model,
            "class_names": self.class_names,
            "scores": [float(s) for s in self.scores],
            "top": [{"index": i, "name": n, "score": s} for i, n, s in self.top(top)],
        }
        if frames:
            out["frames"] = [{"start_s": float(t), "scores": [float(s) for s in row]}
                             for t, row in zip(self.frame_starts_s, self.frame_scores)]
        return out


def classify(audio: str | Path | np.ndarray, *, model: str | AudioClassifier = DEFAULT_MODEL,
             weights: str | Path | None = None, device: str | None = None,
             sample_rate: int | None = None,
             max_seconds: float | None = 600.0) -> Classification:
    """Classify a sound file or waveform.

    Parameters
    ----------
    audio : path or ndarray [n]
        A sound file (any format :func:`dreamsound.audio.load_audio` reads), or a mono float
        waveform at ``sample_rate`` Hz (the model's rate when None).
    model : str or AudioClassifier
        A registry name or an already loaded model.
    weights, device
        Passed to :func:`dreamsound.load_model` when ``model`` is a name.
    max_seconds : float or None
        Refuse longer files (None: no limit).
    """
    from dreamsound.audio import load_audio, validate_waveform

    net = model if isinstance(model, AudioClassifier) else load_model(model, weights, device)
    if isinstance(audio, np.ndarray):
        waveform = validate_waveform(audio, what="input waveform")
        if sample_rate is not None and sample_rate != net.sample_rate:
            from dreamsound.audio import resample

            waveform = resample(waveform, sample_rate, net.sample_rate)
    else:
        waveform = load_audio(audio, sample_rate=net.sample_rate, max_seconds=max_seconds)
    with torch.inference_mode():
        out = net(torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)).to(net.device))
    frame_scores = out.scores.float().cpu().numpy()
    hop_s = net.front_end.config.patch_hop_samples / net.sample_rate
    return Classification(model=net.name, class_names=list(net.class_names),
                          scores=frame_scores.mean(axis=0), frame_scores=frame_scores,
                          frame_starts_s=np.arange(len(frame_scores)) * hop_s)
