"""Failed, killed, interrupted and raced builds leave no VM behind and end with a clear message."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from homelab_images.contract.ownership import lease_tag
from homelab_images.runner.build_log import RAW_OUTPUT_FILE
from tests.runner.conftest import Run, Runner, finish, interrupt, make_vm, stack_tags, tags_of, vms


def waiting_for_ssh(tmp: Path) -> bool:
    """The stand-in Packer has said so in its output (the build directory's raw log)."""
    return any("Waiting for SSH" in raw.read_text() for raw in tmp.glob(f"*/{RAW_OUTPUT_FILE}"))


def wait_until_building(runner: Runner, pidfile: Path, vmid: int = 9000, timeout: float = 20.0) -> int:
    """Until the stand-in Packer has created its VM and hangs 'waiting for SSH'."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pidfile.exists() and pidfile.read_text() and vmid in vms(runner.pve) and waiting_for_ssh(runner.tmp):
            return int(pidfile.read_text())
        time.sleep(0.05)
    raise AssertionError("the build never started")


def assert_failed_cleanly(run: Run, runner: Runner, pve: Any, code: int = 1) -> str:
    run.assert_clean()
    assert run.returncode == code, run.stderr
    assert run.stdout == "", "a failed build prints no result"
    assert runner.stack.state is None, "pulumi-command records nothing for a failed create"
    assert vms(pve) == {}, "a failed build leaves no VM behind"
    assert runner.leftover_files() == []
    assert len(run.errors) == 1, run.stderr
    return run.errors[0]


def test_packer_exiting_1_is_reported_with_its_error(runner: Runner, pve: Any) -> None:
    error = assert_failed_cleanly(runner.up(FAKE_PACKER_FAIL_AT="provision").run, runner, pve)
    assert error.startswith("error: Packer build failed (exit 1): ")
    assert "Script exited with non-zero exit status: 1" in error
    assert "VM 9000 on node pve1" in error


def test_what_packer_leaves_behind_the_runner_removes(runner: Runner, pve: Any) -> None:
    run = runner.up(FAKE_PACKER_FAIL_AT="provision", FAKE_PACKER_LEAVE_VM="1").run
    assert_failed_cleanly(run, runner, pve)
    assert "removed the build VM 9000 that this failed build left behind" in run.stderr


def test_packer_killed(runner: Runner, pve: Any) -> None:
    pidfile = runner.root / "packer.pid"
    process = runner.start_create(FAKE_PACKER_HANG="1", FAKE_PACKER_PIDFILE=str(pidfile))
    os.kill(wait_until_building(runner, pidfile), signal.SIGKILL)
    error = assert_failed_cleanly(finish(process), runner, pve)
    assert error.startswith("error: Packer was killed (signal 9), VM 9000 on node pve1")


@pytest.mark.parametrize(("signum", "packer_cleans_up"), [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_interrupted_build_is_forwarded_to_packer_and_cleaned_up(
    runner: Runner, pve: Any, signum: int, packer_cleans_up: bool
) -> None:
    pidfile = runner.root / "packer.pid"
    env = {"FAKE_PACKER_HANG": "1", "FAKE_PACKER_PIDFILE": str(pidfile)}
    if not packer_cleans_up:
        env["FAKE_PACKER_LEAVE_VM"] = "1"
    process = runner.start_create(None, **env)
    wait_until_building(runner, pidfile)
    interrupt(process, signum)
    run = finish(process)
    # The shell execs the runner, so the exit status is the runner's own.
    error = assert_failed_cleanly(run, runner, pve, code=128 + signum)
    assert f"interrupted by {signal.Signals(signum).name}" in error
    assert "forwarded to Packer" in run.stderr
    (log,) = runner.kept_logs()
    assert "build was cancelled" in log.read_text(), "Packer itself saw the signal"


def test_timeout_interrupts_packer_and_removes_the_vm(runner: Runner, pve: Any) -> None:
    run = runner.up(FAKE_PACKER_HANG="1", FAKE_PACKER_LEAVE_VM="1", HOMELAB_IMAGES_TIMEOUT_SECONDS="1.5").run
    error = assert_failed_cleanly(run, runner, pve)
    assert error.startswith("error: the build exceeded its timeout of 1.5 seconds, VM 9000 on node pve1")
    assert "timeout reached: interrupting Packer" in run.stderr


def test_result_is_read_from_the_manifest_never_guessed(runner: Runner, pve: Any) -> None:
    error = assert_failed_cleanly(runner.up(FAKE_PACKER_NO_MANIFEST="1").run, runner, pve)
    assert error.startswith("error: Packer reported success but wrote no manifest")


def test_manifest_naming_another_vm_keeps_both_for_inspection(runner: Runner, pve: Any, root: Any) -> None:
    make_vm(root, 9500, "what-the-manifest-names", template=True)
    run = runner.create(FAKE_PACKER_MANIFEST_ID="9500")
    run.assert_clean()
    assert run.returncode == 1 and run.stdout == ""
    assert run.errors == [
        "error: Packer reported template 9500, but it was asked to build VM 9000, VM 9000 on node pve1: "
        "check that the template passes vm_id from var.vm_id; VM 9500 and VM 9000 (if it exists) "
        "are left for inspection"
    ]
    assert set(vms(pve)) == {9000, 9500}, "the docs promise both VMs are kept"


def test_full_storage_is_reported_and_not_retried(runner: Runner, pve: Any) -> None:
    pve.storages["local-lvm"]["avail"] = 10 * 1024**3
    run = runner.up().run
    error = assert_failed_cleanly(run, runner, pve)
    assert error.startswith("error: Packer build failed: storage is full (No space left on device)")
    assert len(runner.packer_calls()) == 2, "packer init + one build: a full storage is not retried"


def test_vm_id_held_by_a_foreign_vm_is_skipped_and_left_alone(runner: Runner, pve: Any, root: Any) -> None:
    make_vm(root, 9000, "someone-elses-vm")
    run = runner.up().run
    assert run.returncode == 0, run.stderr
    assert run.result["vmId"] == 9001
    foreign = vms(pve)[9000]
    assert foreign.name == "someone-elses-vm" and not foreign.template and tags_of(foreign) == set()


def test_range_full_of_foreign_vms_is_a_clear_error(runner: Runner, pve: Any, root: Any) -> None:
    range_ = runner.spec.vm_id_range.replace(first=9000, last=9001)
    make_vm(root, 9000, "db-1")
    make_vm(root, 9001, "db-2")
    run = runner.up(runner.spec.replace(vm_id_range=range_)).run
    assert run.returncode == 1
    assert run.errors[0].startswith(
        "error: no free VM ID in vmIdRange 9000-9001 (held by VMs not built by this program: 9000, 9001), "
        "homelab-images:proxmox.vmIdRange:"
    )
    assert runner.packer_calls() == []


def test_template_name_held_by_a_foreign_vm_is_a_clear_error(runner: Runner, pve: Any, root: Any) -> None:
    make_vm(root, 120, runner.spec.template_name)
    run = runner.up().run
    assert run.returncode == 1
    assert run.errors[0].startswith(
        f"error: the template name {runner.spec.template_name} is taken by VM 120 ({runner.spec.template_name}) "
        "on pve1, which this program did not build"
    )
    assert set(vms(pve)) == {120}


def test_id_taken_by_a_racing_build_moves_on_to_the_next_id(runner: Runner, pve: Any) -> None:
    run = runner.up(FAKE_PACKER_RACE=str(runner.root / "raced")).run
    run.assert_clean()
    assert run.returncode == 0, run.stderr
    assert run.result["vmId"] == 9001
    assert "VM ID 9000 was taken by another VM first; trying the next free ID" in run.stderr
    racer = vms(pve)[9000]
    assert racer.name == "someone-elses-vm", "the other VM is never touched"


def test_leftover_of_a_crashed_build_is_removed_before_the_next_build(runner: Runner, pve: Any, root: Any) -> None:
    spec = runner.spec
    crashed = stack_tags(9000, spec.image, "e" * 64, lease_tag(time.time() - 1), pending=True)
    make_vm(root, 9000, spec.template_name, tags=crashed)
    root.nodes("pve1").qemu(9000).status.start.post()
    run = runner.up().run
    assert run.returncode == 0, run.stderr
    assert (
        "removing the leftover of an earlier failed or interrupted build: VM 9000 "
        f"({spec.template_name}) on pve1" in run.stderr
    )
    assert set(vms(pve)) == {run.result["vmId"]}
    assert run.result["fingerprint"] == spec.fingerprint


def test_an_old_packer_is_named_with_both_versions_before_packer_init(runner: Runner, pve: Any) -> None:
    run = runner.create(FAKE_PACKER_VERSION="1.6.6")
    run.assert_clean()
    assert run.returncode == 1
    (error,) = run.errors
    assert "Packer 1.6.6 is installed; 1.11.0 or newer is required" in error
    assert "https://developer.hashicorp.com/packer/install" in error
    assert [call["argv"][0] for call in runner.packer_calls(with_version=True)] == ["version"], "no init, no build"
    assert vms(pve) == {}


def test_a_packer_that_is_not_packer_is_refused(runner: Runner, pve: Any) -> None:
    run = runner.create(FAKE_PACKER_VERSION="banana")
    (error,) = run.errors
    assert "not a Packer version; 1.11.0 or newer is required" in error
    assert vms(pve) == {}
