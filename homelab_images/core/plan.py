"""Everything about one image that can be known without touching Proxmox.

The Pulumi program and the offline CLI both start here, so a preview and
``homelab-images render`` always agree on the artifacts and fingerprint.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from homelab_images.contract.artifact import ArtifactHardware, ArtifactSpec
from homelab_images.contract.build_spec import BuildSpec, IdRange, ImportSource
from homelab_images.contract.fingerprint_parts import IMPORT_PART_NAMES, SHARED_PART_NAMES, TARGET_PART_NAMES
from homelab_images.contract.ownership import build_tags, packer_tags
from homelab_images.contract.packer_files import (
    VAR_DESCRIPTION,
    VAR_PRIVATE_KEY_FILE,
    VAR_PUBLIC_KEY,
    VAR_TAGS,
    VAR_VM_ID,
    proxmox_sources,
)
from homelab_images.contract.qemu_plugin import PLUGIN_SOURCE as QEMU_PLUGIN_SOURCE
from homelab_images.contract.qemu_plugin import PLUGIN_VERSION as QEMU_PLUGIN_VERSION
from homelab_images.core.config import TEMPLATE_TARGET, Image, StackConfig
from homelab_images.core.fingerprint import combine, fingerprint_parts, import_parts, qemu_parts, shared_parts
from homelab_images.core.kickstart import (
    BUILD_KEY_PLACEHOLDER,
    KickstartInvalid,
    render_kickstart,
    validate_kickstart,
)
from homelab_images.core.packer_template import (
    PROVISIONING_SCRIPTS,
    SCSI_CONTROLLER,
    build_affecting_parts,
    iso_volume,
    render_packer_template,
)
from homelab_images.core.paths import KICKSTART_DIR
from homelab_images.core.qemu_template import artifact_file_name, qemu_fingerprint_inputs, render_qemu_template


def provisioning_scripts(directory: Path) -> dict[str, str]:
    scripts = {}
    for name in PROVISIONING_SCRIPTS:
        try:
            scripts[name] = (directory / name).read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise KickstartInvalid(
                f"{directory / name}: not UTF-8 text (byte {error.start}); save it as UTF-8"
            ) from None
    return scripts


@dataclass(frozen=True)
class QemuPlan:
    """The image's qemu target: the qemu build command's spec carries its template and fingerprint."""

    spec: ArtifactSpec

    @property
    def template(self) -> dict[str, Any]:
        return self.spec.packer_template

    @property
    def fingerprint_parts(self) -> dict[str, str]:
        return self.spec.fingerprint_parts

    @property
    def fingerprint(self) -> str:
        return self.spec.fingerprint


class TargetFingerprint(NamedTuple):
    fingerprint: str
    parts: dict[str, str]


class NoTemplateTarget(ValueError):
    """The image is built for qemu only: it has no Proxmox template, so no proxmox-iso build."""


@dataclass(frozen=True)
class ImagePlan:
    """An image's config, its rendered kickstart and the build specs of its targets."""

    image: Image
    kickstart: str
    build_spec: BuildSpec | None
    """The proxmox-iso build (or the import of ``importFrom``) that makes the Proxmox template;
    None for an image built for qemu only."""
    qemu: QemuPlan | None = None
    """The qemu target, when the image lists it."""

    @property
    def targets(self) -> dict[str, TargetFingerprint]:
        """Per target of the image, its fingerprint and parts; the template's target first."""
        targets: dict[str, TargetFingerprint] = {}
        if self.build_spec is not None:
            targets[TEMPLATE_TARGET] = TargetFingerprint(self.build_spec.fingerprint, self.build_spec.fingerprint_parts)
        if self.qemu is not None:
            targets["qemu"] = TargetFingerprint(self.qemu.fingerprint, self.qemu.fingerprint_parts)
        return targets

    @property
    def imported(self) -> bool:
        """The Proxmox template is imported from a qcow2 (``importFrom``), not built."""
        return self.build_spec is not None and self.build_spec.import_from is not None

    @property
    def shared_fingerprint_parts(self) -> dict[str, str]:
        """The parts every built target shares (the same in each target's fingerprint); none for an
        imported template, which is built from none of them."""
        if self.imported:
            return {}
        _, parts = next(iter(self.targets.values()))
        return {name: digest for name, digest in parts.items() if name in SHARED_PART_NAMES}

    def own_fingerprint_parts(self, target: str) -> dict[str, str]:
        """The parts of one target that are its own: all of an imported template's."""
        _, parts = self.targets[target]
        names = IMPORT_PART_NAMES if self.imported and target == TEMPLATE_TARGET else TARGET_PART_NAMES[target]
        return {name: digest for name, digest in parts.items() if name in names}

    @property
    def name(self) -> str:
        return self.image.name

    @property
    def installs_on_proxmox(self) -> bool:
        """Proxmox boots the image's installer ISO: a proxmox-iso build (not an importFrom import)."""
        return self.build_spec is not None and not self.imported

    @property
    def template_build(self) -> BuildSpec:
        """The build spec of the Proxmox template; only for an image that has one."""
        if self.build_spec is None:
            raise NoTemplateTarget(f"image {self.name} is built for qemu only: it has no Proxmox template")
        return self.build_spec

    @property
    def packer_template(self) -> dict[str, Any]:
        return self.template_build.packer_template

    @property
    def scripts(self) -> dict[str, str]:
        if self.build_spec is None and self.qemu is not None:
            return self.qemu.spec.scripts
        return self.template_build.scripts

    @property
    def fingerprint_parts(self) -> dict[str, str]:
        """The proxmox-iso target's."""
        return self.template_build.fingerprint_parts

    @property
    def fingerprint(self) -> str:
        """The proxmox-iso target's: the one the template carries."""
        return self.template_build.fingerprint


def plan_image(config: StackConfig, image: Image, now: datetime, kickstart_dir: Path = KICKSTART_DIR) -> ImagePlan:
    """Render and validate the kickstart and Packer template, and fingerprint the image.

    Raises KickstartInvalid when the rendered kickstart is rejected.
    """
    kickstart = render_kickstart(image, template_dir=kickstart_dir)
    validate_kickstart(kickstart)
    scripts = provisioning_scripts(kickstart_dir / "scripts")
    spec = template_build_spec(config, image, kickstart, scripts, now) if image.has_template else None
    qemu = None
    if "qemu" in image.targets:
        inputs = qemu_fingerprint_inputs(image, config.build)
        qemu_fingerprint_parts = {
            **shared_parts(image, kickstart, scripts, now),
            **qemu_parts(inputs.builder, QEMU_PLUGIN_VERSION, inputs.firmware, inputs.disk_format),
        }
        qemu_fingerprint = combine(qemu_fingerprint_parts)
        qemu_template = render_qemu_template(image, config.build, kickstart)
        qemu = QemuPlan(artifact_spec(config, image, qemu_fingerprint, qemu_fingerprint_parts, qemu_template, scripts))
    return ImagePlan(image, kickstart, spec, qemu)


def template_build_spec(
    config: StackConfig, image: Image, kickstart: str, scripts: dict[str, str], now: datetime
) -> BuildSpec:
    """The runner's spec for the image's Proxmox template: a proxmox-iso build, or the import of importFrom."""
    template = render_packer_template(image, config.proxmox, config.build, kickstart, config.insecure)
    import_from = import_source(image)
    if import_from is None:
        parts = fingerprint_parts(
            image,
            kickstart,
            build_affecting_parts(image),
            scripts,
            config.build.packer_plugin_version,
            now,
        )
    else:
        parts = import_parts(import_from.sha256, import_from.model_dump(exclude=IMPORT_FILE_FIELDS), image.k3s.version)
    return BuildSpec(
        image=image.name,
        version=image.version,
        template_name=image.template_name,
        fingerprint=combine(parts),
        fingerprint_parts=parts,
        node=config.proxmox.node,
        vm_storage=config.proxmox.vm_storage,
        iso_storage=config.proxmox.iso_storage,
        iso_volume=iso_volume(config.proxmox, image),
        iso_sha256=image.iso.sha256,
        k3s_version=image.k3s.version,
        bridge=config.proxmox.bridge,
        vm_id_range=IdRange(first=config.proxmox.vm_id_range.first, last=config.proxmox.vm_id_range.last),
        retain_previous=config.build.retain_previous,
        timeout_minutes=config.build.timeout_minutes,
        insecure=config.insecure,
        ca_bundle=config.proxmox.ca_bundle,
        kickstart_delivery=config.build.kickstart_delivery,
        install_repositories=list(image.install_repositories.values()),
        packer_template=template,
        scripts=scripts,
        smoke_test=config.build.smoke_test,
        smoke_timeout_minutes=config.build.smoke_timeout_minutes,
        keep_failed_templates=config.build.keep_failed_templates,
        import_from=import_from,
    )


# What of an ImportSource names the file; the rest is what the import sets on the VM (runner.artifact_import).
IMPORT_FILE_FIELDS = {"url", "path", "sha256", "file_name"}


def import_source(image: Image) -> ImportSource | None:
    """The runner's view of ``importFrom``: the file, and the hardware of ``images[].hardware`` it gives the VM."""
    if image.import_from is None:
        return None
    hardware = image.hardware
    return ImportSource(
        url=image.import_from.url,
        path=image.import_from.path,
        sha256=image.import_from.sha256,
        file_name=f"{image.template_name}-{image.import_from.sha256[:12]}.qcow2",
        firmware=hardware.firmware,
        machine=hardware.machine,
        cpu_type=hardware.cpu_type,
        cores=hardware.cores,
        memory_mib=hardware.memory_mib,
        disk_bus=hardware.disk_bus,
        scsi_controller=SCSI_CONTROLLER,
    )


def packer_variables(spec: BuildSpec) -> dict[str, Any]:
    """The values the runner gives the template's variables (its VM ID: the range's first)."""
    return {
        VAR_VM_ID: spec.vm_id_range.first,
        VAR_TAGS: packer_tags(build_tags(spec.image, spec.version, spec.fingerprint)),
        VAR_DESCRIPTION: f"Golden image {spec.image} v{spec.version}",
        VAR_PUBLIC_KEY: BUILD_KEY_PLACEHOLDER,
        VAR_PRIVATE_KEY_FILE: "build_ssh_key",
    }


def artifact_spec(
    config: StackConfig,
    image: Image,
    fingerprint: str,
    parts: dict[str, str],
    template: dict[str, Any],
    scripts: dict[str, str],
) -> ArtifactSpec:
    """The qemu build command's stdin."""
    hardware = image.hardware
    qemu = config.build.qemu
    return ArtifactSpec(
        image=image.name,
        version=image.version,
        template_name=image.template_name,
        fingerprint=fingerprint,
        fingerprint_parts=parts,
        file_name=artifact_file_name(image),
        artifact_dir=config.build.artifact_dir,
        iso_sha256=image.iso.sha256,
        k3s_version=image.k3s.version,
        hardware=ArtifactHardware(
            firmware=hardware.firmware,
            machine=hardware.machine,
            cores=hardware.cores,
            memoryMiB=hardware.memory_mib,
            disk_bus=hardware.disk_bus,
            diskGiB=hardware.disk_gib,
        ),
        firmware_files=[qemu.ovmf_code, qemu.ovmf_vars] if hardware.firmware == "ovmf" else [],
        accelerator=qemu.accelerator,
        builder=f"{QEMU_PLUGIN_SOURCE} {QEMU_PLUGIN_VERSION}",
        retain_previous=config.build.retain_previous,
        timeout_minutes=config.build.timeout_minutes,
        packer_template=template,
        scripts=scripts,
    )


def plan_stack(config: StackConfig, now: datetime, kickstart_dir: Path = KICKSTART_DIR) -> list[ImagePlan]:
    return [plan_image(config, image, now, kickstart_dir) for image in config.images]


def plan_for_node(plan: ImagePlan, node: str) -> ImagePlan:
    """The same image built on another node: same fingerprint, its own build spec."""
    template = copy.deepcopy(plan.packer_template)
    for source in proxmox_sources(template).values():
        source["node"] = node
    spec = plan.template_build.replace(node=node, packer_template=template)
    return dataclasses.replace(plan, build_spec=spec)
