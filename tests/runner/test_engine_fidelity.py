"""The build as pulumi-command and the engine really run it: big output, cancel, hang-up, rotated tokens."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from homelab_images.runner.preflight import NODE_PRIVILEGES
from tests.engine import MAX_ARG_STRLEN, PREVIOUS_STDERR, PREVIOUS_STDOUT, Recorded
from tests.runner.conftest import SECRET, TOKEN_ID, Runner, grants, interrupt, vms
from tests.runner.test_failures import wait_until_building
from tests.runner.test_replicas import on_node

CANCEL_CLEANUP_SECONDS = 30.0


def poll(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still {what} after {timeout:g} s"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    """Running and not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def private_keys(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]


def test_the_harness_is_as_strict_as_execve(runner: Runner) -> None:
    """An environment string over 128 KiB fails the update, in the model and in the kernel alike."""
    big = "x" * MAX_ARG_STRLEN
    with pytest.raises(OSError) as refused:
        subprocess.run(["/bin/true"], env={"PULUMI_COMMAND_STDERR": big}, check=False)
    assert refused.value.errno == errno.E2BIG
    old = Recorded(runner.inputs(), '{"vmId": 9000}', big)
    run, kept = runner.provider().update(old, runner.inputs())
    assert not run.ok and "argument list too long (PULUMI_COMMAND_STDERR" in run.stderr
    assert kept is old, "a failed update keeps the old state"


def test_300_kib_of_packer_output_then_update_and_delete_with_both_previous_outputs(runner: Runner, pve: Any) -> None:
    created = runner.up(FAKE_PACKER_NOISE_BYTES=str(300 * 1024), FAKE_PACKER_LEAK_TOKEN="1", PACKER_LOG="1").run
    created.assert_clean()
    assert created.returncode == 0, created.stderr[-2000:]
    assert len(created.stderr.encode()) < 64 * 1024, "stderr comes back as one environment variable"
    (log,) = runner.kept_logs()
    text = log.read_text()
    assert len(text) > 300 * 1024, "Packer's whole output is in its log"
    assert "[DEBUG]" in text, "PACKER_LOG=1 asked for Packer's debug log"
    assert SECRET not in text and "PRIVATE KEY" not in text
    assert f"Packer's full log with its debug output (secrets removed): {log}" in created.stderr

    updated = runner.up(runner.spec.replace(timeout_minutes=120))
    assert updated.operation == "update"
    assert {PREVIOUS_STDOUT, PREVIOUS_STDERR} <= set(updated.run.env)
    assert updated.ok, updated.run.stderr
    destroyed = runner.destroy()
    assert {PREVIOUS_STDOUT, PREVIOUS_STDERR} <= set(destroyed.run.env)
    assert destroyed.ok, destroyed.run.stderr
    assert vms(pve) == {}


def test_packer_log_path_is_never_passed_to_packer(runner: Runner, pve: Any) -> None:
    elsewhere = runner.root / "debug.log"
    failed = runner.up(FAKE_PACKER_FAIL_AT="provision", PACKER_LOG="1", PACKER_LOG_PATH=str(elsewhere)).run
    assert failed.returncode == 1
    assert not elsewhere.exists(), "an unscrubbed debug log never lands outside the build"
    build = runner.packer_calls()[-1]
    assert "PACKER_LOG_PATH" not in build["env"] and "PACKER_LOG" in build["env"]
    (log,) = runner.kept_logs()
    assert "[DEBUG]" in log.read_text()
    assert oct(log.stat().st_mode & 0o777) == oct(0o600)


def test_a_failed_build_keeps_a_scrubbed_log_and_shows_its_last_lines(runner: Runner, pve: Any) -> None:
    failed = runner.up(FAKE_PACKER_FAIL_AT="provision", FAKE_PACKER_LEAK_TOKEN="1").run
    failed.assert_clean()
    (log,) = runner.kept_logs()
    text = log.read_text()
    assert "Script exited with non-zero exit status: 1" in text
    assert "<redacted>" in text and SECRET not in text
    assert f"note: Packer's full log (secrets removed): {log}" in failed.stderr
    tail = [line for line in failed.stderr.splitlines() if line.startswith("  | ")]
    assert tail and "errored after" in "".join(tail), "stderr shows the last lines of Packer's output"
    assert "Script exited with non-zero exit status: 1" in tail[-1]
    assert runner.leftover_files() == []


def test_cancel_kills_the_runner_and_its_guardian_cleans_up(runner: Runner, pve: Any) -> None:
    """pulumi up cancelled: the engine's Cancel SIGKILLs the command; nothing of the build survives."""
    pidfile = runner.root / "packer.pid"
    running = runner.start_up(FAKE_PACKER_HANG="1", FAKE_PACKER_PIDFILE=str(pidfile))
    packer = wait_until_building(runner, pidfile)
    assert private_keys(runner.tmp), "the build's key is on disk while Packer runs"
    running.cancel()
    cancelled = running.finish()
    assert cancelled.returncode == -signal.SIGKILL
    assert runner.stack.state is None, "a cancelled create records nothing"

    poll(lambda: not alive(packer), CANCEL_CLEANUP_SECONDS, "a Packer process")
    poll(lambda: runner.leftover_files() == [], CANCEL_CLEANUP_SECONDS, "a build directory")
    assert private_keys(runner.root) == []
    poll(lambda: vms(pve) == {}, CANCEL_CLEANUP_SECONDS, "a build VM")
    (log,) = runner.kept_logs()
    assert "build was cancelled" in log.read_text(), "Packer was interrupted and cleaned up its VM"
    assert "the runner was killed" in log.read_text()

    again = runner.up()
    assert again.ok, again.run.stderr
    templates = [vm for vm in vms(pve).values() if vm.template]
    assert [vm.vmid for vm in templates] == [again.run.result["vmId"]]


def test_hang_up_interrupts_packer_and_cleans_up(runner: Runner, pve: Any) -> None:
    pidfile = runner.root / "packer.pid"
    running = runner.start_up(FAKE_PACKER_HANG="1", FAKE_PACKER_PIDFILE=str(pidfile))
    wait_until_building(runner, pidfile)
    interrupt(running, signal.SIGHUP)
    run = running.finish()
    assert run.returncode == 128 + signal.SIGHUP
    assert run.errors[0].startswith("error: the create was interrupted by SIGHUP")
    assert vms(pve) == {} and runner.leftover_files() == []
    (log,) = runner.kept_logs()
    assert "build was cancelled" in log.read_text(), "Packer got an interrupt and deleted its VM"


def test_a_rotated_token_is_used_by_delete_when_the_shell_provides_it(runner: Runner, pve: Any) -> None:
    """delete runs with the old inputs: the revoked token, unless the shell gives the current one."""
    assert runner.up().ok
    pve.apitokens.pop(TOKEN_ID)
    rotated_id, rotated_secret = "images@pve!build2", "a-new-secret-0f-the-rotated-token"
    pve.apitokens[rotated_id] = rotated_secret
    for path, privileges in grants().items():
        pve.grant(rotated_id, path, *privileges)

    stale = runner.destroy()
    assert not stale.ok
    assert "was rejected (401" in stale.run.errors[0]
    assert runner.stack.state is not None, "a failed delete keeps the resource"

    current = runner.destroy(HOMELAB_IMAGES_API_TOKEN=f"{rotated_id}={rotated_secret}")
    assert current.ok, current.run.stderr
    assert rotated_secret not in current.run.stderr
    assert vms(pve) == {}


def test_moving_the_template_to_another_node_builds_it_there(runner: Runner, pve: Any) -> None:
    pve.add_node("pve2")
    pve.grant(TOKEN_ID, "/nodes/pve2", *NODE_PRIVILEGES)
    first = runner.up().run
    assert first.returncode == 0, first.stderr
    assert runner.stack.preview(runner.inputs(runner.spec.replace(vm_storage="ceph"))).operation == "replace"
    assert runner.stack.preview(runner.inputs(runner.spec.replace(timeout_minutes=9))).operation == "update"

    moved = runner.up(on_node(runner.spec, "pve2"))
    assert moved.operation == "replace", "a new node is a new build, not an update that keeps the old one"
    assert moved.ok, moved.run.stderr
    result = moved.run.result
    template = vms(pve)[result["vmId"]]
    assert (result["node"], template.node, template.template) == ("pve2", "pve2", True)
    assert moved.deleted is not None and moved.deleted.env["PULUMI_COMMAND_STDOUT"] == first.stdout.rstrip("\n")


def test_first_preview_does_not_know_the_build_output(runner: Runner) -> None:
    preview = runner.stack.preview(runner.inputs())
    assert (preview.operation, preview.stdout_known) == ("create", False)
    assert runner.packer_calls() == [], "a preview runs nothing"
    assert os.listdir(runner.tmp) == []


def test_a_build_killed_with_its_guardian_leaves_nothing_after_the_next_create(runner: Runner, pve: Any) -> None:
    """Both processes killed at once (an OOM kill of the session): the next create removes the key."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = runner.tmp / "homelab-images-build-killed"
    stale.mkdir(mode=0o700)
    (stale / "owners").write_text(f"{gone.pid} {gone.pid}\n")
    (stale / "build_ssh_key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    alive = runner.tmp / "homelab-images-build-running"
    alive.mkdir(mode=0o700)
    (alive / "owners").write_text(f"{os.getpid()} {gone.pid}\n")

    created = runner.up().run
    assert created.returncode == 0, created.stderr
    assert not stale.exists() and private_keys(runner.tmp) == []
    assert f"note: removed {stale}, left by a build that was killed with its guardian" in created.stderr
    assert alive.exists(), "a build whose runner still runs is never touched"
