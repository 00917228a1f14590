"""Typed configs: plain dicts (from YAML, JSON, the CLI or Ray Tune) validated into dataclasses.

Every method has a frozen dataclass of settings. `build_config` turns a mapping into one and refuses
unknown keys (listing the valid ones) and values of the wrong type, so a typo never silently falls
back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from nisca.errors import ConfigError

C = TypeVar("C")


@dataclasses.dataclass(frozen=True)
class BaseConfig:
    """Settings every method shares.

    latent_dim: K, the number of components; None takes K from the scene's ground truth.
    seed: every random choice of the fit (initialisation, splits, sampling) derives from it; 0 is a seed.
      The same seed gives the same fit bitwise on the CPU, and equal to float rounding on CUDA.
    """

    latent_dim: int | None = None
    seed: int = 0


def build_config(cls: type[C], values: Mapping[str, Any] | None, *, method: str = "") -> C:
    """Validate `values` into an instance of the dataclass `cls`; unknown keys are errors."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    label = f"config for '{method}'" if method else f"{cls.__name__}"
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(map(repr, unknown))} in the {label}; "
            f"valid keys are: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    checked = {name: _coerce(name, value, hints[name], label) for name, value in values.items()}
    try:
        config = cls(**checked)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid {label}: {error}") from None
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=list))


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON mapping of settings."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as error:  # noqa: BLE001 - any parse failure is the user's file
        raise ConfigError(f"cannot parse config file {path}: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, got {type(data).__name__}")
    return data


def parse_assignment(text: str) -> tuple[str, Any]:
    """'KEY=VALUE' from a command line -> (key, value), the value parsed as JSON when it is JSON
    (numbers, true/false, lists), else kept as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _coerce(name: str, value: Any, hint: Any, label: str) -> Any:
    """Check `value` against a simple type hint, converting only lossless cases (int -> float)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(name, value, option, label)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{name}: bad value {value!r} in the {label}")
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(
                f"'{name}' in the {label} must be one of {', '.join(map(repr, allowed))}, got {value!r}"
            )
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{name}' in the {label} must be a list, got {value!r}")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_coerce(name, v, item, label) for v in value)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(
        f"'{name}' in the {label} must be of type {getattr(hint, '__name__', hint)}, got {value!r}"
    )
