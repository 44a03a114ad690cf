"""The registry entry of ``irmas-pons`` (:data:`SPEC`): build the classifier from its files.

``dreamsound classes irmas-pons`` reads the class names from :func:`class_names_and_codes` in
this module (the factory's module) without loading any weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from dreamsound.models.base import AudioClassifier
from dreamsound.models.pons.frontend import FRONT_END, PonsFrontEnd
from dreamsound.models.pons.network import PonsClassifier, PonsNetwork, class_names_and_codes
from dreamsound.models.pons.weights import (
    MODEL_NAME,
    PONS_MEAN,
    PONS_WEIGHTS,
    load_hdf5,
    load_mean,
)
from dreamsound.models.registry import ModelSpec
from dreamsound.models.weights import resolve_weights_files

log = logging.getLogger(__name__)


def build_from_files(weights_path: str | Path, mean_path: str | Path, *,
                     device: torch.device | str = "cpu") -> PonsClassifier:
    """A :class:`PonsClassifier` from the ``.hdf5`` and the mean ``.npy`` (eval mode)."""
    state = load_hdf5(weights_path)
    state["mean"] = load_mean(mean_path)
    network = PonsNetwork()
    network.load_state_dict(state)
    names, codes = class_names_and_codes()
    model = PonsClassifier(MODEL_NAME, PonsFrontEnd(FRONT_END), network, names, codes)
    return model.to(device).eval()


def build(weights: Path | None, device: torch.device) -> AudioClassifier:
    """Registry factory: resolve both files and load.

    ``weights`` (``--weights``) is a folder holding ``singlelayer.hdf5`` (or the official
    ``epoch.115-val_loss.0.902-fbeta.0.673.hdf5``) and ``singlelayer_mean.npy``, or the
    ``.hdf5`` itself with the mean beside it. Without it: ``$DREAMSOUND_IRMAS_PONS_WEIGHTS`` /
    ``$DREAMSOUND_IRMAS_PONS_MEAN``, the cache, then a download (sha256-checked).
    """
    weights_path, mean_path = resolve_weights_files((PONS_WEIGHTS, PONS_MEAN), weights)
    log.info("loading irmas-pons weights from %s and %s", weights_path, mean_path)
    return build_from_files(weights_path, mean_path, device=device)


SPEC = ModelSpec(
    name=MODEL_NAME,
    summary="Pons et al. 2017 single-layer timbre CNN, trained on real IRMAS (11 instruments, "
            "12 kHz); AGPL-3.0 weights, downloaded",
    factory=build,
    weights=(PONS_WEIGHTS, PONS_MEAN),
)
