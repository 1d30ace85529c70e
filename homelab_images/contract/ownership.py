"""Tags that mark a VM as built by this stack, the proof that they were not copied, and how to read them.

Proxmox tags allow letters, digits and ``_-+.``, but Packer's proxmox plugin accepts only
``[A-Za-z0-9_-]`` (``contract.proxmox_plugin.TAG_PATTERN``): every tag here is made of those.
A version's dots are written as ``_`` (semantic versions never contain ``_``), so reading a
tag gives back exactly the value that was written. Tags show in the Proxmox UI and in
``/cluster/resources``, but anyone with ``VM.Config.Options`` can set them and a clone copies
them, so tags alone prove nothing. Each build therefore carries a random build ID and a proof:
an HMAC, keyed with the stack's secret owner key, over the VM ID, the node, the build ID, the
image and the fingerprint. A clone has another VM ID, a copy on another node another node, and
nobody without the key can make a proof for either. The key reaches the runner through
``OWNER_KEY_VAR`` only; it is never written to Proxmox, logs or the spec.

A build in progress also carries a lease (``lease-<unix time>``) that its
runner renews while Packer runs: another run treats an unfinished build as a
leftover only once its lease has expired.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

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
# Tags the plugin accepts: [A-Za-z0-9_-] only, so values are hex or decimal after a dash.
BUILD_ID_PREFIX = "build-id-"
PROOF_PREFIX = "proof-"
LEASE_PREFIX = "lease-"
BUILD_ID_CHARS = 16
PROOF_CHARS = 32

OWNER_KEY_VAR = "HOMELAB_IMAGES_OWNER_KEY"
OWNER_KEY_MIN_CHARS = 32


def new_build_id() -> str:
    return secrets.token_hex(BUILD_ID_CHARS // 2)


def lease_tag(expires_at: float) -> str:
    return f"{LEASE_PREFIX}{int(expires_at)}"


@dataclass(frozen=True)
class OwnerKey:
    """The stack's secret: only a holder can make (or check) a VM's proof of ownership."""

    secret: bytes = field(repr=False)

    def proof(self, vmid: int, node: str, build_id: str, image: str, fingerprint_prefix: str) -> str:
        message = "\n".join(["homelab-images ownership v1", str(vmid), node, build_id, image, fingerprint_prefix])
        return hmac.new(self.secret, message.encode(), hashlib.sha256).hexdigest()[:PROOF_CHARS]

    def identity_tags(self, vmid: int, node: str, build_id: str, image: str, fingerprint: str) -> list[str]:
        prefix = fingerprint[:FINGERPRINT_TAG_CHARS]
        return [BUILD_ID_PREFIX + build_id, PROOF_PREFIX + self.proof(vmid, node, build_id, image, prefix)]

    def owns(self, vmid: int, node: str, tags: Iterable[str]) -> bool:
        """True only if the tags carry a proof made with this key for exactly this VM ID and node."""
        o = Ownership.of(tags)
        if not (o.owned and o.image and o.fingerprint_prefix and o.build_id and o.proof):
            return False
        expected = self.proof(vmid, node, o.build_id, o.image, o.fingerprint_prefix)
        return hmac.compare_digest(expected, o.proof)


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
    """The descriptive tags a build VM carries from the moment Proxmox creates it (identity and lease added)."""
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
    build_id: str | None = None
    proof: str | None = None
    lease_until: int | None = None

    @classmethod
    def of(cls, tags: Iterable[str]) -> Ownership:
        tag_list = list(tags)

        def value(prefix: str) -> str | None:
            return next((tag[len(prefix) :] for tag in tag_list if tag.startswith(prefix)), None)

        version = value(VERSION_PREFIX)
        lease = value(LEASE_PREFIX)
        return cls(
            owned=OWNER_TAG in tag_list,
            image=value(IMAGE_PREFIX),
            version=version_of(version) if version is not None else None,
            fingerprint_prefix=value(FINGERPRINT_PREFIX),
            pending=PENDING_TAG in tag_list,
            superseded=SUPERSEDED_TAG in tag_list,
            smoke_clone=SMOKE_TAG in tag_list,
            smoke_failed=SMOKE_FAILED_TAG in tag_list,
            build_id=value(BUILD_ID_PREFIX),
            proof=value(PROOF_PREFIX),
            lease_until=int(lease) if lease and lease.isdigit() else None,
        )

    def lease_live(self, now: float) -> bool:
        return self.lease_until is not None and self.lease_until > now

    def belongs_to(self, image_name: str) -> bool:
        return self.owned and self.image == image_name

    def matches(self, fingerprint: str) -> bool:
        return self.fingerprint_prefix == fingerprint[:FINGERPRINT_TAG_CHARS]


def without_lease(tags: Iterable[str]) -> list[str]:
    return [tag for tag in tags if not tag.startswith(LEASE_PREFIX)]
