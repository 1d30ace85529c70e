"""GoldenImage: kickstart, build and template of one image, wired together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.iso_file import IsoFile
from components.kickstart_file import KickstartFile, KickstartFileArgs
from components.packer_build import PackerBuild, PackerBuildArgs
from components.plan import ImagePlan
from components.proxmox_template import ProxmoxTemplate, ProxmoxTemplateArgs

OUTPUTS_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class GoldenImageArgs:
    plan: ImagePlan
    iso: IsoFile
    endpoint: str
    api_token: pulumi.Output[str]
    insecure: bool
    provider: pulumi.ProviderResource


class GoldenImage(pulumi.ComponentResource):
    template: pulumi.Output[dict[str, Any]]

    def __init__(
        self,
        name: str,
        args: GoldenImageArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("homelab:images:GoldenImage", name, None, opts)
        plan = args.plan
        child = pulumi.ResourceOptions(parent=self)
        self.kickstart = KickstartFile(f"{name}-kickstart", KickstartFileArgs(text=plan.kickstart), child)
        self.build = PackerBuild(
            f"{name}-build",
            PackerBuildArgs(
                spec=plan.build_spec,
                endpoint=args.endpoint,
                api_token=args.api_token,
                insecure=args.insecure,
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[args.iso, self.kickstart]),
        )
        self.proxmox_template = ProxmoxTemplate(
            f"{name}-template",
            ProxmoxTemplateArgs(
                image=plan.name,
                fingerprint=plan.fingerprint,
                vm_id=self.build.vm_id,
                node=self.build.node,
                provider=args.provider,
                build=self.build.command,
            ),
            child,
        )
        self.template = pulumi.Output.all(
            self.proxmox_template.vm_id,
            self.proxmox_template.node,
            self.proxmox_template.name,
            self.build.result,
        ).apply(lambda values: template_output(plan, *values))
        self.register_outputs({"template": self.template})


def template_output(plan: ImagePlan, vm_id: int, node: str, name: str, result: dict[str, Any]) -> dict[str, Any]:
    """One entry of the ``templates`` stack output (see README, "Stack outputs")."""
    hardware = plan.image.hardware
    return {
        "vmId": vm_id,
        "node": node,
        "name": name,
        "version": plan.image.version,
        "fingerprint": plan.fingerprint,
        "storage": plan.build_spec.vm_storage,
        "firmware": hardware.firmware,
        "machine": hardware.machine,
        "diskBus": hardware.disk_bus,
        "cloudInit": True,
        "k3sVersion": plan.image.k3s.version,
        "builtAt": result.get("builtAt"),
        "retained": list(result.get("retained", [])),
    }
