"""What is on the cluster: guests from /cluster/resources, and what their tags and descriptions say."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homelab_images.contract.ownership import OwnerKey, Ownership, parse_tags
from homelab_images.runner import provenance
from homelab_images.runner.proxmox import Api, Retrier


@dataclass(frozen=True)
class Guest:
    vmid: int
    node: str
    name: str
    kind: str
    template: bool
    status: str
    lock: str | None
    tags: tuple[str, ...]

    @property
    def ownership(self) -> Ownership:
        return Ownership.of(self.tags)

    def proven(self, key: OwnerKey) -> bool:
        """Built by this stack: its tags carry a proof made with the stack's key for this VM ID and node."""
        return self.kind == "qemu" and key.owns(self.vmid, self.node, self.tags)

    @property
    def where(self) -> str:
        return f"VM {self.vmid} ({self.name}) on {self.node}"

    @classmethod
    def of(cls, item: dict[str, Any]) -> Guest:
        return cls(
            vmid=int(item["vmid"]),
            node=str(item.get("node", "")),
            name=str(item.get("name", "")),
            kind=str(item.get("type", "qemu")),
            template=str(item.get("template", 0)) == "1",
            status=str(item.get("status", "")),
            lock=item.get("lock") or None,
            tags=tuple(parse_tags(item.get("tags"))),
        )


def list_guests(api: Api, retry: Retrier, where: str) -> list[Guest]:
    """Every VM and container the token may see (PVE hides guests without VM.Audit)."""
    items = retry(lambda: api.cluster.resources.get(type="vm"), where)
    return [Guest.of(item) for item in items if "vmid" in item]


def owned_by_image(guests: list[Guest], image: str, key: OwnerKey) -> list[Guest]:
    """This image's VMs that this stack provably built (copies and hand-tagged VMs do not count)."""
    return [g for g in guests if g.ownership.belongs_to(image) and g.proven(key)]


def read_config(api: Api, retry: Retrier, node: str, vmid: int) -> dict[str, Any]:
    config: dict[str, Any] = retry(lambda: api.nodes(node).qemu(vmid).config.get(), f"VM {vmid} on {node}")
    return config


@dataclass(frozen=True)
class Detail:
    guest: Guest
    fingerprint: str | None
    built_at: str | None
    protected: bool


def detail(api: Api, retry: Retrier, guest: Guest) -> Detail:
    config = read_config(api, retry, guest.node, guest.vmid)
    origin = provenance.parse(config.get("description"))
    return Detail(guest, origin.fingerprint, origin.built_at, str(config.get("protection", 0)) == "1")


def newest_first(details: list[Detail]) -> list[Detail]:
    # ISO-8601 UTC strings sort in time order; VM IDs break ties (and stand in when a description is lost).
    return sorted(details, key=lambda d: (d.built_at or "", d.guest.vmid), reverse=True)
