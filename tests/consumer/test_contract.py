"""The outputs contract: the helper picks the right template from the images stack's outputs."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from homelab_images_consumer import (
    ArtifactRef,
    ImageNotFoundError,
    NoArtifactError,
    NodeNotAvailableError,
    NoTemplateError,
    TemplateRef,
    UnsupportedSchemaError,
    VersionNotFoundError,
    resolve_artifact,
    select_artifact,
    select_template,
)
from tests.consumer.harness import IMAGE, images_outputs, resolve_through_stack_reference, through_stack_reference
from tests.pulumi_harness import ROOT, run_program
from tests.stack_files import image, mutated_config

CONTRACT_DOC = ROOT / "docs" / "outputs-contract.md"


def test_current_template_maps_every_field() -> None:
    assert select_template(images_outputs(), IMAGE) == TemplateRef(
        vm_id=9007,
        node="pve1",
        name=f"{IMAGE}-v1.0.0",
        version="1.0.0",
        fingerprint="a" * 64,
        storage="local-lvm",
        firmware="ovmf",
        machine="q35",
        disk_bus="scsi",
        cloud_init=True,
        scsi_controller="virtio-scsi-single",
        former_versions=(),
        built_at="2026-11-25T10:00:00Z",
    )


def test_pinning_the_current_version_selects_the_current_template() -> None:
    assert select_template(images_outputs(), IMAGE, version="1.0.0").vm_id == 9007


def test_pinning_a_retained_version_selects_its_newest_build() -> None:
    ref = select_template(images_outputs(), IMAGE, version="0.9.0")
    assert (ref.vm_id, ref.fingerprint, ref.version) == (9003, "c" * 64, "0.9.0")
    # Retained entries carry no location or hardware: they are the current template's.
    assert (ref.node, ref.storage, ref.firmware, ref.machine) == ("pve1", "local-lvm", "ovmf", "q35")


def test_keys_added_within_the_schema_version_are_ignored() -> None:
    outputs = images_outputs(sourceCommit="abc123", nodes={}, futureKey={"x": 1})
    outputs["buildLog"] = "added later"
    assert select_template(outputs, IMAGE).vm_id == 9007


def test_missing_image_names_the_images_that_exist() -> None:
    with pytest.raises(ImageNotFoundError, match=rf"no image 'debian-12'.*images it exports: {IMAGE}"):
        select_template(images_outputs(), "debian-12")


def test_missing_version_lists_the_versions_that_exist() -> None:
    with pytest.raises(VersionNotFoundError, match=r"'2\.0\.0'.*1\.0\.0 \(pve1\), 0\.9\.0 \(retained, pve1\)") as error:
        select_template(images_outputs(), IMAGE, version="2.0.0")
    assert IMAGE in str(error.value)


@pytest.mark.parametrize("schema", [2, "1", None])
def test_unsupported_or_missing_schema_version_is_refused(schema: Any) -> None:
    outputs = images_outputs()
    outputs["schemaVersion"] = schema
    with pytest.raises(UnsupportedSchemaError, match="schemaVersion"):
        select_template(outputs, IMAGE)


def test_per_node_templates_give_the_copy_on_the_requested_node() -> None:
    outputs = images_outputs(nodes={"pve2": {"vmId": 9107, "name": f"{IMAGE}-v1.0.0", "storage": "local-zfs"}})
    ref = select_template(outputs, IMAGE, node="pve2")
    assert (ref.vm_id, ref.node, ref.storage) == (9107, "pve2", "local-zfs")
    assert ref.fingerprint == "a" * 64, "a per-node copy is the same image"
    assert select_template(outputs, IMAGE, node="pve1").vm_id == 9007


def test_shared_storage_template_can_be_cloned_on_any_node_from_its_own_node() -> None:
    ref = select_template(images_outputs(shared=True, storage="ceph"), IMAGE, node="pve3")
    assert (ref.vm_id, ref.node) == (9007, "pve1")


def test_local_template_on_another_node_is_refused() -> None:
    outputs = images_outputs(nodes={"pve2": {"vmId": 9107, "name": f"{IMAGE}-v1.0.0"}})
    with pytest.raises(NodeNotAvailableError, match=r"node\(s\) pve1, pve2.*not shared.*'pve3'"):
        select_template(outputs, IMAGE, node="pve3")


def test_resolves_through_a_stack_reference() -> None:
    ref = resolve_through_stack_reference(images_outputs(), IMAGE, version="0.9.0", node="pve1")
    assert ref.vm_id == 9003


def test_resolves_what_the_real_images_stack_exports() -> None:
    run = run_program()
    exported = {key: run.outputs[key] for key in ("schemaVersion", "templates")}
    image = next(iter(exported["templates"]))
    ref = resolve_through_stack_reference(exported, image, node="pve1")
    template = exported["templates"][image]
    assert (ref.vm_id, ref.node, ref.name, ref.version) == (
        template["vmId"],
        template["node"],
        template["name"],
        template["version"],
    )
    assert ref.cloud_init and ref.firmware == "ovmf" and ref.disk_bus == "scsi"


def test_documented_example_has_the_keys_the_images_stack_exports() -> None:
    blocks = re.findall(r"```json\n(.*?)```", CONTRACT_DOC.read_text(encoding="utf-8"), re.DOTALL)
    documented = json.loads(blocks[0])
    run = run_program()
    assert set(documented) == set(run.outputs)
    (real,) = run.outputs["templates"].values()
    (example,) = documented["templates"].values()
    assert set(example) == set(real), "docs/outputs-contract.md and template_output() disagree"
    assert set(example["retained"][0]) == {"vmId", "name", "version", "fingerprint", "builtAt", "node"}
    assert select_template(documented, next(iter(documented["templates"]))).vm_id == example["vmId"]


def test_retained_build_without_a_readable_fingerprint_can_still_be_pinned() -> None:
    outputs = images_outputs(
        retained=[{"vmId": 9002, "name": f"{IMAGE}-v0.8.0", "version": "0.8.0", "fingerprint": None, "builtAt": None}]
    )
    ref = select_template(outputs, IMAGE, version="0.8.0")
    assert (ref.vm_id, ref.fingerprint) == (9002, None)


@pytest.mark.parametrize("layout", ["replicaNodes", "sharedStorage"])
def test_resolves_the_real_multi_node_layouts(layout: str) -> None:
    from tests.pulumi_harness import fixture_config

    config = fixture_config()
    if layout == "replicaNodes":
        config["homelab-images:proxmox"]["replicaNodes"] = ["pve2"]
    else:
        config["homelab-images:proxmox"]["sharedStorage"] = True
    run = run_program(config=config)
    exported = {key: run.outputs[key] for key in ("schemaVersion", "templates")}
    template = exported["templates"][IMAGE]
    on_pve2 = resolve_through_stack_reference(exported, IMAGE, node="pve2")
    if layout == "replicaNodes":
        assert on_pve2.vm_id == template["nodes"]["pve2"]["vmId"] != template["vmId"]
        assert on_pve2.node == "pve2"
    else:
        assert on_pve2.vm_id == template["vmId"] and on_pve2.node == "pve1"


def with_file_image(config: dict[str, Any]) -> None:
    """A second image, built for qemu only."""
    second = copy.deepcopy(image(config))
    second.update(name="alma9-k3s-file", targets=["qemu"])
    config["homelab-images:images"].append(second)
    config["homelab-images:build"]["strictVersioning"] = False


def stack_with_a_file_image() -> tuple[Any, dict[str, Any]]:
    """The real images program's run and the outputs a StackReference reads."""
    run = run_program(config=mutated_config(with_file_image))
    return run, {key: run.outputs[key] for key in ("schemaVersion", "templates", "artifacts")}


def test_an_image_built_for_qemu_only_is_reported_as_having_no_template() -> None:
    """The real images stack with a second image built for qemu only, read through a StackReference."""

    run, exported = stack_with_a_file_image()
    with pytest.raises(NoTemplateError) as error:
        resolve_through_stack_reference(exported, "alma9-k3s-file")
    assert str(error.value) == (
        "stack 'organization/homelab-images/homelab': image 'alma9-k3s-file' has no Proxmox template: its targets "
        "do not include proxmox-iso, so the stack exports it only as a file (output 'artifacts'); "
        f"images with a template: {IMAGE}"
    )
    assert isinstance(error.value, ImageNotFoundError), "code that catches a missing image still catches it"
    assert resolve_through_stack_reference(exported, IMAGE).vm_id == run.outputs["templates"][IMAGE]["vmId"]
    with pytest.raises(ImageNotFoundError) as missing:
        select_template(exported, "debian-12")
    assert str(missing.value) == (
        f"the images stack exports no image 'debian-12'; images it exports: alma9-k3s-file (qcow2 file only), {IMAGE}"
    ), "an image built for qemu only is exported too, as a file"


def test_the_qcow2_file_of_an_image_resolves_through_a_stack_reference() -> None:
    """The real images stack with a second image built for qemu only: its file, and what has none."""

    run, exported = stack_with_a_file_image()
    entry = run.outputs["artifacts"]["alma9-k3s-file"]["qemu"]

    ref = through_stack_reference(exported, lambda stack: resolve_artifact(stack, "alma9-k3s-file"))

    assert ref == ArtifactRef(
        path=entry["path"],
        file=entry["file"],
        sha256=entry["sha256"],
        size=entry["size"],
        version=entry["version"],
        fingerprint=entry["fingerprint"],
        built_at=entry["builtAt"],
    )
    assert ref.file == "alma9-k3s-file-v1.0.0.qcow2" and len(ref.sha256) == 64
    with pytest.raises(NoArtifactError) as no_file:
        select_artifact(exported, IMAGE, "stack 'lab'")
    assert str(no_file.value) == (
        f"stack 'lab': image {IMAGE!r} has no qcow2 file: its targets do not include qemu; "
        "images with a qcow2 file: alma9-k3s-file"
    )
    assert isinstance(no_file.value, ImageNotFoundError)
    with pytest.raises(ImageNotFoundError, match=r"exports no image 'debian-12'; images it exports: alma9-k3s-file"):
        select_artifact(exported, "debian-12")
    exported["schemaVersion"] = 2
    with pytest.raises(UnsupportedSchemaError):
        select_artifact(exported, "alma9-k3s-file")


def test_each_documented_table_names_a_key_once() -> None:
    """A key listed twice (with two meanings) leaves the reader to guess which one holds."""
    tables = re.split(r"\n(?!\|)", CONTRACT_DOC.read_text(encoding="utf-8"))
    for table in tables:
        keys = re.findall(r"^\| `([^`]+)` \|", table, re.MULTILINE)
        assert len(keys) == len(set(keys)), f"docs/outputs-contract.md lists a key twice in: {keys}"
    retained = CONTRACT_DOC.read_text(encoding="utf-8").split("### Retained entry")[1].split("\n\n")[1]
    assert re.findall(r"^\| `([^`]+)` \|", retained, re.MULTILINE) == [
        "vmId",
        "name",
        "version",
        "fingerprint",
        "builtAt",
        "node",
    ]
