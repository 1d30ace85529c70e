"""The result JSON: the last line of the runner's stdout, read back on update and delete."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from homelab_images.contract.records import Record, RecordError


class RetainedTemplate(Record):
    model_config = ConfigDict(alias_generator=to_camel)

    vm_id: int
    name: str
    version: str | None
    fingerprint: str | None
    built_at: str | None
    # Added within schema 1: results written before it lack the key.
    node: str | None = None


class SmokeResult(Record):
    """What the smoke test of a new template found (docs/build-runner.md, "Smoke test")."""

    model_config = ConfigDict(alias_generator=to_camel)

    passed: bool
    # Seconds from starting the clone to its k3s node reporting Ready; None when it never did.
    ready_seconds: float | None
    checked_at: str


class BuildResult(Record):
    model_config = ConfigDict(alias_generator=to_camel)

    vm_id: int
    node: str
    name: str
    version: str
    fingerprint: str
    storage: str
    built_at: str
    source_commit: str | None
    retained: list[RetainedTemplate] = Field(default_factory=list)
    # Added within schema 1: None when the smoke test is off, and in results written before it.
    smoke: SmokeResult | None = None


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
    """The runner's stdout does not end with a result line."""


def require_result(stdout: str) -> dict[str, Any]:
    """The result as the Pulumi program exports it; an error naming the problem if there is none."""
    result = parse_result(stdout)
    if result is None:
        raise BuildResultInvalid(
            "the runner's stdout does not end with a build result "
            '({"vmId", "node", "name", "version", "fingerprint", ...}); see its stderr in the Pulumi output'
        )
    return result.to_mapping()
