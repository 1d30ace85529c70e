"""VM ID allocation inside the configured range.

``/cluster/nextid`` reserves nothing, so IDs are claimed here: builds on this
machine serialise allocation with an fcntl lock and hold a locked claim file per
ID until they end (a crashed build's claim frees itself: its lock dies with it).
The claims only save a doomed attempt: safety never depends on them. Across
machines the ID is re-checked right before Packer starts, a create that fails
with "already exists" moves on to the next ID, and the VM's proof and lease
(see ownership and lease) keep every run's hands off the others' builds.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from homelab_images.contract.build_spec import IdRange
from homelab_images.contract.ownership import OwnerKey
from homelab_images.runner.errors import RunnerError
from homelab_images.runner.inventory import Guest
from homelab_images.runner.proxmox import Api, ApiError, Kind, Retrier


class Claim:
    """An ID this process holds; released explicitly or when the process dies."""

    def __init__(self, vmid: int, path: Path, fd: int) -> None:
        self.vmid = vmid
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None


class Claims:
    def __init__(self, state_dir: Path, endpoint: str) -> None:
        cluster = hashlib.sha256(endpoint.encode()).hexdigest()[:12]
        self.directory = state_dir / "claims" / cluster
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    @contextmanager
    def locked(self) -> Iterator[None]:
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _path(self, vmid: int) -> Path:
        return self.directory / f"{vmid}.claim"

    def held(self, vmid: int) -> bool:
        """True while a live process holds the claim. Only looks: removing a dead claim is ``prune``'s job,
        under the directory lock, so it can never unlink a file another process has just opened to claim."""
        try:
            fd = os.open(self._path(vmid), os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def live(self) -> set[int]:
        ids = {int(p.stem) for p in self.directory.glob("*.claim") if p.stem.isdigit()}
        return {vmid for vmid in ids if self.held(vmid)}

    def prune(self) -> None:
        """Remove the claims of dead processes; call only inside ``locked()``, where every ``take`` happens."""
        for path in self.directory.glob("*.claim"):
            if path.stem.isdigit() and not self.held(int(path.stem)):
                path.unlink(missing_ok=True)

    def take(self, vmid: int, owner: dict[str, str]) -> Claim:
        path = self._path(vmid)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), **owner}).encode())
        return Claim(vmid, path, fd)


class IdTaken(Exception):
    """Creating the VM failed because another VM took the ID first."""


def id_free_on_cluster(api: Api, retry: Retrier, vmid: int) -> bool:
    """Asks Proxmox itself: it sees guests the token cannot audit, containers included."""
    try:
        retry(lambda: api.cluster.nextid.get(vmid=vmid), f"VM ID {vmid}")
    except ApiError as error:
        if error.kind is Kind.EXISTS:
            return False
        raise
    return True


def allocate(
    api: Api,
    retry: Retrier,
    key: OwnerKey,
    claims: Claims,
    id_range: IdRange,
    guests: list[Guest],
    owner: dict[str, str],
    skip: set[int],
) -> Claim:
    """Claim the lowest ID in the range that no guest, no live local claim and nothing in ``skip`` holds."""
    used = {guest.vmid for guest in guests}
    with claims.locked():
        claims.prune()
        claimed = claims.live()
        for vmid in range(id_range.first, id_range.last + 1):
            if vmid in used or vmid in claimed or vmid in skip:
                continue
            if not id_free_on_cluster(api, retry, vmid):
                skip.add(vmid)
                continue
            return claims.take(vmid, owner)
    in_range = [g for g in guests if id_range.first <= g.vmid <= id_range.last]
    ours = sorted(g.vmid for g in in_range if g.proven(key))
    foreign = sorted(g.vmid for g in in_range if not g.proven(key))
    detail = []
    if foreign:
        detail.append(f"held by VMs not built by this program: {_ids(foreign)}")
    if ours:
        detail.append(f"held by this program's templates: {_ids(ours)}")
    if claimed:
        detail.append(f"claimed by builds running on this machine: {_ids(sorted(claimed))}")
    raise RunnerError(
        f"no free VM ID in vmIdRange {id_range.first}-{id_range.last}" + (f" ({'; '.join(detail)})" if detail else ""),
        "homelab-images:proxmox.vmIdRange",
        "move the foreign VMs out of the range, lower retainPrevious or run "
        "`venv/bin/homelab-images gc --stack <stack> --apply`, or widen the range",
    )


def _ids(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:10])
    return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
