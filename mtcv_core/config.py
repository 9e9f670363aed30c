"""Run configuration: TOML files validated into typed dataclasses.

Every error names the file, the key path (``sample.basin_md.n_steps``) and
what was expected. Components take their options as keyword arguments;
:func:`check_options` validates a section against a component's dataclass
fields before it is built, so a typo never reaches a plugin's internals.

Bounds come from a field's metadata (``gt``, ``min``, ``max``); an integer
field named ``seed`` (or ending in ``_seed``) is a random seed and must lie
in ``[0, 2**63 - 1]`` whatever its metadata says (numpy refuses negative
seeds).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from mtcv_core.errors import MtcvError

QUICK_CONFIG = "quick.toml"


class ConfigError(MtcvError, ValueError):
    """A configuration is invalid; the message says where and why."""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (TOML types only)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: expected one of {list(choices)}, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return from_mapping(tp, value, where)
    return value


#: the largest random seed (numpy and torch take non-negative 64-bit seeds)
MAX_SEED = 2**63 - 1


def _check_bounds(field: dataclasses.Field, value: Any, where: str) -> None:
    meta = field.metadata
    if value is None:
        return
    if ((field.name == "seed" or field.name.endswith("_seed")) and isinstance(value, int)
            and not 0 <= value <= meta.get("max", MAX_SEED)):
        raise ConfigError(f"{where}: a random seed must lie in [0, {meta.get('max', MAX_SEED)}]"
                          f", got {value!r}")
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"{where}: must be >= {meta['min']}, got {value!r}")
    if "gt" in meta and not value > meta["gt"]:
        raise ConfigError(f"{where}: must be > {meta['gt']}, got {value!r}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(f"{where}: must be <= {meta['max']}, got {value!r}")


def from_mapping(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, checking keys, types and bounds."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    prefix = f"{where}." if where else ""
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key in "
                          f"[{where or 'top level'}]; allowed keys: {sorted(fields)}")
    kwargs = {}
    for name, field in fields.items():
        if name not in data:
            if (field.default is dataclasses.MISSING
                    and field.default_factory is dataclasses.MISSING):
                raise ConfigError(f"{prefix}{name}: required key is missing")
            continue
        value = _coerce(data[name], hints[name], prefix + name)
        _check_bounds(field, value, prefix + name)
        kwargs[name] = value
    return cls(**kwargs)


def check_options(factory: Any, options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate ``options`` for ``factory`` (a dataclass) and return them
    coerced; for a non-dataclass factory, only that they are keyword names."""
    if dataclasses.is_dataclass(factory):
        obj = from_mapping(factory, options, where)
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
                if f.init and f.name in options}
    return dict(options)


def positive(default: Any, doc: str = "") -> Any:
    """A dataclass field that must be > 0."""
    return dataclasses.field(default=default, metadata={"gt": 0, "doc": doc})


def nonneg(default: Any, doc: str = "") -> Any:
    """A dataclass field that must be >= 0."""
    return dataclasses.field(default=default, metadata={"min": 0, "doc": doc})


def doc(default: Any, text: str) -> Any:
    """A documented dataclass field without bounds."""
    return dataclasses.field(default=default, metadata={"doc": text})


def load_toml(path: str | Path | None) -> tuple[dict[str, Any], str]:
    """Read a TOML config; ``None`` reads the built-in quick demo.

    Returns the raw mapping and a name for messages.
    """
    if path is None:
        text = resources.files("mtcv_core").joinpath("examples", QUICK_CONFIG).read_text()
        where = f"<built-in {QUICK_CONFIG}>"
    else:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: no such config file")
        try:
            text = p.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{p}: not a UTF-8 text file, so not a TOML config ({exc})"
                              ) from None
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read the config ({exc})") from None
        where = str(p)
    try:
        return tomllib.loads(text), where
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from exc
