"""A k3s cluster cloned from a homelab-images template: one server, N agents.

images stack (StackReference) -> template to clone -> per VM: cloud-init user
data uploaded as a snippet, a clone of the template that boots into its k3s role.
A new template never replaces running VMs by itself: nodes named in
``rollNodes`` are re-cloned, one ``pulumi up`` at a time. See README.md.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_proxmoxve as proxmoxve

# The helper sits at the root of this repository, two directories up. A program
# in another repository vendors homelab_images_consumer/ instead (README.md).
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from homelab_images_consumer import (  # noqa: E402
    Role,
    TemplateRef,
    k3s_user_data,
    resolve_template,
    resolve_template_by_vm_id,
)

K3S_API_PORT = 6443
# Inputs a VM takes from the template it is cloned from. The engine resets ignored
# inputs to their old values before it diffs or replaces (pulumi/pulumi v3.259.0,
# pkg/resource/deploy/step_generator.go, processIgnoreChanges), so a new template
# leaves a running VM alone; a node in rollNodes drops the list and is re-cloned
# (clone.vm_id is ForceNew: bpg/terraform-provider-proxmox v0.111.1,
# proxmoxtf/resource/vm/vm.go, mkCloneVMID).
FROM_TEMPLATE = ("clone", "bios", "machine", "scsiHardware", "description", "initialization.datastoreId")
# The only file mode bpg's uploader sets after writing a snippet (v0.111.1,
# proxmox/ssh/client.go, changeModeUploadedFile); without it the file gets the
# SSH user's umask, typically world-readable 0644.
SNIPPET_FILE_MODE = "0600"


@dataclass(frozen=True)
class ClusterSettings:
    images_stack: str
    image: str
    image_version: str | None
    node: str
    name_prefix: str
    agent_count: int
    ssh_keys: list[str]
    server_ip: str | None
    gateway: str | None
    dns_servers: list[str]
    domain: str | None
    bridge: str
    vlan_id: int | None
    snippet_storage: str
    roll_nodes: list[str]
    cloud_init_storage: str | None
    full_clone: bool
    clone_storage: str | None
    vm_id_start: int | None
    cpu_type: str
    cores: int
    memory_mib: int
    server_config: dict[str, Any]


def load_settings(config: pulumi.Config) -> ClusterSettings:
    """Read and check the stack config; every problem names the key to fix."""
    key = config.name
    ssh_keys = config.require_object("sshKeys")
    if not isinstance(ssh_keys, list) or not ssh_keys:
        raise pulumi.ConfigTypeError(f"{key}:sshKeys", str(ssh_keys), "non-empty list of SSH public keys")
    dns_servers = config.get_object("dnsServers") or []
    roll_nodes = config.get_object("rollNodes") or []
    if not isinstance(roll_nodes, list) or not all(isinstance(n, str) for n in roll_nodes):
        raise pulumi.ConfigTypeError(f"{key}:rollNodes", str(roll_nodes), "list of VM names, e.g. [k3s-agent-1]")
    server_config = config.get_object("k3sServerConfig") or {}
    if not isinstance(server_config, dict):
        raise pulumi.ConfigTypeError(f"{key}:k3sServerConfig", str(server_config), "mapping of k3s config keys")
    settings = ClusterSettings(
        images_stack=config.require("imagesStack"),
        image=config.require("image"),
        image_version=config.get("imageVersion"),
        node=config.require("node"),
        name_prefix=config.get("namePrefix") or "k3s",
        agent_count=_int_or(config.get_int("agentCount"), 2),
        ssh_keys=[str(k) for k in ssh_keys],
        server_ip=config.get("serverIp"),
        gateway=config.get("gateway"),
        dns_servers=[str(s) for s in dns_servers],
        domain=config.get("domain"),
        bridge=config.get("bridge") or "vmbr0",
        vlan_id=config.get_int("vlanId"),
        snippet_storage=config.get("snippetStorage") or "snippets",
        roll_nodes=list(roll_nodes),
        cloud_init_storage=config.get("cloudInitStorage"),
        full_clone=config.get_bool("fullClone") is not False,
        clone_storage=config.get("cloneStorage"),
        vm_id_start=config.get_int("vmIdStart"),
        cpu_type=config.get("cpuType") or "x86-64-v2-AES",
        cores=_int_or(config.get_int("cores"), 2),
        memory_mib=_int_or(config.get_int("memoryMiB"), 4096),
        server_config=server_config,
    )
    if not 0 <= settings.agent_count <= 50:
        raise pulumi.RunError(f"{key}:agentCount must be between 0 and 50, got {settings.agent_count}")
    if settings.server_ip is not None:
        try:
            ipaddress.IPv4Interface(settings.server_ip)
        except ValueError:
            raise pulumi.RunError(
                f"{key}:serverIp must be an IPv4 address with prefix length, e.g. 192.168.1.50/24, "
                f"got {settings.server_ip!r}"
            ) from None
        if not settings.gateway:
            raise pulumi.RunError(f"{key}:gateway is required with serverIp")
    known = {f"{settings.name_prefix}-server"} | {
        f"{settings.name_prefix}-agent-{index}" for index in range(1, settings.agent_count + 1)
    }
    unknown = sorted(set(settings.roll_nodes) - known)
    if unknown:
        raise pulumi.RunError(
            f"{key}:rollNodes names no VM of this cluster: {', '.join(unknown)} (VMs: {', '.join(sorted(known))})"
        )
    if settings.clone_storage and not settings.full_clone:
        raise pulumi.RunError(f"{key}:cloneStorage only applies to full clones (fullClone: true)")
    return settings


def _int_or(value: int | None, default: int) -> int:
    return default if value is None else value


def first_guest_address(addresses: Sequence[Sequence[str]]) -> str:
    """The first IPv4 address the guest agent reports that is not loopback or link-local."""
    for interface in addresses or []:
        for address in interface:
            ip = ipaddress.IPv4Address(address)
            if not (ip.is_loopback or ip.is_link_local):
                return address
    raise RuntimeError("the k3s server reported no IPv4 address through the guest agent; set serverIp")


class K3sNode:
    """One clone of the template with its user-data snippet."""

    def __init__(
        self,
        hostname: str,
        role: Role,
        settings: ClusterSettings,
        template: pulumi.Output[TemplateRef],
        token: pulumi.Output[str],
        server_url: pulumi.Input[str] | None,
        vm_id: int | None,
        ip_address: str | None = None,
        agent_token: pulumi.Output[str] | None = None,
    ) -> None:
        user_data = k3s_user_data(
            role=role,
            hostname=hostname,
            ssh_authorized_keys=settings.ssh_keys,
            token=token,
            server_url=server_url,
            cluster_init=role == "server",
            extra_config=settings.server_config if role == "server" else None,
            domain=settings.domain,
            agent_token=agent_token,
        )
        file_name = f"{hostname}-user-data.yaml"
        # Snippets are node-local on most storages: upload to the node that runs the VM.
        # A new text replaces the file (source_raw is ForceNew); with one fixed name
        # per VM the old file must go first, or deleting it after the new upload
        # would delete the new file (the same volume).
        self.snippet = proxmoxve.FileLegacy(
            f"{hostname}-user-data",
            node_name=settings.node,
            datastore_id=settings.snippet_storage,
            content_type="snippets",
            file_mode=SNIPPET_FILE_MODE,
            source_raw=proxmoxve.FileLegacySourceRawArgs(data=user_data, file_name=file_name),
            opts=pulumi.ResourceOptions(additional_secret_outputs=["source_raw"], delete_before_replace=True),
        )
        ipv4 = (
            proxmoxve.VmLegacyInitializationIpConfigIpv4Args(address=ip_address, gateway=settings.gateway)
            if ip_address
            else proxmoxve.VmLegacyInitializationIpConfigIpv4Args(address="dhcp")
        )
        dns = (
            proxmoxve.VmLegacyInitializationDnsArgs(servers=settings.dns_servers or None, domain=settings.domain)
            if settings.dns_servers or settings.domain
            else None
        )
        rolling = hostname in settings.roll_nodes
        self.vm = proxmoxve.VmLegacy(
            hostname,
            name=hostname,
            node_name=settings.node,
            vm_id=vm_id,
            description=template.apply(
                lambda t: f"k3s {role}, cloned from {t.name} (fingerprint {(t.fingerprint or 'unknown')[:16]})"
            ),
            tags=["k3s", f"k3s-{role}"],
            clone=proxmoxve.VmLegacyCloneArgs(
                vm_id=template.apply(lambda t: t.vm_id),
                # Clone from the node holding the template; with shared storage that may differ from node_name.
                node_name=template.apply(lambda t: t.node),
                full=settings.full_clone,
                datastore_id=settings.clone_storage,
                retries=3,
            ),
            # Firmware, machine and SCSI controller must match the template: the provider would reset them.
            bios=template.apply(lambda t: t.firmware),
            machine=template.apply(lambda t: t.machine),
            scsi_hardware=template.apply(lambda t: t.scsi_controller),
            operating_system=proxmoxve.VmLegacyOperatingSystemArgs(type="l26"),
            cpu=proxmoxve.VmLegacyCpuArgs(type=settings.cpu_type, cores=settings.cores),
            memory=proxmoxve.VmLegacyMemoryArgs(dedicated=settings.memory_mib),
            # Without wait_for_ip the provider returns at the first global IPv4 *or* IPv6
            # address (v0.111.1, proxmoxtf/resource/vm/vm.go, mkAgentWaitForIP), and the
            # agents need the server's IPv4 address.
            agent=proxmoxve.VmLegacyAgentArgs(
                enabled=True, wait_for_ip=proxmoxve.VmLegacyAgentWaitForIpArgs(ipv4=True)
            ),
            network_devices=[
                proxmoxve.VmLegacyNetworkDeviceArgs(bridge=settings.bridge, model="virtio", vlan_id=settings.vlan_id)
            ],
            serial_devices=[proxmoxve.VmLegacySerialDeviceArgs(device="socket")],
            initialization=proxmoxve.VmLegacyInitializationArgs(
                datastore_id=template.apply(lambda t: settings.cloud_init_storage or t.storage),
                ip_configs=[proxmoxve.VmLegacyInitializationIpConfigArgs(ipv4=ipv4)],
                dns=dns,
                # The volume ID the provider gives the snippet (v0.111.1,
                # proxmoxtf/resource/file.go, fileVolumeID.String), written out rather
                # than taken from snippet.id: user_data_file_id is ForceNew, and a
                # property dependency on a delete-before-replace resource makes the
                # engine replace the VM too (pulumi v3.259.0, step_generator.go,
                # calculateDependentReplacements). depends_on orders the upload first.
                user_data_file_id=f"{settings.snippet_storage}:snippets/{file_name}",
            ),
            on_boot=True,
            started=True,
            opts=pulumi.ResourceOptions(
                depends_on=[self.snippet],
                ignore_changes=[] if rolling else list(FROM_TEMPLATE),
                # A replacement reuses the VM ID, the hostname (k3s node name) and the
                # server's address: the old VM must be gone before the new one starts.
                delete_before_replace=True,
            ),
        )

    def report(
        self, images: pulumi.StackReference, image: str, target: pulumi.Output[TemplateRef]
    ) -> pulumi.Output[Any]:
        """Which template this VM was cloned from, and the one a roll would clone instead (None when current)."""
        cloned_id = self.vm.clone.apply(lambda clone: clone.vm_id if clone else None)
        source = resolve_template_by_vm_id(images, image, cloned_id)

        def describe(values: list[Any]) -> dict[str, Any]:
            name, vm_id, cloned_vm_id, cloned, wanted = values
            pending = None if wanted.vm_id == cloned_vm_id else _template_summary(wanted)
            return {
                "name": name,
                "vmId": vm_id,
                "clonedFrom": _template_summary(cloned) if cloned else {"vmId": cloned_vm_id, "retired": True},
                "pendingTemplate": pending,
            }

        return pulumi.Output.all(self.vm.name, self.vm.vm_id, cloned_id, source, target).apply(describe)


def _template_summary(template: TemplateRef) -> dict[str, Any]:
    return {"vmId": template.vm_id, "name": template.name, "version": template.version, "node": template.node}


def main() -> None:
    config = pulumi.Config()
    settings = load_settings(config)
    token = config.require_secret("k3sToken")
    agent_token = config.require_secret("k3sAgentToken")
    # Once the server runs, its agent token in the secure K10 form (with the cluster
    # CA's hash) lets agents check they talk to this cluster before sending credentials.
    agent_join_token = config.get_secret("k3sAgentJoinToken") or agent_token

    images = pulumi.StackReference("images", stack_name=settings.images_stack)
    template = resolve_template(images, settings.image, settings.image_version, settings.node)

    def vm_id(index: int) -> int | None:
        return settings.vm_id_start + index if settings.vm_id_start is not None else None

    server = K3sNode(
        f"{settings.name_prefix}-server",
        "server",
        settings,
        template,
        token,
        server_url=None,
        vm_id=vm_id(0),
        ip_address=settings.server_ip,
        agent_token=agent_token,
    )
    if settings.server_ip:
        address: pulumi.Input[str] = str(ipaddress.IPv4Interface(settings.server_ip).ip)
        server_url: pulumi.Input[str] = f"https://{address}:{K3S_API_PORT}"
    else:
        server_url = server.vm.ipv4_addresses.apply(
            lambda found: f"https://{first_guest_address(found)}:{K3S_API_PORT}"
        )
    agents = [
        K3sNode(
            f"{settings.name_prefix}-agent-{index}",
            "agent",
            settings,
            template,
            agent_join_token,
            server_url=server_url,
            vm_id=vm_id(index),
        )
        for index in range(1, settings.agent_count + 1)
    ]

    pulumi.export("template", template.apply(_template_summary))
    pulumi.export("serverUrl", server_url)
    pulumi.export("server", server.report(images, settings.image, template))
    pulumi.export("agents", [agent.report(images, settings.image, template) for agent in agents])


main()
