"""musicnn's registry entries (:data:`SPEC`, :data:`MSD_SPEC`): build a tagger from weights."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dreamsound.models.base import AudioClassifier
from dreamsound.models.musicnn.frontend import FRONT_END, MusicnnFrontEnd
from dreamsound.models.musicnn.network import BN_EPSILON, MusicnnNetwork
from dreamsound.models.musicnn.weights import (
    MSD,
    MSD_WEIGHTS,
    MTT,
    MTT_WEIGHTS,
    Variant,
    load_variables,
)
from dreamsound.models.registry import ModelSpec
from dreamsound.models.weights import resolve_weights

log = logging.getLogger(__name__)


def build_model(variant: Variant, variables: dict[str, np.ndarray], *,
                device: torch.device | str = "cpu") -> AudioClassifier:
    """An :class:`AudioClassifier` for ``variant`` holding ``variables`` (eval mode)."""
    network = MusicnnNetwork(len(variant.tags))
    network.load_tf_variables(variables)
    model = AudioClassifier(variant.name, MusicnnFrontEnd(FRONT_END), network, variant.tags)
    return model.to(device).eval()


def _factory(variant: Variant) -> Callable[[Path | None, torch.device], AudioClassifier]:
    def build(weights: Path | None, device: torch.device) -> AudioClassifier:
        path = resolve_weights(variant.weights, weights)
        log.info("loading %s weights from %s", variant.tf_name, path)
        # A converted file names its model: MSD weights under MTT tags would mislabel every
        # output, so that is refused (an .npz carries no name and is taken as given).
        return build_model(variant, load_variables(path, expect=variant.tf_name),
                           device=device)

    build.__name__ = f"build_{variant.name.replace('-', '_')}"
    build.__module__ = __name__
    return build


SPEC = ModelSpec(name=MTT.name, summary=MTT.summary, factory=_factory(MTT),
                 weights=MTT_WEIGHTS)
MSD_SPEC = ModelSpec(name=MSD.name, summary=MSD.summary, factory=_factory(MSD),
                     weights=MSD_WEIGHTS)


def config_json(variant: Variant) -> str:
    """The ``config.json`` that ships beside a variant's weights (front end, tags, sizes)."""
    return json.dumps({"model": variant.name, "tf_name": variant.tf_name,
                       "front_end": FRONT_END.to_dict(), "log": "log10(10000 * mel_power + 1)",
                       "stft": "centred, zero-padded 256 | 256, periodic Hann, power",
                       "bn_epsilon": BN_EPSILON, "tags": list(variant.tags)}, indent=2) + "\n"
