"""The only place command-line flags become a :class:`~dreamsound.config.DreamConfig`.

:func:`with_config` adds one Typer option per :class:`DreamConfig` knob to a command (flag,
short flag, help, bounds and help panel all come from the knob's declaration), and hands the
command a validated ``config`` instead of the loose values. A knob is therefore written once, in
:mod:`dreamsound.config`, and appears with the same name and meaning on every command that uses
it.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any

import typer

from dreamsound.config import DreamConfig

#: Knobs whose flag turns them off (``--no-limit`` sets ``limit=False``).
_NEGATED = {"limit"}


def _option(field: Any, annotation: Any) -> tuple[Any, Any]:
    """``(Annotated type, CLI default)`` of one knob."""
    meta = field.metadata
    if field.name in _NEGATED:
        return Annotated[bool, typer.Option(meta["flag"], help=meta["help"],
                                            rich_help_panel=meta["panel"])], False
    names = [meta["flag"], *([meta["short"]] if meta["short"] else [])]
    bounds = {k: meta[k] for k in ("min", "max") if meta[k] is not None}
    option = typer.Option(*names, help=meta["help"], rich_help_panel=meta["panel"],
                          show_default=field.default is not None, **bounds)
    return Annotated[annotation, option], field.default


def with_config(knobs: Iterable[str] | None = None, *,
                defaults: Mapping[str, Any] | None = None) -> Callable[[Callable], Callable]:
    """Decorate a command that takes ``config: DreamConfig`` with options for ``knobs``.

    Parameters
    ----------
    knobs : names, optional
        The :class:`DreamConfig` fields to offer (default: every one). The others keep their
        defaults.
    defaults : mapping, optional
        This command's own defaults for some fields, offered or not (``evaluate`` and
        ``sonify`` keep ``style="exact"`` while ``dream`` dreams robust dreams).
    """
    wanted = None if knobs is None else set(knobs)
    own_defaults = dict(defaults or {})

    def decorate(command: Callable) -> Callable:
        fields = [f for f in DreamConfig.knobs() if wanted is None or f.name in wanted]
        types = typing.get_type_hints(DreamConfig)
        own = inspect.signature(command, eval_str=True)
        own_hints = typing.get_type_hints(command, include_extras=True)
        params = [p.replace(annotation=own_hints.get(p.name, p.annotation))
                  for p in own.parameters.values() if p.name != "config"]
        for field in fields:
            annotation, default = _option(field, types[field.name])
            default = own_defaults.get(field.name, default)
            params.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY,
                                            default=default, annotation=annotation))

        @functools.wraps(command)
        def run(**values: Any) -> Any:
            settings = {**own_defaults, **{f.name: values.pop(f.name) for f in fields}}
            for name in _NEGATED & set(settings):
                settings[name] = not settings[name]
            return command(config=DreamConfig.from_kwargs(**settings), **values)

        run.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        del run.__wrapped__  # Typer must see the new signature, not the command's
        return run

    return decorate
