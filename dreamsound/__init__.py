"""dreamsound: audio deep dreaming on pretrained classifiers.

The public API is small; everything here is a re-export, imported lazily so that
``import dreamsound`` (and ``dreamsound --help``) does not pay for torch.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "dreamsound.models.registry",
    "model_names": "dreamsound.models.registry",
    "register": "dreamsound.models.registry",
    "ModelSpec": "dreamsound.models.registry",
    "AudioClassifier": "dreamsound.models.base",
    "classify": "dreamsound.classify",
    "dream": "dreamsound.dream",
    "sonify": "dreamsound.sonify",
    "evaluate": "dreamsound.evaluate",
    "DreamsoundError": "dreamsound.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dreamsound' has no attribute {name!r}")


class _Package(types.ModuleType):
    """Keep ``dreamsound.dream`` (etc.) the *function* after the submodule of the same name loads.

    Importing ``dreamsound.dream`` makes Python set the package attribute ``dream`` to the
    submodule, which would shadow the lazily exported function of that name.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
