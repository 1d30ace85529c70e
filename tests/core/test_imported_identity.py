"""An imported template (importFrom) is identified by what shapes it: the qcow2 and the hardware the import
sets on the VM, plus the k3s version its outputs claim (checked against the file by the smoke test). The
importing stack's kickstart, scripts, ISO, other k3s pins and Packer settings cannot change it, so they must
neither re-import it nor force a version bump."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from homelab_images.cli.main import main as cli_main
from homelab_images.contract.fingerprint_parts import IMPORT_PART_NAMES
from homelab_images.contract.packer_files import TEMPLATE_FILE
from homelab_images.core.plan import ImagePlan
from homelab_images.core.versioning import content_fingerprint, image_content, lock_findings, updated_lock
from homelab_images.runner.errors import EXIT_FAILED
from tests.rendering import FIXED_NOW, plan_for
from tests.stack_files import image, mutated_config, write_stack_file

IMAGE = "alma9-k3s-node-amd64"
SHA256 = "ab" * 32
Change = Callable[[dict[str, Any]], None]


def _imported(config: dict[str, Any]) -> None:
    image(config)["importFrom"] = {"url": "https://files.example.org/alma9-k3s-node-amd64-v1.qcow2", "sha256": SHA256}


def _image(path: str, value: Any) -> Change:
    def change(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = image(config)
        for parent in parents:
            target = target[parent]
        target[last] = value

    return change


def _imported_plan(*changes: Change, now: Any = FIXED_NOW) -> ImagePlan:
    def mutate(config: dict[str, Any]) -> None:
        _imported(config)
        for change in changes:
            change(config)

    return plan_for(mutate, now)


def _lock_digest(plan: ImagePlan) -> str:
    return content_fingerprint(plan.fingerprint_parts)


def test_an_imported_templates_parts_are_the_qcow2_the_hardware_and_the_claimed_k3s_version() -> None:
    plan = _imported_plan()
    assert list(plan.fingerprint_parts) == list(IMPORT_PART_NAMES)
    assert plan.fingerprint_parts["artifact"] == SHA256
    assert plan.shared_fingerprint_parts == {}
    assert plan.fingerprint != plan_for().fingerprint


UNRELATED_CHANGES: dict[str, Change] = {
    "timezone": _image("timezone", "Europe/Berlin"),
    "packages": _image("packages.extra", ["tmux"]),
    "k3s": _image("k3s.airgapImagesSha256", "cd" * 32),
    "iso": _image("iso.sha256", "ef" * 32),
    "disk-size": _image("hardware.diskGiB", 64),
    "plugin": lambda config: config["homelab-images:build"].__setitem__("packerPluginVersion", "1.2.3"),
    "where-it-lies": _image("importFrom", {"path": "artifacts/a/v1/a.qcow2", "sha256": SHA256}),
}


@pytest.mark.parametrize("change", UNRELATED_CHANGES.values(), ids=UNRELATED_CHANGES.keys())
def test_settings_the_import_does_not_use_leave_fingerprint_and_lock_digest_alone(change: Change) -> None:
    """diskGiB too: the imported disk has the qcow2's size."""
    before, after = _imported_plan(), _imported_plan(change)
    assert after.fingerprint == before.fingerprint
    assert _lock_digest(after) == _lock_digest(before)
    assert after.build_spec is not None and after.build_spec.fingerprint_parts == before.fingerprint_parts


def test_rebuild_every_does_not_reimport_the_same_file() -> None:
    """The shipped image has rebuildEvery: 30d; another period must not replace an imported template."""
    before = _imported_plan()
    months_later = _imported_plan(now=FIXED_NOW.replace(year=FIXED_NOW.year + 1))
    assert months_later.fingerprint == before.fingerprint
    assert "freshness" not in before.fingerprint_parts


HARDWARE_CHANGES: dict[str, Change] = {
    "firmware": _image("hardware.firmware", "seabios"),
    "machine": _image("hardware.machine", "pc"),
    "cpu": _image("hardware.cpuType", "host"),
    "cores": _image("hardware.cores", 4),
    "memory": _image("hardware.memoryMiB", 8192),
    "disk-bus": _image("hardware.diskBus", "virtio"),
}


@pytest.mark.parametrize("change", HARDWARE_CHANGES.values(), ids=HARDWARE_CHANGES.keys())
def test_hardware_the_import_sets_on_the_vm_replaces_the_template(change: Change) -> None:
    before, after = _imported_plan(), _imported_plan(change)
    assert after.fingerprint != before.fingerprint
    assert _lock_digest(after) != _lock_digest(before)
    assert [n for n in IMPORT_PART_NAMES if after.fingerprint_parts[n] != before.fingerprint_parts[n]] == ["hardware"]


def test_another_k3s_version_imports_again_so_the_smoke_test_checks_the_claim() -> None:
    """The outputs' k3sVersion comes from this config: changing it must not go unchecked against the file."""
    before, after = _imported_plan(), _imported_plan(_image("k3s.version", "v1.35.2+k3s1"))
    assert after.fingerprint != before.fingerprint
    assert [n for n in IMPORT_PART_NAMES if after.fingerprint_parts[n] != before.fingerprint_parts[n]] == ["k3s"]


def test_another_qcow2_replaces_the_template_and_needs_a_version_bump() -> None:
    before, after = _imported_plan(), _imported_plan(_image("importFrom.sha256", "cd" * 32))
    assert after.fingerprint != before.fingerprint
    assert _lock_digest(after) != _lock_digest(before)
    lock = updated_lock({}, {IMAGE: (before.image.version, image_content(before))})
    assert lock[IMAGE][before.image.version] == {"proxmox-iso": _lock_digest(before)}
    assert lock_findings(lock, [_imported_plan(UNRELATED_CHANGES["timezone"])]) == []
    (finding,) = lock_findings(lock, [after])
    assert finding.kind == "unbumped"


def test_strict_versioning_accepts_a_timezone_change_of_an_imported_image(tmp_path: Path, capsys: Any) -> None:
    def strict(config: dict[str, Any]) -> None:
        _imported(config)
        config["homelab-images:build"]["strictVersioning"] = True

    stack_file = write_stack_file(tmp_path, mutated_config(strict))
    assert cli_main(["lock", "--update", "--stack-file", str(stack_file)]) == 0

    def berlin(config: dict[str, Any]) -> None:
        strict(config)
        image(config)["timezone"] = "Europe/Berlin"

    write_stack_file(tmp_path, mutated_config(berlin))
    capsys.readouterr()
    assert cli_main(["validate", "--stack-file", str(stack_file)]) == 0
    assert "warning" not in capsys.readouterr().err

    def other_file(config: dict[str, Any]) -> None:
        strict(config)
        image(config)["importFrom"]["sha256"] = "cd" * 32

    write_stack_file(tmp_path, mutated_config(other_file))
    assert cli_main(["validate", "--stack-file", str(stack_file)]) == EXIT_FAILED
    assert "the image changed but its version did not" in capsys.readouterr().err


def test_explain_shows_the_artifact_part(tmp_path: Path, capsys: Any) -> None:
    stack_file = write_stack_file(tmp_path, mutated_config(_imported))
    assert cli_main(["fingerprint", "--stack-file", str(stack_file), "--explain"]) == 0
    entry = json.loads(capsys.readouterr().out)[IMAGE]
    plan = _imported_plan()
    template = entry["targets"]["proxmox-iso"]
    assert template["parts"] == plan.fingerprint_parts
    assert template["parts"]["artifact"] == SHA256
    assert entry["shared"] == {}
    assert template["fingerprint"] == entry["fingerprint"] == plan.fingerprint
    assert entry["lockDigest"] == _lock_digest(plan)


def test_render_writes_no_packer_template_for_an_imported_image(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "out"
    built = write_stack_file(tmp_path, mutated_config(lambda _: None))
    assert cli_main(["render", "--stack-file", str(built), "--out", str(out)]) == 0
    assert (out / IMAGE / TEMPLATE_FILE).exists()
    imported = write_stack_file(tmp_path, mutated_config(_imported))
    capsys.readouterr()
    assert cli_main(["render", "--stack-file", str(imported), "--out", str(out)]) == 0
    assert not (out / IMAGE / TEMPLATE_FILE).exists(), "a stale Packer template would pass for what made it"
    assert TEMPLATE_FILE not in capsys.readouterr().out


def test_validate_and_spec_say_the_template_is_imported(tmp_path: Path, capsys: Any) -> None:
    stack_file = write_stack_file(tmp_path, mutated_config(_imported))
    assert cli_main(["lock", "--update", "--stack-file", str(stack_file)]) == 0
    capsys.readouterr()
    assert cli_main(["validate", "--stack-file", str(stack_file)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"{IMAGE} v{_imported_plan().image.version}: imported from alma9-k3s-node-amd64-v1.qcow2 "
        f"(sha256 {SHA256[:12]}…)"
    )
    assert cli_main(["spec", "--stack-file", str(stack_file), "--image", IMAGE]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["import_from"]["sha256"] == SHA256, "stdout stays the runner's stdin"
    assert "runs no Packer" in captured.err
