"""The image fingerprint: a sha256 over everything that can change the image, and nothing else.

Each part is hashed separately so that a rebuild can say why it happens
(``pulumi preview --diff`` shows the part that changed in the build's triggers).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from homelab_images.contract.fingerprint_parts import ARTIFACT_PART
from homelab_images.core.config import PERIOD, Image
from homelab_images.core.kickstart import canonical_kickstart
from homelab_images.core.kickstart_check import script_without_comments


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the same bytes on every machine."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_script(text: str) -> str:
    """A provisioning script minus comments and blank lines; the shebang counts."""
    lines = text.splitlines()
    shebang = lines[0] + "\n" if lines and lines[0].startswith("#!") else ""
    return shebang + script_without_comments(text)


def freshness_epoch(period: str, now: datetime) -> str:
    """Which period of ``rebuildEvery`` ``now`` falls in; changes once per period."""
    match = PERIOD.fullmatch(period)
    if match is None:
        raise ValueError(f"not a period: {period!r}")
    days = int(match.group(1)) * (7 if match.group(2) == "w" else 1)
    return f"{period}#{int(now.timestamp()) // (days * 86_400)}"


def shared_parts(image: Image, kickstart_text: str, scripts: Mapping[str, str], now: datetime) -> dict[str, str]:
    """Per shared part, a sha256 of its canonical form. Secrets never reach these inputs:
    the kickstart carries a placeholder for the build key."""
    parts = {
        "kickstart": canonical_kickstart(kickstart_text),
        "scripts": canonical_json({name: canonical_script(text) for name, text in scripts.items()}),
        "iso": image.iso.sha256,
        "k3s": canonical_json(image.k3s.model_dump(mode="json")),
        "hardware": canonical_json(image.hardware.model_dump(mode="json")),
    }
    if image.rebuild_every is not None:
        parts["freshness"] = freshness_epoch(image.rebuild_every, now)
    return {name: sha256_hex(value) for name, value in parts.items()}


def proxmox_iso_parts(packer_build_parts: Mapping[str, Any], plugin_version: str) -> dict[str, str]:
    """The proxmox-iso build's own parts: its template's build-affecting settings and its plugin."""
    return {"packer": sha256_hex(canonical_json(packer_build_parts)), "plugin": sha256_hex(plugin_version)}


def qemu_parts(
    builder_parts: Mapping[str, Any],
    plugin_version: str,
    firmware: Mapping[str, Any],
    disk_format: Mapping[str, Any],
) -> dict[str, str]:
    """The qemu build's own parts: builder settings, plugin, UEFI firmware and the file's format."""
    return {
        "builder": sha256_hex(canonical_json(builder_parts)),
        "plugin": sha256_hex(plugin_version),
        "firmware": sha256_hex(canonical_json(firmware)),
        "format": sha256_hex(canonical_json(disk_format)),
    }


def fingerprint_parts(
    image: Image,
    kickstart_text: str,
    packer_build_parts: Mapping[str, Any],
    scripts: Mapping[str, str],
    plugin_version: str,
    now: datetime,
) -> dict[str, str]:
    """The proxmox-iso build's parts: the shared ones and its own."""
    return {
        **shared_parts(image, kickstart_text, scripts, now),
        **proxmox_iso_parts(packer_build_parts, plugin_version),
    }


def import_parts(sha256: str, vm_hardware: Mapping[str, Any], k3s_version: str) -> dict[str, str]:
    """An imported template's parts: the qcow2 it is imported from (its sha256), the hardware the import
    sets on the VM, and the k3s version the template is exported with. Nothing is installed, so the
    kickstart, scripts, ISO, other k3s pins and Packer settings of the importing stack cannot change it.

    The k3s version does not shape the file, but the outputs claim it and only the smoke test ties it to
    the file: a new one must run the import (and so the smoke test) again, not change the claim unchecked.
    """
    return {
        ARTIFACT_PART: sha256,
        "hardware": sha256_hex(canonical_json(dict(vm_hardware))),
        "k3s": sha256_hex(k3s_version),
    }


def combine(parts: Mapping[str, str]) -> str:
    """The image fingerprint from its parts."""
    return sha256_hex(canonical_json(dict(parts)))
