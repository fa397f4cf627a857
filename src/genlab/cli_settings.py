"""Command-line flags generated from a settings model: one definition per setting (its pydantic field).

Each field of the model becomes one option, named after it (``batch_size`` -> ``--batch-size``, or the
``flag`` its ``json_schema_extra`` gives; ``None`` hides it), with the field's description, its allowed
values (``Literal``) and its default as help. Booleans get ``--x/--no-x``; lists are repeatable; dicts are
repeatable ``KEY=VALUE`` options. Every option defaults to "not given", so a config file's value survives
unless the flag is passed.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer
from pydantic import BaseModel

from genlab.config import parse_key_values


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


def settings_parameters(model: type[BaseModel]) -> list[inspect.Parameter]:
    """One keyword-only typer parameter per field of ``model`` that has a flag."""
    params = []
    for name, field in model.model_fields.items():
        flag = flag_name(name, field)
        if flag is None:
            continue
        kind, choices = _kind(field.annotation)
        default = field.get_default(call_default_factory=True)
        help_text = (field.description or name.replace("_", " ")).rstrip(".")
        if choices:
            help_text += f"; one of {' | '.join(choices)}"
        if default not in (None, [], {}):
            help_text += f" (default {default})"
        decls: list[str] = [flag]
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


def settings_from_flags(model: type[BaseModel], given: dict[str, Any]) -> dict[str, Any]:
    """The flag values as settings (``None`` = not given), dict options parsed from ``KEY=VALUE``."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        value = given.get(name)
        if value is None:
            continue
        kind, _ = _kind(field.annotation)
        if kind is dict:
            value = parse_key_values(value, flag_name(name, field)) or None
        elif kind is list:
            value = list(value) or None
        out[name] = value
    return out


def with_settings_flags(model: type[BaseModel], fixed: list[inspect.Parameter],
                        body: Callable[..., None]) -> Callable[..., None]:
    """A typer command taking the ``fixed`` parameters plus one flag per setting of ``model``; ``body`` gets the
    fixed parameters by name and ``settings=`` the flags given (see :func:`settings_from_flags`)."""
    fixed_names = [p.name for p in fixed]

    def command(**kwargs):
        settings = settings_from_flags(model, {k: v for k, v in kwargs.items() if k not in fixed_names})
        return body(**{k: kwargs[k] for k in fixed_names}, settings=settings)

    params = [*fixed, *settings_parameters(model)]
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = body.__doc__
    command.__name__ = body.__name__
    return command
