"""The qemu target in the Pulumi program (under mocks): its own Command, triggers and the artifacts output."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic.alias_generators import to_camel

from components.qemu_artifact import command_inputs
from homelab_images.contract.artifact import ArtifactSpec
from homelab_images.contract.commands import QEMU_CREATE_COMMAND, QEMU_DELETE_COMMAND, QEMU_UPDATE_COMMAND
from homelab_images.contract.fingerprint_parts import SHARED_PART_NAMES, TARGET_PART_NAMES
from tests.pulumi_harness import ROOT, run_program
from tests.stack_files import image, mutated_config

IMAGE = "alma9-k3s-node-amd64"
TOKEN = "images@pve!build=5e1f7c2a-sentinel-token"
CONTRACT_DOC = ROOT / "docs" / "outputs-contract.md"


def _with_qemu(config: dict[str, Any]) -> None:
    image(config)["targets"] = ["proxmox-iso", "qemu"]
    config["homelab-images:build"]["strictVersioning"] = False


@pytest.fixture(scope="module")
def run() -> Any:
    return run_program(config=mutated_config(_with_qemu), secrets={"proxmoxve:apiToken": TOKEN})


def _qemu_command(run: Any) -> Any:
    (command,) = [r for r in run.of_type("command:local:Command") if r.inputs["create"] == QEMU_CREATE_COMMAND]
    return command


def test_the_qemu_build_is_its_own_command_under_the_image(run: Any) -> None:
    (artifact,) = run.of_type("homelab:images:QemuArtifact")
    assert artifact.parent.endswith(f"::{IMAGE}")
    command = _qemu_command(run)
    assert command.parent.endswith(f"::{IMAGE}-qemu")
    assert command.inputs["update"] == QEMU_UPDATE_COMMAND and command.inputs["delete"] == QEMU_DELETE_COMMAND
    assert command.inputs["addPreviousOutputInEnv"] is True
    assert "environment" not in command.inputs or not command.inputs["environment"], "no credential reaches it"
    assert TOKEN not in json.dumps(command.raw_inputs)


def test_its_triggers_are_the_qemu_fingerprint_parts(run: Any) -> None:
    command = _qemu_command(run)
    (triggers,) = command.inputs["triggers"]
    assert set(triggers) == set(SHARED_PART_NAMES) | set(TARGET_PART_NAMES["qemu"])
    spec = json.loads(command.inputs["stdin"])
    assert triggers == spec["fingerprint_parts"]
    assert spec["file_name"] == f"{IMAGE}-v1.0.0.qcow2"


def test_the_registered_inputs_are_the_ones_the_engine_tests_run(run: Any) -> None:
    """tests/runner/test_qemu_build.py drives command_inputs(spec) through the engine model."""
    command = _qemu_command(run)
    declared = command_inputs(ArtifactSpec.from_json(command.inputs["stdin"]))
    registered = {key: command.inputs[to_camel(key)] for key in declared}
    assert registered == json.loads(json.dumps(declared))


def test_a_preview_runs_no_build_and_leaves_the_artifacts_unknown() -> None:
    preview = run_program(config=mutated_config(_with_qemu), secrets={"proxmoxve:apiToken": TOKEN}, preview=True)
    assert _qemu_command(preview), "the Command is registered"
    assert preview.mocks.artifacts == {}, "a preview runs no build"
    assert "artifacts" not in preview.outputs, "the file's path and sha256 are unknown until the build ran"


def test_the_proxmox_iso_build_is_unchanged_by_the_qemu_target(run: Any) -> None:
    plain = run_program(config=mutated_config(lambda c: None), secrets={"proxmoxve:apiToken": TOKEN})

    def proxmox_build(program_run: Any) -> Any:
        return next(
            r for r in program_run.of_type("command:local:Command") if r.inputs["create"] != QEMU_CREATE_COMMAND
        )

    assert proxmox_build(run).inputs["triggers"] == proxmox_build(plain).inputs["triggers"]
    assert proxmox_build(run).inputs["stdin"] == proxmox_build(plain).inputs["stdin"]
    assert plain.outputs["artifacts"] == {}
    assert plain.of_type("homelab:images:QemuArtifact") == []


def test_artifacts_output_carries_path_size_and_sha256_per_target(run: Any) -> None:
    (built,) = run.mocks.artifacts.values()
    entry = run.outputs["artifacts"][IMAGE]["qemu"]
    result = built["result"]
    assert entry == {
        "format": "qcow2",
        "path": result["path"],
        "file": result["file"],
        "size": result["size"],
        "sha256": result["sha256"],
        "manifest": result["manifest"],
        "version": "1.0.0",
        "fingerprint": result["fingerprint"],
        "builtAt": result["builtAt"],
        "retained": [],
    }
    assert "artifacts" not in run.secret_outputs


def test_the_documented_artifacts_example_has_the_exported_keys(run: Any) -> None:
    blocks = re.findall(r"```json\n(.*?)```", CONTRACT_DOC.read_text(encoding="utf-8"), re.DOTALL)
    documented = next(json.loads(block) for block in blocks if '"qemu"' in block)
    (example,) = documented["artifacts"].values()
    assert set(example["qemu"]) == set(run.outputs["artifacts"][IMAGE]["qemu"])
