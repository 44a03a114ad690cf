"""Model registry: name -> factory, with built-ins and entry-point plug-ins.

Built-in models register themselves lazily (their modules are imported on first use, so importing
dreamsound stays cheap). Third-party packages add models through the entry-point group
``dreamsound.models``; each entry point names a :class:`ModelSpec` object or a zero-argument
callable returning one::

    [project.entry-points."dreamsound.models"]
    my_model = "my_package.dreamsound_plugin:SPEC"
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import torch

from dreamsound.errors import ModelError, did_you_mean
from dreamsound.models.base import AudioClassifier

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dreamsound.models"

#: factory(weights, device) -> AudioClassifier; ``weights`` is an explicit path or None.
ModelFactory = Callable[[Path | None, torch.device], AudioClassifier]


@dataclass(frozen=True)
class ModelSpec:
    """How to build one named model.

    Attributes
    ----------
    name : str
        The registry name users type (``--model NAME``).
    summary : str
        One line for ``dreamsound models``.
    factory : callable
        ``factory(weights_path_or_None, device) -> AudioClassifier``.
    weights : object, optional
        A :class:`dreamsound.models.weights.WeightsFile` when the model needs a weights file,
        or a tuple of them when it needs several (all present or it is "missing"), so
        ``dreamsound models`` can say whether they are present and ``models fetch`` can get them.
    """

    name: str
    summary: str
    factory: ModelFactory
    weights: object | None = None


# Built-ins: name -> "module:attribute" of their ModelSpec, imported on first use.
_BUILTINS = {
    "instrument": "dreamsound.models.instrument:SPEC",
    "yamnet": "dreamsound.models.yamnet:SPEC",
    "debug": "dreamsound.models.debug:SPEC",
    "irmas-pons": "dreamsound.models.pons:SPEC",
    "musicnn": "dreamsound.models.musicnn:SPEC",
    "musicnn-msd": "dreamsound.models.musicnn:MSD_SPEC",
}
#: The model used when none is named.
DEFAULT_MODEL = "instrument"

_registered: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add (or replace) a model at run time; returns ``spec`` so it can be used as a decorator."""
    _registered[spec.name] = spec
    return spec


def _import_spec(target: str) -> ModelSpec:
    module_name, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(module_name), attr)
    spec = obj() if callable(obj) and not isinstance(obj, ModelSpec) else obj
    if not isinstance(spec, ModelSpec):
        raise ModelError(f"{target} does not give a dreamsound ModelSpec")
    return spec


def _plugin_targets() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def model_names() -> list[str]:
    """Every model name known: built-ins, plug-ins, and models registered at run time."""
    names = list(_BUILTINS)
    names += [n for n in _plugin_targets() if n not in names]
    names += [n for n in _registered if n not in names]
    return names


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` called ``name``; :class:`ModelError` with suggestions otherwise."""
    if name in _registered:
        return _registered[name]
    target = _BUILTINS.get(name) or _plugin_targets().get(name)
    if target is None:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(model_names())}."
                         + did_you_mean(name, model_names()))
    try:
        spec = _import_spec(target)
    except ModelError:
        raise
    except Exception as exc:  # a broken plug-in must not take the whole tool down
        raise ModelError(f"model {name!r} ({target}) failed to load: {exc}") from exc
    _registered[name] = spec
    return spec


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` -> cuda, then mps, then cpu; otherwise the device asked for, checked."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda asked for, but no CUDA device is available")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None)
                                  and torch.backends.mps.is_available()):
        raise ModelError("--device mps asked for, but MPS is not available")
    return dev


def load_model(name: str = DEFAULT_MODEL, weights: str | Path | None = None,
               device: str | torch.device | None = None) -> AudioClassifier:
    """Build model ``name`` in eval mode on ``device`` with its weights.

    Parameters
    ----------
    name : str
        A name from :func:`model_names` (``"instrument"``, ``"yamnet"``, ``"debug"``, plug-ins).
    weights : path, optional
        A weights file to use instead of the registry's (see ``dreamsound models``).
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"mps"`` or ``"auto"`` (default: auto).
    """
    spec = get_spec(name)
    dev = resolve_device(device)
    model = spec.factory(Path(weights).expanduser() if weights is not None else None, dev)
    model.requires_grad_(False)  # dreams need gradients for the input only
    return model.to(dev).eval()


def class_names_and_codes(name: str, weights: str | Path | None = None
                          ) -> tuple[list[str], list[str]]:
    """Model ``name``'s class names and codes, without building the network when its module
    can list them (a ``class_names_and_codes()`` function beside its factory), so listing the
    classes of a model whose weights are missing still works."""
    spec = get_spec(name)
    module = importlib.import_module(spec.factory.__module__)
    lister = getattr(module, "class_names_and_codes", None)
    if lister is not None:
        names, codes = lister()
        return list(names), list(codes or [])
    net = load_model(name, weights, "cpu")
    return list(net.class_names), list(net.class_codes or [])
