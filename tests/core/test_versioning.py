"""The version guard: lock --check / --update, and the same rule in preview."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pulumi
import pytest

from homelab_images.cli.main import main as cli_main
from homelab_images.core.versioning import check_version, semver_key
from tests.pulumi_harness import FIXTURE_STACK_FILE, FIXTURES, run_program
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
    finding = check_version({IMAGE: {"1.2.0": "a"}}, IMAGE, "1.1.0", "b")
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
