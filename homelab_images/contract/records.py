"""Frozen pydantic models for the runner's JSON documents (the spec on stdin, the result on stdout).

The contract package is shared by the Pulumi program and the runner, so it may
import only the standard library and pydantic: no Pulumi and nothing of the
core. pydantic is allowed because the runner needs it anyway to check what it
reads, and its cost is small next to a build: ``make bench`` prints the runner's
start-up time with and without these models (tens of milliseconds against a
build of many minutes).
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError


class RecordError(ValueError):
    """A JSON document does not have the record's shape; the one-line message names the field."""


_SHOWN_PROBLEMS = 3


def _describe(error: ValidationError) -> str:
    problems = []
    for detail in error.errors(include_url=False):
        where = ".".join(str(part) for part in detail["loc"]) or "document"
        problems.append(f"{where}: {detail['msg'].lower()}")
    more = len(problems) - _SHOWN_PROBLEMS
    return "; ".join(problems[:_SHOWN_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")


class Record(BaseModel):
    """Strict (no coercion), frozen, unknown keys rejected; JSON keys are the aliases if a model sets them."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, validate_by_name=True, serialize_by_alias=True)

    @classmethod
    def from_mapping(cls, data: Any) -> Self:
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise RecordError(_describe(error)) from None

    @classmethod
    def from_json(cls, text: str) -> Self:
        try:
            return cls.model_validate_json(text)
        except ValidationError as error:
            raise RecordError(_describe(error)) from None

    def to_mapping(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return self.model_dump_json()

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` (by field name), validated like a document read from JSON."""
        return self.from_mapping({**dict(self), **changes})
