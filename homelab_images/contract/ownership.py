"""Tags that mark a VM as built by this program, and how to read them back.

Proxmox tags allow letters, digits and ``_-+.``, but Packer's proxmox plugin accepts only
``[A-Za-z0-9_-]`` (``contract.proxmox_plugin.TAG_PATTERN``): every tag here is made of those.
A version's dots are written as ``_`` (semantic versions never contain ``_``), so reading a
tag gives back exactly the value that was written. Tags show in the Proxmox UI and in
``/cluster/resources``. The runner acts only on VMs carrying ``OWNER_TAG`` and the
image's tag.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

OWNER_TAG = "homelab-images"
IMAGE_PREFIX = "image-"
FINGERPRINT_PREFIX = "fp-"
VERSION_PREFIX = "version-"
# The plugin splits its tags option on this (contract.proxmox_plugin.TAG_SEPARATOR).
PACKER_TAG_SEPARATOR = ";"
# Set while a build is in progress; removed once the template is verified.
PENDING_TAG = "build-pending"
# Set on a template that a newer build replaced but that is kept (rollback or in use).
SUPERSEDED_TAG = "superseded"
# Set on the temporary clone a build boots to smoke-test its template; it never outlives the build.
SMOKE_TAG = "smoke-test"
# Set on a template kept for inspection after failing its smoke test (keepFailedTemplates); never promoted.
SMOKE_FAILED_TAG = "smoke-failed"

FINGERPRINT_TAG_CHARS = 16


def image_tag(image_name: str) -> str:
    return IMAGE_PREFIX + image_name


def fingerprint_tag(fingerprint: str) -> str:
    return FINGERPRINT_PREFIX + fingerprint[:FINGERPRINT_TAG_CHARS]


def version_tag(version: str) -> str:
    return VERSION_PREFIX + version.replace(".", "_")


def version_of(tag_value: str) -> str:
    """The version a version tag was written for (the inverse of ``version_tag``)."""
    return tag_value.replace("_", ".")


def build_tags(image_name: str, version: str, fingerprint: str) -> list[str]:
    """Tags a build VM carries from the moment Proxmox creates it."""
    return [
        OWNER_TAG,
        image_tag(image_name),
        version_tag(version),
        fingerprint_tag(fingerprint),
        PENDING_TAG,
    ]


def parse_tags(raw: str | None) -> list[str]:
    """Proxmox returns tags as one string separated by ';' (or ',' / spaces in old versions)."""
    if not raw:
        return []
    for separator in (",", " "):
        raw = raw.replace(separator, ";")
    return [tag for tag in raw.split(";") if tag]


def join_tags(tags: Iterable[str]) -> str:
    return ";".join(sorted(set(tags)))


def packer_tags(tags: Iterable[str]) -> str:
    """The value of the template's tags variable: what the plugin splits into one tag each."""
    return PACKER_TAG_SEPARATOR.join(tags)


@dataclass(frozen=True)
class Ownership:
    """What a VM's tags say about it."""

    owned: bool
    image: str | None
    version: str | None
    fingerprint_prefix: str | None
    pending: bool
    superseded: bool
    smoke_clone: bool = False
    smoke_failed: bool = False

    @classmethod
    def of(cls, tags: Iterable[str]) -> Ownership:
        tag_list = list(tags)

        def value(prefix: str) -> str | None:
            return next((tag[len(prefix) :] for tag in tag_list if tag.startswith(prefix)), None)

        version = value(VERSION_PREFIX)
        return cls(
            owned=OWNER_TAG in tag_list,
            image=value(IMAGE_PREFIX),
            version=version_of(version) if version is not None else None,
            fingerprint_prefix=value(FINGERPRINT_PREFIX),
            pending=PENDING_TAG in tag_list,
            superseded=SUPERSEDED_TAG in tag_list,
            smoke_clone=SMOKE_TAG in tag_list,
            smoke_failed=SMOKE_FAILED_TAG in tag_list,
        )

    def belongs_to(self, image_name: str) -> bool:
        return self.owned and self.image == image_name

    def matches(self, fingerprint: str) -> bool:
        return self.fingerprint_prefix == fingerprint[:FINGERPRINT_TAG_CHARS]
