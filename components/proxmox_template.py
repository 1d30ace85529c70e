"""ProxmoxTemplate: the built template as Proxmox reports it.

pulumi-command has no read step, so a template deleted or changed by hand
would go unnoticed; reading it back through pulumi-proxmoxve makes the stack
outputs reflect Proxmox, and fails the update when the template is not what
the build said it made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_proxmoxve as proxmoxve

from homelab_images.contract.ownership import OWNER_TAG, Ownership, image_tag


@dataclass(frozen=True)
class ProxmoxTemplateArgs:
    image: str
    fingerprint: str
    vm_id: pulumi.Output[int]
    node: pulumi.Output[str]
    provider: pulumi.ProviderResource
    build: pulumi.Resource


class TemplateMismatch(Exception):
    """The VM at the build's vmId is not the template the build reported."""


def check_template(image: str, fingerprint: str, vm_id: int, found: Any) -> None:
    ownership = Ownership.of(list(found.tags or []))
    where = f"VM {vm_id} on node {found.node_name}"
    if not found.template:
        raise TemplateMismatch(f"{where} is not a template; it was changed outside this program")
    if not ownership.belongs_to(image):
        raise TemplateMismatch(f"{where} does not carry the tags {OWNER_TAG} and {image_tag(image)}")
    if not ownership.matches(fingerprint):
        raise TemplateMismatch(
            f"{where} was built from other content (fingerprint tag {ownership.fingerprint_prefix}); "
            "run `pulumi up --replace` on its PackerBuild"
        )


class ProxmoxTemplate(pulumi.ComponentResource):
    vm_id: pulumi.Output[int]
    node: pulumi.Output[str]
    name: pulumi.Output[str]
    tags: pulumi.Output[list[str]]

    def __init__(
        self,
        name: str,
        args: ProxmoxTemplateArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("homelab:images:ProxmoxTemplate", name, None, opts)
        found = proxmoxve.get_vm_output(
            id=args.vm_id,
            node_name=args.node,
            opts=pulumi.InvokeOutputOptions(parent=self, provider=args.provider, depends_on=[args.build]),
        )

        def verified(values: list[Any]) -> Any:
            vm_id, vm = values
            check_template(args.image, args.fingerprint, vm_id, vm)
            return vm

        vm = pulumi.Output.all(args.vm_id, found).apply(verified)
        self.vm_id = vm.apply(lambda v: int(v.id))
        self.node = vm.apply(lambda v: str(v.node_name))
        self.name = vm.apply(lambda v: str(v.name))
        self.tags = vm.apply(lambda v: list(v.tags or []))
        self.register_outputs(
            {
                "vmId": self.vm_id,
                "node": self.node,
                "name": self.name,
                "tags": self.tags,
            }
        )
