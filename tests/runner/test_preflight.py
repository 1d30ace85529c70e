"""Preflight: a build bound to fail stops in seconds, before Packer, with one message saying what to fix."""

from __future__ import annotations

import copy
from typing import Any

from homelab_images.runner.preflight import ISO_STORAGE_PRIVILEGES
from tests.runner.conftest import TOKEN_ID, Run, Runner, grant_build_role, vms


def assert_stopped_before_packer(run: Run, runner: Runner, pve: Any) -> str:
    run.assert_clean()
    assert run.returncode != 0
    assert runner.packer_calls() == [], "preflight failures must not start Packer"
    assert vms(pve) == {}
    assert len(run.errors) == 1, run.stderr
    return run.errors[0]


def test_bad_token_is_reported_without_the_secret(runner: Runner, pve: Any) -> None:
    pve.apitokens[TOKEN_ID] = "another-secret"
    error = assert_stopped_before_packer(runner.create(), runner, pve)
    assert error.startswith(f"error: the API token {TOKEN_ID} was rejected (401 authentication failure)")
    assert "proxmoxve:apiToken" in error


def test_malformed_token_is_reported_without_its_value(runner: Runner, pve: Any) -> None:
    run = runner.create(PROXMOX_VE_API_TOKEN="images@pve:build:5ecr3t-0f-the-build-token-d41d8cd98f00")
    error = assert_stopped_before_packer(run, runner, pve)
    assert run.returncode == 2
    assert "PROXMOX_VE_API_TOKEN is not an API token of the form user@realm!tokenid=secret" in error


def test_every_missing_privilege_is_named_with_its_path_in_one_message(runner: Runner, fakepve: Any) -> None:
    fakepve.acl = None
    grant_build_role(fakepve, omit=("/vms", "VM.Config.CDROM"))
    fakepve.acl[TOKEN_ID] = [
        (path, privileges - {"SDN.Use", "Datastore.AllocateSpace"}) for path, privileges in fakepve.acl[TOKEN_ID]
    ]
    error = assert_stopped_before_packer(runner.create(), runner, fakepve)
    assert error == (
        f"error: the API token {TOKEN_ID} lacks privileges a proxmox-iso build needs: "
        "Datastore.AllocateSpace on /storage/local-lvm; SDN.Use on /sdn/zones/localnetwork/vmbr0; "
        "VM.Config.CDROM on /vms/9000, "
        f"https://127.0.0.1:{fakepve.port}/: grant them to the token "
        "(with privilege separation, to the token itself; see docs/build-runner.md)"
    )


def test_a_privilege_granted_on_a_parent_path_counts(runner: Runner, fakepve: Any) -> None:
    fakepve.acl = None
    grant_build_role(fakepve, omit=("/sdn/zones/localnetwork/vmbr0", "SDN.Use"))
    fakepve.grant(TOKEN_ID, "/sdn", "SDN.Use")
    run = runner.create()
    assert run.returncode == 0, run.stderr


def test_missing_storage(runner: Runner, pve: Any) -> None:
    spec = runner.spec.replace(vm_storage="fast-nvme")
    pve.grant(TOKEN_ID, "/storage/fast-nvme", "Datastore.AllocateSpace", "Datastore.Audit")
    error = assert_stopped_before_packer(runner.create(spec), runner, pve)
    assert error.startswith("error: storage fast-nvme does not exist on node pve1")
    assert "homelab-images:proxmox.vmStorage" in error


def test_storage_without_iso_content(runner: Runner, pve: Any) -> None:
    spec = runner.spec.replace(iso_storage="local-lvm")
    pve.grant(TOKEN_ID, "/storage/local-lvm", *ISO_STORAGE_PRIVILEGES)
    error = assert_stopped_before_packer(runner.create(spec), runner, pve)
    assert "storage local-lvm does not hold content type 'iso'" in error


def test_missing_bridge(runner: Runner, pve: Any) -> None:
    spec = runner.spec.replace(bridge="vmbr9")
    pve.grant(TOKEN_ID, "/sdn/zones/localnetwork/vmbr9", "SDN.Use")
    error = assert_stopped_before_packer(runner.create(spec), runner, pve)
    assert error.startswith("error: bridge vmbr9 does not exist on node pve1")
    assert "vmbr0" in error, "the message offers the bridges that exist"


def test_missing_iso(runner: Runner, pve: Any) -> None:
    spec = runner.spec.replace(iso_volume="local:iso/AlmaLinux-9.8-x86_64-boot.iso")
    error = assert_stopped_before_packer(runner.create(spec), runner, pve)
    assert error.startswith("error: ISO volume local:iso/AlmaLinux-9.8-x86_64-boot.iso does not exist")


def test_node_offline(runner: Runner, pve: Any) -> None:
    pve.set_node_offline("pve1")
    error = assert_stopped_before_packer(runner.create(), runner, pve)
    assert error.startswith("error: node pve1 is offline")


def test_quorum_lost_is_not_retried(runner: Runner, pve: Any) -> None:
    pve.lose_quorum()
    run = runner.create()
    error = assert_stopped_before_packer(run, runner, pve)
    assert "has no quorum" in error
    assert "retrying" not in run.stderr


def test_untrusted_certificate_fails_tls_verification(runner: Runner, pve: Any) -> None:
    spec = runner.spec.replace(ca_bundle=None)
    error = assert_stopped_before_packer(runner.create(spec), runner, pve)
    assert error.startswith("error: TLS verification of the Proxmox API failed")
    assert "caBundle" in error


def test_insecure_only_when_configured_and_with_a_warning(runner: Runner, pve: Any) -> None:
    template = copy.deepcopy(runner.spec.packer_template)
    next(iter(template["source"]["proxmox-iso"].values()))["insecure_skip_tls_verify"] = True
    spec = runner.spec.replace(ca_bundle=None, insecure=True, packer_template=template)
    run = runner.create(spec)
    run.assert_clean()
    assert run.returncode == 0, run.stderr
    assert any("TLS verification of" in w and "is off" in w for w in run.warnings)


def test_download_and_quorum_privileges_are_required(runner: Runner, fakepve: Any) -> None:
    fakepve.acl = None
    grant_build_role(fakepve, omit=("/", "Sys.Audit"))
    fakepve.acl[TOKEN_ID] = [
        (path, privileges - {"Datastore.AllocateTemplate", "Sys.AccessNetwork"})
        for path, privileges in fakepve.acl[TOKEN_ID]
    ]
    error = assert_stopped_before_packer(runner.create(), runner, fakepve)
    assert "Sys.Audit on /;" in error
    assert "Datastore.AllocateTemplate on /storage/local" in error
    assert "Sys.AccessNetwork on /nodes/pve1" in error


def test_proxmox_ve_8_needs_vm_monitor_instead_of_the_guest_agent_privilege(runner: Runner, fakepve: Any) -> None:
    fakepve.version = "8.4.1"
    fakepve.acl = None
    grant_build_role(fakepve)
    error = assert_stopped_before_packer(runner.create(), runner, fakepve)
    assert "needs: VM.Monitor on /vms/9000" in error
    fakepve.grant(TOKEN_ID, "/vms", "VM.Monitor")
    built = runner.create()
    assert built.returncode == 0, built.stderr
