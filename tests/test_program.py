"""The real __main__.py under Pulumi mocks, with the shipped Pulumi.homelab.yaml."""

from __future__ import annotations

import copy
import json
from typing import Any

import pulumi
import pytest

from components.build.commands import CREATE_COMMAND, DELETE_COMMAND, UPDATE_COMMAND
from components.fingerprint import PART_NAMES
from tests.pulumi_harness import (
    BUILD_VM_ID,
    SECRET_MARKER,
    SECRET_SIG,
    RecordingMocks,
    plain_strings,
    run_program,
    shipped_config,
)

TOKEN = "images@pve!build=5e1f7c2a-sentinel-token"
IMAGE = "alma9-k3s-node-amd64"


@pytest.fixture(scope="module")
def run() -> Any:
    return run_program(secrets={"proxmoxve:apiToken": TOKEN})


def test_declares_one_golden_image_with_its_parts(run: Any) -> None:
    image = run.one("homelab:images:GoldenImage")
    assert image.name == IMAGE
    for part in ("KickstartFile", "PackerBuild", "ProxmoxTemplate"):
        child = run.one(f"homelab:images:{part}")
        assert child.parent.endswith(f"::{IMAGE}"), f"{part} must be a child of the GoldenImage"
    command = run.one("command:local:Command")
    assert command.parent.endswith(f"::{IMAGE}-build")


def test_iso_is_downloaded_by_proxmox_with_its_checksum(run: Any) -> None:
    download = run.one("proxmoxve:download/file:File")
    image = shipped_config()["homelab-images:images"][0]
    assert download.inputs["url"] == image["iso"]["url"]
    assert download.inputs["checksum"] == image["iso"]["sha256"]
    assert download.inputs["checksumAlgorithm"] == "sha256"
    assert download.inputs["contentType"] == "iso"
    assert download.inputs["datastoreId"] == shipped_config()["homelab-images:proxmox"]["isoStorage"]


def test_every_proxmox_resource_uses_the_explicit_provider(run: Any) -> None:
    provider = run.one("pulumi:providers:proxmoxve")
    assert provider.inputs["endpoint"] == shipped_config()["proxmoxve:endpoint"]
    download = run.one("proxmoxve:download/file:File")
    explicit = f"pulumi:providers:proxmoxve::{provider.name}::"
    assert explicit in download.provider
    get_vm = [call for call in run.mocks.calls if call.token == "proxmoxve:index/getVm:getVm"]
    assert len(get_vm) == 1 and explicit in get_vm[0].provider


def test_build_command_contract(run: Any) -> None:
    command = run.one("command:local:Command")
    assert command.inputs["create"] == CREATE_COMMAND
    assert command.inputs["update"] == UPDATE_COMMAND
    assert command.inputs["delete"] == DELETE_COMMAND
    assert "triggers[*]" in command.replace_on_changes, "a changed fingerprint must replace the build"
    assert "stderr" in command.additional_secret_outputs
    spec = json.loads(command.inputs["stdin"])
    assert spec["image"] == IMAGE and spec["template_name"] == f"{IMAGE}-v1.0.0"
    source = spec["packer_template"]["source"]["proxmox-iso"][IMAGE]
    assert source["boot_iso"]["iso_file"] == "local:iso/AlmaLinux-9.7-x86_64-boot.iso"


def test_triggers_are_the_named_fingerprint_parts(run: Any) -> None:
    command = run.one("command:local:Command")
    (parts,) = command.inputs["triggers"]
    assert set(parts) == set(PART_NAMES), "the shipped image sets rebuildEvery, so freshness is a part too"
    spec = json.loads(command.inputs["stdin"])
    assert parts == spec["fingerprint_parts"]


def test_token_is_secret_everywhere(run: Any) -> None:
    secret_part = TOKEN.split("=", 1)[1]
    for registration in run.registrations:
        for text in plain_strings(registration.raw_inputs):
            assert secret_part not in text, f"token in plain text in {registration.type} {registration.name}"
    command = run.one("command:local:Command")
    assert TOKEN not in command.inputs["create"] + command.inputs["delete"] + command.inputs["stdin"]
    environment = command.raw_inputs["environment"]
    assert environment["PROXMOX_VE_API_TOKEN"] == {
        SECRET_SIG: SECRET_MARKER,
        "value": TOKEN,
    }
    assert environment["PROXMOX_VE_ENDPOINT"] == shipped_config()["proxmoxve:endpoint"]
    assert all(secret_part not in json.dumps(value) for value in run.outputs.values())


def test_template_read_back_uses_the_build_result(run: Any) -> None:
    (get_vm,) = [call for call in run.mocks.calls if call.token == "proxmoxve:index/getVm:getVm"]
    assert get_vm.args["id"] == BUILD_VM_ID
    assert get_vm.args["nodeName"] == "pve1"


def test_templates_output_carries_the_built_vm_id_in_plain_text(run: Any) -> None:
    template = run.outputs["templates"][IMAGE]
    assert template["vmId"] == BUILD_VM_ID
    assert template["node"] == "pve1"
    assert template["name"] == f"{IMAGE}-v1.0.0"
    assert template["version"] == "1.0.0"
    assert len(template["fingerprint"]) == 64
    assert "templates" not in run.secret_outputs, "vmId must not be a secret"
    assert run.outputs["schemaVersion"] == 1


def test_same_inputs_give_identical_triggers() -> None:
    first = run_program(secrets={"proxmoxve:apiToken": TOKEN}).one("command:local:Command")
    second = run_program(secrets={"proxmoxve:apiToken": TOKEN}).one("command:local:Command")
    assert json.dumps(first.inputs["triggers"]) == json.dumps(second.inputs["triggers"])
    assert first.inputs["stdin"] == second.inputs["stdin"]


def test_preview_with_unknown_build_result_declares_everything() -> None:
    run = run_program(secrets={"proxmoxve:apiToken": TOKEN}, preview=True)
    assert run.one("command:local:Command")
    assert run.one("homelab:images:ProxmoxTemplate")


def test_template_that_is_not_a_template_fails_the_update() -> None:
    mocks = RecordingMocks(template_is_template=False)
    with pytest.raises(Exception, match="is not a template"):
        run_program(secrets={"proxmoxve:apiToken": TOKEN}, mocks=mocks)


def test_missing_token_is_a_clear_error() -> None:
    with pytest.raises(pulumi.RunError, match=r"proxmoxve:apiToken: is required"):
        run_program(secrets={})


def test_token_in_plain_text_config_is_refused() -> None:
    config = shipped_config()
    config["proxmoxve:apiToken"] = TOKEN
    with pytest.raises(pulumi.RunError, match=r"stored in plain text") as error:
        run_program(config=config, secrets={})
    assert TOKEN.split("=", 1)[1] not in str(error.value)


def test_invalid_config_fails_before_any_resource() -> None:
    config = copy.deepcopy(shipped_config())
    config["homelab-images:images"][0]["k3s"]["version"] = "1.36"
    mocks = RecordingMocks()
    with pytest.raises(
        pulumi.RunError,
        match=r"homelab-images:images\[0\]\.k3s\.version: expected a k3s release tag",
    ):
        run_program(config=config, secrets={"proxmoxve:apiToken": TOKEN}, mocks=mocks)
    assert mocks.builds == {}


def test_images_sharing_an_iso_download_it_once() -> None:
    config = copy.deepcopy(shipped_config())
    config["homelab-images:build"]["strictVersioning"] = False
    second = copy.deepcopy(config["homelab-images:images"][0])
    second["name"] = "alma9-k3s-node-big"
    second["hardware"]["diskGiB"] = 64
    config["homelab-images:images"].append(second)
    run = run_program(config=config, secrets={"proxmoxve:apiToken": TOKEN})
    assert len(run.of_type("proxmoxve:download/file:File")) == 1
    assert len(run.of_type("homelab:images:GoldenImage")) == 2
    assert {t["vmId"] for t in run.outputs["templates"].values()} == {BUILD_VM_ID, BUILD_VM_ID + 1}


def test_replica_nodes_get_their_own_build_and_template() -> None:
    config = copy.deepcopy(shipped_config())
    config["homelab-images:proxmox"]["replicaNodes"] = ["pve2", "pve3"]
    run = run_program(config=config, secrets={"proxmoxve:apiToken": TOKEN})
    builds = run.of_type("command:local:Command")
    specs = {json.loads(build.inputs["stdin"])["node"]: json.loads(build.inputs["stdin"]) for build in builds}
    assert set(specs) == {"pve1", "pve2", "pve3"}
    assert len({spec["fingerprint"] for spec in specs.values()}) == 1, "a replica is the same image"
    for node, spec in specs.items():
        assert spec["packer_template"]["source"]["proxmox-iso"][IMAGE]["node"] == node
    downloads = run.of_type("proxmoxve:download/file:File")
    assert sorted(d.inputs["nodeName"] for d in downloads) == ["pve1", "pve2", "pve3"]
    assert {b.name for b in builds} >= {f"{IMAGE}-build-packer"}, "the build node keeps its resource names"
    template = run.outputs["templates"][IMAGE]
    assert template["shared"] is False
    nodes = template["nodes"]
    assert set(nodes) == {"pve1", "pve2", "pve3"}
    assert nodes["pve1"]["vmId"] == template["vmId"]
    assert len({entry["vmId"] for entry in nodes.values()}) == 3


def test_shared_storage_builds_once_and_says_so() -> None:
    config = copy.deepcopy(shipped_config())
    config["homelab-images:proxmox"]["sharedStorage"] = True
    run = run_program(config=config, secrets={"proxmoxve:apiToken": TOKEN})
    assert len(run.of_type("command:local:Command")) == 1
    template = run.outputs["templates"][IMAGE]
    assert template["shared"] is True and "nodes" not in template


@pytest.mark.parametrize(
    ("proxmox", "message"),
    [
        ({"replicaNodes": ["pve1"]}, "lists the build node or a node twice"),
        ({"replicaNodes": ["pve2"], "sharedStorage": True}, "not needed with sharedStorage"),
        ({"replicaNodes": ["pve2", "pve3"], "vmIdRange": {"first": 9000, "last": 9005}}, "need at least 9"),
    ],
)
def test_multi_node_config_errors(proxmox: dict[str, Any], message: str) -> None:
    config = copy.deepcopy(shipped_config())
    config["homelab-images:proxmox"].update(proxmox)
    with pytest.raises(pulumi.RunError, match=message):
        run_program(config=config, secrets={"proxmoxve:apiToken": TOKEN})
