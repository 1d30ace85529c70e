"""homelab-images: golden AlmaLinux 9 + k3s VM templates on Proxmox VE.

stack config -> per image: kickstart, ISO on Proxmox storage, Packer build,
template read back from Proxmox -> ``templates`` stack output.
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

# One download per ISO file, however many images boot from it.
iso_sources = {plan.image.iso.file_name: plan.image.iso for plan in settings.plans}
isos = {
    file_name: IsoFile(
        f"iso-{file_name}",
        IsoFileArgs(
            node=config.proxmox.node,
            storage=config.proxmox.iso_storage,
            url=iso.url,
            sha256=iso.sha256,
            file_name=file_name,
        ),
        provider_opts,
    )
    for file_name, iso in iso_sources.items()
}

images = {
    plan.name: GoldenImage(
        plan.name,
        GoldenImageArgs(
            plan=plan,
            iso=isos[plan.image.iso.file_name],
            endpoint=config.endpoint,
            api_token=settings.api_token,
            insecure=config.insecure,
            provider=provider,
        ),
        provider_opts,
    )
    for plan in settings.plans
}

pulumi.export("schemaVersion", OUTPUTS_SCHEMA_VERSION)
pulumi.export("templates", {name: image.template for name, image in images.items()})
