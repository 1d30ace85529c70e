"""An image built for qemu only (``targets: [qemu]``), in the real __main__.py under mocks.

It has no Proxmox template: no ISO download on Proxmox, no PackerBuild, no
ProxmoxTemplate, no ``templates`` entry; only its qcow2 build and its
``artifacts`` entry. A stack of such images touches no Proxmox at all.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pulumi
import pytest

from homelab_images.cli.main import main as cli_main
from homelab_images.contract.commands import CREATE_COMMAND, QEMU_CREATE_COMMAND
from tests.pulumi_harness import run_program
from tests.stack_files import image, mutated_config, write_stack_file

IMAGE = "alma9-k3s-node-amd64"
FILE_IMAGE = "alma9-k3s-file"
TOKEN = "images@pve!build=5e1f7c2a-sentinel-token"
GET_VMS = "proxmoxve:index/getVmsLegacy:getVmsLegacy"
# Another ISO file than the template image's, so a download of it would show.
FILE_IMAGE_ISO = {
    "url": "https://repo.almalinux.org/almalinux/9.7/isos/x86_64/AlmaLinux-9.7-x86_64-dvd.iso",
    "sha256": "ab" * 32,
}


def _with_file_image(config: dict[str, Any]) -> None:
    """The shipped template image, and a second image built for qemu only."""
    second = copy.deepcopy(image(config))
    second.update(name=FILE_IMAGE, targets=["qemu"], iso=FILE_IMAGE_ISO)
    second.pop("installMirror")
    config["homelab-images:images"].append(second)


def _only_file_image(config: dict[str, Any]) -> None:
    image(config)["targets"] = ["qemu"]


def _locked_project(tmp_path: Path, mutate: Any) -> Path:
    """A project directory with the stack file, its kickstart, and a lock recorded by `lock --update`."""
    stack_file = write_stack_file(tmp_path, mutated_config(mutate), name="Pulumi.homelab.yaml")
    assert cli_main(["lock", "--update", "--stack-file", str(stack_file)]) == 0
    return tmp_path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """strictVersioning stays on: the lock records the qemu-only image like any other."""
    project = _locked_project(tmp_path_factory.mktemp("mixed"), _with_file_image)
    return run_program(secrets={"proxmoxve:apiToken": TOKEN}, project_dir=project)


def _children(run: Any, type_: str, image_name: str) -> list[Any]:
    return [r for r in run.of_type(type_) if r.parent.endswith(f"::{image_name}")]


def test_a_qemu_only_image_declares_its_qcow2_build_and_nothing_on_proxmox(mixed: Any) -> None:
    assert sorted(r.name for r in mixed.of_type("homelab:images:GoldenImage")) == sorted([IMAGE, FILE_IMAGE])
    assert [r.name for r in _children(mixed, "homelab:images:QemuArtifact", FILE_IMAGE)] == [f"{FILE_IMAGE}-qemu"]
    for part in ("PackerBuild", "ProxmoxTemplate"):
        assert _children(mixed, f"homelab:images:{part}", FILE_IMAGE) == []
        assert _children(mixed, f"homelab:images:{part}", IMAGE), f"the template image keeps its {part}"
    creates = [r.inputs["create"] for r in mixed.of_type("command:local:Command")]
    assert sorted(creates) == [CREATE_COMMAND, QEMU_CREATE_COMMAND], "one proxmox-iso build, one qemu build"
    downloads = [r.inputs["url"] for r in mixed.of_type("proxmoxve:download/file:File")]
    assert FILE_IMAGE_ISO["url"] not in downloads, "Packer's qemu builder fetches its ISO itself"
    assert len(downloads) == 1
    reads = [call.args["nodeName"] for call in mixed.mocks.calls if call.token == GET_VMS]
    assert reads == ["pve1"], "only the template image is read back from Proxmox"


def test_it_is_exported_in_artifacts_only(mixed: Any) -> None:
    assert set(mixed.outputs["templates"]) == {IMAGE}
    assert set(mixed.outputs["artifacts"]) == {FILE_IMAGE}
    entry = mixed.outputs["artifacts"][FILE_IMAGE]["qemu"]
    assert (entry["file"], entry["version"]) == (f"{FILE_IMAGE}-v1.0.0.qcow2", "1.0.0")


def test_a_stack_of_qemu_only_images_needs_no_proxmox_token_and_declares_no_provider(tmp_path: Path) -> None:
    project = _locked_project(tmp_path, _only_file_image)
    run = run_program(secrets={}, owner_key=None, project_dir=project)
    assert [r.type for r in run.registrations if r.type.startswith(("proxmoxve:", "pulumi:providers:"))] == []
    assert [r.type for r in run.of_type("command:local:Command")] == ["command:local:Command"]
    assert run.outputs["templates"] == {}
    assert set(run.outputs["artifacts"]) == {IMAGE}


def test_a_token_in_plain_text_is_refused_even_when_unused() -> None:
    config = mutated_config(_only_file_image)
    config["homelab-images:build"]["strictVersioning"] = False
    config["proxmoxve:apiToken"] = TOKEN
    with pytest.raises(pulumi.RunError, match=r"proxmoxve:apiToken: is stored in plain text") as error:
        run_program(config=config, secrets={}, owner_key=None)
    assert TOKEN.split("=", 1)[1] not in str(error.value)
