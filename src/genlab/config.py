"""Settings of every command as pydantic models; config files and flags map onto them.

A config file (TOML or JSON) holds the same keys as the command's flags (with
underscores: ``batch_size``); flags given on the command line override the file.
Unknown keys and bad values are rejected with one line naming the key and what
is allowed (:func:`validate_config`).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from genlab.errors import ConfigError
from genlab.settings.optimizers import (OPTIMIZER_SETTINGS, OptimizerSettings, SGDSettings, optimizer_settings_class,
                                        owners_of)
from genlab.settings.sections import (DataSettings, ModelSettings, PluginSettings, RunSettings, Section,
                                      flat_name)


_SECTIONS: dict[str, type[Section]] = {"data": DataSettings, "model": ModelSettings, "run": RunSettings}
_PLUGINS: dict[str, type[Section]] = {k: f.annotation for k, f in PluginSettings.model_fields.items()}


def _section_fields() -> dict[str, tuple[tuple[str, ...], str]]:
    """flat name -> (path of its section, field name) for every setting outside the optimizer."""
    out = {}
    for path, cls in [*(((s,), c) for s, c in _SECTIONS.items()), *((("plugins", p), c) for p, c in _PLUGINS.items())]:
        for name, field in cls.model_fields.items():
            out[flat_name(name, field)] = (path, name)
    return out


_FIELDS = _section_fields()


def flatten_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Settings given by section (``{"optimizer": {"name": "ivon", "ess": 100}}``, as a TOML table or a
    stored config.json) in their flat spelling (``{"optimizer": "ivon", "ess": 100}``); flat keys pass as
    they are. A key a section does not know becomes ``section.key`` (refused as unknown)."""
    out: dict[str, Any] = {}

    def hoist(section: str, cls: type[BaseModel] | None, table: Any) -> None:
        table = table.model_dump() if isinstance(table, BaseModel) else table
        for key, value in table.items():
            if section == "optimizer":
                out["optimizer" if key == "name" else key] = value
            elif cls is not None and key in cls.model_fields:
                out[flat_name(key, cls.model_fields[key])] = value
            else:
                out[f"{section}.{key}"] = value

    for key, value in values.items():
        table = isinstance(value, (dict, BaseModel))
        if key in _SECTIONS and table:
            hoist(key, _SECTIONS[key], value)
        elif key == "optimizer" and table:
            hoist("optimizer", None, value)
        elif key == "plugins" and table:
            plugins = value.model_dump() if isinstance(value, BaseModel) else value
            for name, sub in plugins.items():
                if name in _PLUGINS and isinstance(sub, dict):
                    hoist(f"plugins.{name}", _PLUGINS[name], sub)
                else:
                    out[f"plugins.{name}"] = sub
        else:
            out[key] = value
    return out


def nest_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Flat (or sectioned) settings as sections. A setting of an optimizer this run does not use is refused
    unless it holds that optimizer's default (stored configs of every optimizer carry them all)."""
    flat = flatten_settings(values)
    name = flat.pop("optimizer", None) or "sgd"
    out: dict[str, Any] = {"data": {}, "model": {}, "run": {}, "plugins": {p: {} for p in _PLUGINS},
                           "optimizer": {"name": name}}
    try:
        mine = optimizer_settings_class(name)
    except ValueError:  # the optimizer field reports the unknown name
        mine = None
    for key, value in flat.items():
        if key in _FIELDS:
            path, field = _FIELDS[key]
            target = out
            for part in path:
                target = target[part]
            target[field] = value
        elif mine is not None and key in mine.model_fields and key != "name":
            if value is None and mine.model_fields[key].get_default() is not None:
                continue  # stored None: "the optimizer's default" (config_version 2)
            out["optimizer"][key] = value
        elif mine is not None and (owners := owners_of(key)):
            if value is None or any(value == OPTIMIZER_SETTINGS[o].model_fields[key].get_default() for o in owners):
                continue  # another optimizer's default: nothing to ignore
            raise ValueError(f"{key}: a setting of optimizer {' / '.join(owners)}, which this run does not use "
                             f"(optimizer {name}); remove it")
        else:
            out[key] = value  # config_version, or unknown (refused by extra="forbid")
    return out


class TrainConfig(BaseModel):
    """Everything that defines a training run (``genlab train``), in sections.

    ``data`` (:class:`~genlab.settings.DataSettings`), ``model``, ``optimizer`` (the chosen optimizer's
    settings only: a discriminated union on ``name``, see :mod:`genlab.settings.optimizers`), ``plugins``
    (each plugin's own section) and ``run`` (length, batching, seed, bookkeeping). It may be built from flat
    settings -- ``TrainConfig(dataset="mnist1d", optimizer="ivon", ess=1e4)``, a flat config file or a sweep
    -- or from sections (a TOML file with ``[optimizer]`` tables, a stored ``config.json``); :meth:`flat`
    gives the flat spelling back.

    Exactly one of ``epochs`` and ``steps`` sets the length (default: 10 epochs).
    For ``gd`` an epoch is one full-batch step; for ``sgd`` and ``adam`` it is
    ``ceil(n_train / batch_size)`` steps over a fresh permutation.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), strict=True)

    data: DataSettings = Field(default_factory=DataSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    optimizer: SerializeAsAny[OptimizerSettings] = Field(default_factory=SGDSettings)
    plugins: PluginSettings = Field(default_factory=PluginSettings)
    run: RunSettings = Field(default_factory=RunSettings)
    # 2: momentum None meant the optimizer's default (runs written before kept 0.0 for Adam's 0.9);
    # 3: settings in sections (flat configs of versions 1 and 2 still load)
    config_version: int = Field(3, ge=1, le=3, description="format of these settings (set by genlab)")

    @model_validator(mode="before")
    @classmethod
    def _sections(cls, values: Any) -> Any:
        return nest_settings(values) if isinstance(values, dict) else values

    @field_validator("optimizer", mode="before")
    @classmethod
    def _chosen_optimizer(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return optimizer_settings_class(value.get("name", "sgd")).model_validate(value)
        return value

    @model_validator(mode="after")
    def _across_sections(self) -> TrainConfig:
        noise = self.plugins.noise
        if noise.noise == "label" and noise.noise_sigma > 1 and self.data.loss == "ce":
            raise ValueError(f"noise_sigma is a flip probability for classification labels (got {noise.noise_sigma})")
        if self.plugins.quantization.quant_levels is not None and self.plugins.subspace.intrinsic_dim is None:
            raise ValueError("quant_levels needs intrinsic_dim (quantization-aware training of subspace "
                             "coordinates)")
        return self

    def flat(self) -> dict[str, Any]:
        """Every setting under its flat name (the keys of a flat config file and, with dashes, the flags)."""
        out = {**self.data.flat(), **self.model.flat(), **self.optimizer.flat(), **self.run.flat()}
        for name in _PLUGINS:
            out.update(getattr(self.plugins, name).flat())
        out["config_version"] = self.config_version
        return out

    @classmethod
    def resumable_settings(cls) -> frozenset[str]:
        """Settings that may change between a run and its resumption without changing the trajectory it
        follows (lengthening a run is allowed): each section's own declaration."""
        out = {"config_version"}
        for section in [*_SECTIONS.values(), *_PLUGINS.values(), *OPTIMIZER_SETTINGS.values()]:
            out |= section.RESUMABLE
        return frozenset(out)

    def trajectory_fields(self) -> dict[str, Any]:
        """The settings that define the optimisation trajectory (for resume checks), flat."""
        resumable = self.resumable_settings()
        return {k: v for k, v in self.flat().items() if k not in resumable}

    def with_changes(self, **changes: Any) -> TrainConfig:
        """A validated copy with some settings changed (flat names): ``config.with_changes(lr=0.1)``."""
        return validate_config(type(self), {**self.flat(), **changes})

    @classmethod
    def flat_names(cls) -> list[str]:
        """Every flat setting name, every optimizer's included."""
        return [flat for flat, _, _ in cls.setting_fields()]

    @classmethod
    def setting_fields(cls) -> list[tuple[str, Any, tuple[str, ...]]]:
        """``(flat name, pydantic field, optimizers having it or ())`` of every setting, section by section:
        what the CLI makes its flags of (one definition per setting)."""
        out: list[tuple[str, Any, tuple[str, ...]]] = []
        seen: set[str] = set()

        def add(section: type[BaseModel], of_optimizers: bool = False) -> None:
            for name, field in section.model_fields.items():
                flat = flat_name(name, field)
                if flat not in seen:
                    seen.add(flat)
                    out.append((flat, field, tuple(owners_of(flat)) if of_optimizers else ()))

        add(DataSettings)
        add(ModelSettings)
        add(OptimizerSettings)
        for optimizer_settings in dict.fromkeys(OPTIMIZER_SETTINGS.values()):
            add(optimizer_settings, of_optimizers=True)
        add(RunSettings)
        for section in _PLUGINS.values():
            add(section)
        return out


_SECTION_PATHS = {(s,) for s in (*_SECTIONS, "optimizer", "plugins")} | {("plugins", p) for p in _PLUGINS}
_BY_PATH = {(*path, name): flat for flat, (path, name) in _FIELDS.items()}


def _setting_of(loc: tuple) -> str:
    """The name to show for an error's location: a setting's flat name; nothing for a whole section (its
    validators name their settings); else the dotted path."""
    parts = tuple(str(p) for p in loc)
    if parts[:1] == ("train",):  # the base training config of a BoundConfig
        parts = parts[1:]
    if not parts or parts in _SECTION_PATHS:
        return ""
    if parts in _BY_PATH:
        return _BY_PATH[parts]
    if parts[0] == "optimizer" and len(parts) == 2:
        return "optimizer" if parts[1] == "name" else parts[1]
    return ".".join(parts)


def format_validation_error(err: ValidationError) -> str:
    """One line naming each bad field, what is wrong and the value given."""
    parts = []
    for e in err.errors():
        field = _setting_of(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            parts.append(f"{field}: unknown setting")
            continue
        if "input" in e and not isinstance(e["input"], dict):
            msg += f" (got {e['input']!r})"
        parts.append(f"{field}: {msg}" if field else msg)
    return "bad setting " + "; ".join(parts)


def validate_config(model: type[BaseModel], values: dict[str, Any]) -> BaseModel:
    """Build ``model`` from ``values``, turning validation errors into one-line :class:`ConfigError`."""
    try:
        return model(**values)
    except ValidationError as err:
        msg = format_validation_error(err)
        if any(e["type"] == "extra_forbidden" for e in err.errors()):
            names = model.flat_names() if hasattr(model, "flat_names") else list(model.model_fields)
            msg += f"; allowed settings: {', '.join(names)}"
        raise ConfigError(msg) from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON config file into a dict (one clear error if unreadable)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path}: unknown format {suffix or '(none)'}; allowed: .toml, .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"config file {path} is not valid {suffix[1:].upper()}: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} cannot be read: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of settings, not {type(data).__name__}")
    return data


def merge_settings(file_values: dict[str, Any] | None, flag_values: dict[str, Any]) -> dict[str, Any]:
    """File settings overridden by the flags that were given (``None`` means not given)."""
    merged = dict(file_values or {})
    for key, value in flag_values.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}  # KEY=VALUE flags override single options of a file table
        else:
            merged[key] = value
    return merged


def parse_key_values(items: list[str] | None, flag: str) -> dict[str, Any]:
    """Parse repeated ``KEY=VALUE`` flags; values are read as JSON when they parse, else strings."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{flag}: expected KEY=VALUE (got {item!r})")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out
