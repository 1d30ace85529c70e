"""What the build command needs to know, passed to it on stdin as JSON.

Nothing secret belongs here: the spec is stored in Pulumi state and shown in
diffs. Credentials reach the command through its environment only. This module
does not import the config model, so the build command starts quickly.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class IdRange(BaseModel):
    """VM IDs the build may use (validated in the stack config)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    first: int
    last: int


class BuildSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str
    version: str
    template_name: str
    fingerprint: str
    fingerprint_parts: dict[str, str]
    node: str
    vm_storage: str
    iso_storage: str
    iso_volume: str
    iso_sha256: str
    k3s_version: str
    bridge: str
    vm_id_range: IdRange
    retain_previous: int = Field(ge=0)
    timeout_minutes: int = Field(ge=1)
    insecure: bool
    ca_bundle: str | None
    kickstart_delivery: str
    packer_template: dict[str, Any]
    scripts: dict[str, str]

    def to_stdin(self) -> str:
        return self.model_dump_json(by_alias=True) + "\n"

    @classmethod
    def from_stdin(cls, text: str) -> BuildSpec:
        return cls.model_validate_json(text)
