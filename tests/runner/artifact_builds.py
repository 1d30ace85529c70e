"""Finished qemu-target builds on disk, as the qemu build leaves them (homelab_images.runner.qemu._finish):
the file, its sha256 file, the manifest and, when superseded, the SUPERSEDED marker. A small plain file stands
in for the qcow2; what reads these directories checks only the layout, the manifest and the sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

from homelab_images.contract.artifact import (
    ARTIFACT_MANIFEST_FILE,
    SUPERSEDED_MARKER,
    ArtifactResult,
    ArtifactSpec,
)
from homelab_images.runner.artifacts import build_manifest, checksum_line, read_manifest, write_manifest

GIB = 1024**3


def write_build(
    artifact_dir: Path, spec: ArtifactSpec, built_at: str, payload: bytes, superseded: bool = False
) -> Path:
    """``spec``'s build (its image, version and fingerprint) finished at ``built_at``."""
    directory = artifact_dir / spec.image / spec.directory_name
    directory.mkdir(parents=True)
    (directory / spec.file_name).write_bytes(payload)
    sha256 = hashlib.sha256(payload).hexdigest()
    (directory / f"{spec.file_name}.sha256").write_text(checksum_line(sha256, spec.file_name))
    manifest = build_manifest(spec, len(payload), spec.hardware.disk_gib * GIB, sha256, built_at, None)
    write_manifest(directory, manifest)
    if superseded:
        (directory / SUPERSEDED_MARKER).write_text("superseded by a newer build\n")
    return directory


def result_of(directory: Path) -> ArtifactResult:
    """The result line the build that left ``directory`` printed: what update and delete get as previous stdout."""
    manifest = read_manifest(directory)
    assert manifest is not None, f"{directory} has no manifest"
    return ArtifactResult(
        image=manifest.image,
        version=manifest.version,
        fingerprint=manifest.fingerprint,
        path=str(directory / manifest.file),
        file=manifest.file,
        size=manifest.size,
        sha256=manifest.sha256,
        manifest=str(directory / ARTIFACT_MANIFEST_FILE),
        built_at=manifest.built_at,
        source_commit=None,
    )
