"""The version guard: an image's content may only change together with its version.

The lock file, committed next to the stack file, records per image which
content fingerprint each version was built from, per target: the Proxmox
template (proxmox-iso) and the qcow2 file (qemu) of one version must each stay
what they were.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from homelab_images.contract.fingerprint_parts import FRESHNESS_PART
from homelab_images.core.config import SEMVER, TEMPLATE_TARGET, ConfigError
from homelab_images.core.fingerprint import combine
from homelab_images.core.plan import ImagePlan

# Schema 1: each version maps to the proxmox-iso target's content fingerprint.
# Schema 2 adds, for a version with other targets, a mapping target -> content
# fingerprint. A lock with only proxmox-iso entries is still written as schema 1,
# byte for byte as before.
LOCK_SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)
# Deliberate rebuilds (rebuildEvery) change the fingerprint but not the content
# the version stands for.
NON_CONTENT_PARTS = (FRESHNESS_PART,)

Lock = dict[str, dict[str, dict[str, str]]]
"""image -> version -> target -> content fingerprint."""
LockView = Mapping[str, Mapping[str, Mapping[str, str]]]


def content_fingerprint(parts: Mapping[str, str]) -> str:
    return combine({name: digest for name, digest in parts.items() if name not in NON_CONTENT_PARTS})


def image_content(plan: ImagePlan) -> dict[str, str]:
    """Per target of the image, the content fingerprint its version stands for."""
    return {target: content_fingerprint(parts) for target, (_, parts) in plan.targets.items()}


def semver_key(version: str) -> tuple[Any, ...]:
    """Order versions as semver does: a pre-release sorts before its release."""
    match = SEMVER.fullmatch(version)
    if match is None:
        raise ValueError(f"not a semantic version: {version!r}")
    core = tuple(int(match.group(i)) for i in (1, 2, 3))
    if match.group(4) is None:
        return (*core, 1, ())
    identifiers = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in match.group(4).split("."))
    return (*core, 0, identifiers)


def lock_path(stack_file: Path) -> Path:
    """``Pulumi.homelab.yaml`` -> ``Pulumi.homelab.lock.json``."""
    return stack_file.with_name(stack_file.name.removesuffix(".yaml") + ".lock.json")


def _targets(value: Any) -> dict[str, str]:
    """One version's entry: a schema-1 string is the proxmox-iso target's."""
    if isinstance(value, str):
        return {TEMPLATE_TARGET: value}
    if not isinstance(value, dict) or not value:
        raise TypeError("a version's entry is a content fingerprint or a mapping of targets to them")
    if not all(isinstance(digest, str) for digest in value.values()):
        raise TypeError("a target's entry is a content fingerprint")
    return {str(target): digest for target, digest in value.items()}


def read_lock(path: Path) -> Lock:
    """The lock file's records; empty when there is no lock file yet."""
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        schema = document.get("schemaVersion", 1)
        images = document["images"]
        if schema in READABLE_SCHEMA_VERSIONS:
            return {
                str(image): {str(version): _targets(value) for version, value in versions.items()}
                for image, versions in images.items()
            }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(
            [
                f"{path}: not a valid lock file (a merge conflict?); restore it from Git, "
                "or delete it and run `lock --update` to record the current versions"
            ]
        ) from None
    raise ConfigError(
        [
            f"{path}: lock file schemaVersion {schema!r} is newer than this checkout reads (1 or 2); "
            "update homelab-images"
        ]
    )


def write_lock(path: Path, lock: LockView) -> None:
    def entry(targets: Mapping[str, str]) -> str | dict[str, str]:
        if set(targets) == {TEMPLATE_TARGET}:
            return targets[TEMPLATE_TARGET]
        return dict(sorted(targets.items()))

    images = {
        image: {
            version: entry(targets)
            for version, targets in sorted(versions.items(), key=lambda item: semver_key(item[0]))
        }
        for image, versions in sorted(lock.items())
    }
    per_target = any(not isinstance(value, str) for versions in images.values() for value in versions.values())
    document = {"schemaVersion": LOCK_SCHEMA_VERSION if per_target else 1, "images": images}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class LockFinding:
    image: str
    version: str
    kind: Literal["unbumped", "reused", "backwards", "unrecorded"]
    problem: str
    targets: tuple[str, ...] = ()
    """The targets the finding is about, when the image has others than proxmox-iso."""

    def __str__(self) -> str:
        return f"image {self.image} v{self.version}: {self.problem}"


def _named(targets: list[str]) -> str:
    return " and ".join(targets) + (" targets" if len(targets) > 1 else " target")


def check_version(lock: LockView, image: str, version: str, content: Mapping[str, str]) -> LockFinding | None:
    """None when the lock agrees with (image, version, per-target content), else what is wrong and what to do.

    A target the version does not record yet (one just added to ``targets``)
    needs ``lock --update``, not a version bump: the recorded targets are unchanged.
    """
    versions = lock.get(image, {})
    recorded = versions.get(version)
    latest = max(versions, key=semver_key) if versions else None
    # Which target changed says which build a bump is for; an image built for proxmox-iso only needs no such note.
    name_targets = set(content) != {TEMPLATE_TARGET}
    if recorded is not None:
        changed = sorted(target for target, digest in content.items() if recorded.get(target, digest) != digest)
        which = f" ({_named(changed)})" if name_targets else ""
        if changed and version == latest:
            return LockFinding(
                image,
                version,
                "unbumped",
                f"the image changed but its version did not{which}; bump `version` in the stack file, "
                "then record it with `lock --update`",
                tuple(changed),
            )
        if changed:
            return LockFinding(
                image,
                version,
                "reused",
                f"version {version} was already used for different content{which} (latest recorded is {latest}); "
                "choose a new version",
                tuple(changed),
            )
        missing = sorted(target for target in content if target not in recorded)
        if missing:
            return LockFinding(
                image,
                version,
                "unrecorded",
                f"the {_named(missing)} of this version is not recorded in the lock file; record it with "
                "`lock --update` (no version bump: what the version recorded is unchanged)",
                tuple(missing),
            )
        return None
    if latest is not None and semver_key(version) <= semver_key(latest):
        return LockFinding(
            image,
            version,
            "backwards",
            f"version goes backwards: {latest} is already recorded; choose a version above it",
        )
    return LockFinding(
        image,
        version,
        "unrecorded",
        "not recorded in the lock file; record it with `lock --update`",
    )


def updated_lock(lock: LockView, current: Mapping[str, tuple[str, Mapping[str, str]]]) -> Lock:
    """The lock with each image's (version, per-target content) recorded. Refuses to rewrite history:
    a target recorded for a version keeps its content; a target the version lacks is added."""
    result = {
        image: {version: dict(targets) for version, targets in versions.items()} for image, versions in lock.items()
    }
    for image, (version, content) in current.items():
        finding = check_version(lock, image, version, content)
        if finding is not None and finding.kind != "unrecorded":
            raise ValueError(str(finding))
        versions = result.setdefault(image, {})
        versions[version] = {**versions.get(version, {}), **content}
    return result


def target_versions(lock: LockView, image: str, target: str = TEMPLATE_TARGET) -> dict[str, str]:
    """One target's records of an image: version -> content fingerprint."""
    return {version: targets[target] for version, targets in lock.get(image, {}).items() if target in targets}


def former_versions(versions: Mapping[str, str], version: str | None, content: str | None = None) -> list[str]:
    """Versions below ``version`` recorded in the lock with the same content, oldest first.

    ``versions`` is one target's records (``target_versions``). A version bump
    without a content change renames the template instead of rebuilding it
    (runner ``update``): these are the labels it carried before. ``content``
    defaults to what the lock records for ``version``.
    """
    if version is None or SEMVER.fullmatch(version) is None:
        return []
    content = content or versions.get(version)
    if content is None:
        return []
    earlier = [
        other
        for other, recorded in versions.items()
        if recorded == content and SEMVER.fullmatch(other) and semver_key(other) < semver_key(version)
    ]
    return sorted(earlier, key=semver_key)


def lock_findings(lock: LockView, plans: Iterable[ImagePlan]) -> list[LockFinding]:
    """What the lock says against the planned images (empty: they all agree)."""
    findings = []
    for plan in plans:
        finding = check_version(lock, plan.name, plan.image.version, image_content(plan))
        if finding is not None:
            findings.append(finding)
    return findings
