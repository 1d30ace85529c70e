"""Files on this machine that the stack config names, checked before anything is declared or built.

Relative paths start at the project directory, as the runner resolves them (pulumi-command runs it there).
"""

from __future__ import annotations

from pathlib import Path

from homelab_images.core.config import StackConfig

PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
CA_BUNDLE_KEY = "homelab-images:proxmox.caBundle"
ARTIFACT_DIR_KEY = "homelab-images:build.artifactDir"
QEMU_TARGET = "qemu"


def ca_bundle_problem(config: StackConfig, project_dir: Path) -> str | None:
    """Why caBundle cannot verify the Proxmox certificate, or None (also when it is not set)."""
    configured = config.proxmox.ca_bundle
    if not configured:
        return None
    resolved = (project_dir / configured).resolve()
    fix = "point it at the PEM file of the CA that signed the Proxmox certificate"
    try:
        text = resolved.read_bytes()
    except IsADirectoryError:
        return f"{CA_BUNDLE_KEY}: {resolved} is a directory; {fix}"
    except OSError as error:
        return f"{CA_BUNDLE_KEY}: cannot read {resolved} ({error.strerror}); {fix}"
    if PEM_CERTIFICATE not in text:
        return f"{CA_BUNDLE_KEY}: {resolved} holds no PEM certificate (no {PEM_CERTIFICATE.decode()} line); {fix}"
    return None


def missing_import_files(config: StackConfig, project_dir: Path) -> list[str]:
    """importFrom.path files that are not there. The file is needed only when the template is (re)made, and
    may be built later or removed once imported; the build fails clearly if it is missing then."""
    missing = []
    for index, image in enumerate(config.images):
        source = image.import_from
        if source is None or source.path is None:
            continue
        resolved = (project_dir / source.path).resolve()
        if not resolved.is_file():
            missing.append(
                f"homelab-images:images[{index}].importFrom.path: no file at {resolved}; pulumi up needs it to "
                "make the template (build it with the qemu target, copy it here, or fix the path)"
            )
    return missing


def artifact_dir_problem(config: StackConfig, project_dir: Path) -> str | None:
    """Why the qemu target cannot put its files in build.artifactDir, or None (also without a qemu image).

    The directory is made by the build; a file where it (or a directory above it) should be stops the build."""
    if not any(QEMU_TARGET in image.targets for image in config.images):
        return None
    resolved = (project_dir / config.build.artifact_dir).resolve()
    for path in (resolved, *resolved.parents):
        if path.exists():
            if path.is_dir():
                return None
            return (
                f"{ARTIFACT_DIR_KEY}: {path} is a file, not a directory; the qemu build cannot put its files in "
                f"{resolved} (move the file away or choose another directory)"
            )
    return None
