"""A k3s cluster cloned from a homelab-images template: one server, N agents.

images stack (StackReference) -> template to clone -> per VM: cloud-init user
data uploaded as a snippet, a clone of the template that boots into its k3s role.
See README.md for the configuration.
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

from homelab_images_consumer import Role, TemplateRef, k3s_user_data, resolve_template  # noqa: E402

K3S_API_PORT = 6443
# The controller the images are built with; the provider would otherwise reset clones to its own default.
SCSI_CONTROLLER = "virtio-scsi-single"


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
        snippet_storage=config.get("snippetStorage") or "local",
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
        )
        # Snippets are node-local on most storages: upload to the node that runs the VM.
        self.snippet = proxmoxve.FileLegacy(
            f"{hostname}-user-data",
            node_name=settings.node,
            datastore_id=settings.snippet_storage,
            content_type="snippets",
            source_raw=proxmoxve.FileLegacySourceRawArgs(data=user_data, file_name=f"{hostname}-user-data.yaml"),
            opts=pulumi.ResourceOptions(additional_secret_outputs=["source_raw"]),
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
            # Firmware and machine must match the template: the provider would reset them to its defaults.
            bios=template.apply(lambda t: t.firmware),
            machine=template.apply(lambda t: t.machine),
            scsi_hardware=SCSI_CONTROLLER,
            operating_system=proxmoxve.VmLegacyOperatingSystemArgs(type="l26"),
            cpu=proxmoxve.VmLegacyCpuArgs(type=settings.cpu_type, cores=settings.cores),
            memory=proxmoxve.VmLegacyMemoryArgs(dedicated=settings.memory_mib),
            agent=proxmoxve.VmLegacyAgentArgs(enabled=True),
            network_devices=[
                proxmoxve.VmLegacyNetworkDeviceArgs(bridge=settings.bridge, model="virtio", vlan_id=settings.vlan_id)
            ],
            serial_devices=[proxmoxve.VmLegacySerialDeviceArgs(device="socket")],
            initialization=proxmoxve.VmLegacyInitializationArgs(
                datastore_id=template.apply(lambda t: settings.cloud_init_storage or t.storage),
                ip_configs=[proxmoxve.VmLegacyInitializationIpConfigArgs(ipv4=ipv4)],
                dns=dns,
                user_data_file_id=self.snippet.id,
            ),
            on_boot=True,
            started=True,
        )


def main() -> None:
    config = pulumi.Config()
    settings = load_settings(config)
    token = config.require_secret("k3sToken")

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
            token,
            server_url=server_url,
            vm_id=vm_id(index),
        )
        for index in range(1, settings.agent_count + 1)
    ]

    pulumi.export("template", template.apply(lambda t: {"name": t.name, "version": t.version, "vmId": t.vm_id}))
    pulumi.export("serverUrl", server_url)
    pulumi.export("server", {"name": server.vm.name, "vmId": server.vm.vm_id})
    pulumi.export("agents", [{"name": agent.vm.name, "vmId": agent.vm.vm_id} for agent in agents])


main()
