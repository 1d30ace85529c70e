"""The description a template carries: where it came from, readable in the Proxmox UI and parseable back."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # For annotations only: the qemu build never reads a BuildSpec, so its start-up skips that model.
    from homelab_images.contract.build_spec import BuildSpec

BUILT_BY = "built by homelab-images"


def source_commit(directory: Path) -> str | None:
    """HEAD of the checkout the build runs from, or None outside a git checkout."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) in (40, 64) else None


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(spec: BuildSpec, built_at: str, commit: str | None) -> str:
    # An imported template comes from its qcow2; the ISO of the importing stack's config is not in it.
    source = spec.import_from
    origin = f"iso sha256: {spec.iso_sha256}" if source is None else f"qcow2 sha256: {source.sha256}"
    return "\n".join(
        [
            f"Golden image {spec.image} v{spec.version}",
            "",
            f"image: {spec.image}",
            f"version: {spec.version}",
            f"fingerprint: {spec.fingerprint}",
            origin,
            f"k3s: {spec.k3s_version}",
            f"built at: {built_at}",
            f"source commit: {commit or 'unknown (not a git checkout)'}",
            BUILT_BY,
        ]
    )


@dataclass(frozen=True)
class Provenance:
    fingerprint: str | None
    built_at: str | None
    version: str | None


def parse(description: str | None) -> Provenance:
    fields: dict[str, str] = {}
    for line in (description or "").splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            fields[key.strip().lower()] = value.strip()
    return Provenance(fields.get("fingerprint"), fields.get("built at"), fields.get("version"))
