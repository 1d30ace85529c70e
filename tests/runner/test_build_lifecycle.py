"""A user's `pulumi up` / `pulumi destroy` against Proxmox: build, update, replace, retire.

Each test drives one build resource through tests/engine.py, the model of the Pulumi
engine and pulumi-command, so every step runs with the inputs, environment and
previous outputs the real engine gives it.
"""

from __future__ import annotations

from typing import Any

from homelab_images.contract.ownership import FINGERPRINT_TAG_CHARS, OWNER_TAG, PENDING_TAG, SUPERSEDED_TAG
from tests.runner.conftest import SECRET, Runner, next_spec, tags_of, vms


def test_clean_build_makes_a_verified_tagged_template_and_delete_removes_it(runner: Runner, pve: Any) -> None:
    spec = runner.spec
    step = runner.up()
    assert step.operation == "create"
    run = step.run

    run.assert_clean()
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 1, "stdout must carry only the result line"
    result = run.result
    assert result["vmId"] == spec.vm_id_range.first
    assert result["node"] == "pve1"
    assert result["name"] == spec.template_name
    assert result["fingerprint"] == spec.fingerprint
    assert result["storage"] == "local-lvm"
    assert result["retained"] == []
    assert result["sourceCommit"] is None or len(result["sourceCommit"]) == 40

    vm = vms(pve)[result["vmId"]]
    assert vm.template
    assert vm.name == spec.template_name
    tags = tags_of(vm)
    assert {OWNER_TAG, f"image-{spec.image}", "version-" + spec.version.replace(".", "_")} <= tags
    assert f"fp-{spec.fingerprint[:FINGERPRINT_TAG_CHARS]}" in tags
    assert PENDING_TAG not in tags, "a verified template is no longer pending"
    description = vm.config["description"]
    for expected in (spec.fingerprint, spec.iso_sha256, spec.k3s_version, result["builtAt"], "built by homelab-images"):
        assert expected in description
    assert vm.config["scsi1"].startswith("local-lvm:cloudinit")
    assert str(vm.config["ciupgrade"]) == "0", "clones must not upgrade every package on first boot"
    assert "ide2" not in vm.config, "the installer ISO is unmounted"

    stderr = run.stderr
    assert "stage: preflight" in stderr
    assert "stage: installing the OS (waiting for SSH)" in stderr
    assert "stage: verifying template" in stderr
    assert "==> proxmox-iso." not in stderr, "Packer's own output goes to its log, not into Pulumi state"
    assert runner.kept_logs() == [], "a successful build keeps no log"

    init, build = runner.packer_calls()
    assert init["argv"][0] == "init"
    assert build["argv"][:4] == ["build", "-color=false", "-on-error=cleanup", "-timestamp-ui"]
    for call in (init, build):
        assert not any(SECRET in arg for arg in call["argv"])
        assert "CHECKPOINT_DISABLE" in call["env"]
        assert "PROXMOX_VE_API_TOKEN" not in call["env"], "Packer gets its own variables, not the runner's"
    assert {"PROXMOX_URL", "PROXMOX_USERNAME", "PROXMOX_TOKEN"} <= set(build["env"])
    assert {"PKR_VAR_vm_id", "PKR_VAR_build_ssh_public_key", "PKR_VAR_build_ssh_private_key_file"} <= set(build["env"])
    for call in (init, build):
        assert call["cwd_mode"] == 0o700, "Packer runs in a private directory"
        assert call["cwd"].startswith(str(runner.tmp))
    assert runner.leftover_files() == [], "the private build directory (and its key) is removed"

    destroyed = runner.destroy()
    deleted = destroyed.run
    deleted.assert_clean()
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.env["PULUMI_COMMAND_STDOUT"] == run.stdout.rstrip("\n"), "delete gets the stored result"
    assert result["vmId"] not in vms(pve)
    assert "deleted template" in deleted.stderr
    assert runner.stack.state is None


def test_update_reverifies_the_template_and_reprints_the_result(runner: Runner, pve: Any, root: Any) -> None:
    created = runner.up().run
    assert created.returncode == 0, created.stderr

    step = runner.up(runner.spec.replace(timeout_minutes=120))
    assert step.operation == "update", "a timeout is no reason to rebuild"
    updated = step.run
    updated.assert_clean()
    assert updated.returncode == 0, updated.stderr
    assert updated.result == created.result
    assert runner.packer_calls()[2:] == [], "an update never runs Packer"

    vmid = created.result["vmId"]
    root.nodes("pve1").qemu(vmid).delete()
    vanished = runner.up().run
    assert vanished.returncode == 1
    assert vanished.errors == [
        f"error: the template built earlier no longer exists, VM {vmid} ({runner.spec.template_name}) on pve1: "
        "run `pulumi up --replace <URN of the build resource>` to build it again"
    ]


def test_rebuild_creates_the_new_template_first_and_retires_the_old_one(runner: Runner, pve: Any) -> None:
    first = runner.up().run
    assert first.returncode == 0, first.stderr
    replaced = runner.up(next_spec(runner.spec, "1.1.0", "b"))
    assert replaced.operation == "replace"
    second, retired = replaced.run, replaced.deleted
    assert second.returncode == 0, second.stderr
    old_id, new_id = first.result["vmId"], second.result["vmId"]
    assert new_id != old_id, "the replacement must not need the old template's ID"
    assert [r["vmId"] for r in second.result["retained"]] == [old_id]
    assert second.result["retained"][0]["fingerprint"] == runner.spec.fingerprint

    # pulumi-command deletes the replaced resource with its old inputs and old stdout.
    assert retired is not None and retired.returncode == 0, retired and retired.stderr
    assert retired.env["PULUMI_COMMAND_STDOUT"] == first.stdout.rstrip("\n")
    assert SUPERSEDED_TAG in tags_of(vms(pve)[old_id]), "retainPrevious=1 keeps it for rollback"
    assert SUPERSEDED_TAG not in tags_of(vms(pve)[new_id]), "the old one's delete never touches the new one"

    again = runner.up(next_spec(runner.spec, "1.2.0", "c"))
    third = again.run
    assert third.returncode == 0, third.stderr
    assert [r["vmId"] for r in third.result["retained"]] == [new_id]
    assert again.deleted is not None and again.deleted.returncode == 0
    remaining = vms(pve)
    assert old_id not in remaining, "superseded templates beyond retainPrevious are pruned, oldest first"
    assert SUPERSEDED_TAG in tags_of(remaining[new_id])
    assert remaining[third.result["vmId"]].template


def test_without_retention_the_replaced_template_is_deleted(runner: Runner, pve: Any) -> None:
    spec = runner.spec.replace(retain_previous=0)
    assert runner.up(spec).ok
    replaced = runner.up(next_spec(spec, "1.1.0", "d"))
    second = replaced.run
    assert second.returncode == 0, second.stderr
    assert second.result["retained"] == []
    assert replaced.ok
    assert set(vms(pve)) == {second.result["vmId"]}


def test_version_bump_without_content_change_renames_instead_of_rebuilding(runner: Runner, pve: Any) -> None:
    created = runner.up().run
    assert created.returncode == 0, created.stderr
    bumped = runner.spec.replace(version="1.0.1", template_name=runner.spec.template_name.replace("v1.0.0", "v1.0.1"))
    step = runner.up(bumped)
    assert step.operation == "update"
    updated = step.run
    updated.assert_clean()
    assert updated.returncode == 0, updated.stderr
    assert runner.packer_calls()[2:] == [], "same content: no Packer run"
    result = updated.result
    assert (result["vmId"], result["version"], result["name"]) == (
        created.result["vmId"],
        "1.0.1",
        bumped.template_name,
    )
    vm = vms(pve)[result["vmId"]]
    assert vm.name == bumped.template_name
    tags = tags_of(vm)
    assert "version-1_0_1" in tags and "version-1_0_0" not in tags
    assert "version: 1.0.1" in vm.config["description"]
    assert f"fingerprint: {runner.spec.fingerprint}" in vm.config["description"]
