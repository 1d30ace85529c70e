"""What gc needs from the stack config, handed from the CLI to the runner's gc as data.

The runner never reads the stack config itself (it does not import the core),
so the CLI passes these facts: where Proxmox is, how to trust it, which images
keep how many superseded templates, and where the qemu target leaves its files.
"""

from __future__ import annotations

from pydantic import Field

from homelab_images.contract.build_spec import IdRange
from homelab_images.contract.records import Record


class ArtifactImage(Record):
    """An image built with the qemu target."""

    name: str
    # Its qemu fingerprint as the stack config plans it now; None when the image could not be planned.
    fingerprint: str | None


class ArtifactGc(Record):
    """The qemu target's files: ``artifact_dir/<image>/<build>/`` (homelab_images.runner.artifacts)."""

    # As configured (build.artifactDir): absolute, or relative to ``GcRequest.project_dir``,
    # where the program's qemu Command runs.
    artifact_dir: str
    images: list[ArtifactImage]
    retain_previous: int = Field(ge=0)


class GcRequest(Record):
    endpoint: str
    # Absolute, or relative to ``project_dir``, as in the stack config.
    ca_bundle: str | None
    insecure: bool
    project_dir: str
    # The images built with the proxmox-iso target (their templates are retained per image).
    images: list[str]
    retain_previous: int = Field(ge=0)
    # gc considers only VMs in this range, and only those the stack's owner key proves its own.
    vm_id_range: IdRange
    artifacts: ArtifactGc
