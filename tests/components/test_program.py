"""The real __main__.py under Pulumi mocks.

The first tests evaluate the project's own Pulumi.homelab.yaml (whatever the user
has made of it) and derive what to expect from it; the variations start from the
frozen copy in tests/fixtures.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any
from urllib.parse import urlsplit

import pulumi
import pytest

from components.proxmox_template import TemplateMismatch, TemplateMissing
from homelab_images.contract.commands import CREATE_COMMAND, DELETE_COMMAND, UPDATE_COMMAND
from homelab_images.contract.fingerprint_parts import ALWAYS_PRESENT, PART_NAMES
from tests.pulumi_harness import (
    BUILD_VM_ID,
    OWNER_KEY,
    SECRET_MARKER,
    SECRET_SIG,
    RecordingMocks,
    fixture_config,
    plain_strings,
    run_program,
)

TOKEN = "images@pve!build=5e1f7c2a-sentinel-token"
GET_VMS = "proxmoxve:index/getVmsLegacy:getVmsLegacy"
IMAGE = "alma9-k3s-node-amd64"
SHIPPED = fixture_config()
SHIPPED_IMAGES = {image["name"]: image for image in SHIPPED["homelab-images:images"]}
PROXMOX = SHIPPED["homelab-images:proxmox"]


@pytest.fixture(scope="module")
def run() -> Any:
    return run_program(config=SHIPPED, secrets={"proxmoxve:apiToken": TOKEN})


def _build_of(run: Any, image: str) -> Any:
    return next(r for r in run.of_type("command:local:Command") if r.parent.endswith(f"::{image}-build"))


def test_declares_one_golden_image_with_its_parts_per_image(run: Any) -> None:
    images = run.of_type("homelab:images:GoldenImage")
    assert sorted(r.name for r in images) == sorted(SHIPPED_IMAGES)
    for name in SHIPPED_IMAGES:
        for part in ("PackerBuild", "ProxmoxTemplate"):
            children = [r for r in run.of_type(f"homelab:images:{part}") if r.parent.endswith(f"::{name}")]
            assert children, f"{part} of {name} must be a child of its GoldenImage"
        assert _build_of(run, name)


def test_each_iso_is_downloaded_by_proxmox_with_its_checksum(run: Any) -> None:
    downloads = {r.inputs["url"]: r for r in run.of_type("proxmoxve:download/file:File")}
    for image in SHIPPED_IMAGES.values():
        download = downloads[image["iso"]["url"]]
        assert download.inputs["checksum"] == image["iso"]["sha256"]
        assert download.inputs["checksumAlgorithm"] == "sha256"
        assert download.inputs["contentType"] == "iso"
        assert download.inputs["datastoreId"] == PROXMOX["isoStorage"]
        assert download.inputs["nodeName"] == PROXMOX["node"]


def test_every_proxmox_resource_uses_the_explicit_provider(run: Any) -> None:
    provider = run.one("pulumi:providers:proxmoxve")
    assert provider.inputs["endpoint"] == SHIPPED["proxmoxve:endpoint"]
    explicit = f"pulumi:providers:proxmoxve::{provider.name}::"
    assert all(explicit in download.provider for download in run.of_type("proxmoxve:download/file:File"))
    reads = [call for call in run.mocks.calls if call.token == GET_VMS]
    assert len(reads) == len(SHIPPED_IMAGES) and all(explicit in call.provider for call in reads)


def test_build_command_contract(run: Any) -> None:
    for name, image in SHIPPED_IMAGES.items():
        command = _build_of(run, name)
        assert command.inputs["create"] == CREATE_COMMAND
        assert command.inputs["update"] == UPDATE_COMMAND
        assert command.inputs["delete"] == DELETE_COMMAND
        assert "triggers[*]" in command.replace_on_changes, "a changed fingerprint must replace the build"
        assert "stderr" in command.additional_secret_outputs
        spec = json.loads(command.inputs["stdin"])
        assert spec["image"] == name and spec["template_name"] == f"{name}-v{image['version']}"
        source = spec["packer_template"]["source"]["proxmox-iso"][name]
        iso_file = urlsplit(image["iso"]["url"]).path.rsplit("/", 1)[-1]
        assert source["boot_iso"]["iso_file"] == f"{PROXMOX['isoStorage']}:iso/{iso_file}"


def test_triggers_are_the_named_fingerprint_parts_and_the_placement(run: Any) -> None:
    """A trigger change replaces the Command (a new build); moving node or storage must build there."""
    for name, image in SHIPPED_IMAGES.items():
        command = _build_of(run, name)
        parts, placement = command.inputs["triggers"]
        expected = set(PART_NAMES) if image.get("rebuildEvery") else set(ALWAYS_PRESENT)
        assert set(parts) == expected
        spec = json.loads(command.inputs["stdin"])
        assert parts == spec["fingerprint_parts"]
        assert (
            placement
            == {"node": PROXMOX["node"], "vmStorage": PROXMOX["vmStorage"]}
            == {
                "node": spec["node"],
                "vmStorage": spec["vm_storage"],
            }
        )


def test_token_is_secret_everywhere(run: Any) -> None:
    secret_part = TOKEN.split("=", 1)[1]
    for registration in run.registrations:
        for text in plain_strings(registration.raw_inputs):
            assert secret_part not in text, f"token in plain text in {registration.type} {registration.name}"
    for command in run.of_type("command:local:Command"):
        assert TOKEN not in command.inputs["create"] + command.inputs["delete"] + command.inputs["stdin"]
        environment = command.raw_inputs["environment"]
        assert environment["PROXMOX_VE_API_TOKEN"] == {SECRET_SIG: SECRET_MARKER, "value": TOKEN}
        assert environment["PROXMOX_VE_ENDPOINT"] == SHIPPED["proxmoxve:endpoint"]
    assert all(secret_part not in json.dumps(value) for value in run.outputs.values())


def test_owner_key_reaches_the_build_command_only_as_a_secret(run: Any) -> None:
    for registration in run.registrations:
        assert not [text for text in plain_strings(registration.raw_inputs) if OWNER_KEY in text]
    for command in run.of_type("command:local:Command"):
        environment = command.raw_inputs["environment"]
        assert environment["HOMELAB_IMAGES_OWNER_KEY"] == {SECRET_SIG: SECRET_MARKER, "value": OWNER_KEY}
    assert all(OWNER_KEY not in json.dumps(value) for value in run.outputs.values())


@pytest.mark.parametrize(
    ("plain", "secret", "message"),
    [
        (None, None, r"homelab-images:ownerKey: is required .*openssl rand -hex 32"),
        (OWNER_KEY, None, r"homelab-images:ownerKey: is stored in plain text"),
        (None, "too-short", r"homelab-images:ownerKey: expected at least 32 random characters"),
    ],
)
def test_owner_key_missing_plain_or_weak_is_a_clear_error(plain: str | None, secret: str | None, message: str) -> None:
    config = fixture_config()
    if plain:
        config["homelab-images:ownerKey"] = plain
    secrets = {"proxmoxve:apiToken": TOKEN, **({"homelab-images:ownerKey": secret} if secret else {})}
    with pytest.raises(pulumi.RunError, match=message) as error:
        run_program(config=config, secrets=secrets, owner_key=None)
    assert OWNER_KEY not in str(error.value)


def test_template_read_back_uses_the_build_result(run: Any) -> None:
    built = {build["result"]["vmId"]: build["result"] for build in run.mocks.builds.values()}
    calls = [call for call in run.mocks.calls if call.token == GET_VMS]
    assert sorted(call.args["nodeName"] for call in calls) == sorted(result["node"] for result in built.values())


def test_templates_output_carries_the_built_vm_id_in_plain_text(run: Any) -> None:
    built = {build["result"]["name"]: build["result"]["vmId"] for build in run.mocks.builds.values()}
    assert set(run.outputs["templates"]) == set(SHIPPED_IMAGES)
    for name, image in SHIPPED_IMAGES.items():
        template = run.outputs["templates"][name]
        assert template["name"] == f"{name}-v{image['version']}"
        assert template["vmId"] == built[template["name"]]
        assert template["node"] == PROXMOX["node"]
        assert template["version"] == image["version"]
        assert len(template["fingerprint"]) == 64
    assert "templates" not in run.secret_outputs, "vmId must not be a secret"
    assert run.outputs["schemaVersion"] == 1


def test_same_inputs_give_identical_triggers() -> None:
    first = run_program(secrets={"proxmoxve:apiToken": TOKEN}).one("command:local:Command")
    second = run_program(secrets={"proxmoxve:apiToken": TOKEN}).one("command:local:Command")
    assert json.dumps(first.inputs["triggers"]) == json.dumps(second.inputs["triggers"])
    assert first.inputs["stdin"] == second.inputs["stdin"]


def test_first_preview_reads_nothing_back_and_leaves_the_template_unknown() -> None:
    """The build's stdout is unknown before it runs: no read of Proxmox, unknown template outputs."""
    run = run_program(secrets={"proxmoxve:apiToken": TOKEN}, preview=True)
    assert run.one("command:local:Command")
    assert run.one("homelab:images:ProxmoxTemplate")
    assert [call for call in run.mocks.calls if call.token == GET_VMS] == [], "no invoke with unknown arguments"
    assert run.mocks.builds == {}, "a preview runs no build"
    assert "templates" not in run.outputs, "the templates output is unknown until the build ran"


def test_template_that_is_not_a_template_fails_the_update() -> None:
    mocks = RecordingMocks(template_is_template=False)
    with pytest.raises(TemplateMismatch, match="is not a template"):
        run_program(secrets={"proxmoxve:apiToken": TOKEN}, mocks=mocks)


def test_template_deleted_by_hand_names_the_command_that_rebuilds_it() -> None:
    mocks = RecordingMocks(deleted_by_hand={BUILD_VM_ID})
    with pytest.raises(TemplateMissing) as missing:
        run_program(secrets={"proxmoxve:apiToken": TOKEN}, mocks=mocks)
    what, _, hint = str(missing.value).partition("; ")
    assert what == (
        f"template VM {BUILD_VM_ID} of image {IMAGE} no longer exists on node {PROXMOX['node']} "
        "(deleted outside this program)"
    )
    assert re.fullmatch(
        rf"build it again with `pulumi up --replace 'urn:pulumi:homelab::homelab-images::\S+"
        rf"\$command:local:Command::{IMAGE}-build-packer'`",
        hint,
    ), "the exact URN of the build resource to replace"
    assert isinstance(missing.value, pulumi.RunError), "shown as one error line, without a traceback"


def test_missing_token_is_a_clear_error() -> None:
    with pytest.raises(pulumi.RunError, match=r"proxmoxve:apiToken: is required"):
        run_program(secrets={})


def test_token_in_plain_text_config_is_refused() -> None:
    config = fixture_config()
    config["proxmoxve:apiToken"] = TOKEN
    with pytest.raises(pulumi.RunError, match=r"stored in plain text") as error:
        run_program(config=config, secrets={})
    assert TOKEN.split("=", 1)[1] not in str(error.value)


def test_invalid_config_fails_before_any_resource() -> None:
    config = copy.deepcopy(fixture_config())
    config["homelab-images:images"][0]["k3s"]["version"] = "1.36"
    mocks = RecordingMocks()
    with pytest.raises(
        pulumi.RunError,
        match=r"homelab-images:images\[0\]\.k3s\.version: expected a k3s release tag",
    ):
        run_program(config=config, secrets={"proxmoxve:apiToken": TOKEN}, mocks=mocks)
    assert mocks.builds == {}


def test_images_sharing_an_iso_download_it_once() -> None:
    config = copy.deepcopy(fixture_config())
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
    config = copy.deepcopy(fixture_config())
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
    config = copy.deepcopy(fixture_config())
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
        ({"replicaNodes": ["pve2", "pve3"], "vmIdRange": {"first": 9000, "last": 9005}}, "need at least 12"),
    ],
)
def test_multi_node_config_errors(proxmox: dict[str, Any], message: str) -> None:
    config = copy.deepcopy(fixture_config())
    config["homelab-images:proxmox"].update(proxmox)
    with pytest.raises(pulumi.RunError, match=message):
        run_program(config=config, secrets={"proxmoxve:apiToken": TOKEN})


def test_a_build_that_prints_no_result_fails_the_update_clearly() -> None:
    mocks = RecordingMocks(build_result=lambda inputs, vm_id: {"vmId": "not-a-number"})
    with pytest.raises(Exception, match="does not end with a build result"):
        run_program(secrets={"proxmoxve:apiToken": TOKEN}, mocks=mocks)


def test_the_smoke_test_result_and_settings_pass_through() -> None:
    """The build's smoke result reaches the stack output; the settings reach the build's stdin."""
    run = run_program(secrets={"proxmoxve:apiToken": TOKEN})
    (template,) = run.outputs["templates"].values()
    assert template["smoke"] == {"passed": True, "readySeconds": 41.7, "checkedAt": "2026-11-25T10:02:31Z"}
    (build,) = run.of_type("command:local:Command")
    spec = json.loads(build.inputs["stdin"])
    assert (spec["smoke_test"], spec["smoke_timeout_minutes"], spec["keep_failed_templates"]) == (True, 15, False)

    config = copy.deepcopy(fixture_config())
    config["homelab-images:build"]["smokeTest"] = False
    off = run_program(config=config, secrets={"proxmoxve:apiToken": TOKEN})
    (template,) = off.outputs["templates"].values()
    assert template["smoke"] is None


ARTIFACT_SHA256 = "ab" * 32


def test_an_imported_image_downloads_no_iso_and_its_build_imports_the_qcow2() -> None:
    config = copy.deepcopy(SHIPPED)
    image = config["homelab-images:images"][0]
    image["importFrom"] = {"url": "https://files.example.org/alma9-k3s.qcow2", "sha256": ARTIFACT_SHA256}
    # The qcow2 is content of its own, which the shipped version lock does not record.
    config["homelab-images:build"]["strictVersioning"] = False
    imported = run_program(config=config, secrets={"proxmoxve:apiToken": TOKEN})
    downloads = [r.inputs["url"] for r in imported.of_type("proxmoxve:download/file:File")]
    assert image["iso"]["url"] not in downloads or any(
        other["iso"]["url"] == image["iso"]["url"] for other in config["homelab-images:images"][1:]
    ), "an image imported from a qcow2 boots no installer ISO"
    build = _build_of(imported, image["name"])
    spec = json.loads(build.inputs["stdin"])
    assert spec["import_from"]["url"] == image["importFrom"]["url"]
    assert spec["import_from"]["sha256"] == ARTIFACT_SHA256
    assert spec["fingerprint_parts"]["artifact"] == ARTIFACT_SHA256, "a new qcow2 replaces the template"
    assert build.inputs["create"] == CREATE_COMMAND, "the same runner, outputs and retirement as a built template"
    built = _build_of(run_program(config=SHIPPED, secrets={"proxmoxve:apiToken": TOKEN}), image["name"])
    assert json.loads(built.inputs["stdin"]).get("import_from") is None
