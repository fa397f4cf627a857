"""Command-line flags generated from a settings model: one definition per setting (its pydantic field).

Each setting of the model (each flat setting of a sectioned one, every optimizer's included) becomes one
option, named after it (``batch_size`` -> ``--batch-size``, or the
``flag`` its ``json_schema_extra`` gives; ``None`` hides it), with the field's description, its allowed
values (``Literal``) and its default as help. Booleans get ``--x/--no-x``; lists are repeatable; dicts are
repeatable ``KEY=VALUE`` options. Every option defaults to "not given", so a config file's value survives
unless the flag is passed.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Optional

import typer
from pydantic import BaseModel

from genlab.config import parse_key_values
from genlab.settings.optimizers import OPTIMIZER_SETTINGS


def _kind(annotation: Any) -> tuple[type, tuple[str, ...]]:
    """(python type of the option, Literal choices) of a field annotation (``X | None`` unwrapped)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return _kind(args[0])
    if origin is typing.Literal:
        return str, tuple(str(a) for a in typing.get_args(annotation))
    if origin in (list, tuple):
        return list, ()
    if origin is dict:
        return dict, ()
    return annotation, ()


def flag_name(name: str, field) -> str | None:
    """The option of a field (``None``: the field has none)."""
    extra = field.json_schema_extra or {}
    return extra.get("flag", "--" + name.replace("_", "-")) if isinstance(extra, dict) else None


@dataclass(frozen=True)
class FlagGroup:
    """The flags of one settings model: all its settings but ``exclude``, with ``defaults`` shown in the help
    where the command's defaults differ from the model's (``genlab bound``'s base training config)."""

    model: type[BaseModel]
    exclude: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> list[tuple[str, Any, Any]]:
        """``(flat name, pydantic field, default shown or None)`` of each setting with a flag."""
        if hasattr(self.model, "setting_fields"):  # a sectioned model (TrainConfig): its flat settings
            rows = self.model.setting_fields()
        else:
            rows = [(name, f, ()) for name, f in self.model.model_fields.items()]
        out = []
        for name, f, owners in rows:
            if name in self.exclude or flag_name(name, f) is None:
                continue
            if name in self.defaults:
                default = self.defaults[name]
            elif owners:  # a setting of several optimizers: shown only when they agree
                values = {repr(OPTIMIZER_SETTINGS[o].model_fields[name].get_default()) for o in owners}
                default = f.get_default(call_default_factory=True) if len(values) == 1 else None
            else:
                default = f.get_default(call_default_factory=True)
            out.append((name, f, default))
        return out


def _groups(models) -> list[FlagGroup]:
    if isinstance(models, type):
        return [FlagGroup(models)]
    return [m if isinstance(m, FlagGroup) else FlagGroup(m) for m in models]


def settings_parameters(models) -> list[inspect.Parameter]:
    """One keyword-only typer parameter per setting (with a flag) of ``models`` (a model, or FlagGroups)."""
    params = []
    for group in _groups(models):
        for name, f, default in group.settings():
            flag = flag_name(name, f)
            kind, choices = _kind(f.annotation)
            help_text = (f.description or name.replace("_", " ")).rstrip(".")
            if choices:
                help_text += f"; one of {' | '.join(choices)}"
            if default not in (None, [], {}):
                help_text += f" (default {default})"
            extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
            aliases = list(extra.get("aliases", []))
            decls: list[str] = [flag, *aliases]
            if kind is bool:
                decls = [f"{flag}/--no-{flag[2:]}"]
                typ = Optional[bool]
            elif kind in (list, dict):
                typ = Optional[list[str]]
                if kind is dict:
                    help_text += " (repeatable)"
            elif kind in (int, float):
                typ = Optional[kind]
            else:
                typ = Optional[str]
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                            annotation=Annotated[typ, typer.Option(*decls, help=help_text + ".")]))
    return params


def settings_from_flags(models, given: dict[str, Any]) -> dict[str, Any]:
    """The flag values as flat settings (``None`` = not given), dict options parsed from ``KEY=VALUE``."""
    out: dict[str, Any] = {}
    for group in _groups(models):
        for name, f, _ in group.settings():
            value = given.get(name)
            if value is None:
                continue
            kind, _ = _kind(f.annotation)
            if kind is dict:
                value = parse_key_values(value, flag_name(name, f)) or None
            elif kind is list:
                value = list(value) or None
            out[name] = value
    return out


def with_settings_flags(models, fixed: list[inspect.Parameter],
                        body: Callable[..., None]) -> Callable[..., None]:
    """A typer command taking the ``fixed`` parameters plus one flag per setting of ``models`` (a settings model,
    or a list of :class:`FlagGroup`); ``body`` gets the fixed parameters by name and ``settings=`` the flags
    given, flat (see :func:`settings_from_flags`)."""
    fixed_names = [p.name for p in fixed]

    def command(**kwargs):
        settings = settings_from_flags(models, {k: v for k, v in kwargs.items() if k not in fixed_names})
        return body(**{k: kwargs[k] for k in fixed_names}, settings=settings)

    params = [*fixed, *settings_parameters(models)]
    names = [p.name for p in params]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ValueError(f"two flags for the setting {dup!r}")
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = body.__doc__
    command.__name__ = body.__name__
    return command
