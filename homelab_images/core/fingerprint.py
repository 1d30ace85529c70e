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

from homelab_images.core.config import PERIOD, Image
from homelab_images.core.kickstart import canonical_kickstart
from homelab_images.core.kickstart_check import script_without_comments

PART_NAMES = (
    "kickstart",
    "packer",
    "scripts",
    "iso",
    "k3s",
    "plugin",
    "hardware",
    "freshness",
)


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


def fingerprint_parts(
    image: Image,
    kickstart_text: str,
    packer_build_parts: Mapping[str, Any],
    scripts: Mapping[str, str],
    plugin_version: str,
    now: datetime,
) -> dict[str, str]:
    """Per part, a sha256 of its canonical form. Secrets never reach these inputs:
    the kickstart carries a placeholder for the build key."""
    hardware = image.hardware
    parts = {
        "kickstart": canonical_kickstart(kickstart_text),
        "packer": canonical_json(packer_build_parts),
        "scripts": canonical_json({name: canonical_script(text) for name, text in scripts.items()}),
        "iso": image.iso.sha256,
        "k3s": canonical_json(image.k3s.model_dump(mode="json")),
        "plugin": plugin_version,
        "hardware": canonical_json(hardware.model_dump(mode="json")),
    }
    if image.rebuild_every is not None:
        parts["freshness"] = freshness_epoch(image.rebuild_every, now)
    return {name: sha256_hex(value) for name, value in parts.items()}


def combine(parts: Mapping[str, str]) -> str:
    """The image fingerprint from its parts."""
    return sha256_hex(canonical_json(dict(parts)))
