"""What the machine that runs a qemu build needs, checked before the build, and qemu-img's verdict after it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from homelab_images.contract.artifact import ArtifactSpec
from homelab_images.runner.console import Console
from homelab_images.runner.errors import RunnerError

KVM_DEVICE = Path("/dev/kvm")
QEMU_SYSTEM = "qemu-system-x86_64"
QEMU_IMG = "qemu-img"
HOST = "the machine running the qemu build"
GIB = 1024**3


def _tool(name: str, environ: Mapping[str, str], package: str) -> str:
    found = shutil.which(name, path=environ.get("PATH"))
    if found is None:
        raise RunnerError(f"{name} is not on PATH", HOST, f"install it (Debian: apt-get install {package})")
    return found


def check_host(spec: ArtifactSpec, environ: Mapping[str, str], artifact_dir: Path, console: Console) -> str:
    """Fail before a long build rather than after it; returns the qemu-img to verify the result with."""
    _tool(QEMU_SYSTEM, environ, "qemu-system-x86")
    qemu_img = _tool(QEMU_IMG, environ, "qemu-utils")
    for firmware in spec.firmware_files:
        if not Path(firmware).is_file():
            raise RunnerError(
                f"the UEFI firmware file {firmware} does not exist",
                "homelab-images:build.qemu.ovmfCode / ovmfVars",
                "install OVMF (Debian: apt-get install ovmf) or point these keys at your distribution's edk2 files",
            )
    if spec.accelerator == "kvm" and not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
        raise RunnerError(
            f"{KVM_DEVICE} is missing or not readable and writable by this user",
            "homelab-images:build.qemu.accelerator",
            "load the kvm module and add the user to the kvm group, or set accelerator: tcg (much slower)",
        )
    free = shutil.disk_usage(artifact_dir).free
    if free < spec.hardware.disk_gib * GIB:
        console.warn(
            f"{artifact_dir} has {free / GIB:.1f} GiB free; the build's disk may grow to "
            f"{spec.hardware.disk_gib} GiB before it is compressed"
        )
    return qemu_img


@dataclass(frozen=True)
class DiskImage:
    format: str
    virtual_size: int


def inspect_image(qemu_img: str, path: Path) -> DiskImage:
    """qemu-img's own reading of the file: its format and size, and a consistency check of a qcow2."""
    where = f"image file {path}"
    info = subprocess.run(
        [qemu_img, "info", "--output=json", str(path)], capture_output=True, text=True, timeout=300, check=False
    )
    if info.returncode != 0:
        raise RunnerError(f"qemu-img cannot read the image ({info.stderr.strip()})", where, "see Packer's output above")
    details = json.loads(info.stdout)
    image = DiskImage(str(details.get("format")), int(details.get("virtual-size", 0)))
    if image.format == "qcow2":
        check = subprocess.run(
            [qemu_img, "check", str(path)], capture_output=True, text=True, timeout=1800, check=False
        )
        if check.returncode != 0:
            problem = (check.stdout + check.stderr).strip().splitlines()
            raise RunnerError(
                f"qemu-img check found the image inconsistent ({problem[-1] if problem else check.returncode})",
                where,
                "the file is corrupt; it was not kept; run the build again",
            )
    return image
