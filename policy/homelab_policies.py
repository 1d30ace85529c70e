"""Policy checks for the image builds, as plain functions of a resource's properties.

Each check returns the list of violations (empty when compliant), so it can be
unit-tested without the Pulumi engine; ``__main__.py`` wires them into a pack.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from homelab_images.contract.commands import QEMU_RUNNER_MODULE, RUNNER_MODULE, TOKEN_VAR
from homelab_images.contract.fingerprint_parts import ALWAYS_PRESENT, IMPORT_PART_NAMES, QEMU_ALWAYS_PRESENT
from homelab_images.contract.packer_files import KICKSTART_FILE, embedded_kickstart, proxmox_source
from homelab_images.contract.qemu_plugin import SOURCE_TYPE as QEMU_SOURCE_TYPE

COMMAND_TYPE = "command:local:Command"
SECRET_ENVIRONMENT = (TOKEN_VAR,)

# What credentials look like when they leak: a Proxmox API token (user@realm!id=secret),
# a private key, or variables that carry tokens.
CREDENTIAL_PATTERNS = (
    re.compile(r"[\w.-]+@[\w.-]+![\w.-]+=[\w-]{8,}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\b(PROXMOX_TOKEN|PROXMOX_PASSWORD|K3S_TOKEN|PKR_VAR_\w*(token|password)\w*)=\S+", re.I),
    re.compile(r"PVEAPIToken=\S+"),
)


IMPORT = "import"


def _import_source(props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    try:
        source = json.loads(str(props.get("stdin", ""))).get("import_from")
    except (ValueError, AttributeError):
        return None
    return source if isinstance(source, Mapping) else None


def build_target(resource_type: str, props: Mapping[str, Any]) -> str | None:
    """Which target an image build builds (proxmox-iso or qemu), or ``import`` for a proxmox-iso
    template imported from a qcow2 (importFrom); None for any other resource."""
    if resource_type != COMMAND_TYPE:
        return None
    create = str(props.get("create", ""))
    # The qemu runner's module name starts with the proxmox-iso runner's: test it first.
    if QEMU_RUNNER_MODULE in create:
        return "qemu"
    if RUNNER_MODULE not in create:
        return None
    return IMPORT if _import_source(props) is not None else "proxmox-iso"


def _qemu_source(template: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    (source,) = template["source"][QEMU_SOURCE_TYPE].values()
    if "http_content" in source:
        return source, str(source["http_content"]["/" + KICKSTART_FILE])
    return source, str(source["cd_content"][KICKSTART_FILE])


def _build_source(props: Mapping[str, Any], target: str) -> tuple[dict[str, Any], str] | None:
    """The build's Packer source and the embedded kickstart of its spec (stdin), if readable."""
    try:
        template = json.loads(str(props.get("stdin", "")))["packer_template"]
        if target == "qemu":
            return _qemu_source(template)
        return proxmox_source(template), embedded_kickstart(template)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def _unreadable(target: str) -> list[str]:
    return [f"the build's spec (stdin) does not carry a {target} source"]


def no_plaintext_secrets(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    if resource_type != COMMAND_TYPE:
        return []
    violations = []
    for key in ("create", "update", "delete", "stdin", "dir"):
        text = str(props.get(key) or "")
        if any(pattern.search(text) for pattern in CREDENTIAL_PATTERNS):
            violations.append(f"`{key}` contains what looks like a credential; pass secrets in `environment` only")
    if any(pattern.search(json.dumps(props.get("triggers") or [])) for pattern in CREDENTIAL_PATTERNS):
        violations.append("`triggers` contain what looks like a credential; triggers are shown in plain text in diffs")
    environment = props.get("environment") or {}
    for name, value in environment.items():
        if name not in SECRET_ENVIRONMENT and any(pattern.search(f"{name}={value}") for pattern in CREDENTIAL_PATTERNS):
            violations.append(f"environment variable {name} looks like a credential but is not the secret token")
    return violations


def uefi_firmware(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    target = build_target(resource_type, props)
    if target is None:
        return []
    if target == IMPORT:
        # The runner gives the VM the import's firmware, and an EFI disk with OVMF (runner.artifact_import).
        if (_import_source(props) or {}).get("firmware") != "ovmf":
            return ["imported templates must be UEFI: hardware.firmware = ovmf"]
        return []
    found = _build_source(props, target)
    if found is None:
        return _unreadable(target)
    source, _ = found
    if target == "qemu":
        if source.get("efi_boot") is not True or not source.get("efi_firmware_code"):
            return ["qcow2 images must be built for UEFI: efi_boot = true with OVMF firmware (efi_firmware_code)"]
        return []
    if source.get("bios") != "ovmf" or "efi_config" not in source:
        return ["templates must be built for UEFI: bios = ovmf with an efi_config"]
    return []


def selinux_enforcing(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    target = build_target(resource_type, props)
    # An import installs nothing: the kickstart in its spec is not the qcow2's, which this check
    # passed where the qcow2 was built (its qemu build); the smoke test checks SELinux on the template.
    if target is None or target == IMPORT:
        return []
    found = _build_source(props, target)
    if found is None or not re.search(r"^selinux\s+--enforcing\s*$", found[1], re.M):
        return ["the kickstart must set `selinux --enforcing`"]
    return []


def guest_agent(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    target = build_target(resource_type, props)
    # An import's VM always gets the agent (runner.artifact_import); the package is the qcow2's, checked
    # where the qcow2 was built.
    if target is None or target == IMPORT:
        return []
    found = _build_source(props, target)
    if found is None:
        return _unreadable(target)
    source, kickstart = found
    violations = []
    # The qemu builder has no agent device to enable: the hypervisor that runs the qcow2 adds it.
    if target == "proxmox-iso" and source.get("qemu_agent") is not True:
        violations.append("the template must enable the QEMU guest agent (qemu_agent = true)")
    if not re.search(r"^qemu-guest-agent\s*$", kickstart, re.M):
        violations.append("the kickstart must install the qemu-guest-agent package")
    return violations


def build_triggers(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    target = build_target(resource_type, props)
    if target is None:
        return []
    triggers = props.get("triggers") or []
    parts = triggers[0] if triggers and isinstance(triggers[0], Mapping) else {}
    required = {"qemu": QEMU_ALWAYS_PRESENT, IMPORT: IMPORT_PART_NAMES}.get(target, ALWAYS_PRESENT)
    missing = [part for part in required if not parts.get(part)]
    if missing:
        return [f"the build's triggers must carry the fingerprint parts; missing: {', '.join(missing)}"]
    extra = sorted(set(parts) - set(IMPORT_PART_NAMES)) if target == IMPORT else []
    if extra:
        # A part that cannot change the imported template would re-import it for nothing.
        return [f"an imported template's triggers must be its import parts only; not: {', '.join(extra)}"]
    return []
