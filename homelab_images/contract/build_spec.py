"""What the build command needs to know, passed to it on stdin as JSON.

Nothing secret belongs here: the spec is stored in Pulumi state and shown in
diffs. Credentials reach the command through its environment only. This module
imports neither the config model nor pydantic, so the build command starts quickly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homelab_images.contract.records import Record, RecordError


@dataclass(frozen=True)
class IdRange(Record):
    """VM IDs the build may use (validated in the stack config)."""

    first: int
    last: int


@dataclass(frozen=True)
class BuildSpec(Record):
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
    retain_previous: int
    timeout_minutes: int
    insecure: bool
    ca_bundle: str | None
    kickstart_delivery: str
    packer_template: dict[str, Any]
    scripts: dict[str, str]

    def __post_init__(self) -> None:
        if self.retain_previous < 0:
            raise RecordError("retain_previous: must not be negative")
        if self.timeout_minutes < 1:
            raise RecordError("timeout_minutes: must be at least 1")
        if self.vm_id_range.last < self.vm_id_range.first:
            raise RecordError("vm_id_range: last is below first")

    def to_stdin(self) -> str:
        return self.to_json() + "\n"

    @classmethod
    def from_stdin(cls, text: str) -> BuildSpec:
        return cls.from_json(text)
