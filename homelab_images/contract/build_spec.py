"""What the runner needs to know, passed to it on stdin as JSON.

Nothing secret belongs here: the spec is stored in Pulumi state and shown in
diffs. Credentials reach the runner through its environment only.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from homelab_images.contract.records import Record


class IdRange(Record):
    """VM IDs the build may use (validated in the stack config)."""

    first: int
    last: int

    @model_validator(mode="after")
    def _ordered(self) -> IdRange:
        if self.last < self.first:
            raise ValueError("last is below first")
        return self


class ImportSource(Record):
    """A qcow2 built by the qemu target: the template is imported from it instead of installed.

    Exactly one of ``url`` (the node downloads it) and ``path`` (the runner uploads it from this
    machine; relative to the project directory, the runner's working directory) is set.
    """

    url: str | None = None
    path: str | None = None
    sha256: str
    file_name: str
    """Its name on the storage (content ``import``); it carries the checksum, so one name is one content."""
    firmware: str
    machine: str
    cpu_type: str
    cores: int = Field(ge=1)
    memory_mib: int = Field(ge=1)
    disk_bus: str
    scsi_controller: str

    @model_validator(mode="after")
    def _one_source(self) -> ImportSource:
        if (self.url is None) == (self.path is None):
            raise ValueError("exactly one of url and path is set")
        return self


class BuildSpec(Record):
    image: str
    version: str
    template_name: str
    fingerprint: str
    fingerprint_parts: dict[str, str]
    node: str
    vm_storage: str
    iso_storage: str
    iso_volume: str
    iso_sha256: str
    k3s_version: str
    bridge: str
    vm_id_range: IdRange
    retain_previous: int = Field(ge=0)
    timeout_minutes: int = Field(ge=1)
    insecure: bool
    ca_bundle: str | None
    kickstart_delivery: str
    # Base URLs of the package repositories the installer uses; empty when it installs from the ISO.
    install_repositories: list[str] = Field(default_factory=list)
    packer_template: dict[str, Any]
    scripts: dict[str, str]
    # Defaults keep a spec stored before these settings existed readable (delete runs with the old stdin).
    smoke_test: bool = True
    smoke_timeout_minutes: int = Field(default=15, ge=1)
    keep_failed_templates: bool = False
    # Set: the template is imported from this file instead of built by Packer.
    import_from: ImportSource | None = None
