"""The version guard: an image's content may only change together with its version.

The lock file, committed next to the stack file, records per image which
content fingerprint each version was built from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from homelab_images.contract.fingerprint_parts import FRESHNESS_PART
from homelab_images.core.config import SEMVER, ConfigError
from homelab_images.core.fingerprint import combine
from homelab_images.core.plan import ImagePlan

LOCK_SCHEMA_VERSION = 1
# Deliberate rebuilds (rebuildEvery) change the fingerprint but not the content
# the version stands for.
NON_CONTENT_PARTS = (FRESHNESS_PART,)


def content_fingerprint(parts: Mapping[str, str]) -> str:
    return combine({name: digest for name, digest in parts.items() if name not in NON_CONTENT_PARTS})


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


def read_lock(path: Path) -> dict[str, dict[str, str]]:
    """image -> {version: content fingerprint}; empty when there is no lock file yet."""
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        images = document["images"]
        lock = {str(image): {str(v): str(f) for v, f in versions.items()} for image, versions in images.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(
            [
                f"{path}: not a valid lock file (a merge conflict?); restore it from Git, "
                "or delete it and run `lock --update` to record the current versions"
            ]
        ) from None
    return lock


def write_lock(path: Path, lock: Mapping[str, Mapping[str, str]]) -> None:
    images = {
        image: dict(sorted(versions.items(), key=lambda item: semver_key(item[0])))
        for image, versions in sorted(lock.items())
    }
    document = {"schemaVersion": LOCK_SCHEMA_VERSION, "images": images}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class LockFinding:
    image: str
    version: str
    kind: Literal["unbumped", "reused", "backwards", "unrecorded"]
    problem: str

    def __str__(self) -> str:
        return f"image {self.image} v{self.version}: {self.problem}"


def check_version(lock: Mapping[str, Mapping[str, str]], image: str, version: str, content: str) -> LockFinding | None:
    """None when the lock agrees with (image, version, content), else what is wrong and what to do."""
    versions = lock.get(image, {})
    recorded = versions.get(version)
    if recorded == content:
        return None
    latest = max(versions, key=semver_key) if versions else None
    if recorded is not None and version == latest:
        return LockFinding(
            image,
            version,
            "unbumped",
            "the image changed but its version did not; bump `version` in the stack file, "
            "then record it with `lock --update`",
        )
    if recorded is not None:
        return LockFinding(
            image,
            version,
            "reused",
            f"version {version} was already used for different content (latest recorded is {latest}); "
            "choose a new version",
        )
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


def updated_lock(
    lock: Mapping[str, Mapping[str, str]], current: Mapping[str, tuple[str, str]]
) -> dict[str, dict[str, str]]:
    """The lock with each image's (version, content) recorded. Refuses to rewrite history."""
    result = {image: dict(versions) for image, versions in lock.items()}
    for image, (version, content) in current.items():
        finding = check_version(lock, image, version, content)
        if finding is not None and finding.kind != "unrecorded":
            raise ValueError(str(finding))
        result.setdefault(image, {})[version] = content
    return result


def former_versions(versions: Mapping[str, str], version: str | None, content: str | None = None) -> list[str]:
    """Versions below ``version`` recorded in the lock with the same content, oldest first.

    A version bump without a content change renames the template instead of
    rebuilding it (runner ``update``): these are the labels it carried before.
    ``content`` defaults to what the lock records for ``version``.
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


def lock_findings(lock: Mapping[str, Mapping[str, str]], plans: Iterable[ImagePlan]) -> list[LockFinding]:
    """What the lock says against the planned images (empty: they all agree)."""
    findings = []
    for plan in plans:
        finding = check_version(lock, plan.name, plan.image.version, content_fingerprint(plan.fingerprint_parts))
        if finding is not None:
            findings.append(finding)
    return findings
