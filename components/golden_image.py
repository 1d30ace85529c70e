"""GoldenImage: the build and the template of one image, wired together.

The kickstart is rendered and checked by the plan before any resource is
declared (an invalid one stops the preview); it travels inside the build spec.

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
from components.packer_build import PackerBuild, PackerBuildArgs
from components.proxmox_template import ProxmoxTemplate, ProxmoxTemplateArgs
from components.qemu_artifact import QemuArtifact, artifact_output
from homelab_images.core.packer_template import SCSI_CONTROLLER
from homelab_images.core.plan import ImagePlan, plan_for_node
from homelab_images.core.versioning import content_fingerprint, former_versions

OUTPUTS_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class GoldenImageArgs:
    plan: ImagePlan
    isos: Mapping[str, IsoFile]
    """The installer ISO on each node that builds the image; none when its template is imported (importFrom)."""
    endpoint: str
    api_token: pulumi.Output[str]
    owner_key: pulumi.Output[str]
    provider: pulumi.ProviderResource
    shared_storage: bool = False
    replica_nodes: list[str] = field(default_factory=list)
    lock_versions: Mapping[str, str] = field(default_factory=dict)
    """This image's entry of the version lock: version -> content fingerprint."""


@dataclass(frozen=True)
class _NodeTemplate:
    build: PackerBuild
    template: ProxmoxTemplate


class GoldenImage(pulumi.ComponentResource):
    template: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: GoldenImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("homelab:images:GoldenImage", name, None, opts)
        plan = args.plan
        # The build node's resources keep their names when replicas are added or removed.
        primary = self._build_on(name, plan, args)
        replicas = {
            node: self._build_on(f"{name}-{node}", plan_for_node(plan, node), args) for node in args.replica_nodes
        }
        self.build = primary.build
        self.proxmox_template = primary.template
        per_node = {plan.build_spec.node: primary, **replicas} if replicas else {}
        node_outputs = pulumi.Output.all(
            *(
                pulumi.Output.all(node, copy.template.vm_id, copy.template.name, copy.build.result)
                for node, copy in per_node.items()
            )
        )

        def entry(values: list[Any]) -> dict[str, Any]:
            vm_id, node, template_name, result, copies = values
            nodes = {
                copy_node: NodeCopy(copy_vm_id, copy_name, copy_result)
                for copy_node, copy_vm_id, copy_name, copy_result in copies
            }
            return template_output(
                plan,
                vm_id,
                node,
                template_name,
                result,
                shared=args.shared_storage,
                nodes=nodes,
                lock_versions=args.lock_versions,
            )

        self.template = pulumi.Output.all(
            primary.template.vm_id, primary.template.node, primary.template.name, primary.build.result, node_outputs
        ).apply(entry)
        outputs: dict[str, Any] = {"template": self.template}
        self.artifacts: pulumi.Output[dict[str, Any]] | None = None
        if plan.qemu is not None:
            self.qemu = QemuArtifact(f"{name}-qemu", plan.qemu.spec, pulumi.ResourceOptions(parent=self))
            self.artifacts = self.qemu.result.apply(lambda result: {"qemu": artifact_output(result)})
            outputs["artifacts"] = self.artifacts
        self.register_outputs(outputs)

    def _build_on(self, name: str, plan: ImagePlan, args: GoldenImageArgs) -> _NodeTemplate:
        node = plan.build_spec.node
        build = PackerBuild(
            f"{name}-build",
            PackerBuildArgs(
                spec=plan.build_spec, endpoint=args.endpoint, api_token=args.api_token, owner_key=args.owner_key
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[args.isos[node]] if node in args.isos else []),
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


@dataclass(frozen=True)
class NodeCopy:
    """The image's template on one node of ``replicaNodes`` (the build node included)."""

    vm_id: int
    name: str
    result: Mapping[str, Any]


def template_output(
    plan: ImagePlan,
    vm_id: int,
    node: str,
    name: str,
    result: Mapping[str, Any],
    shared: bool = False,
    nodes: Mapping[str, NodeCopy] | None = None,
    lock_versions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One entry of the ``templates`` stack output (docs/outputs-contract.md)."""
    hardware = plan.image.hardware
    storage = plan.build_spec.vm_storage
    lock = lock_versions or {}
    content = content_fingerprint(plan.fingerprint_parts)
    entry: dict[str, Any] = {
        "vmId": vm_id,
        "node": node,
        "name": name,
        "version": plan.image.version,
        "formerVersions": former_versions(lock, plan.image.version, content),
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
        "retained": _retained(result, node, lock),
        "smoke": result.get("smoke"),
    }
    if nodes:
        entry["nodes"] = {
            node_name: {
                "vmId": copy.vm_id,
                "name": copy.name,
                "storage": storage,
                "builtAt": copy.result.get("builtAt"),
                "retained": _retained(copy.result, node_name, lock),
            }
            for node_name, copy in nodes.items()
        }
    return entry


def _retained(result: Mapping[str, Any], node: str, lock: Mapping[str, str]) -> list[dict[str, Any]]:
    """A build's retained templates, each with its node and the version labels it carried before."""
    retained = []
    for old in result.get("retained") or []:
        # Results written before retained entries carried a node kept that build's own node's templates only.
        entry = {**old, "node": old.get("node") or node}
        entry["formerVersions"] = former_versions(lock, old.get("version"))
        retained.append(entry)
    return retained
