"""The qcow2 files of the qemu target on disk: one directory per build, its manifest, retention.

Layout: ``<artifactDir>/<image>/<name>-v<version>-<fingerprint[:12]>/`` holds
``<name>-v<version>.qcow2``, ``<file>.sha256`` (sha256sum's format) and
``manifest.json``. A directory counts as this program's only when its manifest
says so and names the image; nothing else in artifactDir is ever removed.
Superseded files kept for rollback carry a ``SUPERSEDED`` marker. A build in
progress works in ``<artifactDir>/<image>/.building-<fingerprint[:12]>-<pid>/``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from homelab_images.contract.artifact import (
    ARTIFACT_MANIFEST_FILE,
    SUPERSEDED_MARKER,
    ArtifactManifest,
    ArtifactSpec,
)
from homelab_images.contract.records import RecordError
from homelab_images.runner.console import Console
from homelab_images.runner.guardian import process_alive

CHUNK = 1024 * 1024
WORK_PREFIX = ".building-"
WORK_NAME = re.compile(re.escape(WORK_PREFIX) + r"[0-9a-f]{12}-([0-9]+)")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_line(sha256: str, file_name: str) -> str:
    """sha256sum's output format, so ``sha256sum -c <file>.sha256`` checks the file."""
    return f"{sha256}  {file_name}\n"


@dataclass(frozen=True)
class StoredArtifact:
    directory: Path
    manifest: ArtifactManifest

    @property
    def file(self) -> Path:
        return self.directory / self.manifest.file

    @property
    def superseded(self) -> bool:
        return (self.directory / SUPERSEDED_MARKER).exists()


def read_manifest(directory: Path) -> ArtifactManifest | None:
    try:
        return ArtifactManifest.from_json((directory / ARTIFACT_MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, RecordError):
        return None


def build_manifest(
    spec: ArtifactSpec, size: int, virtual_size: int, sha256: str, built_at: str, commit: str | None
) -> ArtifactManifest:
    """The manifest of ``spec``'s build: what the file is, what it was built from, and by what."""
    return ArtifactManifest(
        schema=1,
        built_by="homelab-images",
        image=spec.image,
        version=spec.version,
        fingerprint=spec.fingerprint,
        fingerprint_parts=spec.fingerprint_parts,
        file=spec.file_name,
        format="qcow2",
        size=size,
        virtual_size=virtual_size,
        sha256=sha256,
        hardware=spec.hardware,
        iso_sha256=spec.iso_sha256,
        k3sVersion=spec.k3s_version,
        builder=spec.builder,
        built_at=built_at,
        source_commit=commit,
    )


def write_manifest(directory: Path, manifest: ArtifactManifest) -> None:
    path = directory / ARTIFACT_MANIFEST_FILE
    partial = path.with_suffix(".partial")
    partial.write_text(manifest.model_dump_json(indent=2, by_alias=True) + "\n", encoding="utf-8")
    partial.replace(path)


def stored_artifacts(image_dir: Path, image: str) -> list[StoredArtifact]:
    """This image's finished builds, newest first."""
    if not image_dir.is_dir():
        return []
    found = []
    for directory in image_dir.iterdir():
        if directory.name.startswith(".") or not directory.is_dir():
            continue
        manifest = read_manifest(directory)
        if manifest is not None and manifest.image == image:
            found.append(StoredArtifact(directory, manifest))
    return sorted(found, key=lambda artifact: (artifact.manifest.built_at, artifact.directory.name), reverse=True)


def work_pid(directory: Path) -> int | None:
    """The process building in this work directory, or None when the name is not one the build gives."""
    match = WORK_NAME.fullmatch(directory.name)
    return int(match.group(1)) if match else None


def remove_stale_work(image_dir: Path, console: Console) -> None:
    """Unfinished build directories whose build process is gone (killed without a chance to clean up)."""
    if not image_dir.is_dir():
        return
    for directory in image_dir.glob(WORK_PREFIX + "*"):
        pid = work_pid(directory)
        if pid is not None and not directory.is_symlink() and not process_alive(pid):
            console.stage(f"removing the leftover of an interrupted build: {directory}")
            shutil.rmtree(directory, ignore_errors=True)


def prune_superseded(image_dir: Path, image: str, retain: int, console: Console) -> list[Path]:
    """Delete superseded files beyond ``retain``, oldest first."""
    superseded = [artifact for artifact in stored_artifacts(image_dir, image) if artifact.superseded]
    removed = []
    for old in reversed(superseded[retain:]):
        shutil.rmtree(old.directory)
        console.note(f"deleted superseded image file {old.file} (beyond retainPrevious={retain})")
        removed.append(old.directory)
    return removed
