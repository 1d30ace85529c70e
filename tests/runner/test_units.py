"""The runner's pure parts: token parsing, privilege paths, Packer output and manifest, results."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import pytest

from homelab_images.contract.result import parse_result
from homelab_images.runner.console import Console
from homelab_images.runner.env import parse_token, read_tuning
from homelab_images.runner.errors import RunnerError
from homelab_images.runner.packer_run import PackerRun, packer_error, read_manifest, stage_of
from homelab_images.runner.preflight import held_on
from homelab_images.runner.provenance import describe, parse
from homelab_images.runner.proxmox import Kind, kind_of_message
from tests.rendering import plan_for
from tests.runner.conftest import shipped_spec
from tests.stack_files import set_key


def test_token_is_split_like_the_proxmox_provider_expects() -> None:
    assert parse_token("images@pve!build=0f1e-secret") == ("images@pve", "build", "0f1e-secret")


@pytest.mark.parametrize("raw", ["images@pve=0f1e-secret", "images!build=0f1e-secret", "images@pve!build"])
def test_malformed_token_message_never_shows_the_value(raw: str) -> None:
    with pytest.raises(RunnerError) as caught:
        parse_token(raw)
    assert "0f1e-secret" not in str(caught.value)


def test_timing_knobs_keep_the_real_defaults_unless_set() -> None:
    """The tests shorten the smoke check's repeat interval; a build without the variable waits 2 s."""
    assert read_tuning({}).smoke_repeat_seconds == 2.0
    assert read_tuning({"HOMELAB_IMAGES_SMOKE_REPEAT_SECONDS": "0.1"}).smoke_repeat_seconds == 0.1
    with pytest.raises(RunnerError, match="HOMELAB_IMAGES_SMOKE_REPEAT_SECONDS must not be negative"):
        read_tuning({"HOMELAB_IMAGES_SMOKE_REPEAT_SECONDS": "-1"})


def test_privilege_on_a_parent_path_covers_children_but_not_siblings() -> None:
    answer = {"/vms": {"VM.Audit": 1}, "/storage/local": {"Datastore.Audit": 1}, "/": {"Sys.Audit": 1}}
    assert held_on(answer, "/vms/9000") == {"VM.Audit", "Sys.Audit"}
    assert held_on(answer, "/storage/local-lvm") == {"Sys.Audit"}


@pytest.mark.parametrize(
    ("line", "stage"),
    [
        ("2026-01-01T00:00:00Z: ==> p.a: Waiting for SSH to become available", "installing the OS (waiting for SSH)"),
        ("==> p.a: Provisioning with shell script: scripts/install-k3s.sh", "provisioning: install-k3s.sh"),
        ("==> proxmox-iso.alma9: Converting VM to template", "converting to a template"),
        ("    proxmox-iso.alma9: Complete!", None),
    ],
)  # fmt: skip
def test_progress_stages_from_packer_output(line: str, stage: str | None) -> None:
    assert stage_of(line) == stage


def test_manifest_artifact_of_the_last_run_is_the_vm_id(tmp_path: Path) -> None:
    builds = [
        {"name": "a", "builder_type": "proxmox-iso", "artifact_id": "9000", "packer_run_uuid": "old"},
        {"name": "a", "builder_type": "proxmox-iso", "artifact_id": "9007", "packer_run_uuid": "new"},
    ]
    (tmp_path / "manifest.json").write_text(json.dumps({"builds": builds, "last_run_uuid": "new"}))
    assert read_manifest(tmp_path) == 9007


def test_manifest_without_a_proxmox_artifact_is_an_error(tmp_path: Path) -> None:
    builds = [{"name": "a", "builder_type": "null", "artifact_id": "Null", "packer_run_uuid": "x"}]
    (tmp_path / "manifest.json").write_text(json.dumps({"builds": builds, "last_run_uuid": "x"}))
    with pytest.raises(RunnerError, match="names no proxmox-iso template"):
        read_manifest(tmp_path)


def test_packer_error_prefers_packers_own_summary() -> None:
    run = PackerRun(exit_code=1, seconds=1.0)
    run.tail = deque(
        [
            "==> proxmox-iso.a: Error creating VM: 500 unable to create VM 9000",
            "Build 'proxmox-iso.a' errored after 2 seconds: error creating VM: storage 'x' does not exist",
            "==> Some builds didn't complete successfully and had errors:",
        ]
    )
    assert packer_error(run) == "error creating VM: storage 'x' does not exist"


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("VM is locked (backup)", Kind.LOCKED),
        ("can't lock file '/var/lock/qemu-server/lock-9001.conf' - got timeout", Kind.LOCKED),
        ("cluster not ready - no quorum?", Kind.QUORUM),
        ("can't remove VM 9001 - protection mode enabled", Kind.PROTECTED),
        ("base volume 'local:100/vm-100-disk-0.raw' is still in use by linked cloned", Kind.LINKED_CLONES),
        ("unable to write to storage 'local-lvm': No space left on device", Kind.FULL),
    ],
)
def test_proxmox_messages_are_classified(message: str, kind: Kind) -> None:
    assert kind_of_message(message) is kind


def test_provenance_round_trips_through_the_description() -> None:
    spec = shipped_spec()
    origin = parse(describe(spec, "2026-05-01T10:00:00Z", None))
    assert origin.fingerprint == spec.fingerprint
    assert (origin.built_at, origin.version) == ("2026-05-01T10:00:00Z", spec.version)


def test_an_imported_templates_description_names_its_qcow2_not_the_iso() -> None:
    """The ISO of the importing stack's config is not what an imported template came from."""
    sha256 = "ab" * 32
    imported = plan_for(
        set_key("homelab-images:images/0.importFrom", {"url": "https://files.example.org/a.qcow2", "sha256": sha256})
    ).template_build
    lines = describe(imported, "2026-05-01T10:00:00Z", None).splitlines()
    assert f"qcow2 sha256: {sha256}" in lines
    assert not any(imported.iso_sha256 in line for line in lines)
    built = shipped_spec()
    assert f"iso sha256: {built.iso_sha256}" in describe(built, "2026-05-01T10:00:00Z", None).splitlines()


def test_result_is_the_last_json_line() -> None:
    line = json.dumps(
        {"vmId": 9001, "node": "pve1", "name": "n", "version": "1.0.0", "fingerprint": "f", "storage": "s",
         "builtAt": "t", "sourceCommit": None, "retained": []}
    )  # fmt: skip
    result = parse_result(f'noise\n{{"vmId": 1}}\n{line}\n')
    assert result is not None and result.vm_id == 9001
    assert parse_result("") is None


def test_console_scrubs_secrets() -> None:
    lines: list[str] = []

    class Sink:
        def write(self, text: str) -> None:
            lines.append(text)

        def flush(self) -> None:
            pass

    console = Console(Sink(), secrets=["s3cr3t"])  # type: ignore[arg-type]
    console.raw("PROXMOX_TOKEN=s3cr3t")
    assert lines == ["PROXMOX_TOKEN=<redacted>\n"]
