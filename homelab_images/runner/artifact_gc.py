"""gc of the qemu target's files: what in ``artifactDir`` this stack's builds no longer need.

Candidates: superseded builds beyond ``retainPrevious`` per image, every
superseded build of an image no longer built with the qemu target, and work
directories of builds whose process is gone. Only what the qemu build itself
makes is considered (homelab_images.runner.artifacts): a build directory whose
``manifest.json`` is this program's, names the image of the directory it is in
and matches the directory's own name, or a work directory named exactly
``.building-<fingerprint[:12]>-<pid>``. Anything else, and every symbolic link
inside ``artifactDir`` (an image directory too), is left alone; ``artifactDir``
itself may be one. Never deleted, only reported: the current file of each image
(the newest not superseded of the planned qemu fingerprint, else the newest not
superseded), every file of the planned fingerprint (superseded or not: the
qemu build reuses it), any other finished file that is not superseded (no build
result lists it), and a work directory whose build process is running.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TextIO

from homelab_images.contract.artifact import ARTIFACT_MANIFEST_FILE, ArtifactManifest
from homelab_images.contract.gc_request import ArtifactGc
from homelab_images.runner.artifacts import StoredArtifact, read_manifest, work_pid
from homelab_images.runner.errors import EXIT_FAILED
from homelab_images.runner.guardian import process_alive

ARTIFACT_DIR_KEY = "homelab-images:build.artifactDir"
UNTRACKED = (
    "finished, but neither the current file of its image nor superseded: no build result lists it "
    "(a build that failed after finishing, or a replacement still running); reported only"
)
STILL_LISTED = (
    "its image is no longer built with the qemu target, but it is not superseded: "
    "the stack's state lists it until pulumi up deletes it; reported only"
)
FOREIGN = (
    "its manifest.json does not prove it is a build of this image (unreadable, another image's, or renamed); left alone"
)
PLANNED = (
    "the file the stack config plans now (a reverted change not yet applied): pulumi up reuses it "
    "rather than build it again; kept"
)
LINKED = (
    "a symbolic link: gc follows none inside build.artifactDir (point build.artifactDir itself at another disk); "
    "left alone"
)
NOTHING = (
    "nothing to collect: no superseded files beyond retention, of images no longer built, or of interrupted builds"
)


@dataclass(frozen=True)
class Entry:
    """A directory gc found: a finished build (``manifest``) or a work directory (``pid``).

    Only a ``candidate`` is ever deleted; the others are reported, their reason says why they stay."""

    directory: Path
    reason: str
    candidate: bool
    size: int | None = None
    manifest: ArtifactManifest | None = None
    pid: int | None = None


@dataclass(frozen=True)
class ArtifactFindings:
    root: Path
    entries: list[Entry]

    @property
    def candidates(self) -> list[Entry]:
        return [entry for entry in self.entries if entry.candidate]


class Removal(Enum):
    DELETED = "deleted"
    GONE = "already gone"
    CHANGED = "changed"
    FAILED = "failed"


def disk_usage(directory: Path) -> int:
    """Bytes the directory takes on disk (what deleting it frees: a qcow2 may be sparse)."""
    total = directory.lstat().st_blocks * 512
    for top, dirs, files in os.walk(directory):
        for name in (*dirs, *files):
            try:
                total += os.lstat(os.path.join(top, name)).st_blocks * 512
            except OSError:
                continue
    return total


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def proven_build(directory: Path, image: str) -> StoredArtifact | None:
    """The build in ``directory`` when its manifest proves it one of ``image``'s builds, else None."""
    if (directory / ARTIFACT_MANIFEST_FILE).is_symlink():
        return None
    manifest = read_manifest(directory)
    if manifest is None or manifest.image != image or manifest.directory_name != directory.name:
        return None
    return StoredArtifact(directory, manifest)


def _entry(artifact: StoredArtifact, reason: str, candidate: bool) -> Entry:
    size = disk_usage(artifact.directory)
    return Entry(artifact.directory, reason, candidate, size, manifest=artifact.manifest)


def _newest_first(builds: Sequence[StoredArtifact]) -> list[StoredArtifact]:
    # The order the qemu build's own retention uses (artifacts.stored_artifacts).
    return sorted(builds, key=lambda b: (b.manifest.built_at, b.directory.name), reverse=True)


def _current(live: list[StoredArtifact], fingerprint: str | None) -> StoredArtifact | None:
    """The file the stack's state most likely lists: the newest live one of the planned fingerprint, else the
    newest live one (a change not yet applied, a reverted one whose file is still superseded)."""
    matching = [b for b in live if b.manifest.fingerprint == fingerprint]
    newest = matching or live
    return newest[0] if newest else None


def _finished(builds: list[StoredArtifact], configured: bool, fingerprint: str | None, retain: int) -> list[Entry]:
    superseded = _newest_first([b for b in builds if b.superseded])
    live = _newest_first([b for b in builds if not b.superseded])
    if not configured:
        reason = "superseded, image no longer built with the qemu target"
        return [*(_entry(b, reason, True) for b in superseded), *(_entry(b, STILL_LISTED, False) for b in live)]
    reason = f"superseded, beyond retainPrevious={retain}"
    current = _current(live, fingerprint)
    # The qemu build's create reuses a file of the planned fingerprint (and drops its marker) instead of
    # building it again: whatever its marker says, it is the one the config plans.
    planned = [b for b in builds if fingerprint is not None and b.manifest.fingerprint == fingerprint]
    return [
        *(_entry(b, reason, True) for b in [b for b in superseded if b not in planned][retain:]),
        *(_entry(b, PLANNED, False) for b in planned if b is not current),
        *(_entry(b, UNTRACKED, False) for b in live if b is not current and b not in planned),
    ]


def _work(directory: Path, pid: int) -> Entry:
    """A work directory may go only when its build process is gone: a live one is writing its qcow2."""
    if process_alive(pid):
        reason = f"build in progress (process {pid} is running); left alone"
        return Entry(directory, reason, False, disk_usage(directory), pid=pid)
    reason = f"work directory of an interrupted build (process {pid} is gone)"
    return Entry(directory, reason, True, disk_usage(directory), pid=pid)


def scan_image(image_dir: Path, request: ArtifactGc) -> list[Entry]:
    image = image_dir.name
    entries = []
    builds = []
    for directory in image_dir.iterdir():
        if directory.is_symlink() or not directory.is_dir():
            continue
        pid = work_pid(directory)
        if pid is not None:
            entries.append(_work(directory, pid))
        elif directory.name.startswith(".") or not (directory / ARTIFACT_MANIFEST_FILE).exists():
            continue
        elif (build := proven_build(directory, image)) is not None:
            builds.append(build)
        else:
            entries.append(Entry(directory, FOREIGN, False))
    planned = {i.name: i.fingerprint for i in request.images}
    return [*entries, *_finished(builds, image in planned, planned.get(image), request.retain_previous)]


def find_artifacts(request: ArtifactGc, project_dir: Path) -> ArtifactFindings:
    # As the qemu build resolves it: its Command runs in the project directory.
    root = (project_dir / request.artifact_dir).resolve()
    entries: list[Entry] = []
    if root.is_dir():
        for image_dir in root.iterdir():
            if image_dir.name.startswith(".") or not image_dir.is_dir():
                continue
            if image_dir.is_symlink():
                # What is behind it may be another stack's or another program's: only artifactDir itself is followed.
                entries.append(Entry(image_dir, LINKED, False))
                continue
            try:
                entries.extend(scan_image(image_dir, request))
            except OSError as error:
                entries.append(Entry(image_dir, f"cannot be read ({error.strerror}); left alone", False))
    return ArtifactFindings(root, sorted(entries, key=lambda entry: entry.directory))


def still_candidate(entry: Entry) -> bool:
    """Checked again just before deleting: a build may have started, renamed or superseded something since."""
    directory = entry.directory
    if directory.is_symlink() or not directory.is_dir():
        return False
    if entry.pid is not None:
        return work_pid(directory) == entry.pid and not process_alive(entry.pid)
    build = proven_build(directory, directory.parent.name)
    return build is not None and build.manifest == entry.manifest and build.superseded


def remove(entry: Entry) -> tuple[Removal, str]:
    if not entry.directory.exists():
        return Removal.GONE, ""
    if not still_candidate(entry):
        return Removal.CHANGED, "it changed since it was listed"
    try:
        shutil.rmtree(entry.directory)
    except FileNotFoundError:
        return Removal.GONE, ""
    except OSError as error:
        return Removal.FAILED, f"{error.strerror}: {error.filename}"
    return Removal.DELETED, ""


def collect_artifacts(request: ArtifactGc, project_dir: Path, apply: bool, out: TextIO) -> int:
    """List (or with ``apply`` delete) the candidates, one line per directory; returns the exit status."""
    findings = find_artifacts(request, project_dir)
    root = findings.root
    out.write(f"qcow2 files in {root} ({ARTIFACT_DIR_KEY}):\n")
    candidates = findings.candidates
    freed = deleted = status = 0
    for entry in findings.entries:
        size = f" ({human_size(entry.size)})" if entry.size is not None else ""
        line = f"  {entry.directory.relative_to(root)}{size}: {entry.reason}"
        if not entry.candidate:
            out.write(f"{line}\n")
            continue
        if not apply:
            out.write(f"{line}: would delete\n")
            continue
        outcome, detail = remove(entry)
        if outcome is Removal.DELETED:
            deleted += 1
            freed += entry.size or 0
            out.write(f"{line}: deleted\n")
        elif outcome is Removal.GONE:
            out.write(f"{line}: already gone\n")
        elif outcome is Removal.CHANGED:
            out.write(f"{line}: {detail}, left untouched\n")
        else:
            status = EXIT_FAILED
            out.write(f"{line}: could not delete ({detail})\n")
    if root.exists() and not root.is_dir():
        out.write(f"  nothing to collect: it is not a directory; {ARTIFACT_DIR_KEY} must name one\n")
        return EXIT_FAILED
    if not candidates:
        out.write(f"  {NOTHING}\n" if root.is_dir() else "  nothing to collect: the directory does not exist\n")
    elif not apply:
        total = human_size(sum(entry.size or 0 for entry in candidates))
        out.write(
            f"  dry run: nothing was deleted; --apply deletes the {len(candidates)} marked 'would delete', "
            f"freeing {total}\n"
        )
    else:
        out.write(f"  deleted {deleted} of {len(candidates)} candidates, freed {human_size(freed)}\n")
    return status
