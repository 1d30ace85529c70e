"""Frozen records read from and written to JSON, with type checks.

The build command starts once per build step; pydantic's import and model
building would cost it more than everything else it does before Packer runs, so
its two JSON documents (the spec on stdin, the result on stdout) use these
plain dataclasses instead.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, Self, Union


class RecordError(ValueError):
    """A JSON document does not have the record's shape; the message names the field."""


def alias(name: str) -> Any:
    """A field whose JSON key differs from its Python name."""
    return dataclasses.field(metadata={"alias": name})


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _key(field: dataclasses.Field[Any]) -> str:
    return str(field.metadata.get("alias", field.name))


def _check(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _check(value, option, where)
            except RecordError:
                continue
        raise RecordError(f"{where}: expected {hint}, got {type(value).__name__}")
    if origin is list:
        if not isinstance(value, list):
            raise RecordError(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(hint)
        return [_check(element, item, f"{where}[{index}]") for index, element in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {type(value).__name__}")
        return dict(value)
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_mapping(value, where)
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise RecordError(f"{where}: expected an integer, got {type(value).__name__}")
    if hint in (str, bool) and not isinstance(value, hint):
        raise RecordError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_mapping()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


@dataclasses.dataclass(frozen=True)
class Record:
    @classmethod
    def from_mapping(cls, data: Any, where: str = "") -> Self:
        if not isinstance(data, Mapping):
            raise RecordError(f"{where or cls.__name__}: expected an object, got {type(data).__name__}")
        fields = {_key(field): field for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise RecordError(f"{where or cls.__name__}: unknown keys {', '.join(unknown)}")
        values = {}
        hints = _hints(cls)
        for key, field in fields.items():
            path = f"{where}.{key}" if where else key
            if key not in data:
                if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                    raise RecordError(f"{path}: missing")
                continue
            values[field.name] = _check(data[key], hints[field.name], path)
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> Self:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise RecordError(f"not JSON: {error.msg} at line {error.lineno}") from None
        return cls.from_mapping(data)

    def to_mapping(self) -> dict[str, Any]:
        return {_key(field): _plain(getattr(self, field.name)) for field in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_mapping(), separators=(",", ":"))

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)
