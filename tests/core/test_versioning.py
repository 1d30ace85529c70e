"""The version guard: lock --check / --update, and the same rule in preview."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pulumi
import pytest

from homelab_images.cli.main import main as cli_main
from homelab_images.core.config import ConfigError
from homelab_images.core.versioning import (
    check_version,
    former_versions,
    image_content,
    read_lock,
    semver_key,
    target_versions,
)
from tests.pulumi_harness import FIXTURE_STACK_FILE, FIXTURES, run_program
from tests.rendering import FIXED_NOW, plan_for
from tests.stack_files import image, mutated_config

IMAGE = "alma9-k3s-node-amd64"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(FIXTURE_STACK_FILE, tmp_path / "Pulumi.homelab.yaml")
    shutil.copy(FIXTURES / "Pulumi.homelab.lock.json", tmp_path / "Pulumi.homelab.lock.json")
    shutil.copytree(FIXTURES / "kickstart", tmp_path / "kickstart")
    return tmp_path / "Pulumi.homelab.yaml"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def _lock(stack_file: Path, mode: str, capsys: Any) -> tuple[int, str]:
    code = cli_main(["lock", mode, "--stack-file", str(stack_file)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_shipped_lock_matches_the_shipped_stack(project: Path, capsys: Any) -> None:
    assert _lock(project, "--check", capsys)[0] == 0


def test_content_change_without_bump_fails(project: Path, capsys: Any) -> None:
    _edit(project, "rootMinGiB: 8", "rootMinGiB: 10")
    code, output = _lock(project, "--check", capsys)
    assert code == 1
    assert f"image {IMAGE} v1.0.0: the image changed but its version did not" in output


def test_bump_then_update_passes(project: Path, capsys: Any) -> None:
    _edit(project, "rootMinGiB: 8", "rootMinGiB: 10")
    _edit(project, 'version: "1.0.0"', 'version: "1.1.0"')
    code, output = _lock(project, "--check", capsys)
    assert code == 1 and "not recorded in the lock file; record it with `lock --update`" in output
    assert "venv/bin/homelab-images lock --update --stack-file" in output
    assert _lock(project, "--update", capsys)[0] == 0
    assert _lock(project, "--check", capsys)[0] == 0
    recorded = json.loads(project.with_name("Pulumi.homelab.lock.json").read_text(encoding="utf-8"))
    assert list(recorded["images"][IMAGE]) == ["1.0.0", "1.1.0"]


def test_the_hint_says_what_these_findings_need_and_names_the_stack_as_the_user_did(
    project: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _set_targets(project, "[proxmox-iso, qemu]")
    code, output = _lock(project, "--check", capsys)
    assert code == 1
    assert output.splitlines()[-1] == (
        f"error: lock file {project.with_name('Pulumi.homelab.lock.json')}: to record them, run "
        f"venv/bin/homelab-images lock --update --stack-file {project}"
    ), "a newly recorded target needs no version bump"

    _edit(project, "rootMinGiB: 8", "rootMinGiB: 10")
    project_dir = project.parent
    monkeypatch.setattr("homelab_images.cli.main.stack_file_path", lambda name: project_dir / f"Pulumi.{name}.yaml")
    for command in (["lock", "--check"], ["validate"]):
        cli_main([*command, "--stack", "homelab"])
        output = capsys.readouterr().err
        assert (
            "lock file Pulumi.homelab.lock.json: after changing the versions as said above, run "
            "venv/bin/homelab-images lock --update --stack homelab\n"
        ) in output, command


def test_reusing_an_old_version_for_new_content_fails(project: Path, capsys: Any) -> None:
    _edit(project, "rootMinGiB: 8", "rootMinGiB: 10")
    _edit(project, 'version: "1.0.0"', 'version: "1.1.0"')
    _lock(project, "--update", capsys)
    _edit(project, 'version: "1.1.0"', 'version: "1.0.0"')
    code, output = _lock(project, "--check", capsys)
    assert code == 1 and "version 1.0.0 was already used for different content" in output
    code, output = _lock(project, "--update", capsys)
    assert code == 1, "update must not rewrite what a version meant"


def test_version_going_backwards_is_refused() -> None:
    finding = check_version({IMAGE: {"1.2.0": {"proxmox-iso": "a"}}}, IMAGE, "1.1.0", {"proxmox-iso": "b"})
    assert finding is not None and finding.kind == "backwards"


def test_rebuild_every_does_not_trip_the_guard(project: Path, capsys: Any) -> None:
    assert _lock(project, "--check", capsys)[0] == 0  # rebuildEvery is set in the shipped stack


def test_semver_ordering() -> None:
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0", "2.0.0"]
    assert sorted(reversed(ordered), key=semver_key) == ordered


def test_explain_prints_the_parts(capsys: Any) -> None:
    assert cli_main(["fingerprint", "--stack-file", str(FIXTURE_STACK_FILE), "--explain"]) == 0
    entry = json.loads(capsys.readouterr().out)[IMAGE]
    assert {"kickstart", "scripts", "iso", "k3s", "hardware"} <= set(entry["shared"])
    assert set(entry["targets"]["proxmox-iso"]["parts"]) == {"packer", "plugin"}


def test_preview_fails_on_unbumped_change_when_strict() -> None:
    def unbumped(config: dict[str, Any]) -> None:
        image(config)["partitioning"]["rootMinGiB"] = 10

    with pytest.raises(pulumi.RunError, match=r"changed but its version did not.*strictVersioning is on"):
        run_program(config=mutated_config(unbumped))


def test_preview_only_warns_when_not_strict(caplog: Any) -> None:
    def unbumped_lenient(config: dict[str, Any]) -> None:
        image(config)["partitioning"]["rootMinGiB"] = 10
        config["homelab-images:build"]["strictVersioning"] = False

    with caplog.at_level("WARNING"):
        run = run_program(config=mutated_config(unbumped_lenient))
    assert run.outputs["templates"][IMAGE]["version"] == "1.0.0"
    assert "the image changed but its version did not" in caplog.text


def _fingerprint_entry(stack_file: Path, capsys: Any) -> dict[str, Any]:
    assert cli_main(["fingerprint", "--stack-file", str(stack_file)]) == 0
    entry: dict[str, Any] = json.loads(capsys.readouterr().out)[IMAGE]
    return entry


def test_the_lock_records_the_printed_lock_digest(project: Path, capsys: Any) -> None:
    _edit(project, "rootMinGiB: 8", "rootMinGiB: 10")
    _edit(project, 'version: "1.0.0"', 'version: "1.1.0"')
    assert _lock(project, "--update", capsys)[0] == 0
    entry = _fingerprint_entry(project, capsys)
    recorded = json.loads(project.with_name("Pulumi.homelab.lock.json").read_text(encoding="utf-8"))
    assert recorded["images"][IMAGE]["1.1.0"] == entry["lockDigest"]
    # rebuildEvery adds the freshness part to the fingerprint only.
    assert entry["lockDigest"] != entry["fingerprint"]


def test_without_rebuild_every_the_lock_digest_is_the_fingerprint(project: Path, capsys: Any) -> None:
    text = project.read_text(encoding="utf-8")
    project.write_text("".join(line for line in text.splitlines(True) if "rebuildEvery:" not in line))
    entry = _fingerprint_entry(project, capsys)
    assert entry["lockDigest"] == entry["fingerprint"]


# --- Per target: the qcow2 (qemu) of a version is held to the same rule as its template.

TEMPLATE, QEMU = "proxmox-iso", "qemu"


def _lock_document(stack_file: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(stack_file.with_name("Pulumi.homelab.lock.json").read_text(encoding="utf-8"))
    return document


def _set_targets(stack_file: Path, targets: str) -> None:
    _edit(stack_file, "      firewall: disabled", f"      targets: {targets}\n      firewall: disabled")


def test_an_unchanged_stack_leaves_the_lock_file_byte_for_byte(project: Path, capsys: Any) -> None:
    """Lock files written before targets were recorded stay as they are: no finding, no rewrite."""
    lock_file = project.with_name("Pulumi.homelab.lock.json")
    before = lock_file.read_bytes()
    assert _lock(project, "--check", capsys)[0] == 0
    assert _lock(project, "--update", capsys)[0] == 0
    assert lock_file.read_bytes() == before
    assert read_lock(lock_file) == {IMAGE: {"1.0.0": {TEMPLATE: _lock_document(project)["images"][IMAGE]["1.0.0"]}}}


def test_adding_the_qemu_target_needs_lock_update_but_no_version_bump(project: Path, capsys: Any) -> None:
    recorded = _lock_document(project)["images"][IMAGE]["1.0.0"]
    _set_targets(project, "[proxmox-iso, qemu]")
    code, output = _lock(project, "--check", capsys)
    assert code == 1
    assert f"image {IMAGE} v1.0.0: the qemu target of this version is not recorded in the lock file" in output
    assert "no version bump" in output
    assert _lock(project, "--update", capsys)[0] == 0
    document = _lock_document(project)
    entry = _fingerprint_entry(project, capsys)
    assert document["images"][IMAGE]["1.0.0"] == {
        TEMPLATE: recorded,
        QEMU: entry["targets"][QEMU]["lockDigest"],
    }, "the template's record is kept, the qcow2's added"
    assert document["schemaVersion"] == 2
    assert _lock(project, "--check", capsys)[0] == 0


def test_a_change_to_the_qemu_target_alone_is_caught_and_named(project: Path, capsys: Any) -> None:
    _set_targets(project, "[proxmox-iso, qemu]")
    _lock(project, "--update", capsys)
    _edit(project, "  homelab-images:build:\n", "  homelab-images:build:\n    qemu: {ovmfCode: /srv/OVMF_CODE.fd}\n")
    code, output = _lock(project, "--check", capsys)
    assert code == 1
    assert f"image {IMAGE} v1.0.0: the image changed but its version did not (qemu target)" in output
    code, output = _lock(project, "--update", capsys)
    assert code == 1, "update must not rewrite what the version's qcow2 was"
    _edit(project, 'version: "1.0.0"', 'version: "1.0.1"')
    assert _lock(project, "--update", capsys)[0] == 0
    versions = _lock_document(project)["images"][IMAGE]
    assert versions["1.0.1"][TEMPLATE] == versions["1.0.0"][TEMPLATE], "the template's content did not change"
    assert versions["1.0.1"][QEMU] != versions["1.0.0"][QEMU]


def test_a_shared_change_names_both_targets(project: Path, capsys: Any) -> None:
    _set_targets(project, "[proxmox-iso, qemu]")
    _lock(project, "--update", capsys)
    _edit(project, "rootMinGiB: 8", "rootMinGiB: 10")
    code, output = _lock(project, "--check", capsys)
    assert code == 1 and "the image changed but its version did not (proxmox-iso and qemu targets)" in output


def test_a_qemu_only_image_records_its_qcow2_content(project: Path, capsys: Any) -> None:
    _set_targets(project, "[qemu]")
    assert _lock(project, "--update", capsys)[0] == 0, "switching targets needs no version bump"
    entry = _fingerprint_entry(project, capsys)
    assert set(entry["targets"]) == {QEMU}
    assert entry["lockDigest"] == entry["targets"][QEMU]["lockDigest"], "its lock entry is the qcow2's"
    assert entry["fingerprint"] == entry["targets"][QEMU]["fingerprint"]
    assert _lock_document(project)["images"][IMAGE]["1.0.0"][QEMU] == entry["lockDigest"]
    assert _lock(project, "--check", capsys)[0] == 0
    _edit(project, "  homelab-images:build:\n", "  homelab-images:build:\n    qemu: {ovmfVars: /srv/OVMF_VARS.fd}\n")
    code, output = _lock(project, "--check", capsys)
    assert code == 1 and "the image changed but its version did not (qemu target)" in output


def test_the_lock_digest_of_a_qemu_target_leaves_out_freshness() -> None:
    def qemu_only(config: dict[str, Any]) -> None:
        image(config)["targets"] = ["qemu"]

    later = plan_for(qemu_only, now=FIXED_NOW + timedelta(days=31))  # rebuildEvery: 30d
    plan = plan_for(qemu_only)
    assert plan.qemu is not None and later.qemu is not None
    assert plan.qemu.fingerprint != later.qemu.fingerprint, "a new period rebuilds the qcow2"
    assert image_content(plan) == image_content(later) == {QEMU: image_content(plan)[QEMU]}


def test_a_periodic_rebuild_keeps_the_qcow2_file_name_in_a_directory_of_its_own() -> None:
    """What the README tells a stack importing the file by URL: same name, new file (new sha256), so either
    update importFrom.sha256 or publish each build under its directory's name."""

    def qemu_only(config: dict[str, Any]) -> None:
        image(config)["targets"] = ["qemu"]

    plan, later = plan_for(qemu_only).qemu, plan_for(qemu_only, now=FIXED_NOW + timedelta(days=31)).qemu
    assert plan is not None and later is not None
    assert plan.spec.file_name == later.spec.file_name == f"{plan.spec.image}-v{plan.spec.version}.qcow2"
    assert plan.spec.directory_name != later.spec.directory_name


@pytest.mark.parametrize(
    ("content", "kind", "named"),
    [
        ({TEMPLATE: "a", QEMU: "q"}, None, ()),
        ({TEMPLATE: "a"}, None, ()),  # qemu dropped: its record stays history
        ({QEMU: "q"}, None, ()),  # proxmox-iso dropped
        ({TEMPLATE: "b", QEMU: "q"}, "unbumped", (TEMPLATE,)),
        ({TEMPLATE: "a", QEMU: "r"}, "unbumped", (QEMU,)),
    ],
)
def test_each_target_is_checked_against_its_own_record(
    content: dict[str, str], kind: str | None, named: tuple[str, ...]
) -> None:
    finding = check_version({IMAGE: {"1.0.0": {TEMPLATE: "a", QEMU: "q"}}}, IMAGE, "1.0.0", content)
    found = (finding.kind, finding.targets) if finding else (None, ())
    assert found == (kind, named)


def test_an_older_version_reused_for_another_qcow2_is_refused() -> None:
    lock = {IMAGE: {"1.0.0": {TEMPLATE: "a", QEMU: "q"}, "1.1.0": {TEMPLATE: "b", QEMU: "r"}}}
    finding = check_version(lock, IMAGE, "1.0.0", {TEMPLATE: "a", QEMU: "s"})
    assert finding is not None and finding.kind == "reused" and "(qemu target)" in str(finding)


def test_former_versions_of_the_template_ignore_qcow2_records() -> None:
    """A bump for a qcow2-only change renames the template: the old label still resolves to it."""
    lock = {IMAGE: {"1.0.0": {TEMPLATE: "a", QEMU: "q"}, "1.1.0": {TEMPLATE: "a", QEMU: "r"}, "1.2.0": {QEMU: "s"}}}
    versions = target_versions(lock, IMAGE)
    assert versions == {"1.0.0": "a", "1.1.0": "a"}
    assert former_versions(versions, "1.1.0") == ["1.0.0"]


def test_a_lock_file_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.homelab.lock.json"
    path.write_text(json.dumps({"schemaVersion": 3, "images": {}}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"schemaVersion 3 is newer than this checkout reads"):
        read_lock(path)
    path.write_text(json.dumps({"schemaVersion": 2, "images": {IMAGE: {"1.0.0": {QEMU: 5}}}}), encoding="utf-8")
    with pytest.raises(ConfigError, match="not a valid lock file"):
        read_lock(path)
