"""The result JSON: the last line of the build command's stdout, read back on update and delete."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class RetainedTemplate(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    vm_id: int = Field(alias="vmId")
    name: str
    version: str | None
    fingerprint: str | None
    built_at: str | None = Field(alias="builtAt")


class BuildResult(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    vm_id: int = Field(alias="vmId")
    node: str
    name: str
    version: str
    fingerprint: str
    storage: str
    built_at: str = Field(alias="builtAt")
    source_commit: str | None = Field(alias="sourceCommit")
    retained: list[RetainedTemplate] = Field(default_factory=list)

    def to_line(self) -> str:
        return json.dumps(self.model_dump(by_alias=True), separators=(",", ":"), sort_keys=False)


def last_json_line(text: str | None) -> dict[str, object] | None:
    """The last line of ``text`` that is a JSON object (Packer never writes to our stdout, but be lenient)."""
    for line in reversed((text or "").splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def parse_result(text: str | None) -> BuildResult | None:
    value = last_json_line(text)
    if value is None:
        return None
    try:
        return BuildResult.model_validate(value)
    except ValidationError:
        return None
