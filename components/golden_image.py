"""GoldenImage: the builds of one image and what they leave, wired together.

With proxmox-iso (or importFrom) the image has a Proxmox template: its build and
the template read back from Proxmox. With qemu it has a qcow2 file built on this
machine (QemuArtifact). An image built for qemu only declares nothing on Proxmox.

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
from homelab_images.contract.build_spec import BuildSpec
from homelab_images.core.packer_template import SCSI_CONTROLLER
from homelab_images.core.plan import ImagePlan, plan_for_node
from homelab_images.core.versioning import content_fingerprint, former_versions

OUTPUTS_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ProxmoxAccess:
    """Where and with which credentials the image's Proxmox template is built and read back."""

    endpoint: str
    api_token: pulumi.Output[str]
    owner_key: pulumi.Output[str]
    provider: pulumi.ProviderResource
    shared_storage: bool = False
    replica_nodes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GoldenImageArgs:
    plan: ImagePlan
    proxmox: ProxmoxAccess | None
    """Required when the image has a Proxmox template; None for an image built for qemu only."""
    isos: Mapping[str, IsoFile] = field(default_factory=dict)
    """The installer ISO on each node that builds the image; none when its template is imported (importFrom)."""
    lock_versions: Mapping[str, str] = field(default_factory=dict)
    """The version lock's records of this image's template (proxmox-iso): version -> content fingerprint."""


@dataclass(frozen=True)
class _NodeTemplate:
    build: PackerBuild
    template: ProxmoxTemplate


class GoldenImage(pulumi.ComponentResource):
    template: pulumi.Output[dict[str, Any]] | None
    """The ``templates`` output's entry; None for an image built for qemu only (no Proxmox resource at all)."""
    artifacts: pulumi.Output[dict[str, Any]] | None
    """The ``artifacts`` output's entry; None without the qemu target."""

    def __init__(self, name: str, args: GoldenImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("homelab:images:GoldenImage", name, None, opts)
        plan = args.plan
        outputs: dict[str, Any] = {}
        self.template = None
        if plan.build_spec is not None:
            if args.proxmox is None:
                raise ValueError(f"image {plan.name} has a Proxmox template but no Proxmox access was given")
            self.template = self._template(name, plan, plan.build_spec, args.proxmox, args)
            outputs["template"] = self.template
        self.artifacts = None
        if plan.qemu is not None:
            self.qemu = QemuArtifact(f"{name}-qemu", plan.qemu.spec, pulumi.ResourceOptions(parent=self))
            self.artifacts = self.qemu.result.apply(lambda result: {"qemu": artifact_output(result)})
            outputs["artifacts"] = self.artifacts
        self.register_outputs(outputs)

    def _template(
        self, name: str, plan: ImagePlan, spec: BuildSpec, proxmox: ProxmoxAccess, args: GoldenImageArgs
    ) -> pulumi.Output[dict[str, Any]]:
        # The build node's resources keep their names when replicas are added or removed.
        primary = self._build_on(name, plan, proxmox, args.isos)
        replicas = {
            node: self._build_on(f"{name}-{node}", plan_for_node(plan, node), proxmox, args.isos)
            for node in proxmox.replica_nodes
        }
        per_node = {spec.node: primary, **replicas} if replicas else {}
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
                shared=proxmox.shared_storage,
                nodes=nodes,
                lock_versions=args.lock_versions,
            )

        return pulumi.Output.all(
            primary.template.vm_id, primary.template.node, primary.template.name, primary.build.result, node_outputs
        ).apply(entry)

    def _build_on(
        self, name: str, plan: ImagePlan, proxmox: ProxmoxAccess, isos: Mapping[str, IsoFile]
    ) -> _NodeTemplate:
        spec = plan.template_build
        build = PackerBuild(
            f"{name}-build",
            PackerBuildArgs(
                spec=spec, endpoint=proxmox.endpoint, api_token=proxmox.api_token, owner_key=proxmox.owner_key
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[isos[spec.node]] if spec.node in isos else []),
        )
        template = ProxmoxTemplate(
            f"{name}-template",
            ProxmoxTemplateArgs(
                image=plan.name,
                fingerprint=plan.fingerprint,
                vm_id=build.vm_id,
                node=build.node,
                provider=proxmox.provider,
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
    storage = plan.template_build.vm_storage
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
