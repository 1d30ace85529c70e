"""homelab-images: golden AlmaLinux 9 + k3s VM templates on Proxmox VE.

stack config -> per image: kickstart, ISO on Proxmox storage, Packer build,
template read back from Proxmox -> ``templates`` stack output; with the qemu
target also a qcow2 file built on this machine -> ``artifacts`` stack output.
"""

import pulumi
import pulumi_proxmoxve as proxmoxve

from components.golden_image import OUTPUTS_SCHEMA_VERSION, GoldenImage, GoldenImageArgs
from components.iso_file import IsoFile, IsoFileArgs
from components.program import load_program_settings

settings = load_program_settings()
config = settings.config

provider = proxmoxve.Provider(
    "proxmoxve",
    endpoint=config.endpoint,
    api_token=settings.api_token,
    insecure=config.insecure,
)
provider_opts = pulumi.ResourceOptions(provider=provider)

# One download per ISO file and node, however many images boot from it; an imported image boots from none.
installed = [plan for plan in settings.plans if plan.image.import_from is None]
iso_sources = {plan.image.iso.file_name: plan.image.iso for plan in installed}
isos = {
    (file_name, node): IsoFile(
        f"iso-{file_name}" if node == config.proxmox.node else f"iso-{file_name}-{node}",
        IsoFileArgs(node=node, storage=config.proxmox.iso_storage, url=iso.url, sha256=iso.sha256, file_name=file_name),
        provider_opts,
    )
    for file_name, iso in iso_sources.items()
    for node in config.proxmox.template_nodes
}

images = {
    plan.name: GoldenImage(
        plan.name,
        GoldenImageArgs(
            plan=plan,
            isos={node: isos[(plan.image.iso.file_name, node)] for node in config.proxmox.template_nodes}
            if plan.image.import_from is None
            else {},
            endpoint=config.endpoint,
            api_token=settings.api_token,
            owner_key=settings.owner_key,
            provider=provider,
            shared_storage=config.proxmox.shared_storage,
            replica_nodes=config.proxmox.replica_nodes,
            lock_versions=settings.lock.get(plan.name, {}),
        ),
        provider_opts,
    )
    for plan in settings.plans
}

pulumi.export("schemaVersion", OUTPUTS_SCHEMA_VERSION)
pulumi.export("templates", {name: image.template for name, image in images.items()})
# Images whose targets include qemu: per target, the file that was built.
pulumi.export("artifacts", {name: image.artifacts for name, image in images.items() if image.artifacts is not None})
