"""GoldenImage: kickstart, build and template of one image, wired together.

Without shared storage a template can only be cloned on its own node, so the
image may be built once per node (``replicaNodes``); every copy has the same
fingerprint and its own VM ID.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.iso_file import IsoFile
from components.kickstart_file import KickstartFile, KickstartFileArgs
from components.packer_build import PackerBuild, PackerBuildArgs
from components.proxmox_template import ProxmoxTemplate, ProxmoxTemplateArgs
from homelab_images.core.packer_template import SCSI_CONTROLLER
from homelab_images.core.plan import ImagePlan, plan_for_node

OUTPUTS_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class GoldenImageArgs:
    plan: ImagePlan
    isos: Mapping[str, IsoFile]
    """The installer ISO on each node that builds the image."""
    endpoint: str
    api_token: pulumi.Output[str]
    insecure: bool
    provider: pulumi.ProviderResource
    shared_storage: bool = False
    replica_nodes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _NodeTemplate:
    build: PackerBuild
    template: ProxmoxTemplate


class GoldenImage(pulumi.ComponentResource):
    template: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: GoldenImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("homelab:images:GoldenImage", name, None, opts)
        plan = args.plan
        self.kickstart = KickstartFile(
            f"{name}-kickstart", KickstartFileArgs(text=plan.kickstart), pulumi.ResourceOptions(parent=self)
        )
        # The build node's resources keep their names when replicas are added or removed.
        primary = self._build_on(name, plan, args)
        replicas = {
            node: self._build_on(f"{name}-{node}", plan_for_node(plan, node), args) for node in args.replica_nodes
        }
        self.build = primary.build
        self.proxmox_template = primary.template
        per_node = {plan.build_spec.node: primary, **replicas} if replicas else {}
        node_outputs = pulumi.Output.all(
            *(pulumi.Output.all(node, copy.template.vm_id, copy.template.name) for node, copy in per_node.items())
        )

        def entry(values: list[Any]) -> dict[str, Any]:
            vm_id, node, template_name, result, copies = values
            nodes = {copy_node: (copy_vm_id, copy_name) for copy_node, copy_vm_id, copy_name in copies}
            return template_output(plan, vm_id, node, template_name, result, shared=args.shared_storage, nodes=nodes)

        self.template = pulumi.Output.all(
            primary.template.vm_id, primary.template.node, primary.template.name, primary.build.result, node_outputs
        ).apply(entry)
        self.register_outputs({"template": self.template})

    def _build_on(self, name: str, plan: ImagePlan, args: GoldenImageArgs) -> _NodeTemplate:
        node = plan.build_spec.node
        build = PackerBuild(
            f"{name}-build",
            PackerBuildArgs(
                spec=plan.build_spec, endpoint=args.endpoint, api_token=args.api_token, insecure=args.insecure
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[args.isos[node], self.kickstart]),
        )
        template = ProxmoxTemplate(
            f"{name}-template",
            ProxmoxTemplateArgs(
                image=plan.name,
                fingerprint=plan.fingerprint,
                vm_id=build.vm_id,
                node=build.node,
                provider=args.provider,
                build=build.command,
            ),
            pulumi.ResourceOptions(parent=self),
        )
        return _NodeTemplate(build, template)


def template_output(
    plan: ImagePlan,
    vm_id: int,
    node: str,
    name: str,
    result: dict[str, Any],
    shared: bool = False,
    nodes: Mapping[str, tuple[int, str]] | None = None,
) -> dict[str, Any]:
    """One entry of the ``templates`` stack output (docs/outputs-contract.md)."""
    hardware = plan.image.hardware
    storage = plan.build_spec.vm_storage
    entry: dict[str, Any] = {
        "vmId": vm_id,
        "node": node,
        "name": name,
        "version": plan.image.version,
        "fingerprint": plan.fingerprint,
        "storage": storage,
        "shared": shared,
        "firmware": hardware.firmware,
        "machine": hardware.machine,
        "diskBus": hardware.disk_bus,
        "scsiController": SCSI_CONTROLLER,
        "cloudInit": True,
        "k3sVersion": plan.image.k3s.version,
        "builtAt": result.get("builtAt"),
        "retained": list(result.get("retained", [])),
    }
    if nodes:
        entry["nodes"] = {
            node_name: {"vmId": node_vm_id, "name": node_template, "storage": storage}
            for node_name, (node_vm_id, node_template) in nodes.items()
        }
    return entry
