"""The result JSON: the last line of the build command's stdout, read back on update and delete."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from homelab_images.contract.records import Record, RecordError, alias


@dataclass(frozen=True)
class RetainedTemplate(Record):
    vm_id: int = alias("vmId")
    name: str = alias("name")
    version: str | None = alias("version")
    fingerprint: str | None = alias("fingerprint")
    built_at: str | None = alias("builtAt")
    # Added within schema 1: results written before it lack the key.
    node: str | None = field(default=None, metadata={"alias": "node"})


@dataclass(frozen=True)
class BuildResult(Record):
    vm_id: int = alias("vmId")
    node: str = alias("node")
    name: str = alias("name")
    version: str = alias("version")
    fingerprint: str = alias("fingerprint")
    storage: str = alias("storage")
    built_at: str = alias("builtAt")
    source_commit: str | None = alias("sourceCommit")
    retained: list[RetainedTemplate] = field(default_factory=list)

    def to_line(self) -> str:
        return self.to_json()


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
        return BuildResult.from_mapping(value)
    except RecordError:
        return None


class BuildResultInvalid(Exception):
    """The build command's stdout does not end with a result line."""


def require_result(stdout: str) -> dict[str, Any]:
    """The result as the Pulumi program exports it; an error naming the problem if there is none."""
    result = parse_result(stdout)
    if result is None:
        raise BuildResultInvalid(
            "the build command's stdout does not end with a build result "
            '({"vmId", "node", "name", "version", "fingerprint", ...}); see its stderr in the Pulumi output'
        )
    return result.to_mapping()
