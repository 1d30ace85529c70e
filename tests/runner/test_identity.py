"""Ownership is proven, not claimed: copies, clones, other stacks and other runs are never touched.

Each scenario is one the tags alone got wrong: a second run from another state
directory and endpoint spelling, a VM with our tags and description copied onto
it, a full clone of our template turned into a template, another stack's
template in our range, and a create that failed after its template was finished.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from homelab_images.contract.ownership import PENDING_TAG, SUPERSEDED_TAG
from tests.runner.conftest import (
    REPO,
    Run,
    Runner,
    finish,
    make_vm,
    next_spec,
    stack_tags,
    tags_of,
    vms,
)

IMAGE = "alma9-k3s-node-amd64"


def wait_for_vm(pve: Any, vmid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while vmid not in vms(pve):
        assert time.monotonic() < deadline, f"VM {vmid} was never created"
        time.sleep(0.05)


def gc(runner: Runner, *args: str) -> subprocess.CompletedProcess[str]:
    """gc of the templates only: the files part would look at this checkout's own artifactDir."""
    return subprocess.run(
        [sys.executable, "-m", "homelab_images", "gc", "--stack", "homelab", "--only", "templates", *args],
        env=runner.env(REQUESTS_CA_BUNDLE=runner.cafile),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def created(runner: Runner, spec: Any = None) -> Run:
    run = runner.create(spec)
    assert run.returncode == 0, run.stderr
    return run


def test_two_concurrent_runs_from_other_state_dirs_and_endpoint_spellings_both_succeed(
    runner: Runner, pve: Any, tmp_path: Path
) -> None:
    first_gate, second_gate = tmp_path / "go-first", tmp_path / "go-second"
    # Without the smoke test: the fake guest would remember one smoke clone's disk at a reused VM ID.
    spec = runner.spec.replace(smoke_test=False)
    first = runner.start_create(spec, FAKE_PACKER_GATE=str(first_gate))
    wait_for_vm(pve, 9000)
    # Another machine: its own state directory, the endpoint spelt differently.
    second = runner.start_create(
        spec,
        FAKE_PACKER_GATE=str(second_gate),
        HOMELAB_IMAGES_STATE_DIR=str(tmp_path / "other-machine-state"),
        PROXMOX_VE_ENDPOINT=f"https://localhost:{pve.port}",
    )
    wait_for_vm(pve, 9001)
    assert PENDING_TAG in tags_of(vms(pve)[9000]), "the first build is still running"
    second_gate.touch()
    second_run = finish(second)
    first_gate.touch()
    first_run = finish(first)
    for run in (first_run, second_run):
        run.assert_clean()
        assert run.returncode == 0, run.stderr
    assert "VM 9000 (alma9-k3s-node-amd64-v1.0.0) on pve1 is a build in progress" in second_run.stderr
    assert {first_run.result["vmId"], second_run.result["vmId"]} == {9000, 9001}
    assert all(vms(pve)[vmid].template for vmid in (9000, 9001))


def test_a_vm_with_our_tags_and_description_copied_is_never_touched(runner: Runner, pve: Any, root: Any) -> None:
    ours = created(runner)
    template = vms(pve)[ours.result["vmId"]]
    copied_tags = ";".join(sorted(tags_of(template) | {PENDING_TAG}))
    make_vm(root, 9100, template.name + "-copy", copied_tags, template.config["description"])
    root.nodes("pve1").qemu(9100).status.start.post()

    again = created(runner, next_spec(runner.spec, "1.1.0", "b"))
    assert "9100" not in again.stderr, "a copy is neither removed as a leftover nor retained"
    assert 9100 not in [r["vmId"] for r in again.result["retained"]]
    swept = gc(runner, "--apply")
    assert swept.returncode == 0, swept.stderr
    assert "9100" not in swept.stdout
    copy = vms(pve)[9100]
    assert copy.status == "running" and PENDING_TAG in tags_of(copy)


def test_a_full_clone_of_our_template_made_a_template_is_not_ours_to_prune(runner: Runner, pve: Any, root: Any) -> None:
    first = created(runner)
    old_id = first.result["vmId"]
    second_spec = next_spec(runner.spec, "1.1.0", "b")
    second = created(runner, second_spec)
    assert runner.delete(first).returncode == 0
    assert SUPERSEDED_TAG in tags_of(vms(pve)[old_id])
    root.nodes("pve1").qemu(old_id).clone.post(newid=9200, name="my-own-golden", full=1)
    root.nodes("pve1").qemu(9200).template.post()
    assert SUPERSEDED_TAG in tags_of(vms(pve)[9200]), "the clone carries our tags"

    third = created(runner, next_spec(runner.spec, "1.2.0", "c"))
    assert 9200 not in [r["vmId"] for r in third.result["retained"]]
    assert runner.delete(second, second_spec).returncode == 0
    remaining = vms(pve)
    assert 9200 in remaining, "a user's clone is never 'beyond retainPrevious'"
    assert old_id not in remaining, "our own oldest superseded template is pruned"
    swept = gc(runner, "--apply")
    assert swept.returncode == 0 and "9200" not in swept.stdout
    assert 9200 in vms(pve)


def test_gc_leaves_another_stacks_superseded_template_and_vms_outside_the_range(runner: Runner, root: Any) -> None:
    description = "fingerprint: " + "a" * 64 + "\nbuilt at: 2026-01-01T00:00:00Z\nbuilt by homelab-images"
    other_stack = stack_tags(9005, IMAGE, "a" * 64, SUPERSEDED_TAG, key="another-stacks-owner-key-0123456789ab")
    make_vm(root, 9005, f"{IMAGE}-v0.1.0", other_stack, description, template=True)
    outside = stack_tags(8000, IMAGE, "a" * 64, SUPERSEDED_TAG)
    make_vm(root, 8000, f"{IMAGE}-v0.2.0", outside, description, template=True)
    swept = gc(runner, "--apply")
    assert swept.returncode == 0, swept.stderr
    assert swept.stdout.splitlines()[1].startswith("  nothing to collect"), swept.stdout
    assert {8000, 9005} <= set(vms(runner.pve))


def test_a_500_after_the_template_is_finished_leaves_nothing_untracked(runner: Runner, pve: Any) -> None:
    first = created(runner)
    old_id = first.result["vmId"]
    # Without the smoke test: the fake guest would remember the first smoke clone's disk at a reused VM ID.
    spec = next_spec(runner.spec, "1.1.0", "b").replace(smoke_test=False)
    # The new template is verified and finished; reading the older one back for `retained` fails.
    pve.fail("GET", f"/nodes/pve1/qemu/{old_id}/config", 500, "internal error", times=1)
    failed = runner.create(spec)
    failed.assert_clean()
    assert failed.returncode == 1 and failed.stdout == ""
    assert "removed the build VM 9001 that this failed build left behind" in failed.stderr
    assert set(vms(pve)) == {old_id}, "the finished but unreported template went with the failed create"

    retried = created(runner, spec)
    assert [r["vmId"] for r in retried.result["retained"]] == [old_id]
    assert set(vms(pve)) == {old_id, retried.result["vmId"]}


def test_gc_reports_a_finished_template_no_result_lists(runner: Runner, pve: Any, root: Any) -> None:
    first = created(runner)
    created(runner, next_spec(runner.spec, "1.1.0", "b"))
    # The first one's delete never ran (a create that failed after finishing looks the same).
    report = gc(runner)
    assert report.returncode == 0, report.stderr
    assert f"VM {first.result['vmId']} {runner.spec.template_name} on pve1: finished, but neither" in report.stdout
    assert gc(runner, "--apply").returncode == 0
    assert first.result["vmId"] in vms(pve), "reported only, never deleted"


def lease_of(pve: Any, vmid: int) -> int:
    (lease,) = [int(tag[len("lease-") :]) for tag in tags_of(vms(pve)[vmid]) if tag.startswith("lease-")]
    return lease


def test_the_lease_is_renewed_while_packer_runs_and_dropped_when_finished(
    runner: Runner, pve: Any, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    process = runner.start_create(FAKE_PACKER_GATE=str(gate), HOMELAB_IMAGES_LEASE_SECONDS="2")
    wait_for_vm(pve, 9000)
    first = lease_of(pve, 9000)
    deadline = time.monotonic() + 20
    while lease_of(pve, 9000) <= first:
        assert time.monotonic() < deadline, "the lease was never renewed"
        time.sleep(0.1)
    assert lease_of(pve, 9000) >= time.time(), "a renewed lease lies in the future"
    gate.touch()
    run = finish(process)
    assert run.returncode == 0, run.stderr
    assert not [tag for tag in tags_of(vms(pve)[9000]) if tag.startswith("lease-")], "a finished template has none"


def test_losing_a_vm_id_race_to_another_run_of_this_stack_leaves_the_winners_build_alone(
    runner: Runner, pve: Any
) -> None:
    spec = runner.spec.replace(smoke_test=False)
    # The winner: another run of this very stack, same image and fingerprint, its own build ID and a live lease.
    winner = stack_tags(9000, spec.image, spec.fingerprint, f"lease-{int(time.time()) + 600}", pending=True)
    run = runner.create(spec, FAKE_PACKER_RACE=str(runner.root / "raced"), FAKE_PACKER_RACE_TAGS=winner)
    assert run.returncode == 0, run.stderr
    assert run.result["vmId"] == 9001
    assert "VM ID 9000 was taken by another VM first" in run.stderr
    assert 9000 in vms(pve) and tags_of(vms(pve)[9000]) == set(winner.split(";")), "the winner's build is untouched"
