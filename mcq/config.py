"""Typed configuration machinery: dataclasses loaded from YAML with unknown-key errors, one CLI flag per field.

One name per concept everywhere: the YAML key, the CLI flag (`--per-device-batch` for `per_device_batch`)
and the attribute are the same word.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import field
from pathlib import Path

import yaml

from mcq.errors import ConfigError


def help_field(default: typing.Any, help: str, flag: dict | None = None, **kw: typing.Any) -> typing.Any:
    """A dataclass field with a help string (shown by --help); `flag` adds argparse options to its flag (e.g. a
    `type` that checks the value as it is parsed, `choices`, `metavar`)."""
    metadata = {"help": help, "flag": flag or {}}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata, **kw)
    return field(default=default, metadata=metadata, **kw)


def read_yaml(path: str | Path) -> typing.Any:
    """A hand-written YAML file; a syntax error or bytes that are not UTF-8 are one ConfigError naming the file,
    the line and the column."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise ConfigError(
            f"{path}: line {line}, column {column}: not UTF-8 text (byte 0x{raw[err.start]:02x}); save the file as "
            "UTF-8"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: {_yaml_problem(err)}") from None


def _yaml_problem(err: yaml.YAMLError) -> str:
    """'line L, column C: not valid YAML (problem), begun at line L2 (context)', 1-based, in one line."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    text = f"not valid YAML ({problem}); fix the file there"
    if mark is not None:
        text = f"line {mark.line + 1}, column {mark.column + 1}: {text}"
    begun = getattr(err, "context_mark", None)
    if begun is not None and (mark is None or begun.line != mark.line):
        text += f" ({getattr(err, 'context', '')} begun at line {begun.line + 1}, column {begun.column + 1})"
    return text


def load_config(cls, path: str | Path | None, overrides: dict | None = None):
    """Build `cls` from a YAML file plus overrides; unknown keys raise ConfigError naming them."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        values = read_yaml(path) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{path or 'flags'}: unknown key(s) {unknown}. Known keys: {sorted(known)}")
    values = typed_values(cls, values, str(path))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"{path or 'flags'}: {err}") from err


def typed_values(cls, values: dict, where: str) -> dict:
    """YAML values as the dataclass fields' types (keys must be known fields)."""
    hints = typing.get_type_hints(cls)
    return {k: _typed(v, hints[k], f"{where}: {k}") for k, v in values.items()}


def _typed(value, hint, where: str):
    """A YAML value as the field's type. YAML reads `2e-5` (no dot) as a string, and one file for a list
    field is natural to write without brackets; anything else of the wrong type is a ConfigError."""
    base = _base_type(hint)
    if value is None:
        if base is not hint:  # Optional
            return None
        raise ConfigError(f"{where}: needs a value")
    if typing.get_origin(base) is list:
        item = typing.get_args(base)[0]
        return [_scalar(v, item, where) for v in (value if isinstance(value, list) else [value])]
    return _scalar(value, base, where)


def _scalar(value, kind, where: str):
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind in (int, float) and not isinstance(value, bool):
        if isinstance(value, (int, float)) and (kind is float or float(value).is_integer()):
            return kind(value)
        if isinstance(value, str):
            try:
                return kind(value)
            except ValueError:
                pass
    elif kind is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")


def add_dataclass_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One --flag per field, named like the field with '-' for '_'; all default to None (= keep config).
    The help shows the dataclass default (what applies when neither the YAML nor a flag sets it)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        kw: dict[str, typing.Any] = {
            "dest": f.name,
            "default": None,
            "help": f"{f.metadata.get('help', '')} (default: {_shown_default(f)})",
            **f.metadata.get("flag", {}),
        }
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            continue
        base = _base_type(kind)
        if typing.get_origin(base) is list:
            parser.add_argument(flag, **{"nargs": "+", "type": typing.get_args(base)[0]} | kw)
        else:
            parser.add_argument(flag, **{"type": base} | kw)


def _shown_default(f: dataclasses.Field) -> str:
    """A field's default as a user would type it: lists space-separated, booleans as on/off, % escaped."""
    if f.default is dataclasses.MISSING:
        # help_field gives every config field a default or a default_factory
        assert f.default_factory is not dataclasses.MISSING
        value = f.default_factory()
    else:
        value = f.default
    if isinstance(value, bool):
        text = "on" if value else "off"
    elif isinstance(value, list):
        text = " ".join(map(str, value)) if value else "none"
    else:
        text = "unset" if value is None or value == "" else str(value)
    return text.replace("%", "%%")


def _base_type(kind):
    """`float | None` -> float; other types unchanged."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0]
    return kind


def flag_overrides(args: argparse.Namespace, cls) -> dict:
    """The dataclass fields that were given on the command line."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}
