"""The qemu build's documents: its spec on stdin, its result on stdout, and the manifest next to the file.

Like the proxmox-iso build's spec, nothing secret belongs in any of them: the
spec and result are stored in Pulumi state, the manifest travels with the file.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from homelab_images.contract.records import Record

ARTIFACT_MANIFEST_FILE = "manifest.json"
ARTIFACT_MANIFEST_SCHEMA = 1
SUPERSEDED_MARKER = "SUPERSEDED"
BUILT_BY = "homelab-images"


class ArtifactHardware(Record):
    """What a hypervisor that imports the file must give the VM for it to boot as built."""

    model_config = ConfigDict(alias_generator=to_camel)

    firmware: Literal["ovmf", "seabios"]
    machine: str
    cores: int
    memory_mib: int = Field(alias="memoryMiB")
    disk_bus: str
    disk_gib: int = Field(alias="diskGiB")


class ArtifactSpec(Record):
    image: str
    version: str
    template_name: str
    fingerprint: str
    fingerprint_parts: dict[str, str]
    file_name: str
    artifact_dir: str
    """As configured; a relative path starts at the runner's working directory (the project)."""
    iso_sha256: str
    k3s_version: str
    hardware: ArtifactHardware
    firmware_files: list[str]
    accelerator: Literal["kvm", "tcg"]
    builder: str
    """The Packer plugin and version that builds the file, recorded in the manifest."""
    retain_previous: int = Field(ge=0)
    timeout_minutes: int = Field(ge=1)
    packer_template: dict[str, Any]
    scripts: dict[str, str]

    @property
    def directory_name(self) -> str:
        """One directory per build: a rebuild of the same version never overwrites the file it replaces."""
        return f"{self.template_name}-{self.fingerprint[:12]}"


class ArtifactManifest(Record):
    """``manifest.json`` next to the qcow2: what it is, where it came from, how to check it."""

    model_config = ConfigDict(alias_generator=to_camel)

    schema_version: Literal[1] = Field(alias="schema")
    built_by: Literal["homelab-images"]
    image: str
    version: str
    fingerprint: str
    fingerprint_parts: dict[str, str]
    file: str
    format: Literal["qcow2"]
    size: int
    virtual_size: int
    sha256: str
    hardware: ArtifactHardware
    iso_sha256: str
    # to_camel would make it k3SVersion.
    k3s_version: str = Field(alias="k3sVersion")
    builder: str
    built_at: str
    source_commit: str | None

    @property
    def directory_name(self) -> str:
        """The directory the build puts the file in (``ArtifactSpec.directory_name``), renamed with a version bump."""
        return f"{self.image}-v{self.version}-{self.fingerprint[:12]}"


class ArtifactResult(Record):
    """The last line of the qemu build's stdout, exported per image as ``artifacts[name].qemu``."""

    model_config = ConfigDict(alias_generator=to_camel)

    image: str
    version: str
    fingerprint: str
    path: str
    """Absolute path of the qcow2 file on the machine that built it."""
    file: str
    size: int
    sha256: str
    manifest: str
    built_at: str
    source_commit: str | None
    retained: list[str] = Field(default_factory=list)
    """Paths of older qcow2 files of this image kept for rollback."""
