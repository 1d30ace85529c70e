"""ProxmoxTemplate: the built template as Proxmox reports it.

pulumi-command has no read step, so a template deleted or changed by hand
would go unnoticed; reading it back through pulumi-proxmoxve makes the stack
outputs reflect Proxmox, and fails ``pulumi up`` with the command that rebuilds
it when the template is gone or not what the build said it made.
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


class TemplateMismatch(pulumi.RunError):
    """The VM at the build's vmId is not the template the build reported."""


class TemplateMissing(pulumi.RunError):
    """The template the build reported is gone from its node."""


def replace_hint(urn: str) -> str:
    return f"build it again with `pulumi up --replace '{urn}'`"


def find_template(image: str, fingerprint: str, vm_id: int, node: str, build_urn: str, listing: Any) -> Any:
    """The build's template among the VMs Proxmox lists on its node, checked; a clear error otherwise."""
    found = next((vm for vm in listing.vms or [] if int(vm.vm_id) == vm_id), None)
    if found is None:
        raise TemplateMissing(
            f"template VM {vm_id} of image {image} no longer exists on node {node} "
            f"(deleted outside this program); {replace_hint(build_urn)}"
        )
    check_template(image, fingerprint, vm_id, found, build_urn)
    return found


def check_template(image: str, fingerprint: str, vm_id: int, found: Any, build_urn: str) -> None:
    ownership = Ownership.of(list(found.tags or []))
    where = f"VM {vm_id} on node {found.node_name}"
    if not found.template:
        raise TemplateMismatch(
            f"{where} is not a template; it was changed outside this program; {replace_hint(build_urn)}"
        )
    if not ownership.belongs_to(image):
        raise TemplateMismatch(
            f"{where} does not carry the tags {OWNER_TAG} and {image_tag(image)}; {replace_hint(build_urn)}"
        )
    if not ownership.matches(fingerprint):
        raise TemplateMismatch(
            f"{where} was built from other content (fingerprint tag {ownership.fingerprint_prefix}); "
            f"{replace_hint(build_urn)}"
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
        # The VM list of the node, not getVm: a template deleted by hand is then a
        # clear error naming the build to replace, not the provider's "VM not found".
        # In the first preview the build's node is unknown and the invoke is skipped.
        listing = proxmoxve.get_vms_legacy_output(
            node_name=args.node,
            opts=pulumi.InvokeOutputOptions(parent=self, provider=args.provider, depends_on=[args.build]),
        )

        def verified(values: list[Any]) -> Any:
            vm_id, node, build_urn, found = values
            return find_template(args.image, args.fingerprint, vm_id, node, build_urn, found)

        vm = pulumi.Output.all(args.vm_id, args.node, args.build.urn, listing).apply(verified)
        self.vm_id = vm.apply(lambda v: int(v.vm_id))
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
