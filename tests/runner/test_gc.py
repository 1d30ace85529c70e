"""`homelab-images gc --stack-file FILE [--apply]`: superseded templates and leftovers, ours only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from homelab_images.contract.ownership import SUPERSEDED_TAG, join_tags
from tests.runner.conftest import REPO, SECRET, Runner, make_vm, stack_tags, vms
from tests.stack_files import fixture_document, write_stack_file

IMAGE = "alma9-k3s-node-amd64"


def owned_tags(vmid: int, image: str, fingerprint_char: str, *extra: str, pending: bool = False) -> str:
    return stack_tags(vmid, image, fingerprint_char * 64, *extra, pending=pending)


def provenance(built_at: str) -> str:
    return f"fingerprint: {'0' * 64}\nbuilt at: {built_at}\nbuilt by homelab-images"


def gc(
    runner: Runner, *args: str, without: str | None = None, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """gc with the frozen shipped stack pointed at fakepve; its caBundle (relative to the stack
    file's directory, as users write it) is the only way the fake's certificate is trusted."""
    config = fixture_document()["config"]
    config["homelab-images:proxmox"]["caBundle"] = "fakepve-ca.pem"
    (runner.root / "fakepve-ca.pem").write_bytes(Path(runner.cafile).read_bytes())
    stack_file = write_stack_file(runner.root, config)
    env = runner.env()
    if without:
        del env[without]
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "homelab_images", "gc", "--stack-file", str(stack_file), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def cluster_with_garbage(root: Any) -> None:
    def superseded(vmid: int) -> str:
        return owned_tags(vmid, IMAGE, "a", SUPERSEDED_TAG)

    make_vm(root, 9000, "v0-oldest", superseded(9000), provenance("2026-01-01T00:00:00Z"), template=True)
    make_vm(root, 9001, "v1-rollback", superseded(9001), provenance("2026-02-01T00:00:00Z"), template=True)
    make_vm(root, 9002, "v2-current", owned_tags(9002, IMAGE, "b"), provenance("2026-03-01T00:00:00Z"), template=True)
    make_vm(root, 9003, "crashed-build", owned_tags(9003, IMAGE, "c", pending=True))
    make_vm(root, 9004, "v-protected", superseded(9004), provenance("2025-12-01T00:00:00Z"), template=True)
    root.nodes("pve1").qemu(9004).config.put(protection=1)
    retired_image = owned_tags(9010, "retired-image", "d", SUPERSEDED_TAG)
    make_vm(root, 9010, "retired-image-v3", retired_image, provenance("2026-01-15T00:00:00Z"), template=True)
    make_vm(root, 9020, "not-ours", join_tags([SUPERSEDED_TAG, f"image-{IMAGE}"]), template=True)


def test_gc_dry_run_lists_and_apply_deletes_only_unused_garbage_of_ours(runner: Runner, pve: Any, root: Any) -> None:
    cluster_with_garbage(root)

    dry = gc(runner)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"Proxmox templates on {runner.env()['PROXMOX_VE_ENDPOINT']} (VM IDs 9000-9049):",
        "  VM 9000 v0-oldest on pve1: superseded, beyond retainPrevious=1: would delete",
        "  VM 9003 crashed-build on pve1: leftover of a failed or interrupted build: would delete",
        "  VM 9004 v-protected on pve1: superseded, beyond retainPrevious=1: in use (protection is on), kept",
        "  VM 9010 retired-image-v3 on pve1: superseded, image no longer configured: would delete",
        "  dry run: nothing was deleted; run again with --apply to delete the VMs marked 'would delete'",
    ], "a stack without the qemu target and without qcow2 files shows no section for them"
    assert set(vms(pve)) == {9000, 9001, 9002, 9003, 9004, 9010, 9020}

    pve.fail("DELETE", "/nodes/pve1/qemu/9010", error="base_volume_still_use_linked", times=1)
    applied = gc(runner, "--apply")
    assert applied.returncode == 0, applied.stderr
    assert (
        "VM 9010 retired-image-v3 on pve1: superseded, image no longer configured: "
        "in use (linked clones still use its disks), kept"
    ) in applied.stdout
    assert set(vms(pve)) == {9001, 9002, 9004, 9010, 9020}
    for text in (dry.stdout, dry.stderr, applied.stdout, applied.stderr):
        assert SECRET not in text


def test_gc_with_nothing_to_collect(runner: Runner, root: Any) -> None:
    make_vm(root, 9002, "v2-current", owned_tags(9002, IMAGE, "b"), provenance("2026-03-01T00:00:00Z"), template=True)
    run = gc(runner, "--apply")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[1:] == [
        "  nothing to collect: no superseded templates beyond retention and no failed-build leftovers"
    ]


def test_gc_without_a_token_says_how_to_provide_it(runner: Runner) -> None:
    done = gc(runner, without="PROXMOX_VE_API_TOKEN")
    assert done.returncode != 0
    assert done.stderr.strip() == (
        "error: homelab-images gc: PROXMOX_VE_API_TOKEN is not set; "
        "export PROXMOX_VE_API_TOKEN='user@realm!tokenid=secret' (the token of proxmoxve:apiToken) and run again"
    )


def test_gc_with_a_malformed_token_says_how_to_provide_it_without_echoing_it(runner: Runner) -> None:
    """The hint is gc's own (export it), not the runner's (pulumi config set)."""
    done = gc(runner, extra_env={"PROXMOX_VE_API_TOKEN": "sentinel-not-a-token"})
    assert done.returncode != 0
    assert done.stderr.strip() == (
        "error: homelab-images gc: PROXMOX_VE_API_TOKEN is not of the form user@realm!tokenid=secret; "
        "export PROXMOX_VE_API_TOKEN='user@realm!tokenid=secret' (the token of proxmoxve:apiToken) and run again"
    )
    assert "sentinel" not in done.stdout + done.stderr
