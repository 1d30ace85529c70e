"""Checks that take seconds and spare a user a 20-minute build that was bound to fail.

Order matters for the message: the endpoint and token first (nothing else can
be read without them), then privileges (one message names every missing one;
without Datastore.Audit a storage would look missing), then quorum and the
node, then what the build uses.
"""

from __future__ import annotations

from typing import Any

from homelab_images.contract.build_spec import BuildSpec
from homelab_images.contract.packer_files import proxmox_source
from homelab_images.contract.proxmox_plugin import CD_CLEANUP_PRIVILEGE
from homelab_images.runner.env import Credentials
from homelab_images.runner.errors import RunnerError
from homelab_images.runner.proxmox import DOCS, Api, Retrier

# What a proxmox-iso build needs (checked against the PVE 9 API's permission table).
# Reading the guest's IP through the agent is VM.GuestAgent.Audit on PVE 9, VM.Monitor on PVE 8.
GUEST_AGENT_PRIVILEGE = {8: "VM.Monitor", 9: "VM.GuestAgent.Audit"}
VM_PRIVILEGES = (
    "VM.Allocate",
    "VM.Audit",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.Console",
    "VM.PowerMgmt",
)
VM_STORAGE_PRIVILEGES = ("Datastore.AllocateSpace", "Datastore.Audit")
# AllocateTemplate: the ISO download (download-url) and the OEMDRV CD Packer uploads.
ISO_STORAGE_PRIVILEGES = ("Datastore.AllocateTemplate", "Datastore.Audit")
# kickstartDelivery cd: the plugin deletes the OEMDRV ISO it uploaded when the build ends
# (contract.proxmox_plugin: step_upload_iso.go Cleanup; PVE allows that with Datastore.Allocate).
CD_ISO_STORAGE_PRIVILEGES = (CD_CLEANUP_PRIVILEGE,)
# importFrom: the runner removes the import file it put on the ISO storage when the run ends (pve-storage
# src/PVE/API2/Storage/Content.pm delete: a volume that is not a backup needs Datastore.Allocate).
IMPORT_ISO_STORAGE_PRIVILEGES = ("Datastore.Allocate",)
BRIDGE_PRIVILEGES = ("SDN.Use",)
# AccessNetwork: the node downloads the ISO (download-url); Audit: node status.
NODE_PRIVILEGES = ("Sys.AccessNetwork", "Sys.Audit")
# /cluster/status (the quorum check) needs Sys.Audit on the root.
ROOT_PRIVILEGES = ("Sys.Audit",)


# The smoke test clones the template (VM.Clone on it, VM.Allocate and the config privileges above on the
# clone: qemu-server src/PVE/API2/Qemu.pm clone_vm) and runs commands in the clone through the guest agent:
# agent/exec and agent/exec-status need VM.GuestAgent.Unrestricted on PVE 9 (qemu-server commit b92a40ce,
# "api: agent: use more specific guest agent privileges", released in 9.0.3) and VM.Monitor before.
SMOKE_PRIVILEGES = ("VM.Clone",)
GUEST_EXEC_PRIVILEGE = {8: "VM.Monitor", 9: "VM.GuestAgent.Unrestricted"}


def vm_privileges(pve_major: int, smoke_test: bool = True) -> tuple[str, ...]:
    generation = 8 if pve_major <= 8 else 9
    privileges = {*VM_PRIVILEGES, GUEST_AGENT_PRIVILEGE[generation]}
    if smoke_test:
        privileges.update((*SMOKE_PRIVILEGES, GUEST_EXEC_PRIVILEGE[generation]))
    return tuple(sorted(privileges))


def pve_major(version: str) -> int:
    """8 or 9 from /version's "9.0.10"; an unreadable version is taken as the current one."""
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 9


def cloud_init_storage(spec: BuildSpec) -> str:
    return str(proxmox_source(spec.packer_template).get("cloud_init_storage_pool") or spec.vm_storage)


def required_privileges(spec: BuildSpec, vmid: int | None, major: int = 9) -> dict[str, tuple[str, ...]]:
    """Privileges per ACL path for this build on PVE ``major``; without ``vmid`` the VM part is left out."""
    needed: dict[str, set[str]] = {}
    for path, privs in (
        ("/", ROOT_PRIVILEGES),
        (f"/storage/{spec.vm_storage}", VM_STORAGE_PRIVILEGES),
        (f"/storage/{cloud_init_storage(spec)}", VM_STORAGE_PRIVILEGES),
        (f"/storage/{spec.iso_storage}", ISO_STORAGE_PRIVILEGES),
        (f"/sdn/zones/localnetwork/{spec.bridge}", BRIDGE_PRIVILEGES),
        (f"/nodes/{spec.node}", NODE_PRIVILEGES),
    ):
        needed.setdefault(path, set()).update(privs)
    if spec.kickstart_delivery == "cd":
        needed[f"/storage/{spec.iso_storage}"].update(CD_ISO_STORAGE_PRIVILEGES)
    if spec.import_from is not None:
        needed[f"/storage/{spec.iso_storage}"].update(IMPORT_ISO_STORAGE_PRIVILEGES)
    if vmid is not None:
        needed[f"/vms/{vmid}"] = set(vm_privileges(major, spec.smoke_test))
    return {path: tuple(sorted(privs)) for path, privs in needed.items()}


def covers(granted: str, path: str) -> bool:
    """An ACL on a path applies to everything below it (PVE's propagate flag, on by default)."""
    granted = granted.rstrip("/") or "/"
    return granted == "/" or path == granted or path.startswith(granted + "/")


def held_on(permissions: dict[str, dict[str, Any]], path: str) -> set[str]:
    """Privileges effective on ``path`` from a /access/permissions answer (keyed by path)."""
    held: set[str] = set()
    for granted, privs in permissions.items():
        if covers(granted, path):
            held.update(name for name, value in privs.items() if value)
    return held


def missing_privileges(api: Api, retry: Retrier, needed: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
    missing: dict[str, list[str]] = {}
    for path, privs in needed.items():

        def permissions(path: str = path) -> dict[str, dict[str, Any]]:
            answer: dict[str, dict[str, Any]] = api.access.permissions.get(path=path)
            return answer

        answer = retry(permissions, f"privileges on {path}")
        absent = [priv for priv in privs if priv not in held_on(answer or {}, path)]
        if absent:
            missing[path] = absent
    return missing


def _smoke_privilege_missing(missing: dict[str, list[str]]) -> bool:
    smoke_only = (
        {*SMOKE_PRIVILEGES, *GUEST_EXEC_PRIVILEGE.values()} - set(VM_PRIVILEGES) - set(GUEST_AGENT_PRIVILEGE.values())
    )
    return any(priv in smoke_only for privs in missing.values() for priv in privs)


def check_privileges(api: Api, retry: Retrier, creds: Credentials, needed: dict[str, tuple[str, ...]]) -> None:
    missing = missing_privileges(api, retry, needed)
    if missing:
        listing = "; ".join(f"{', '.join(privs)} on {path}" for path, privs in missing.items())
        raise RunnerError(
            f"the API token {creds.token_id} lacks privileges a proxmox-iso build needs: {listing}"
            + (
                " (VM.Clone and guest-agent privileges are for the smoke test, homelab-images:build.smokeTest)"
                if _smoke_privilege_missing(missing)
                else ""
            ),
            creds.endpoint,
            f"grant them to the token (with privilege separation, to the token itself; see {DOCS})",
        )


def check_reachable(api: Api, retry: Retrier, creds: Credentials) -> str:
    """Reaches the endpoint with TLS verified and proves the token: the first authenticated call."""
    answer = retry(lambda: api.version.get(), f"Proxmox API at {creds.endpoint}")
    return str(answer.get("version", "?"))


def check_quorum(api: Api, retry: Retrier, creds: Credentials) -> None:
    status = retry(lambda: api.cluster.status.get(), f"cluster of {creds.endpoint}")
    cluster = next((item for item in status if item.get("type") == "cluster"), None)
    if cluster is not None and str(cluster.get("quorate", 1)) != "1":
        raise RunnerError(
            f"the Proxmox cluster {cluster.get('name') or ''} has no quorum".replace("  ", " "),
            creds.endpoint,
            "restore quorum (check `pvecm status`) and run again; Proxmox refuses to create or change VMs until then",
        )


def check_node(api: Api, retry: Retrier, spec: BuildSpec, creds: Credentials) -> None:
    nodes = {str(n["node"]): str(n.get("status", "")) for n in retry(lambda: api.nodes.get(), "node list")}
    if spec.node not in nodes:
        raise RunnerError(
            f"node {spec.node} is not in the cluster (nodes: {', '.join(sorted(nodes)) or 'none visible'})",
            creds.endpoint,
            "set homelab-images:proxmox.node to one of the cluster's nodes",
        )
    if nodes[spec.node] != "online":
        raise RunnerError(
            f"node {spec.node} is {nodes[spec.node] or 'not online'}",
            creds.endpoint,
            "bring the node back online or set homelab-images:proxmox.node to an online node",
        )


def check_storages(api: Api, retry: Retrier, spec: BuildSpec) -> None:
    where = f"node {spec.node}"
    listed = retry(lambda: api.nodes(spec.node).storage.get(), f"storages of {where}")
    storages = {str(s["storage"]): s for s in listed}
    wanted = {
        spec.vm_storage: ("images", "homelab-images:proxmox.vmStorage"),
        cloud_init_storage(spec): ("images", "homelab-images:proxmox.cloudInitStorage"),
        # An imported template's qcow2 goes to the ISO storage, with content type import (PVE 8.4+).
        spec.iso_storage: ("iso" if spec.import_from is None else "import", "homelab-images:proxmox.isoStorage"),
    }
    for name, (content, key) in wanted.items():
        storage = storages.get(name)
        if storage is None:
            raise RunnerError(
                f"storage {name} does not exist on node {spec.node} (or the token lacks Datastore.Audit on it)",
                where,
                f"create it, enable it for the node, or set {key} to one of: {', '.join(sorted(storages)) or 'none'}",
            )
        contents = {c.strip() for c in str(storage.get("content", "")).split(",")}
        if content not in contents:
            raise RunnerError(
                f"storage {name} does not hold content type '{content}' (it holds: {', '.join(sorted(contents))})",
                where,
                f"add '{content}' to the storage's content types (Datacenter > Storage) or change {key}",
            )
        if str(storage.get("active", 1)) != "1" or str(storage.get("enabled", 1)) != "1":
            raise RunnerError(
                f"storage {name} is not active on node {spec.node}", where, "enable or repair the storage"
            )


def check_bridge(api: Api, retry: Retrier, spec: BuildSpec) -> None:
    interfaces = retry(lambda: api.nodes(spec.node).network.get(), f"network of node {spec.node}")
    bridges = {str(i["iface"]) for i in interfaces if str(i.get("type", "")) in ("bridge", "OVSBridge")}
    if spec.bridge not in bridges:
        raise RunnerError(
            f"bridge {spec.bridge} does not exist on node {spec.node}",
            f"node {spec.node}",
            f"set homelab-images:proxmox.bridge to one of: {', '.join(sorted(bridges)) or 'none found'}",
        )


def check_iso(api: Api, retry: Retrier, spec: BuildSpec) -> None:
    storage = spec.iso_storage
    content = retry(
        lambda: api.nodes(spec.node).storage(storage).content.get(content="iso"), f"storage {storage} on {spec.node}"
    )
    if not any(str(item.get("volid")) == spec.iso_volume for item in content):
        raise RunnerError(
            f"ISO volume {spec.iso_volume} does not exist",
            f"storage {storage} on node {spec.node}",
            "let the IsoFile resource download it (pulumi up), or upload it to that storage",
        )


def preflight(api: Api, retry: Retrier, spec: BuildSpec, creds: Credentials) -> int:
    """Returns the PVE major version. VM privileges are checked on the range's first ID here (one
    message lists everything missing) and again on the allocated ID if that differs."""
    major = pve_major(check_reachable(api, retry, creds))
    check_privileges(api, retry, creds, required_privileges(spec, spec.vm_id_range.first, major))
    check_quorum(api, retry, creds)
    check_node(api, retry, spec, creds)
    check_storages(api, retry, spec)
    check_bridge(api, retry, spec)
    if spec.import_from is None:
        check_iso(api, retry, spec)
    return major
