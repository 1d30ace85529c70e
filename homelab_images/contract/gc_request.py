"""What gc needs from the stack config, handed from the CLI to the runner's gc as data.

The runner never reads the stack config itself (it does not import the core),
so the CLI passes these facts: where Proxmox is, how to trust it, and which
images keep how many superseded templates.
"""

from __future__ import annotations

from pydantic import Field

from homelab_images.contract.build_spec import IdRange
from homelab_images.contract.records import Record


class GcRequest(Record):
    endpoint: str
    # Absolute, or relative to ``project_dir``, as in the stack config.
    ca_bundle: str | None
    insecure: bool
    project_dir: str
    images: list[str]
    retain_previous: int = Field(ge=0)
    # gc considers only VMs in this range, and only those the stack's owner key proves its own.
    vm_id_range: IdRange
