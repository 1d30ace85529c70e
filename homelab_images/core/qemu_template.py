"""The Packer template (HCL2 JSON) for the qemu builder of github.com/hashicorp/qemu.

The qemu target installs the image on the machine that runs the build, from the
same ISO, the same kickstart and the same provisioning scripts as the
proxmox-iso target, and leaves one compressed qcow2 file. Pure, and free of
credentials like the proxmox-iso template: the per-build SSH key and the output
directory come from variables the runner sets (PKR_VAR_*).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from homelab_images.contract.packer_files import (
    KICKSTART_FILE,
    MANIFEST_FILE,
    MIN_PACKER_VERSION,
    VAR_OUTPUT_DIRECTORY,
    VAR_PRIVATE_KEY_FILE,
    VAR_PUBLIC_KEY,
)
from homelab_images.contract.qemu_plugin import PLUGIN_SOURCE, PLUGIN_VERSION, SOURCE_TYPE
from homelab_images.core.config import BuildSettings, Image
from homelab_images.core.packer_template import boot_command, packer_kickstart, provisioners, provisioning_steps
from homelab_images.core.qemu_plugin_check import source_problems

# Proxmox's disk buses as QEMU devices: the proxmox-iso target puts scsi disks
# on a virtio-scsi controller.
DISK_INTERFACE = {"scsi": "virtio-scsi", "virtio": "virtio", "sata": "sata"}
# The CPU the build VM sees; it does not shape the installed image.
CPU_MODEL = {"kvm": "host", "tcg": "max"}
SHUTDOWN_COMMAND = "systemctl poweroff"


def _var(name: str) -> str:
    return "${var." + name + "}"


def artifact_file_name(image: Image) -> str:
    """The qcow2 file the build leaves: the builder names its disk after vm_name."""
    return f"{image.template_name}.qcow2"


def qemu_image_source(image: Image, build: BuildSettings) -> dict[str, Any]:
    """Settings of the qemu source that shape the image file (see ``qemu_build_affecting_parts``)."""
    hardware = image.hardware
    source: dict[str, Any] = {
        "machine_type": hardware.machine,
        "cpus": hardware.cores,
        "memory": hardware.memory_mib,
        "disk_size": f"{hardware.disk_gib}G",
        "disk_interface": DISK_INTERFACE[hardware.disk_bus],
        "disk_discard": "unmap",
        "disk_detect_zeroes": "unmap",
        "net_device": "virtio-net",
        "format": "qcow2",
        "disk_compression": True,
    }
    if hardware.firmware == "ovmf":
        source.update(
            {
                "efi_boot": True,
                "efi_firmware_code": build.qemu.ovmf_code,
                "efi_firmware_vars": build.qemu.ovmf_vars,
                # The disk is the artifact; a hypervisor that imports it makes its own variable store.
                "efi_drop_efivars": True,
            }
        )
    return source


FIRMWARE_OPTIONS = ("efi_boot", "efi_firmware_code", "efi_firmware_vars", "efi_drop_efivars")
FORMAT_OPTIONS = ("format", "disk_compression")


@dataclass(frozen=True)
class QemuFingerprintInputs:
    """What of the qemu template changes the image file, split as the fingerprint's qemu parts.

    Where it builds (output directory), with which accelerator and CPU model, how
    long it waits and how the kickstart travels do not.
    """

    builder: dict[str, Any]
    firmware: dict[str, Any]
    disk_format: dict[str, Any]


def qemu_fingerprint_inputs(image: Image, build: BuildSettings) -> QemuFingerprintInputs:
    source = qemu_image_source(image, build)
    special = FIRMWARE_OPTIONS + FORMAT_OPTIONS
    return QemuFingerprintInputs(
        builder={
            **{key: value for key, value in source.items() if key not in special},
            "provisioners": provisioning_steps(image),
        },
        firmware={key: source[key] for key in FIRMWARE_OPTIONS if key in source},
        disk_format={key: source[key] for key in FORMAT_OPTIONS},
    )


def render_qemu_template(image: Image, build: BuildSettings, kickstart_text: str) -> dict[str, Any]:
    """The complete qemu pkr.json document for one image."""
    source = qemu_image_source(image, build)
    embedded = packer_kickstart(kickstart_text)
    source.update(
        {
            "vm_name": artifact_file_name(image),
            "output_directory": _var(VAR_OUTPUT_DIRECTORY),
            "iso_url": image.iso.url,
            "iso_checksum": f"sha256:{image.iso.sha256}",
            "accelerator": build.qemu.accelerator,
            "cpu_model": CPU_MODEL[build.qemu.accelerator],
            "headless": True,
            "boot_wait": f"{build.boot_wait_seconds}s",
            "boot_command": boot_command(image, build.kickstart_delivery),
            "communicator": "ssh",
            "ssh_username": "root",
            "ssh_private_key_file": _var(VAR_PRIVATE_KEY_FILE),
            "ssh_timeout": f"{build.ssh_timeout_minutes}m",
            "shutdown_command": SHUTDOWN_COMMAND,
            "shutdown_timeout": f"{build.task_timeout_minutes}m",
        }
    )
    if build.kickstart_delivery == "http":
        source["http_content"] = {"/" + KICKSTART_FILE: embedded}
    else:
        source["cd_content"] = {KICKSTART_FILE: embedded}
        source["cd_label"] = "OEMDRV"
    return {
        "packer": {
            "required_version": f">= {MIN_PACKER_VERSION}",
            "required_plugins": {
                "qemu": {"version": f"= {PLUGIN_VERSION}", "source": PLUGIN_SOURCE},
            },
        },
        "variable": {
            VAR_OUTPUT_DIRECTORY: {
                "type": "string",
                "description": "Directory the qcow2 file is written to; it must not exist yet.",
            },
            VAR_PUBLIC_KEY: {"type": "string", "description": "Per-build SSH public key."},
            VAR_PRIVATE_KEY_FILE: {
                "type": "string",
                "sensitive": True,
                "description": "Per-build SSH private key file.",
            },
        },
        "source": {SOURCE_TYPE: {image.name: source}},
        "build": {
            "sources": [f"source.{SOURCE_TYPE}.{image.name}"],
            "provisioner": provisioners(image),
            "post-processor": [{"manifest": {"output": MANIFEST_FILE, "strip_path": True}}],
        },
    }


def qemu_source(template: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    sources = template.get("source", {}).get(SOURCE_TYPE, {})
    if len(sources) != 1:
        raise QemuTemplateInvalid(f"expected exactly one {SOURCE_TYPE} source")
    name, source = next(iter(sources.items()))
    return str(name), dict(source)


def qemu_embedded_kickstart(template: Mapping[str, Any]) -> str:
    """The kickstart text a rendered qemu template carries, whichever way it is delivered."""
    _, source = qemu_source(template)
    if "http_content" in source:
        return str(source["http_content"]["/" + KICKSTART_FILE])
    return str(source["cd_content"][KICKSTART_FILE])


class QemuTemplateInvalid(Exception):
    """The generated qemu template would not be accepted by Packer."""


def validate_qemu_template(template: Mapping[str, Any], kickstart_text: str) -> None:
    """What the pinned plugin and Packer would reject, and what would make it another image."""
    name, source = qemu_source(template)
    problems = source_problems(source)
    if ("http_content" in source) == ("cd_content" in source):
        problems.append("the kickstart must travel either by http_content or on an OEMDRV CD")
    elif "cd_content" in source and source.get("cd_label") != "OEMDRV":
        problems.append("cd_label must be OEMDRV: Anaconda loads ks.cfg from that volume")
    if not problems and qemu_embedded_kickstart(template) != packer_kickstart(kickstart_text):
        problems.append("the embedded kickstart differs from the rendered kickstart")
    if source.get("format") != "qcow2" or source.get("disk_compression") is not True:
        problems.append("the artifact must be a compressed qcow2 (format qcow2, disk_compression true)")
    if template.get("build", {}).get("sources") != [f"source.{SOURCE_TYPE}.{name}"]:
        problems.append(f"the build block must use the {SOURCE_TYPE} source")
    plugin = template.get("packer", {}).get("required_plugins", {}).get("qemu", {})
    if plugin != {"version": f"= {PLUGIN_VERSION}", "source": PLUGIN_SOURCE}:
        problems.append(f"required_plugins must pin {PLUGIN_SOURCE} to {PLUGIN_VERSION}, the version checked here")
    for secret in ("ssh_password", "vnc_password"):
        if secret in source:
            problems.append(f"{secret} must not be in the template: the build logs in with a per-build key")
    if problems:
        raise QemuTemplateInvalid("; ".join(problems))
