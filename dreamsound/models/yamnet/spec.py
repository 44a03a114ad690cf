"""YAMNet's registry entry: the front end, the class map and the model built from weights."""

from __future__ import annotations

import csv
import functools
import importlib.resources
import logging
from pathlib import Path

import torch

from dreamsound.errors import ModelError, WeightsError
from dreamsound.models.base import AudioClassifier
from dreamsound.models.registry import ModelSpec
from dreamsound.models.weights import resolve_weights
from dreamsound.models.yamnet.network import N_CLASSES, YAMNetNetwork
from dreamsound.models.yamnet.weights import YAMNET_WEIGHTS, expected_state_shapes, load_weights
from dreamsound.spectral import FrontEndConfig

log = logging.getLogger(__name__)

#: YAMNet's front end (``yamnet/params.py``): 25 ms periodic-Hann windows every 10 ms, FFT 512,
#: 64 HTK mel bands 125-7500 Hz, ``log(mel + 0.001)``, 0.96 s patches every 0.48 s.
FRONT_END = FrontEndConfig(sample_rate=16000, n_fft=512, win_length=400, hop_length=160,
                           n_mels=64, fmin=125.0, fmax=7500.0, log_offset=0.001,
                           patch_frames=96, patch_hop_frames=48)


# -- class map -------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def class_map() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(display_names, mids)`` of the 521 AudioSet classes, in output index order.

    Read from the packaged ``yamnet_classes.csv`` (``index,mid,display_name``, the
    ``yamnet_class_map.csv`` of tensorflow/models).
    """
    text = (importlib.resources.files("dreamsound.models") / "yamnet_classes.csv").read_text(
        encoding="utf-8")
    rows = list(csv.reader(text.splitlines()))
    header, body = rows[0], rows[1:]
    if header != ["index", "mid", "display_name"] or len(body) != N_CLASSES:
        raise ModelError("the packaged yamnet_classes.csv is damaged; reinstall dreamsound")
    if [int(r[0]) for r in body] != list(range(N_CLASSES)):
        raise ModelError("the packaged yamnet_classes.csv is out of order; reinstall dreamsound")
    return tuple(r[2] for r in body), tuple(r[1] for r in body)


def build_from_state(state: dict[str, torch.Tensor], *,
                     device: torch.device | str = "cpu") -> AudioClassifier:
    """An :class:`AudioClassifier` around a :class:`YAMNetNetwork` holding ``state``."""
    expected = expected_state_shapes()
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise WeightsError(f"YAMNet state dict mismatch: missing {missing[:3]}, extra {extra[:3]}")
    network = YAMNetNetwork()
    network.load_state_dict(state)
    # Channels-last kernels, like the activations the units pass on (network.py): oneDNN then
    # runs the depthwise layers without reordering either.
    network.to(memory_format=torch.channels_last)
    names, mids = class_map()
    model = AudioClassifier("yamnet", FRONT_END, network, names, mids)
    return model.to(device).eval()


def build(weights: Path | None, device: torch.device) -> AudioClassifier:
    """Registry factory: resolve the weights file (explicit, env var, cache, download) and load."""
    path = resolve_weights(YAMNET_WEIGHTS, weights)
    log.info("loading YAMNet weights from %s", path)
    return build_from_state(load_weights(path), device=device)


SPEC = ModelSpec(
    name="yamnet",
    summary="Google's YAMNet (AudioSet, 521 classes, 16 kHz), ported to PyTorch",
    factory=build,
    weights=YAMNET_WEIGHTS,
)
