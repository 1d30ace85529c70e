"""Names shared by the Packer template and the runner that runs it, and how to find its parts.

Standard library only (the policy pack reads templates with it too), so the
runner does not load the renderer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TEMPLATE_FILE = "build.pkr.json"
QEMU_TEMPLATE_FILE = "qemu.pkr.json"
MANIFEST_FILE = "manifest.json"
KICKSTART_FILE = "ks.cfg"
SCRIPTS_DIR = "scripts"

PROXMOX_BUILDER = "proxmox-iso"

# The oldest Packer the templates are written for: required_version in every template, and the
# runner checks `packer version` against it before `packer init` (Debian's packer is 1.6.6).
MIN_PACKER_VERSION = "1.11.0"

# Variables the runner provides through PKR_VAR_<name>.
VAR_VM_ID = "vm_id"
VAR_PUBLIC_KEY = "build_ssh_public_key"
VAR_PRIVATE_KEY_FILE = "build_ssh_private_key_file"
VAR_DESCRIPTION = "template_description"
VAR_TAGS = "tags"
VAR_OUTPUT_DIRECTORY = "output_directory"


def proxmox_sources(template: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Source name -> options of every proxmox-iso source (a rendered template has exactly one)."""
    sources: dict[str, dict[str, Any]] = template.get("source", {}).get(PROXMOX_BUILDER, {})
    return sources


def proxmox_source(template: Mapping[str, Any]) -> dict[str, Any]:
    """The options of the template's one proxmox-iso source; KeyError if it has none."""
    sources = proxmox_sources(template)
    if not sources:
        raise KeyError(PROXMOX_BUILDER)
    return next(iter(sources.values()))


def embedded_kickstart(template: Mapping[str, Any]) -> str:
    """The kickstart text a rendered template carries, whichever way it is delivered."""
    source = proxmox_source(template)
    if "http_content" in source:
        return str(source["http_content"]["/" + KICKSTART_FILE])
    return str(source["additional_iso_files"][0]["cd_content"][KICKSTART_FILE])
