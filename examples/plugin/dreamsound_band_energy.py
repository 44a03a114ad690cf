"""An example dreamsound plug-in model: ``band-energy``, three classes ``low``, ``mid``, ``high``.

It shows the whole contract a plug-in fulfils, with no training and no weights file:

* a :class:`~dreamsound.spectral.FrontEndConfig` (here YAMNet's 16 kHz, 64-band log-mel);
* a :class:`~dreamsound.models.base.PatchNetwork` whose ``forward`` maps log-mel patches
  ``[P, 1, frames, bands]`` to ``(logits [P, C], embeddings [P, D])`` and whose
  ``named_layers`` exposes layers for ``--layer``;
* a :class:`~dreamsound.models.registry.ModelSpec` named in this package's entry point
  (``[project.entry-points."dreamsound.models"]`` in ``pyproject.toml``).

The "network" averages each patch over time, then scores how much louder the low (< 500 Hz), mid
(500-2000 Hz) or high (> 2000 Hz) bands are than the patch's average, so dreaming toward
``high`` audibly brightens a sound. Install it with ``pip install -e examples/plugin`` and try::

    dreamsound models
    dreamsound dream examples/loop.wav --model band-energy --target high --plot
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from dreamsound.errors import WeightsError
from dreamsound.models.base import AudioClassifier, PatchNetwork
from dreamsound.models.registry import ModelSpec
from dreamsound.spectral import FrontEndConfig, LogMelFrontEnd

FRONT_END = FrontEndConfig(sample_rate=16000, n_fft=512, win_length=400, hop_length=160,
                           n_mels=64, fmin=125.0, fmax=7500.0, log_offset=1e-3,
                           patch_frames=96, patch_hop_frames=48)
CLASSES = ["low", "mid", "high"]
EDGES_HZ = (0.0, 500.0, 2000.0, 1e9)


class BandEnergyNetwork(PatchNetwork):
    """Time-average each band, then a fixed linear read-out per frequency region."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.Identity()  # a named layer: the time-averaged log-mel [P, bands]
        self.logits = nn.Linear(FRONT_END.n_mels, len(CLASSES))
        centres = LogMelFrontEnd(FRONT_END).band_centres_hz()  # [bands], Hz
        weight = np.zeros((len(CLASSES), FRONT_END.n_mels))
        for k in range(len(CLASSES)):
            inside = (centres >= EDGES_HZ[k]) & (centres < EDGES_HZ[k + 1])
            # Mean of the region minus the mean of all bands: positive when the region stands out.
            weight[k, inside] = 1.0 / inside.sum()
            weight[k] -= 1.0 / FRONT_END.n_mels
        with torch.no_grad():
            self.logits.weight.copy_(torch.from_numpy(weight * 2.0))
            self.logits.bias.zero_()

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings = self.pool(patches[:, 0].mean(dim=-2))  # [P, bands]
        return self.logits(embeddings), embeddings

    def named_layers(self) -> dict[str, nn.Module]:
        return {"pool": self.pool, "logits": self.logits}


def build(weights: Path | None, device: torch.device) -> AudioClassifier:
    """The registry factory: ``(weights path or None, device) -> AudioClassifier``."""
    if weights is not None:
        raise WeightsError("band-energy is built by hand and takes no weights file")
    return AudioClassifier("band-energy", FRONT_END, BandEnergyNetwork(), CLASSES).to(device)


SPEC = ModelSpec(name="band-energy", summary="example plug-in: low / mid / high band energy",
                 factory=build)
