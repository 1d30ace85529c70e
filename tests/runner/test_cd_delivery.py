"""kickstartDelivery cd: the OEMDRV ISO Packer uploads is removed, and a failure to remove it never costs the template.

fakepve applies PVE's rule for deleting a volume (Datastore.Allocate on its storage,
pve-storage src/PVE/API2/Storage/Content.pm delete); the stand-in Packer uploads the CD and
deletes it in its cleanup as the plugin's step_upload_iso.go does.
"""

from __future__ import annotations

from typing import Any

from homelab_images.contract.build_spec import BuildSpec
from homelab_images.contract.proxmox_plugin import CD_CLEANUP_PRIVILEGE
from homelab_images.runner.preflight import CD_ISO_STORAGE_PRIVILEGES
from tests.rendering import plan_for
from tests.runner.conftest import ISO_FILE, TOKEN_ID, Runner, tags_of, vms


def cd_spec(runner: Runner) -> BuildSpec:
    plan = plan_for(lambda config: config["homelab-images:build"].update(kickstartDelivery="cd"))
    return plan.build_spec.replace(
        ca_bundle=runner.spec.ca_bundle, install_repositories=runner.spec.install_repositories
    )


def iso_files(pve: Any) -> set[str]:
    return set(pve.storages["local"]["files"])


def test_cd_delivery_without_datastore_allocate_stops_in_preflight_naming_it(runner: Runner, pve: Any) -> None:
    run = runner.create(cd_spec(runner))
    run.assert_clean()
    assert run.returncode != 0
    (error,) = run.errors
    assert f"lacks privileges a proxmox-iso build needs: {CD_CLEANUP_PRIVILEGE} on /storage/local" in error
    assert runner.packer_calls() == [], "stopped before Packer ran"
    assert vms(pve) == {}


def test_cd_delivery_builds_and_leaves_no_iso_behind(runner: Runner, pve: Any) -> None:
    pve.grant(TOKEN_ID, "/storage/local", *CD_ISO_STORAGE_PRIVILEGES)
    run = runner.create(cd_spec(runner), PACKER_LOG="1")  # keeps Packer's log after success
    assert run.returncode == 0, run.stderr
    template = vms(pve)[run.result["vmId"]]
    assert "ide3" not in template.config, "the OEMDRV CD is unmounted from the template"
    (log,) = runner.kept_logs()
    assert "Uploaded ISO to local:iso/packer" in log.read_text()
    assert iso_files(pve) == {ISO_FILE}, "the uploaded OEMDRV ISO is deleted"


def test_a_failed_iso_cleanup_after_the_template_is_finished_keeps_the_template(runner: Runner, pve: Any) -> None:
    pve.grant(TOKEN_ID, "/storage/local", *CD_ISO_STORAGE_PRIVILEGES)
    run = runner.create(cd_spec(runner), FAKE_PACKER_FAIL_AT="cleanup")
    run.assert_clean()
    assert run.returncode == 0, run.stderr
    vmid = run.result["vmId"]
    assert "build-pending" not in tags_of(vms(pve)[vmid]), "the template is verified and marked finished"
    (warning,) = run.warnings
    assert f"Packer failed after template {vmid} was finished" in warning
    assert "may remain on storage local" in warning and CD_CLEANUP_PRIVILEGE in warning
