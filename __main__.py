"""homelab-images: golden AlmaLinux 9 + k3s VM templates on Proxmox VE.

stack config -> per image: kickstart, ISO on Proxmox storage, Packer build,
template read back from Proxmox -> ``templates`` stack output; with the qemu
target also a qcow2 file built on this machine -> ``artifacts`` stack output.
An image built for qemu only declares nothing on Proxmox.
"""

import pulumi
import pulumi_proxmoxve as proxmoxve

from components.golden_image import OUTPUTS_SCHEMA_VERSION, GoldenImage, GoldenImageArgs, ProxmoxAccess
from components.iso_file import IsoFile, IsoFileArgs
from components.program import load_program_settings
from homelab_images.core.versioning import target_versions

settings = load_program_settings()
config = settings.config

# Without an image that has a Proxmox template the program needs no token and declares no provider.
proxmox = None
isos: dict[tuple[str, str], IsoFile] = {}
if settings.api_token is not None and settings.owner_key is not None:
    provider = proxmoxve.Provider(
        "proxmoxve",
        endpoint=config.endpoint,
        api_token=settings.api_token,
        insecure=config.insecure,
    )
    proxmox = ProxmoxAccess(
        endpoint=config.endpoint,
        api_token=settings.api_token,
        owner_key=settings.owner_key,
        provider=provider,
        shared_storage=config.proxmox.shared_storage,
        replica_nodes=config.proxmox.replica_nodes,
    )
    # One download per ISO file and node, however many images boot from it; an imported image boots from none.
    iso_sources = {plan.image.iso.file_name: plan.image.iso for plan in settings.plans if plan.installs_on_proxmox}
    isos = {
        (file_name, node): IsoFile(
            f"iso-{file_name}" if node == config.proxmox.node else f"iso-{file_name}-{node}",
            IsoFileArgs(
                node=node, storage=config.proxmox.iso_storage, url=iso.url, sha256=iso.sha256, file_name=file_name
            ),
            pulumi.ResourceOptions(provider=provider),
        )
        for file_name, iso in iso_sources.items()
        for node in config.proxmox.template_nodes
    }

images = {
    plan.name: GoldenImage(
        plan.name,
        GoldenImageArgs(
            plan=plan,
            proxmox=proxmox if plan.build_spec is not None else None,
            isos={node: isos[(plan.image.iso.file_name, node)] for node in config.proxmox.template_nodes}
            if plan.installs_on_proxmox
            else {},
            lock_versions=target_versions(settings.lock, plan.name),
        ),
        pulumi.ResourceOptions(provider=proxmox.provider) if proxmox is not None else None,
    )
    for plan in settings.plans
}

pulumi.export("schemaVersion", OUTPUTS_SCHEMA_VERSION)
# Images with a Proxmox template; one built for qemu only is in artifacts alone.
pulumi.export("templates", {name: image.template for name, image in images.items() if image.template is not None})
# Images whose targets include qemu: per target, the file that was built.
pulumi.export("artifacts", {name: image.artifacts for name, image in images.items() if image.artifacts is not None})
