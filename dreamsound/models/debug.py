"""``debug``: a tiny, randomly initialised model with the full contract.

It needs no weights file and runs in milliseconds, so the real CLI and engine can be tested end to
end offline. Its outputs mean nothing. Its classes are the 11 IRMAS instruments so that
``--target violin`` works on it as on the shipped default.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dreamsound.data.irmas import IRMAS_CODES, IRMAS_NAMES
from dreamsound.errors import WeightsError
from dreamsound.models.base import AudioClassifier, PatchNetwork
from dreamsound.models.registry import ModelSpec
from dreamsound.spectral import FrontEndConfig

FRONT_END = FrontEndConfig(sample_rate=16000, n_fft=512, win_length=400, hop_length=160,
                           n_mels=32, fmin=60.0, fmax=7800.0, log_offset=1e-3,
                           patch_frames=48, patch_hop_frames=24)


class DebugNetwork(PatchNetwork):
    """Two strided convolutions, global average pooling and a linear head."""

    def __init__(self, n_classes: int, seed: int = 0):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(16, n_classes)
        generator = torch.Generator().manual_seed(seed)  # same "random" model on every machine
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings = self.conv2(self.conv1(patches)).mean(dim=(-2, -1))
        return self.head(embeddings), embeddings

    def named_layers(self) -> dict[str, nn.Module]:
        return {"conv1": self.conv1, "conv2": self.conv2, "logits": self.head}


def build(weights: Path | None, device: torch.device) -> AudioClassifier:
    if weights is not None:
        raise WeightsError("the debug model is random and takes no weights file")
    return AudioClassifier("debug", FRONT_END, DebugNetwork(len(IRMAS_NAMES)), IRMAS_NAMES,
                           IRMAS_CODES)


SPEC = ModelSpec(name="debug", summary="tiny random model for tests (outputs mean nothing)",
                 factory=build)
