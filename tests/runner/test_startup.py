"""What the runners import before they read stdin: every pulumi-command create, update and delete pays it.

One fresh interpreter, as pulumi-command starts one: the qemu build first (it must not load the Proxmox
client), then the proxmox-iso runner with its create path (it must not load the renderer's libraries).
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.pulumi_harness import ROOT

CHECK = """
import json, sys
def loaded(*names):
    return sorted(m for m in sys.modules if m.split(".")[0] in names or m in names)
import homelab_images.runner.qemu
qemu = loaded("proxmoxer", "requests", "urllib3", "cryptography", "homelab_images.contract.build_spec")
import homelab_images.runner.__main__, homelab_images.runner.create
proxmox = loaded("jinja2", "pykickstart", "yaml", "pulumi", "cryptography", "homelab_images.core", "homelab_images.cli")
print(json.dumps({"qemu": qemu, "proxmox": proxmox}))
"""


def test_runners_start_without_libraries_their_path_never_uses() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    # The qemu build never talks to Proxmox, and generates its SSH key (cryptography) only when Packer runs.
    assert found["qemu"] == []
    # The runner gets rendered files in its spec; cryptography waits for the key of a build that runs Packer.
    assert found["proxmox"] == []
