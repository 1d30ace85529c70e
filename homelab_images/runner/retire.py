"""Removing VMs this program owns, retiring replaced templates, and what stays for rollback.

Every destructive or modifying call re-reads the VM's tags right before it: a VM
ID seen in a listing may have been reused since, and only VMs whose tags carry
this stack's proof for that very VM ID and node are touched (see ownership).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homelab_images.contract.build_spec import BuildSpec
from homelab_images.contract.ownership import SUPERSEDED_TAG, OwnerKey, Ownership, join_tags, parse_tags
from homelab_images.contract.result import BuildResult, RetainedTemplate
from homelab_images.runner import tasks
from homelab_images.runner.console import Console
from homelab_images.runner.inventory import (
    Detail,
    Guest,
    detail,
    list_guests,
    newest_first,
    owned_by_image,
    read_config,
)
from homelab_images.runner.proxmox import Api, ApiError, Kind, Retrier

TagCheck = Callable[[Ownership], bool]


class Outcome(enum.Enum):
    DELETED = "deleted"
    GONE = "gone"
    BLOCKED = "blocked"
    NOT_OURS = "not ours"


@dataclass(frozen=True)
class Removal:
    outcome: Outcome
    reason: str = ""


BLOCKERS = {
    Kind.PROTECTED: "protection is on (protection=1)",
    Kind.LINKED_CLONES: "linked clones still use its disks",
}


class NotProvablyOurs(Exception):
    """The VM's current tags do not carry this stack's proof for its VM ID and node."""


def proven_config(api: Api, retry: Retrier, key: OwnerKey, node: str, vmid: int) -> dict[str, Any]:
    """The VM's config, read now, if this stack provably built it; NotProvablyOurs otherwise."""
    config = read_config(api, retry, node, vmid)
    if not key.owns(vmid, node, parse_tags(config.get("tags"))):
        raise NotProvablyOurs(f"VM {vmid} on {node}")
    return config


def remove_owned(api: Api, retry: Retrier, key: OwnerKey, node: str, vmid: int, ours: TagCheck) -> Removal:
    """Stop (if running) and destroy the VM, only if it is provably ours and its current tags pass ``ours``."""
    where = f"VM {vmid} on {node}"
    vm = api.nodes(node).qemu(vmid)
    try:
        config = read_config(api, retry, node, vmid)
    except ApiError as error:
        if error.kind is Kind.GONE:
            return Removal(Outcome.GONE)
        raise
    tags = parse_tags(config.get("tags"))
    if not key.owns(vmid, node, tags):
        return Removal(Outcome.NOT_OURS, "its tags carry no proof that this stack built it")
    if not ours(Ownership.of(tags)):
        return Removal(Outcome.NOT_OURS, f"tags {';'.join(tags) or '(none)'}")
    if str(config.get("protection", 0)) == "1":
        return Removal(Outcome.BLOCKED, BLOCKERS[Kind.PROTECTED])
    try:
        if str(config.get("template", 0)) != "1":
            status = retry(lambda: vm.status.current.get(), where)
            if status.get("status") == "running":
                retry(lambda: tasks.run(api, node, lambda: vm.status.stop.post()), where)
        retry(lambda: tasks.run(api, node, lambda: vm.delete(purge=1, **{"destroy-unreferenced-disks": 1})), where)
    except ApiError as error:
        if error.kind in BLOCKERS:
            return Removal(Outcome.BLOCKED, BLOCKERS[error.kind])
        if error.kind is Kind.GONE:
            return Removal(Outcome.GONE)
        raise
    return Removal(Outcome.DELETED)


def mark_superseded(api: Api, retry: Retrier, key: OwnerKey, node: str, vmid: int) -> bool:
    """Tag the template ``superseded``; False (and nothing changed) if it is no longer provably ours."""
    where = f"VM {vmid} on {node}"
    try:
        tags = parse_tags(proven_config(api, retry, key, node, vmid).get("tags"))
    except NotProvablyOurs:
        return False
    if SUPERSEDED_TAG not in tags:
        retry(lambda: api.nodes(node).qemu(vmid).config.put(tags=join_tags([*tags, SUPERSEDED_TAG])), where)
    return True


def finished_templates(guests: list[Guest], image: str, node: str, key: OwnerKey) -> list[Guest]:
    """This image's finished templates on ``node``: each replica node keeps its own rollback copies."""
    return [g for g in owned_by_image(guests, image, key) if g.node == node and g.template and not g.ownership.pending]


def retained_templates(
    api: Api, retry: Retrier, key: OwnerKey, spec: BuildSpec, guests: list[Guest], current_vmid: int
) -> list[RetainedTemplate]:
    """This image's older templates on the build's node that stay once the current one's predecessor is retired."""
    if spec.retain_previous == 0:
        return []
    older = [g for g in finished_templates(guests, spec.image, spec.node, key) if g.vmid != current_vmid]
    kept = newest_first([detail(api, retry, g) for g in older])[: spec.retain_previous]
    return [
        RetainedTemplate(
            vm_id=d.guest.vmid,
            name=d.guest.name,
            version=d.guest.ownership.version,
            fingerprint=d.fingerprint,
            built_at=d.built_at,
            node=d.guest.node,
        )
        for d in kept
    ]


def prune_superseded(
    api: Api, retry: Retrier, key: OwnerKey, console: Console, spec: BuildSpec, node: str
) -> list[int]:
    """Delete superseded templates on ``node`` beyond ``retain_previous``, oldest first; in-use ones stay."""
    guests = list_guests(api, retry, "cluster resources")
    superseded = [g for g in finished_templates(guests, spec.image, node, key) if g.ownership.superseded]
    ordered: list[Detail] = newest_first([detail(api, retry, g) for g in superseded])
    deleted = []
    for old in reversed(ordered[spec.retain_previous :]):
        guest = old.guest
        removal = remove_owned(
            api, retry, key, guest.node, guest.vmid, lambda o: o.belongs_to(spec.image) and o.superseded
        )
        if removal.outcome is Outcome.DELETED:
            console.note(f"deleted superseded template {guest.where} (beyond retainPrevious={spec.retain_previous})")
            deleted.append(guest.vmid)
        elif removal.outcome is Outcome.BLOCKED:
            console.warn(f"kept superseded template {guest.where}: {removal.reason}; gc deletes it once unused")
    return deleted


def retire(api: Api, retry: Retrier, key: OwnerKey, console: Console, spec: BuildSpec, previous: BuildResult) -> None:
    """The delete of a build: retire the template it made, keeping ``retain_previous`` for rollback."""
    guests = list_guests(api, retry, "cluster resources")
    where = f"VM {previous.vm_id} ({previous.name}) on {previous.node}"
    target = next((g for g in guests if g.vmid == previous.vm_id), None)

    def is_previous(o: Ownership) -> bool:
        return o.belongs_to(spec.image) and o.matches(previous.fingerprint)

    if target is None:
        console.note(f"template {where} is already gone; nothing to delete")
    elif not (target.proven(key) and is_previous(target.ownership)):
        console.warn(
            f"VM {previous.vm_id} is no longer this build's template (it is {target.name!r}, not provably "
            f"this stack's build of {spec.image} with fingerprint {previous.fingerprint[:16]}); left untouched"
        )
    else:
        newer = [
            g
            for g in finished_templates(guests, spec.image, target.node, key)
            if g.vmid != previous.vm_id and not g.ownership.superseded
        ]
        if newer and spec.retain_previous > 0:
            mark_superseded(api, retry, key, target.node, target.vmid)
            console.note(f"kept {where} for rollback, tagged {SUPERSEDED_TAG} (retainPrevious={spec.retain_previous})")
        else:
            removal = remove_owned(api, retry, key, target.node, target.vmid, is_previous)
            if removal.outcome is Outcome.DELETED:
                console.note(f"deleted template {where}")
            elif removal.outcome is Outcome.GONE:
                console.note(f"template {where} is already gone; nothing to delete")
            elif removal.outcome is Outcome.BLOCKED:
                mark_superseded(api, retry, key, target.node, target.vmid)
                console.warn(
                    f"could not delete template {where}: {removal.reason}. It is kept and tagged "
                    f"{SUPERSEDED_TAG}; `venv/bin/homelab-images gc --stack <stack> --apply` deletes it once unused"
                )
            else:
                console.warn(f"VM {previous.vm_id} changed owner before deletion ({removal.reason}); left untouched")
    prune_superseded(api, retry, key, console, spec, previous.node)
