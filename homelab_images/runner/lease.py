"""A build's lease on its VM: visible to every other run, renewed while Packer works on the VM.

The lease is a tag, ``lease-<unix time>``, set when Packer creates the VM and
moved forward every tenth of the lease by a thread of the runner. Another run
(any machine, any state directory, any spelling of the endpoint) removes an
unfinished build only once its lease has expired, so a live build is never
mistaken for the leftover of a crashed one. A renewal that fails (the VM is not
created yet, is locked by Packer's own task, or the API is briefly unreachable)
is simply tried again at the next tick; the lease is long enough to absorb that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from homelab_images.contract.ownership import OwnerKey, Ownership, join_tags, lease_tag, parse_tags, without_lease
from homelab_images.runner.proxmox import Api

RENEWALS_PER_LEASE = 10


def renew_once(api: Api, key: OwnerKey, node: str, vmid: int, build_id: str, lease_seconds: float) -> bool:
    """Move the lease of this build's VM forward; False if the VM is not (yet, or any more) this build's."""
    vm = api.nodes(node).qemu(vmid)
    config = vm.config.get()
    tags = parse_tags(config.get("tags"))
    ownership = Ownership.of(tags)
    if not (ownership.pending and ownership.build_id == build_id and key.owns(vmid, node, tags)):
        return False
    renewed = join_tags([*without_lease(tags), lease_tag(time.time() + lease_seconds)])
    # The digest makes the write fail instead of overwriting a change made since the read.
    vm.config.put(tags=renewed, digest=config.get("digest"))
    return True


@contextmanager
def kept_alive(api: Api, key: OwnerKey, node: str, vmid: int, build_id: str, lease_seconds: float) -> Iterator[None]:
    """Renew the build's lease in the background for as long as the block runs."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(lease_seconds / RENEWALS_PER_LEASE):
            try:
                renew_once(api, key, node, vmid, build_id, lease_seconds)
            except Exception:  # not created yet, locked by Packer's task, a dropped connection: next tick
                continue

    thread = threading.Thread(target=renew, name=f"lease-{vmid}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
