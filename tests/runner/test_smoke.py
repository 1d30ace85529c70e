"""The smoke test: every new template boots as a linked clone and proves itself before it is promoted."""

from __future__ import annotations

import signal
import time
from typing import Any
from urllib.parse import parse_qs

import pytest

from homelab_images.contract.ownership import PENDING_TAG, SMOKE_FAILED_TAG, SMOKE_TAG, OwnerKey, build_tags
from homelab_images.runner import smoke_checks as checks
from homelab_images.runner.preflight import vm_privileges
from tests.fakes.guest import Guest, done
from tests.runner.conftest import (
    OWNER_KEY,
    TOKEN_ID,
    Run,
    Runner,
    finish,
    grant_build_role,
    interrupt,
    make_vm,
    stack_tags,
    tags_of,
    vms,
)
from tests.runner.test_gc import gc


def requests_to(pve: Any, method: str, suffix: str) -> list[dict[str, list[str]]]:
    return [parse_qs(body.decode()) for verb, path, body in pve.requests if verb == method and path.endswith(suffix)]


def assert_failed_leaving_nothing(run: Run, pve: Any) -> str:
    run.assert_clean()
    assert run.returncode == 1, run.stderr
    assert run.stdout == "", "a failed build prints no result"
    assert vms(pve) == {}, "neither the clone nor the unproven template is left"
    assert len(run.errors) == 1, run.stderr
    return run.errors[0]


def test_default_build_boots_a_linked_clone_checks_it_and_records_the_result(
    runner: Runner, pve: Any, guest: Guest
) -> None:
    run = runner.create()
    run.assert_clean()
    assert run.returncode == 0, run.stderr

    template = run.result["vmId"]
    clone = template + 1
    assert set(vms(pve)) == {template}, "the clone never outlives the build"
    smoke = run.result["smoke"]
    assert smoke["passed"] is True
    assert isinstance(smoke["readySeconds"], float) and 0 <= smoke["readySeconds"] < 60
    assert smoke["checkedAt"].endswith("Z") and smoke["checkedAt"] >= run.result["builtAt"]
    description = vms(pve)[template].config["description"]
    assert f"smoke test: passed at {smoke['checkedAt']}, k3s Ready {smoke['readySeconds']:g}s" in description
    assert PENDING_TAG not in tags_of(vms(pve)[template]), "promoted only after the smoke test"

    (cloned,) = requests_to(pve, "POST", f"/qemu/{template}/clone")
    assert cloned["newid"] == [str(clone)] and cloned["full"] == ["0"], "a linked clone in vmIdRange"
    (configured,) = requests_to(pve, "PUT", f"/qemu/{clone}/config")
    assert configured["ipconfig0"] == ["ip=dhcp"] and configured["ciupgrade"] == ["0"]
    clone_tags = set(configured["tags"][0].split(";"))
    assert {*build_tags(runner.spec.image, "1.0.0", runner.spec.fingerprint), SMOKE_TAG} <= clone_tags
    assert OwnerKey(OWNER_KEY.encode()).owns(clone, "pve1", clone_tags), "the clone carries its own proof"
    assert [tag for tag in clone_tags if tag.startswith("lease-")], "and a lease, like any build in progress"
    assert not {"cipassword", "sshkeys", "cicustom"} & set(configured), "the clone gets nothing secret"
    assert requests_to(pve, "PUT", f"/qemu/{clone}/resize") == [{"disk": ["scsi0"], "size": ["+4G"]}]
    assert guest.executed(clone) == [check.argv for check in checks.CHECKS], "every check ran, k3s started last"
    for check in checks.CHECKS:
        assert f"stage: smoke test: {check.name}: " in run.stderr
    assert "stage: smoke test: removed VM" in run.stderr


def test_smoke_test_off_builds_as_before(runner: Runner, fakepve: Any, guest: Guest) -> None:
    fakepve.acl = None
    grant_build_role(fakepve)
    fakepve.acl[TOKEN_ID] = [
        (path, set(vm_privileges(9, smoke_test=False)) if path == "/vms" else privileges)
        for path, privileges in fakepve.acl[TOKEN_ID]
    ]
    run = runner.create(runner.spec.replace(smoke_test=False))
    run.assert_clean()
    assert run.returncode == 0, run.stderr
    assert run.result["smoke"] is None
    assert "smoke test" not in run.stderr
    assert not any(path.endswith("/clone") for _, path, _ in fakepve.requests)
    assert [vm.vmid for vm in guest.booted] == [run.result["vmId"]], "only the build VM was made"
    assert "smoke test" not in vms(fakepve)[run.result["vmId"]].config["description"]


def test_preflight_names_the_smoke_test_privileges(runner: Runner, fakepve: Any) -> None:
    fakepve.acl = None
    grant_build_role(fakepve)
    fakepve.acl[TOKEN_ID] = [
        (path, privileges - {"VM.Clone", "VM.GuestAgent.Unrestricted"}) for path, privileges in fakepve.acl[TOKEN_ID]
    ]
    run = runner.create()
    assert run.returncode == 1
    assert run.errors[0].startswith(
        f"error: the API token {TOKEN_ID} lacks privileges a proxmox-iso build needs: "
        "VM.Clone, VM.GuestAgent.Unrestricted on /vms/9000 (VM.Clone and guest-agent privileges are for the "
        "smoke test, homelab-images:build.smokeTest)"
    )
    assert runner.packer_calls() == [], "checked before Packer starts"


BROKEN = [
    pytest.param(checks.SELINUX, done("Permissive\n"), "getenforce says 'Permissive'", id="selinux-permissive"),
    pytest.param(checks.MACHINE_ID, done(""), "/etc/machine-id holds nothing", id="machine-id-empty-output"),
    pytest.param(
        checks.K3S_UNITS_CHECK,
        done("unit k3s.service enabled active\nunit k3s-agent.service disabled inactive\n"),
        "k3s.service is enabled and active",
        id="k3s-started-in-template",
    ),
    pytest.param(checks.K3S_VERSION, done("", 127, "sh: k3s: command not found"), "a command is missing", id="no-k3s"),
]


@pytest.mark.parametrize(("check", "answer", "found"), BROKEN)
def test_a_failing_check_stops_the_build_names_the_check_and_removes_the_template(
    runner: Runner, pve: Any, guest: Guest, check: checks.Check, answer: dict[str, Any], found: str
) -> None:
    guest.answers[check.name] = answer
    run = runner.create()
    error = assert_failed_leaving_nothing(run, pve)
    assert error.startswith(f"error: the smoke test failed: {check.name}: {found}")
    assert "smoke-test VM 9001 (linked clone of template 9000) on pve1: the template was removed" in error
    assert "keepFailedTemplates" in error
    assert f"output of `{check.script}`" in run.stderr, "the failing check's output is shown in full"
    later = checks.CHECKS[checks.CHECKS.index(check) + 1 :]
    assert all(c.argv not in guest.executed(9001) for c in later), "checks stop at the first failure"


def test_a_failed_template_is_kept_for_inspection_when_asked(runner: Runner, pve: Any, guest: Guest) -> None:
    guest.root_grown = False
    # The check repeats (every HOMELAB_IMAGES_SMOKE_REPEAT_SECONDS) until the smoke timeout, then fails.
    run = runner.create(runner.spec.replace(keep_failed_templates=True), HOMELAB_IMAGES_SMOKE_TIMEOUT_SECONDS="1")
    run.assert_clean()
    assert run.returncode == 1
    (error,) = run.errors
    assert error.startswith("error: the smoke test failed: root filesystem fills the enlarged disk: the root device")
    assert "template 9000 is kept for inspection, tagged smoke-failed and never used" in error
    assert set(vms(pve)) == {9000}, "the clone is gone, the template stays"
    kept = vms(pve)[9000]
    assert {SMOKE_FAILED_TAG, PENDING_TAG} <= tags_of(kept), "never promoted"
    assert "smoke test: FAILED at " in kept.config["description"]

    guest.root_grown = True
    again = runner.create()
    assert again.returncode == 0, again.stderr
    assert "VM 9000 (alma9-k3s-node-amd64-v1.0.0) on pve1 failed its smoke test and is kept" in again.stderr
    assert 9000 in vms(pve) and again.result["vmId"] != 9000
    assert again.result["retained"] == [], "a failed template is never offered for rollback"

    listed = gc(runner)
    assert "VM 9000 alma9-k3s-node-amd64-v1.0.0 on pve1: template that failed its smoke test" in listed.stdout


@pytest.mark.parametrize("agent", ["silent", "hangs"])
def test_an_agent_that_never_answers_fails_within_the_smoke_timeout(
    runner: Runner, pve: Any, guest: Guest, agent: str
) -> None:
    setattr(guest, agent, True)
    started = time.monotonic()
    run = runner.create(HOMELAB_IMAGES_SMOKE_TIMEOUT_SECONDS="0.5")
    error = assert_failed_leaving_nothing(run, pve)
    assert error.startswith(
        "error: the smoke test failed: the clone's QEMU guest agent never answered within the smoke test's "
        "timeout of 0.5 seconds (homelab-images:build.smokeTimeoutMinutes)"
    )
    assert time.monotonic() - started < 30, "bounded by the smoke timeout, not by the build's"


def test_a_check_that_never_finishes_fails_on_the_smoke_timeout(runner: Runner, pve: Any, guest: Guest) -> None:
    guest.answers[checks.CLOUD_INIT.name] = {"exited": False}
    run = runner.create(HOMELAB_IMAGES_SMOKE_TIMEOUT_SECONDS="0.5")
    error = assert_failed_leaving_nothing(run, pve)
    assert error.startswith("error: the smoke test failed: cloud-init finished: the smoke test's timeout ran out after")
    assert "(output: no output)" in error


def test_a_clone_that_cannot_be_created_fails_the_build(runner: Runner, pve: Any) -> None:
    pve.fail("POST", "/qemu/9000/clone", error="clone_failed")
    run = runner.create()
    error = assert_failed_leaving_nothing(run, pve)
    assert error.startswith(
        "error: the smoke test failed: could not create the linked clone: Proxmox refused the request "
        "(500 Internal Server Error: clone failed: unexpected error), smoke-test VM 9001"
    )


def test_interrupted_during_the_smoke_phase_removes_clone_and_template(runner: Runner, pve: Any, guest: Guest) -> None:
    guest.answers[checks.CLOUD_INIT.name] = {"exited": False}
    process = runner.start_create()
    deadline = time.monotonic() + 30
    while not (9001 in vms(pve) and guest.executed(9001)):
        assert time.monotonic() < deadline, "the smoke phase never started"
        time.sleep(0.05)
    interrupt(process, signal.SIGINT)
    run = finish(process)
    run.assert_clean()
    assert run.returncode in (-signal.SIGINT, 128 + signal.SIGINT)
    assert vms(pve) == {}, "the clone and the unproven template are removed"
    assert "interrupted by SIGINT" in run.errors[0]


def test_a_leftover_clone_is_removed_before_its_template(runner: Runner, pve: Any, root: Any) -> None:
    spec = runner.spec
    make_vm(root, 9000, spec.template_name, tags=stack_tags(9000, spec.image, "e" * 64, pending=True), template=True)
    root.nodes("pve1").qemu(9000).clone.post(newid=9001, full=0, name="leftover-smoke")
    clone_tags = stack_tags(9001, spec.image, "e" * 64, SMOKE_TAG, pending=True)
    root.nodes("pve1").qemu(9001).config.put(tags=clone_tags)
    root.nodes("pve1").qemu(9001).status.start.post()
    listed = gc(runner).stdout.splitlines()[1:]
    assert (
        listed[0]
        == "  VM 9001 leftover-smoke on pve1: smoke-test clone left by a failed or interrupted build: would delete"
    )
    assert listed[1].startswith("  VM 9000 "), "gc, too, removes the clone before its template"
    run = runner.create()
    assert run.returncode == 0, run.stderr
    first = run.stderr.index("earlier failed or interrupted build: VM 9001")
    assert first < run.stderr.index("earlier failed or interrupted build: VM 9000"), "clone first, then template"
    assert "could not remove" not in run.stderr
    assert set(vms(pve)) == {run.result["vmId"]}


def leases(vm: Any) -> list[int]:
    return [int(tag.removeprefix("lease-")) for tag in tags_of(vm) if tag.startswith("lease-")]


def test_a_cancel_during_the_smoke_phase_leaves_what_the_next_build_removes(
    runner: Runner, pve: Any, guest: Guest
) -> None:
    """pulumi up cancelled (SIGKILL) while the clone runs: nothing can clean up at once, so the clone and the
    unpromoted template stay tagged build-pending; once their leases expire, the next build removes both,
    clone first, and succeeds."""
    guest.answers[checks.CLOUD_INIT.name] = {"exited": False}
    running = runner.start_up(HOMELAB_IMAGES_LEASE_SECONDS="1")
    deadline = time.monotonic() + 30
    while not (9001 in vms(pve) and guest.executed(9001)):
        assert time.monotonic() < deadline, "the smoke phase never started"
        time.sleep(0.05)
    running.cancel()
    assert running.finish().returncode == -signal.SIGKILL
    assert runner.stack.state is None, "a cancelled create records nothing"
    assert {SMOKE_TAG, PENDING_TAG} <= tags_of(vms(pve)[9001])
    assert PENDING_TAG in tags_of(vms(pve)[9000]), "the template was never promoted"

    # Until then they count as another run's build in progress: wait for the leases, not for a guessed time.
    while any(lease >= time.time() for vmid in (9000, 9001) for lease in leases(vms(pve)[vmid])):
        assert time.monotonic() < deadline + 30, "the cancelled build's leases never expired"
        time.sleep(0.05)
    guest.answers[checks.CLOUD_INIT.name] = guest.healthy()[checks.CLOUD_INIT.name]
    again = runner.up()
    assert again.ok, again.run.stderr
    assert again.run.stderr.index("build: VM 9001") < again.run.stderr.index("build: VM 9000")
    assert set(vms(pve)) == {again.run.result["vmId"]}


@pytest.mark.parametrize(
    ("message", "explained"),
    [
        ("Agent error: Command guest-exec has been disabled", "must allow guest-exec and guest-exec-status"),
        (
            "Agent error: Failed to execute child process “/usr/libexec/homelab-images/guest-exec” (No such file)",
            "labelled virt_qemu_ga_unconfined_exec_t",
        ),
    ],
)
def test_a_guest_agent_that_refuses_to_run_commands_is_explained(
    runner: Runner, pve: Any, message: str, explained: str
) -> None:
    """RHEL-family images ship qemu-ga with guest-exec disabled and confined by SELinux: say what the image lacks."""
    pve.fail("POST", "/qemu/9001/agent/exec", 500, message)
    error = assert_failed_leaving_nothing(runner.create(), pve)
    assert error.startswith(f"error: the smoke test failed: {checks.CLOUD_INIT.name}: ")
    assert explained in error


def test_a_clone_that_does_not_start_fails_the_build(runner: Runner, pve: Any) -> None:
    pve.fail("POST", "/qemu/9001/status/start", 500, "start failed: QEMU exited with code 1")
    error = assert_failed_leaving_nothing(runner.create(), pve)
    assert error.startswith(
        "error: the smoke test failed: the clone did not start: Proxmox refused the request "
        "(500 Internal Server Error: start failed: QEMU exited with code 1)"
    )
