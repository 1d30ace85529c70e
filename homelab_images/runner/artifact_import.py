"""A template imported from a qcow2 (``importFrom``) instead of installed by Packer.

Proxmox VE 8.4+ downloads (``importFrom.url``) or receives (``importFrom.path``, artifact_upload.py)
the file into a storage with content type ``import`` and verifies its sha256, creates the VM with the disk
``<vmStorage>:0,import-from=<storage>:import/<file>`` (qemu-server copies the
file into a new volume of the VM) and converts it to a template. Everything
around it (VM ID, tags, description, verification, smoke test, retirement) is
the proxmox-iso build's, in create.py.
"""

from __future__ import annotations

import time
from typing import Any

from homelab_images.contract.build_spec import BuildSpec, ImportSource
from homelab_images.contract.ownership import join_tags, lease_tag
from homelab_images.runner import tasks
from homelab_images.runner.artifact_upload import upload_to_storage
from homelab_images.runner.errors import RunnerError
from homelab_images.runner.lease import kept_alive
from homelab_images.runner.proxmox import ApiError, Kind
from homelab_images.runner.runner import Context
from homelab_images.runner.vmids import IdTaken, id_free_on_cluster

IMPORT_CONTENT = "import"
SHA256_KEY = "homelab-images:images[].importFrom.sha256"
URL_KEY = "homelab-images:images[].importFrom.url"


def import_volume(spec: BuildSpec, source: ImportSource) -> str:
    return f"{spec.iso_storage}:{IMPORT_CONTENT}/{source.file_name}"


def vm_config(spec: BuildSpec, source: ImportSource, vmid: int, description: str, tags: list[str]) -> dict[str, Any]:
    """The VM the proxmox-iso build makes (core.packer_template.image_source), with its disk imported."""
    bus = source.disk_bus
    disk = f"{spec.vm_storage}:0,import-from={import_volume(spec, source)},discard=on"
    if bus in ("scsi", "virtio"):
        disk += ",iothread=1"
    if bus != "virtio":
        disk += ",ssd=1"
    # Packer's cloud_init_disk_type scsi: the next free SCSI slot.
    cloud_init_slot = "scsi1" if bus == "scsi" else "scsi0"
    config: dict[str, Any] = {
        "vmid": vmid,
        "name": spec.template_name,
        "description": description,
        "tags": join_tags(tags),
        "ostype": "l26",
        "machine": source.machine,
        "bios": source.firmware,
        "cpu": source.cpu_type,
        "cores": source.cores,
        "sockets": 1,
        "memory": source.memory_mib,
        "scsihw": source.scsi_controller,
        "agent": "1",
        f"{bus}0": disk,
        cloud_init_slot: f"{spec.vm_storage}:cloudinit",
        "ciupgrade": 0,
        "serial0": "socket",
        "rng0": "source=/dev/urandom,max_bytes=1024,period=1000",
        "net0": f"virtio,bridge={spec.bridge},firewall=0",
        "boot": f"order={bus}0",
    }
    if source.firmware == "ovmf":
        config["efidisk0"] = f"{spec.vm_storage}:1,efitype=4m,pre-enrolled-keys=1"
    return config


def _on_storage(ctx: Context, source: ImportSource) -> bool:
    spec = ctx.spec
    listed = ctx.retry(
        lambda: ctx.api.nodes(spec.node).storage(spec.iso_storage).content.get(content=IMPORT_CONTENT),
        f"storage {spec.iso_storage} on {spec.node}",
    )
    return any(str(item.get("volid")) == import_volume(spec, source) for item in listed)


def fetch_to_storage(ctx: Context, source: ImportSource, timeout: float) -> bool:
    """Put the qcow2 on the storage once; its file name carries the checksum, so a file of that name is it.

    Returns whether this run put it there (and so may remove it when done): a file found there is only reused.
    """
    spec, console = ctx.spec, ctx.console
    volume = import_volume(spec, source)
    if _on_storage(ctx, source):
        console.stage(f"{volume} is already on storage (verified by Proxmox when it was put there); reusing it")
        return False
    if source.path is not None:
        upload_to_storage(ctx, source, volume, timeout)
        return True
    console.stage(f"download of {source.url} to {volume}, checked against its sha256 by Proxmox")
    where = f"download of {source.url} to storage {spec.iso_storage} on {spec.node}"
    storage = ctx.api.nodes(spec.node).storage(spec.iso_storage)
    try:
        ctx.retry(
            lambda: tasks.run(
                ctx.api,
                spec.node,
                lambda: storage("download-url").post(
                    content=IMPORT_CONTENT,
                    filename=source.file_name,
                    url=source.url,
                    checksum=source.sha256,
                    **{"checksum-algorithm": "sha256"},
                ),
                timeout,
            ),
            where,
        )
    except ApiError as error:
        if error.kind is Kind.OTHER and "checksum mismatch" in error.message:
            raise RunnerError(
                f"the file at {source.url} does not match importFrom.sha256 ({error.message.strip()})",
                SHA256_KEY,
                "set the sha256 the qemu build printed for this file (artifacts.<image>.qemu.sha256), "
                "or point importFrom.url at the file it was printed for",
            ) from None
        if error.kind is Kind.OTHER:
            raise RunnerError(
                f"Proxmox could not download the qcow2 ({error.message.strip()})",
                URL_KEY,
                "check that the node can reach the URL and that it serves the qcow2 itself (not compressed)",
            ) from None
        raise
    return True


def remove_from_storage(ctx: Context, source: ImportSource, timeout: float) -> None:
    """The file this run put on the storage, once the run is over: the template's disk is a copy of it.

    A failure leaves a file of a few GiB behind, not a broken template: it is a warning naming the command.
    """
    spec, api = ctx.spec, ctx.api
    volume = import_volume(spec, source)
    content = api.nodes(spec.node).storage(spec.iso_storage).content(volume)
    try:
        ctx.retry(lambda: tasks.run(api, spec.node, content.delete, timeout), f"removal of {volume}")
    except ApiError as error:
        ctx.console.warn(
            f"could not remove {volume}, which this run put there ({error.message.strip()}); "
            f"remove it with `pvesm free {volume}` on {spec.node}"
        )
        return
    ctx.console.stage(f"removed {volume}: the template's disk is a copy of it")


def import_once(
    ctx: Context, source: ImportSource, vmid: int, build_id: str, description: str, tags: list[str], deadline: float
) -> tuple[int, float]:
    """Create VM ``vmid`` from the imported disk and convert it, within the build's timeout;
    returns (template VM ID, seconds). Like a Packer build, the VM carries this build's lease while
    it is made (runner.lease)."""
    spec, api = ctx.spec, ctx.api
    started = time.monotonic()

    def remaining() -> float:
        return max(deadline - time.monotonic(), 1.0)

    where = f"VM {vmid} on node {spec.node}"
    if not id_free_on_cluster(api, ctx.retry, vmid):
        raise IdTaken()
    ctx.console.stage(f"creating {spec.template_name} as VM {vmid} with its disk imported from {source.file_name}")
    lease_seconds = ctx.tuning.lease_seconds
    config = vm_config(spec, source, vmid, description, [*tags, lease_tag(time.time() + lease_seconds)])
    with kept_alive(api, ctx.owner, spec.node, vmid, build_id, lease_seconds):
        try:
            ctx.retry(
                lambda: tasks.run(api, spec.node, lambda: api.nodes(spec.node).qemu.post(**config), remaining()),
                where,
            )
        except ApiError as error:
            if error.kind is Kind.EXISTS:
                raise IdTaken() from None
            raise
        ctx.console.stage(f"converting VM {vmid} to a template")
        ctx.retry(
            lambda: tasks.run(api, spec.node, lambda: api.nodes(spec.node).qemu(vmid).template.post(), remaining()),
            where,
        )
    return vmid, time.monotonic() - started
