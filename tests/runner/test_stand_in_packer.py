"""The stand-in Packer rejects what the pinned proxmox plugin rejects, where and as the plugin does.

Packer itself cannot run here (no Packer >= 1.11, no Proxmox), so these tests run the
stand-in directly on a template the program rendered, with the variables the build
command sets, against fakepve. A rule the stand-in let through would turn the runner's
tests green and a user's first real build red.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from homelab_images.contract import proxmox_plugin
from homelab_images.contract.ownership import build_tags
from homelab_images.runner.env import Credentials
from homelab_images.runner.packer_run import packer_environment, write_build_files
from tests.runner.conftest import SECRET, STAND_IN_PACKER, TOKEN_NAME, TOKEN_USER, shipped_spec, vms

# The tags the runner set before the plugin's tag rule was known: dots in three of them.
DOTTED_TAGS = ["homelab-images", "image.alma9-k3s-node-amd64", "version.1.0.0", "fp.0123456789abcdef", "build-pending"]


def run_stand_in(
    tmp_path: Path, pve: Any, cafile: str, tags: list[str], edit: Any = None, **env: str
) -> subprocess.CompletedProcess[str]:
    spec = shipped_spec()
    template = copy.deepcopy(spec.packer_template)
    if edit is not None:
        edit(next(iter(template["source"]["proxmox-iso"].values())))
    directory = tmp_path / "build"
    directory.mkdir()
    files = write_build_files(spec.replace(packer_template=template), directory)
    creds = Credentials(f"https://127.0.0.1:{pve.port}/", "127.0.0.1", pve.port, TOKEN_USER, TOKEN_NAME, SECRET)
    environ = packer_environment(
        {"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path)}, creds, Path(cafile), 9000, files, "built", tags
    )
    return subprocess.run(
        [sys.executable, str(STAND_IN_PACKER), "build", "-color=false", "build.pkr.json"],
        cwd=directory,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dotted_tags_fail_at_creating_the_vm_with_the_plugins_message(
    tmp_path: Path, pve: Any, fakepve_cafile: str
) -> None:
    done = run_stand_in(tmp_path, pve, fakepve_cafile, DOTTED_TAGS)
    assert done.returncode == 1
    assert "==> proxmox-iso.alma9-k3s-node-amd64: Creating VM" in done.stdout
    assert f"Error creating VM: {proxmox_plugin.TAG_INVALID}" in done.stdout
    assert vms(pve) == {}, "the plugin validates before it calls the API"


def test_the_runners_tags_pass_the_plugins_rule(tmp_path: Path, pve: Any, fakepve_cafile: str) -> None:
    spec = shipped_spec()
    done = run_stand_in(tmp_path, pve, fakepve_cafile, build_tags(spec.image, spec.version, spec.fingerprint))
    assert done.returncode == 0, done.stdout
    assert "A template was created: 9000" in done.stdout


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        (["homelab-images", "homelab-images"], proxmox_plugin.TAG_DUPLICATE),
        (["homelab-images", ""], proxmox_plugin.TAG_EMPTY),
        (["-leading-dash"], proxmox_plugin.TAG_INVALID),
        (["a" * 125], proxmox_plugin.TAG_TOO_LONG),
        (["plus+sign"], proxmox_plugin.TAG_INVALID),
    ],
)
def test_every_tag_the_plugin_rejects_fails(
    tmp_path: Path, pve: Any, fakepve_cafile: str, tags: list[str], message: str
) -> None:
    done = run_stand_in(tmp_path, pve, fakepve_cafile, tags)
    assert done.returncode == 1
    assert f"Error creating VM: {message}" in done.stdout
    assert vms(pve) == {}


def _set(key: str, value: Any) -> Any:
    def edit(source: dict[str, Any]) -> None:
        source[key] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("template_name", "alma_9"), proxmox_plugin.TEMPLATE_NAME_INVALID),
        (_set("vm_name", "-alma"), proxmox_plugin.VM_NAME_INVALID),
        (_set("serials", ["ttyS0"]), proxmox_plugin.SERIAL_INVALID.format(value="ttyS0")),
        (_set("scsi_controller", "lsi"), proxmox_plugin.IO_THREAD_NEEDS_CONTROLLER),
        (_set("cloud_init_disk_type", "virtio"), proxmox_plugin.CLOUD_INIT_DISK_TYPE_INVALID.format(value="virtio")),
        (_set("network_adapters", [{"model": "virtio"}]), proxmox_plugin.BRIDGE_MISSING.format(index=0)),
    ],
    ids=["template-name", "vm-name", "serial", "io-thread", "cloud-init-bus", "bridge"],
)
def test_what_the_plugins_prepare_rejects_fails_before_any_api_call(
    tmp_path: Path, pve: Any, fakepve_cafile: str, edit: Any, message: str
) -> None:
    spec = shipped_spec()
    tags = build_tags(spec.image, spec.version, spec.fingerprint)
    done = run_stand_in(tmp_path, pve, fakepve_cafile, tags, edit)
    assert done.returncode == 1
    assert "1 error(s) occurred:" in done.stdout and f"* {message}" in done.stdout
    assert "Creating VM" not in done.stdout


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("cloud_init_upgrade", False), 'No argument or block type is named "cloud_init_upgrade".'),
        (_set("cores", "two"), 'Inappropriate value for attribute "cores": a number is required.'),
        (_set("qemu_agent", ["yes"]), 'Inappropriate value for attribute "qemu_agent": bool required.'),
        (_set("efi_config", "local-lvm"), "Either a JSON object or JSON array of objects is required here"),
    ],
    ids=["unknown-option", "number", "bool", "block"],
)
def test_what_does_not_fit_the_plugins_spec_fails_first(
    tmp_path: Path, pve: Any, fakepve_cafile: str, edit: Any, message: str
) -> None:
    spec = shipped_spec()
    done = run_stand_in(tmp_path, pve, fakepve_cafile, build_tags(spec.image, spec.version, spec.fingerprint), edit)
    assert done.returncode == 1
    assert message in done.stdout
    assert "Creating VM" not in done.stdout


def test_packer_version_answers_like_packer() -> None:
    done = subprocess.run(
        [sys.executable, str(STAND_IN_PACKER), "version"],
        env={**os.environ, "FAKE_PACKER_VERSION": "1.6.6"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.splitlines()[0] == "Packer v1.6.6"
