"""The studio's controls, read from :class:`~dreamsound.config.DreamConfig`'s fields.

Every knob of a dream is declared once, in :mod:`dreamsound.config`, with its default, bounds,
help line and help panel. This module turns those declarations into plain descriptions of
controls (:class:`KnobControl`), which the page (:mod:`dreamsound.studio.app`) renders, and turns
the values a page sends back into a validated :class:`DreamConfig`. Nothing here imports gradio,
so it is cheap to test.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dreamsound import config as _config
from dreamsound.config import DreamConfig
from dreamsound.errors import ConfigError

#: The knobs a first-time user sees (those that exist), in this order; every other knob goes to
#: the "Advanced" section.
MAIN_KNOBS = ("style", "domain", "steps", "step_size", "until", "max_rmse_db")
#: The knobs that mean something to a sonification (as on ``dreamsound sonify``).
SONIFY_KNOBS = ("domain", "step_size", "normalize", "seed")

def _choices(name: str) -> tuple[str, ...]:
    """The values a text knob accepts (its ``choices`` metadata); () for a free-text knob."""
    for item in _config.DreamConfig.knobs():
        if item.name == name:
            return tuple(item.metadata.get("choices") or ())
    return ()


@dataclass(frozen=True)
class KnobControl:
    """How one :class:`DreamConfig` knob appears on the page.

    Attributes
    ----------
    name : str
        The field name (``"step_size"``): the keyword the page sends back.
    label : str
        What the page shows (``"step size"``; ``"no limit"`` for a negated knob).
    help : str
        The knob's one-line help, from its metadata.
    panel : str
        Its help panel (:data:`dreamsound.config.PANELS`).
    kind : str
        ``"int"``, ``"float"``, ``"bool"``, ``"choice"`` or ``"text"`` (a text knob whose
        values are not known here).
    default : Any
        The value the control starts with (for a negated knob: ``not`` the knob's default).
    optional : bool
        The knob may be empty (None): "off", or a default chosen by another knob (the
        domain's step size, the style's domain).
    minimum, maximum : float or None
        Inclusive bounds from the metadata.
    choices : tuple of str
        The allowed values of a ``"choice"`` knob.
    negated : bool
        The control means the opposite of the field (``--no-limit`` sets ``limit=False``).
    flag : str
        The command-line flag (``--step-size``), named in errors.
    """

    name: str
    label: str
    help: str
    panel: str
    kind: str
    default: Any
    optional: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    negated: bool = False
    flag: str = ""

    def to_field(self, value: Any) -> Any:
        """The field value a control value stands for.

        Numbers may come as text (an optional number is a text box, so that empty can mean
        "off"); empty text, None and NaN mean None. Text that is not a number is the library's
        one-line :class:`~dreamsound.errors.ConfigError`.
        """
        if self.kind == "bool":
            value = bool(value)
            return not value if self.negated else value
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "" or (isinstance(value, float) and value != value):
            return None
        if self.kind in ("int", "float"):
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{self.flag} must be a number, got {value!r}") from None
            if self.kind == "int" and number.is_integer():
                return int(number)
            return number  # a fractional int is DreamConfig's "whole number" error
        return str(value)


def _kind(name: str, annotation: Any) -> tuple[str, bool]:
    """``(kind, optional)`` of a field from its type (``int | None`` -> ``("int", True)``)."""
    args = typing.get_args(annotation)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), annotation) if args else annotation
    if base is str:
        return ("choice" if _choices(name) else "text"), optional
    if base is bool:
        return "bool", optional
    if base is int:
        return "int", optional
    if base is float:
        return "float", optional
    raise TypeError(f"DreamConfig.{name}: no studio control for type {annotation!r}")


def knob_controls(names: Iterable[str] | None = None) -> list[KnobControl]:
    """The controls of ``names`` (default: every knob), in :class:`DreamConfig`'s order."""
    wanted = None if names is None else set(names)
    hints = typing.get_type_hints(DreamConfig)
    controls = []
    for item in DreamConfig.knobs():
        if wanted is not None and item.name not in wanted:
            continue
        meta = item.metadata
        kind, optional = _kind(item.name, hints[item.name])
        negated = kind == "bool" and meta["flag"].startswith("--no-")
        label = (meta["flag"][2:].replace("-", " ") if negated
                 else item.name.replace("_", " "))
        controls.append(KnobControl(
            name=item.name, label=label, help=meta["help"], panel=meta["panel"], kind=kind,
            default=(not item.default) if negated else item.default, optional=optional,
            minimum=meta["min"], maximum=meta["max"], choices=_choices(item.name),
            negated=negated, flag=meta["flag"]))
    if wanted is not None and len(controls) != len(wanted):
        known = {c.name for c in controls}
        raise KeyError(f"not DreamConfig knobs: {sorted(wanted - known)}")
    return controls


def main_and_advanced() -> tuple[list[KnobControl], list[KnobControl]]:
    """The main controls (:data:`MAIN_KNOBS` that exist, in that order) and all the others."""
    every = knob_controls()
    by_name = {c.name: c for c in every}
    main = [by_name[name] for name in MAIN_KNOBS if name in by_name]
    return main, [c for c in every if c.name not in MAIN_KNOBS]


def config_from_values(values: Mapping[str, Any],
                       controls: Sequence[KnobControl] | None = None) -> DreamConfig:
    """A validated :class:`DreamConfig` from control values by knob name.

    Knobs without a control keep their defaults; a bad value raises the library's one-line
    :class:`~dreamsound.errors.ConfigError` (which names the command-line flag).
    """
    by_name = {c.name: c for c in (knob_controls() if controls is None else controls)}
    # A name without a control goes to DreamConfig as given: an unknown one is its one-line
    # ConfigError with a guess.
    settings = {name: by_name[name].to_field(value) if name in by_name else value
                for name, value in values.items()}
    return DreamConfig.from_kwargs(**settings)


def sonify_controls() -> list[KnobControl]:
    """The controls of the Sonify tab (:data:`SONIFY_KNOBS` that exist)."""
    names = {f.name for f in DreamConfig.knobs()}
    return knob_controls([n for n in SONIFY_KNOBS if n in names])


def defaults(controls: Sequence[KnobControl]) -> dict[str, Any]:
    """Each control's starting value by name (what an untouched page sends)."""
    return {c.name: c.default for c in controls}


__all__ = ["MAIN_KNOBS", "SONIFY_KNOBS", "KnobControl", "config_from_values", "defaults",
           "knob_controls", "main_and_advanced", "sonify_controls"]
