"""What a model hears in a sound: clip-level and per-patch scores (:class:`Classification`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dreamsound.models.base import AudioClassifier


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


def classify_waveform(model: AudioClassifier, waveform: np.ndarray) -> Classification:
    """Scores of a mono float32 waveform ``[n]`` at the model's rate (see
    :func:`dreamsound.classify` for files, arrays at other rates and generated starts)."""
    # no_grad, not inference_mode: a model may cache tensors on its first call (the instrument
    # CNN folds its batch norms), and inference tensors could not take part in a later dream.
    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)).to(
            model.device))
    frame_scores = out.scores.float().cpu().numpy()
    hop_s = model.front_end.config.patch_hop_samples / model.sample_rate
    return Classification(model=model.name, class_names=list(model.class_names),
                          scores=frame_scores.mean(axis=0), frame_scores=frame_scores,
                          frame_starts_s=np.arange(len(frame_scores)) * hop_s)
