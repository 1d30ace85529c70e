"""The Packer template (HCL2 JSON) for the proxmox-iso builder of github.com/hashicorp/proxmox.

Pure: the same image and settings give the same template. Credentials never
appear in it: Packer reads the Proxmox URL, token ID and secret from
PROXMOX_URL / PROXMOX_USERNAME / PROXMOX_TOKEN, and the per-build SSH key
through variables the runner sets in the environment (PKR_VAR_*).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homelab_images.contract.packer_files import (
    KICKSTART_FILE,
    MANIFEST_FILE,
    MIN_PACKER_VERSION,
    PROXMOX_BUILDER,
    SCRIPTS_DIR,
    VAR_DESCRIPTION,
    VAR_PRIVATE_KEY_FILE,
    VAR_PUBLIC_KEY,
    VAR_TAGS,
    VAR_VM_ID,
    embedded_kickstart,
    proxmox_sources,
)
from homelab_images.contract.proxmox_plugin import DEPRECATED_OPTIONS, PLUGIN_VERSION
from homelab_images.core.config import BuildSettings, Image, ProxmoxSettings
from homelab_images.core.kickstart import BUILD_KEY_PLACEHOLDER
from homelab_images.core.plugin_check import plugin_problems

PLUGIN_SOURCE = "github.com/hashicorp/proxmox"
PROVISIONING_SCRIPTS = ("install-k3s.sh", "seal.sh")

# One controller per disk: lets io_thread work for SCSI disks.
SCSI_CONTROLLER = "virtio-scsi-single"

# UEFI GRUB on the AlmaLinux ISO: pick "Install" (the default entry checks the
# media first), edit it, append to the kernel line, boot with Ctrl-X.
# Kept short on purpose: every key is one Proxmox API call.
_EDIT_INSTALL_ENTRY = "<up>e<wait><down><down><leftCtrlOn>e<leftCtrlOff>"
_BOOT_EDITED_ENTRY = "<leftCtrlOn>x<leftCtrlOff>"
# SeaBIOS shows isolinux: <tab> edits the selected entry's kernel line.
_BIOS_EDIT = "<up><tab>"
_BIOS_BOOT = "<enter>"


def hcl_literal(text: str) -> str:
    """Escape text embedded in a pkr.json string so HCL does not treat ``${`` or ``%{`` as templates."""
    return text.replace("${", "$${").replace("%{", "%%{")


def _var(name: str) -> str:
    return "${var." + name + "}"


def packer_kickstart(kickstart_text: str) -> str:
    """The kickstart as embedded in the template: literal, except that the build key comes from a variable."""
    return hcl_literal(kickstart_text).replace(BUILD_KEY_PLACEHOLDER, _var(VAR_PUBLIC_KEY))


def boot_command(image: Image, delivery: str) -> list[str]:
    if delivery == "http":
        kernel_args = " inst.text inst.ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/" + KICKSTART_FILE
    else:
        # Anaconda loads ks.cfg from the volume labelled OEMDRV; naming it keeps the intent explicit.
        kernel_args = " inst.text inst.ks=hd:LABEL=OEMDRV:/" + KICKSTART_FILE
    if image.hardware.firmware == "ovmf":
        return [_EDIT_INSTALL_ENTRY, kernel_args, _BOOT_EDITED_ENTRY]
    return [_BIOS_EDIT, kernel_args, _BIOS_BOOT]


def iso_volume(proxmox: ProxmoxSettings, image: Image) -> str:
    return f"{proxmox.iso_storage}:iso/{image.iso.file_name}"


def k3s_environment(image: Image) -> list[str]:
    k3s = image.k3s
    return [
        f"HI_K3S_VERSION={k3s.version}",
        f"HI_K3S_BINARY_SHA256={k3s.binary_sha256}",
        f"HI_K3S_INSTALL_SHA256={k3s.install_script_sha256}",
        f"HI_K3S_AIRGAP_SHA256={k3s.airgap_images_sha256 or ''}",
    ]


def image_source(image: Image) -> dict[str, Any]:
    """Settings of the source that shape the image itself (see ``build_affecting_parts``)."""
    hardware = image.hardware
    source: dict[str, Any] = {
        "os": "l26",
        "machine": hardware.machine,
        "bios": hardware.firmware,
        "cpu_type": hardware.cpu_type,
        "cores": hardware.cores,
        "sockets": 1,
        "memory": hardware.memory_mib,
        "scsi_controller": SCSI_CONTROLLER,
        "qemu_agent": True,
        "cloud_init": True,
        "cloud_init_disk_type": "scsi",
        # Clones do not upgrade every package on first boot (Proxmox's default when unset): images
        # get updates by rebuilding (rebuildEvery), so every clone of a version is the same.
        "cloud_init_disable_upgrade_packages": True,
        "serials": ["socket"],
        "rng0": {"source": "/dev/urandom", "max_bytes": 1024, "period": 1000},
    }
    disk: dict[str, Any] = {
        "type": hardware.disk_bus,
        "disk_size": f"{hardware.disk_gib}G",
        "format": "raw",
        "discard": True,
        "io_thread": hardware.disk_bus in ("scsi", "virtio"),
    }
    if hardware.disk_bus != "virtio":
        disk["ssd"] = True
    source["disks"] = [disk]
    if hardware.firmware == "ovmf":
        source["efi_config"] = {
            "efi_type": "4m",
            "pre_enrolled_keys": True,
            "efi_format": "raw",
        }
    return source


def provisioners(image: Image) -> list[dict[str, Any]]:
    return [
        {
            "shell": {
                "scripts": [f"{SCRIPTS_DIR}/install-k3s.sh"],
                "environment_vars": k3s_environment(image),
            }
        },
        {"shell": {"scripts": [f"{SCRIPTS_DIR}/seal.sh"]}},
    ]


def build_affecting_parts(image: Image) -> dict[str, Any]:
    """What of the Packer template changes the image: the VM's shape and the provisioning steps.

    Where it builds (node, storage, bridge, VM ID), how long it waits, how the
    kickstart travels and how the template is named or described do not.
    """
    source = image_source(image)
    disks = [{key: value for key, value in disk.items() if key != "storage_pool"} for disk in source["disks"]]
    return {
        **source,
        "disks": disks,
        "network_adapters": [{"model": "virtio"}],
        "provisioners": provisioning_steps(image),
    }


def provisioning_steps(image: Image) -> list[dict[str, Any]]:
    """The provisioners as the fingerprint sees them, for every target.

    The k3s values handed to the scripts are the fingerprint's k3s part; here only their names count.
    """
    return [
        {kind: {**step, "environment_vars": [var.split("=", 1)[0] for var in step.get("environment_vars", [])]}}
        for provisioner in provisioners(image)
        for kind, step in provisioner.items()
    ]


def render_packer_template(
    image: Image,
    proxmox: ProxmoxSettings,
    build: BuildSettings,
    kickstart_text: str,
    insecure: bool,
) -> dict[str, Any]:
    """The complete pkr.json document for one image."""
    source = image_source(image)
    for disk in source["disks"]:
        disk["storage_pool"] = proxmox.vm_storage
    if "efi_config" in source:
        source["efi_config"] = {
            "efi_storage_pool": proxmox.vm_storage,
            **source["efi_config"],
        }
    kickstart_for_packer = packer_kickstart(kickstart_text)
    boot_iso: dict[str, Any] = {
        "type": "ide",
        "index": "2",
        "iso_file": iso_volume(proxmox, image),
        "unmount": True,
    }
    source.update(
        {
            "insecure_skip_tls_verify": insecure,
            "node": proxmox.node,
            "vm_id": _var(VAR_VM_ID),
            "vm_name": image.template_name,
            "template_name": image.template_name,
            "template_description": _var(VAR_DESCRIPTION),
            "tags": _var(VAR_TAGS),
            "network_adapters": [{"model": "virtio", "bridge": proxmox.bridge, "firewall": False}],
            "cloud_init_storage_pool": proxmox.cloud_init_pool,
            "boot_iso": boot_iso,
            "boot_wait": f"{build.boot_wait_seconds}s",
            "boot_key_interval": "20ms",
            "boot_command": boot_command(image, build.kickstart_delivery),
            "task_timeout": f"{build.task_timeout_minutes}m",
            "communicator": "ssh",
            "ssh_username": "root",
            "ssh_private_key_file": _var(VAR_PRIVATE_KEY_FILE),
            "ssh_timeout": f"{build.ssh_timeout_minutes}m",
        }
    )
    if build.kickstart_delivery == "http":
        source["http_content"] = {"/" + KICKSTART_FILE: kickstart_for_packer}
        if build.http_bind_address:
            # Packer binds its HTTP server there and types it as {{ .HTTPIP }} (step_type_boot_command.go).
            source["http_bind_address"] = build.http_bind_address
    else:
        source["additional_iso_files"] = [
            {
                "type": "ide",
                "index": "3",
                "cd_content": {KICKSTART_FILE: kickstart_for_packer},
                "cd_label": "OEMDRV",
                "iso_storage_pool": proxmox.iso_storage,
                "unmount": True,
            }
        ]
    return {
        "packer": {
            "required_version": f">= {MIN_PACKER_VERSION}",
            "required_plugins": {
                "proxmox": {
                    "version": f"= {build.packer_plugin_version}",
                    "source": PLUGIN_SOURCE,
                }
            },
        },
        "variable": {
            VAR_VM_ID: {
                "type": "number",
                "description": "VM ID the runner allocated.",
            },
            VAR_PUBLIC_KEY: {
                "type": "string",
                "description": "Per-build SSH public key.",
            },
            VAR_PRIVATE_KEY_FILE: {
                "type": "string",
                "sensitive": True,
                "description": "Per-build SSH private key file.",
            },
            VAR_DESCRIPTION: {
                "type": "string",
                "description": "Provenance shown in the Proxmox UI.",
            },
            VAR_TAGS: {
                "type": "string",
                "description": "Ownership tags, separated by ';'.",
            },
        },
        "source": {PROXMOX_BUILDER: {image.name: source}},
        "build": {
            "sources": [f"source.{PROXMOX_BUILDER}.{image.name}"],
            "provisioner": provisioners(image),
            "post-processor": [{"manifest": {"output": MANIFEST_FILE, "strip_path": True}}],
        },
    }


class PackerTemplateInvalid(Exception):
    """The generated template would not be accepted by Packer."""


def with_variables(value: Any, variables: Mapping[str, Any]) -> Any:
    """``value`` with each ``${var.NAME}`` replaced as Packer evaluates it (a whole-string reference keeps its type)."""
    if isinstance(value, dict):
        return {key: with_variables(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [with_variables(item, variables) for item in value]
    if not isinstance(value, str):
        return value
    for name, replacement in variables.items():
        if value == _var(name):
            return replacement
        value = value.replace(_var(name), str(replacement))
    return value


def validate_packer_template(
    template: Mapping[str, Any], kickstart_text: str, variables: Mapping[str, Any] | None = None
) -> None:
    """What Packer and the pinned proxmox plugin would reject, plus this program's own rules.

    ``variables``: the values the runner sets (``PKR_VAR_*``), so that the plugin's
    checks see the tags, VM ID and names a real build hands it.
    """
    problems = []
    sources = proxmox_sources(template)
    if len(sources) != 1:
        raise PackerTemplateInvalid("expected exactly one proxmox-iso source")
    name, source = next(iter(sources.items()))
    deprecated = sorted(set(source) & DEPRECATED_OPTIONS)
    if deprecated:
        problems.append(f"deprecated options (use boot_iso, efi_config): {', '.join(deprecated)}")
    problems.extend(
        f"proxmox plugin v{PLUGIN_VERSION} rejects it: {problem}"
        for problem in plugin_problems(with_variables(source, variables or {}))
    )
    if "iso_file" not in source.get("boot_iso", {}):
        problems.append("boot_iso.iso_file is missing")
    if ("http_content" in source) == ("additional_iso_files" in source):
        problems.append("the kickstart must travel either by http_content or on an OEMDRV CD")
    elif embedded_kickstart(template) != packer_kickstart(kickstart_text):
        problems.append("the embedded kickstart differs from the rendered kickstart")
    if template.get("build", {}).get("sources") != [f"source.proxmox-iso.{name}"]:
        problems.append("the build block must use the proxmox-iso source")
    plugin = template.get("packer", {}).get("required_plugins", {}).get("proxmox", {})
    if plugin.get("source") != PLUGIN_SOURCE or not str(plugin.get("version", "")).startswith("= "):
        problems.append(f"required_plugins must pin {PLUGIN_SOURCE} to an exact version")
    elif plugin["version"] != f"= {PLUGIN_VERSION}":
        problems.append(
            f"required_plugins pins {PLUGIN_SOURCE} {plugin['version'].removeprefix('= ')}, but these checks were "
            f'read from v{PLUGIN_VERSION}: set homelab-images:build.packerPluginVersion to "{PLUGIN_VERSION}" '
            "(docs/verified-against.md lists what to re-check before moving it)"
        )
    for credential in ("token", "password"):
        if credential in source:
            problems.append(f"{credential} must come from the environment, not the template")
    if problems:
        raise PackerTemplateInvalid("; ".join(problems))
