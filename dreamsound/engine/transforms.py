"""Per-step transforms of the gradient and of what the model sees.

Each transform is a small callable applied once per step by the loop
(:mod:`dreamsound.engine.loop`): gradient transforms take and return a gradient of the
parameter's shape; view transforms change the input a model sees (a random time roll) without
changing the parameter. Adding one is one class here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dreamsound.config import NORMALIZATIONS
from dreamsound.errors import DreamsoundError

#: Largest change of one element per step, in units of the mean step (``normalize="mean"``).
MAX_ELEMENT_STEP = 8.0


def smooth_gradient(gradient: torch.Tensor, passes: int) -> torch.Tensor:
    """Blur a log-mel gradient ``[T, F]`` with ``passes`` separable ``[1, 2, 1] / 4`` kernels
    along time and along mel bands (edges replicated; a constant stays constant).

    Why: neighbouring STFT frames share most of their samples (YAMNet: 400-sample windows every
    160) and neighbouring mel triangles share FFT bins, so a change that alternates from one
    frame or band to the next cannot be realised by any sound. Strided convolutions make raw
    gradients rich in exactly such checkerboard patterns; ascending them raises the confidence
    on the spectrogram but not on the rendered audio. One pass keeps the rendered confidence
    much closer to the dreamed one at the same dB distance (measured on YAMNet).
    """
    if passes <= 0:
        return gradient
    kernel = gradient.new_tensor([0.25, 0.5, 0.25])
    image = gradient.T[None, None]  # [1, 1, F, T]
    for _ in range(passes):
        image = F.conv2d(F.pad(image, (1, 1, 0, 0), mode="replicate"), kernel.view(1, 1, 1, 3))
        image = F.conv2d(F.pad(image, (0, 0, 1, 1), mode="replicate"), kernel.view(1, 1, 3, 1))
    return image[0, 0].T


def normalize_gradient(gradient: torch.Tensor, how: str, *, rows: int | None = None
                       ) -> torch.Tensor:
    """``g / mean|g|`` (``"mean"``) or ``g / max|g|`` (``"max"``).

    ``rows``: take the statistic over the first ``rows`` entries of the first axis only (the
    frames that may change), so the mean step over those is 1 (slightly less where ``"mean"``
    clips an element at :data:`MAX_ELEMENT_STEP`).

    Raises :class:`DreamsoundError` for a non-finite or all-zero gradient (nothing to follow).
    """
    if not torch.isfinite(gradient).all():
        raise DreamsoundError("the gradient holds NaN/Inf values; the model's output is not "
                              "differentiable at this input")
    magnitude = gradient.abs() if rows is None else gradient[:rows].abs()
    scale = magnitude.mean() if how == "mean" else magnitude.max()
    if how not in NORMALIZATIONS:
        raise DreamsoundError(f"unknown normalisation {how!r}; choose mean or max")
    if not scale > 0:
        raise DreamsoundError("the gradient is zero everywhere: nothing to ascend. A silent input "
                              "has no gradient in the waveform domain; use --domain spectrogram "
                              "or start from noise (noise:3s)")
    normalized = gradient / scale
    if how == "mean":
        # A gradient concentrated on a few bins would move them by hundreds of dB within a few
        # steps (until exp() of the log-mel overflows on rendering); no element may move more
        # than MAX_ELEMENT_STEP mean steps at once.
        normalized = normalized.clamp(-MAX_ELEMENT_STEP, MAX_ELEMENT_STEP)
    return normalized


class Jitter:
    """A random time roll per step (feature-visualisation "jitter"), seeded.

    Draws an integer shift in ``[-limit, limit]`` units (frames or samples, as the domain counts
    time) from the dream's one generator; a limit of 0 draws nothing, so a dream without jitter
    uses no random numbers here.
    """

    def __init__(self, limit: int, generator: torch.Generator):
        self.limit = int(limit)
        self.generator = generator

    def draw(self) -> int:
        """The next shift (0 when the limit is 0)."""
        if self.limit <= 0:
            return 0
        return int(torch.randint(-self.limit, self.limit + 1, (1,), generator=self.generator))
