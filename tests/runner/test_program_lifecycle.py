"""The program's own build resource, end to end: what ``__main__.py`` declares (under Pulumi's
mocks) is what the engine model runs against fakepve — create, update, replace and destroy."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest

from components.proxmox_template import TemplateMissing
from tests.engine import CommandInputs
from tests.pulumi_harness import ProgramRun, RecordingMocks, fixture_config, run_program, unwrap_secrets
from tests.runner.conftest import SECRET, TOKEN_ID, Runner, vms


def program_run(
    runner: Runner,
    build: dict[str, Any] | None = None,
    extra_packages: list[str] | None = None,
    mocks: RecordingMocks | None = None,
) -> ProgramRun:
    """The real program on the fixture stack, pointed at fakepve."""
    config = copy.deepcopy(fixture_config())
    config["proxmoxve:endpoint"] = f"https://127.0.0.1:{runner.pve.port}/"
    config["homelab-images:proxmox"] = {**config["homelab-images:proxmox"], "caBundle": runner.cafile}
    config["homelab-images:build"] = {**config["homelab-images:build"], **(build or {})}
    (image,) = config["homelab-images:images"]
    if extra_packages is not None:
        image["packages"] = {**image["packages"], "extra": extra_packages}
    return run_program(config=config, secrets={"proxmoxve:apiToken": f"{TOKEN_ID}={SECRET}"}, mocks=mocks)


def declared(
    runner: Runner, build: dict[str, Any] | None = None, extra_packages: list[str] | None = None
) -> CommandInputs:
    """The Command inputs the real program registers for the fixture stack pointed at fakepve."""
    run = program_run(runner, build, extra_packages)
    inputs = unwrap_secrets(run.one("command:local:Command").raw_inputs)
    return CommandInputs(
        create=inputs["create"],
        update=inputs["update"],
        delete=inputs["delete"],
        stdin=inputs["stdin"],
        environment=inputs["environment"],
        triggers=inputs["triggers"],
        add_previous_output_in_env=inputs["addPreviousOutputInEnv"],
    )


def test_the_programs_build_resource_through_create_update_replace_and_destroy(runner: Runner, pve: Any) -> None:
    stack = runner.stack
    first = declared(runner)
    assert stack.preview(first).stdout_known is False
    created = stack.up(first)
    assert (created.operation, created.ok) == ("create", True), created.run.stderr
    vmid = created.run.result["vmId"]

    retimed = declared(runner, build={"timeoutMinutes": 95})
    updated = stack.up(retimed)
    assert (updated.operation, updated.ok) == ("update", True), updated.run.stderr
    assert updated.run.result["vmId"] == vmid

    packages = [*fixture_config()["homelab-images:images"][0]["packages"]["extra"], "tmux"]
    changed = declared(runner, build={"timeoutMinutes": 95, "strictVersioning": False}, extra_packages=packages)
    rebuilt = stack.up(changed)
    assert rebuilt.operation == "replace" and rebuilt.ok, rebuilt.run.stderr
    assert rebuilt.deleted is not None and rebuilt.deleted.env["PROXMOX_VE_API_TOKEN"] == f"{TOKEN_ID}={SECRET}"

    destroyed = stack.destroy()
    assert destroyed.ok, [run.stderr for run in destroyed.runs]
    assert not [vm for vm in vms(pve).values() if vm.vmid != vmid], "destroy removed the current template"


GET_VMS = "proxmoxve:index/getVmsLegacy:getVmsLegacy"


@dataclass
class EngineBackedMocks(RecordingMocks):
    """The program over what the engine recorded for its build and what Proxmox (fakepve) lists."""

    recorded_stdout: str = ""
    root: Any = None

    def __post_init__(self) -> None:
        self.build_result = lambda _inputs, _vmid: json.loads(self.recorded_stdout.splitlines()[-1])

    def call(self, args: Any) -> dict[str, Any]:
        if args.token != GET_VMS:
            return super().call(args)
        self.calls.append(args)
        node = args.args["nodeName"]
        listed = self.root.nodes(node).qemu.get()
        return {
            "vms": [
                {
                    "vmId": int(vm["vmid"]),
                    "nodeName": node,
                    "name": vm.get("name", ""),
                    "tags": [tag for tag in str(vm.get("tags", "")).split(";") if tag],
                    "template": bool(vm.get("template")),
                    "status": vm.get("status", ""),
                }
                for vm in listed
            ]
        }


def test_a_template_deleted_by_hand_is_caught_by_the_program_not_by_the_engine(
    runner: Runner, pve: Any, root: Any
) -> None:
    stack = runner.stack
    inputs = declared(runner)
    created = stack.up(inputs)
    assert created.ok, created.run.stderr
    vmid = created.run.result["vmId"]
    assert stack.state is not None
    run = program_run(runner, mocks=EngineBackedMocks(recorded_stdout=stack.state.stdout, root=root))
    (template,) = run.outputs["templates"].values()
    assert (template["vmId"], template["node"]) == (vmid, "pve1"), "outputs are what Proxmox lists"

    root.nodes("pve1").qemu(vmid).delete()
    deadline = time.monotonic() + 10
    while vmid in vms(pve):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    unchanged = stack.up(inputs)
    assert (unchanged.operation, unchanged.runs) == ("same", []), "pulumi-command has no read: nothing runs"
    with pytest.raises(TemplateMissing, match=rf"template VM {vmid} of image .*`pulumi up --replace 'urn:pulumi:"):
        program_run(runner, mocks=EngineBackedMocks(recorded_stdout=stack.state.stdout, root=root))
