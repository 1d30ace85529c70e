"""Delete (destroy or replacement): retire the template safely, never wedging `pulumi up`."""

from __future__ import annotations

from typing import Any

from homelab_images.contract.ownership import SUPERSEDED_TAG
from tests.runner.conftest import Run, Runner, make_vm, tags_of, vms


def built(runner: Runner) -> Run:
    run = runner.create()
    assert run.returncode == 0, run.stderr
    return run


def test_linked_clones_keep_the_template_and_delete_exits_0(runner: Runner, pve: Any, root: Any) -> None:
    run = built(runner)
    vmid = run.result["vmId"]
    root.nodes("pve1").qemu(vmid).clone.post(newid=9100, name="k3s-worker-1", full=0)
    # fakepve does not model the base-volume check; it is injected as PVE reports it.
    pve.fail("DELETE", f"/nodes/pve1/qemu/{vmid}", error="base_volume_still_use_linked", times=1)

    deleted = runner.delete(run)
    deleted.assert_clean()
    assert deleted.returncode == 0, "a blocked delete must not wedge pulumi up"
    assert vmid in vms(pve) and 9100 in vms(pve)
    assert SUPERSEDED_TAG in tags_of(vms(pve)[vmid])
    assert deleted.warnings == [
        f"warning: could not delete template VM {vmid} ({runner.spec.template_name}) on pve1: linked clones still "
        f"use its disks. It is kept and tagged {SUPERSEDED_TAG}; "
        "`venv/bin/homelab-images gc --stack <stack> --apply` deletes it once unused"
    ]


def test_protection_keeps_the_template_and_delete_exits_0(runner: Runner, pve: Any, root: Any) -> None:
    run = built(runner)
    vmid = run.result["vmId"]
    root.nodes("pve1").qemu(vmid).config.put(protection=1)
    deleted = runner.delete(run)
    assert deleted.returncode == 0, deleted.stderr
    assert SUPERSEDED_TAG in tags_of(vms(pve)[vmid])
    assert "protection is on (protection=1)" in deleted.warnings[0]


def test_locked_template_is_retried_with_backoff_and_a_lasting_lock_is_a_clear_error(runner: Runner, pve: Any) -> None:
    run = built(runner)
    vmid = run.result["vmId"]
    pve.snapshot_lock(vmid, "backup")
    stuck = runner.delete(run)
    stuck.assert_clean()
    assert stuck.returncode == 1
    assert stuck.errors == [
        f"error: the VM stayed locked (VM is locked (backup)) after retrying, VM {vmid} on pve1: "
        "wait for the running backup/migration/task to finish and run again"
    ]
    assert stuck.stderr.count("retrying in") == 5, "bounded: six attempts in all"
    assert vmid in vms(pve)

    # A lock that ends after two attempts, as PVE's destroy reports it (check_lock before the worker):
    # counted in requests, not in time, so a loaded machine cannot change the outcome.
    pve.unlock(vmid)
    pve.fail("DELETE", f"/nodes/pve1/qemu/{vmid}", 500, "VM is locked (backup)", times=2)
    deleted = runner.delete(run)
    assert deleted.returncode == 0, deleted.stderr
    assert "VM is locked (backup); retrying in" in deleted.stderr
    assert vmid not in vms(pve)


def test_quorum_lost_fails_delete_with_a_clear_message(runner: Runner, pve: Any) -> None:
    run = built(runner)
    pve.lose_quorum()
    deleted = runner.delete(run)
    assert deleted.returncode == 1
    assert "has no quorum" in deleted.errors[0]
    assert run.result["vmId"] in vms(pve)


def test_dropped_connections_are_retried(runner: Runner, pve: Any) -> None:
    run = built(runner)
    pve.flaky_network(drop_rate=0.5, seed=3)
    # fakepve seeds its generator only when it starts; reseed so the drops are the same every run.
    pve._random.seed(3)
    deleted = runner.delete(run)
    pve.flaky_network()
    assert deleted.returncode == 0, deleted.stderr
    assert "ConnectionError; retrying in" in deleted.stderr
    assert run.result["vmId"] not in vms(pve)


def test_template_already_gone_is_success(runner: Runner, root: Any) -> None:
    run = built(runner)
    root.nodes("pve1").qemu(run.result["vmId"]).delete()
    deleted = runner.delete(run)
    assert deleted.returncode == 0, deleted.stderr
    assert "already gone; nothing to delete" in deleted.stderr


def test_id_reused_by_a_foreign_vm_is_never_touched(runner: Runner, pve: Any, root: Any) -> None:
    run = built(runner)
    vmid = run.result["vmId"]
    root.nodes("pve1").qemu(vmid).delete()
    make_vm(root, vmid, "postgres")
    deleted = runner.delete(run)
    assert deleted.returncode == 0, deleted.stderr
    assert vms(pve)[vmid].name == "postgres"
    assert "left untouched" in deleted.warnings[0]
