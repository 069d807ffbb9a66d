"""One typed config system for every entry point: dataclass defaults < YAML file < `--set` overrides.

Each config is a tree of dataclasses. A field documents itself with `opt(default, "help")`, so the
defaults and their meaning live in one place and `describe()` can print them as a table. A field may
declare inclusive bounds (`low`, `high`: every number, or every number of a list, is checked when the
config is built) and whether it changes what a run produces (`results=False` for Ray sizing, pacing,
logging, step counts): `result_keys`/`fingerprint` cover only the keys that do, so a resumed or
repeated run can tell a harmless change from one that would mix two configs in one output.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad config key or value; the message names it in one line."""


def opt(default: Any, help: str, *, low: float | None = None, high: float | None = None, results: bool = True,
        null: str | None = None, was: str | None = None) -> Any:
    """A config field with its default, one-line documentation, optional inclusive bounds, and whether
    changing it changes the run's results (see the module docstring). `null`: what a null value takes
    instead (the help says so, and an out-of-range number is told to be null for it); `was`: the key's
    former name, which is refused with the new one named rather than reported as unknown."""
    metadata = {"help": help + (f"; null = {null}" if null else ""), "low": low, "high": high, "results": results,
                "null": null, "was": was}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def section(cls: type, help: str = "") -> Any:
    """A nested config section."""
    return dataclasses.field(default_factory=cls, metadata={"help": help})


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"config key '{key}': bad value {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"config key '{key}' must be one of {list(get_args(tp))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' expects a list, got {value!r}")
        (item_tp, *_) = get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' expects a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config section '{key}' expects a mapping, got {value!r}")
        return _build(tp, value, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' expects true/false, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key '{key}' expects a number, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' expects an integer, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key '{key}' expects a string, got {value!r}")
    return value


def _build(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    renamed = {f.metadata["was"]: f.name for f in dataclasses.fields(cls) if f.metadata.get("was")}
    for key in unknown:
        if key in renamed:
            raise ConfigError(f"config key '{prefix}{key}' is now '{prefix}{renamed[key]}'")
    if unknown:
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    for f in dataclasses.fields(cls):
        if f.name in kwargs:
            _check_bounds(kwargs[f.name], f.metadata, f"{prefix}{f.name}")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def _bounds_text(meta: Any) -> str:
    low, high = meta.get("low"), meta.get("high")
    if low is not None and high is not None:
        return f"in [{low:g}, {high:g}]"
    return f">= {low:g}" if low is not None else f"<= {high:g}" if high is not None else ""


def _check_bounds(value: Any, meta: Any, key: str) -> None:
    low, high = meta.get("low"), meta.get("high")
    if low is None and high is None:
        return
    for v in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and (
                (low is not None and v < low) or (high is not None and v > high)):
            null = f", or null for {meta['null']}" if meta.get("null") else ""
            raise ConfigError(f"config key '{key}' must be {_bounds_text(meta)}{null}, got {v!r}")


def from_mapping(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """`cls` from a plain mapping, checked like a YAML file: unknown keys and bad values raise ConfigError."""
    return _build(cls, data, prefix)


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key '{dotted}': '{part}' is not a section")
        node = child
    node[leaf] = value


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build `cls` from its defaults, an optional YAML file and `key.sub=value` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}".splitlines()[0]) from err
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        data = loaded
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        _set_path(data, key.strip(), value)
    return _build(cls, data)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def result_keys(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of every leaf field that changes what a run produces (results=True)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(result_keys(value, f"{prefix}{f.name}."))
        elif f.metadata.get("results", True):
            out[f"{prefix}{f.name}"] = value
    return out


def fingerprint(keys: dict[str, Any]) -> str:
    """A short stable hash of result_keys(...)."""
    blob = json.dumps(keys, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys whose values differ (or that only one side has), sorted."""
    return sorted(k for k in set(old) | set(new) if old.get(k, _MISSING) != new.get(k, _MISSING))


_MISSING = object()


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, help) for every leaf field, for `--print-config` and the README."""
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, f"{prefix}{f.name}."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        bounds = _bounds_text(f.metadata)
        text = f.metadata.get("help", "") + (f" ({bounds})" if bounds else "")
        rows.append((f"{prefix}{f.name}", repr(default), text))
    return rows


def describe_markdown(cls: type) -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{k}` | `{d}` | {h} |" for k, d, h in describe(cls)]
    return "\n".join(lines)
