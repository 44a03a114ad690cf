"""dreamsound: audio deep dreaming on pretrained classifiers.

The public API is small; everything here is a re-export, imported lazily so that
``import dreamsound`` (and ``dreamsound --help``) does not pay for torch. No submodule is named
like a function exported here, so ``dreamsound.dream`` is always the function.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Dreamer": "dreamsound.api",
    "DreamConfig": "dreamsound.config",
    "DreamResult": "dreamsound.engine.result",
    "DreamReport": "dreamsound.engine.result",
    "ProgressEvent": "dreamsound.events",
    "dream": "dreamsound.api",
    "sonify": "dreamsound.api",
    "classify": "dreamsound.api",
    "evaluate": "dreamsound.experiments.evaluate",
    "load_model": "dreamsound.models.registry",
    "model_names": "dreamsound.models.registry",
    "register": "dreamsound.models.registry",
    "ModelSpec": "dreamsound.models.registry",
    "AudioClassifier": "dreamsound.models.base",
    "DreamsoundError": "dreamsound.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dreamsound' has no attribute {name!r}")
