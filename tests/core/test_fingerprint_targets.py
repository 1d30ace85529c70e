"""Fingerprints per target: a shared change rebuilds every target, a target's own change only that one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from homelab_images.cli.main import main as cli_main
from homelab_images.contract.fingerprint_parts import SHARED_PART_NAMES, TARGET_PART_NAMES
from homelab_images.core.plan import ImagePlan
from homelab_images.core.versioning import content_fingerprint
from tests.rendering import plan_for
from tests.stack_files import image, mutated_config, write_stack_file

IMAGE = "alma9-k3s-node-amd64"
Change = Callable[[dict[str, Any]], None]


def _both_targets(*changes: Change) -> ImagePlan:
    def mutate(config: dict[str, Any]) -> None:
        image(config)["targets"] = ["proxmox-iso", "qemu"]
        for change in changes:
            change(config)

    return plan_for(mutate)


def _changed(old: dict[str, str], new: dict[str, str]) -> list[str]:
    return sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))


def _build(key: str, value: Any) -> Change:
    return lambda config: config["homelab-images:build"].__setitem__(key, value)


def _qemu(**settings: Any) -> Change:
    return lambda config: config["homelab-images:build"].__setitem__("qemu", settings)


def _image(path: str, value: Any) -> Change:
    def change(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = image(config)
        for parent in parents:
            target = target[parent]
        target[last] = value

    return change


def _kickstart_timezone(config: dict[str, Any]) -> None:
    image(config)["timezone"] = "Europe/Berlin"


SHARED_CHANGES: dict[str, tuple[Change, str]] = {
    "kickstart": (_kickstart_timezone, "kickstart"),
    "iso": (_image("iso.sha256", "f" * 64), "iso"),
    "k3s": (_image("k3s.version", "v1.36.5+k3s1"), "k3s"),
    "hardware": (_image("hardware.diskGiB", 40), "hardware"),
}


@pytest.mark.parametrize(("change", "part"), SHARED_CHANGES.values(), ids=SHARED_CHANGES.keys())
def test_a_shared_change_rebuilds_every_target(change: Change, part: str) -> None:
    before, after = _both_targets(), _both_targets(change)
    assert before.qemu is not None and after.qemu is not None
    assert part in SHARED_PART_NAMES
    assert part in _changed(before.fingerprint_parts, after.fingerprint_parts)
    assert part in _changed(before.qemu.fingerprint_parts, after.qemu.fingerprint_parts)
    assert after.fingerprint != before.fingerprint
    assert after.qemu.fingerprint != before.qemu.fingerprint


QEMU_ONLY_CHANGES: dict[str, tuple[Change, list[str]]] = {
    "ovmf-code": (_qemu(ovmfCode="/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"), ["firmware"]),
    "ovmf-vars": (_qemu(ovmfVars="/usr/share/OVMF/OVMF_VARS_4M.ms.fd"), ["firmware"]),
}


@pytest.mark.parametrize(("change", "parts"), QEMU_ONLY_CHANGES.values(), ids=QEMU_ONLY_CHANGES.keys())
def test_a_qemu_only_change_rebuilds_the_qcow2_and_leaves_the_proxmox_template(
    change: Change, parts: list[str]
) -> None:
    before, after = _both_targets(), _both_targets(change)
    assert before.qemu is not None and after.qemu is not None
    assert _changed(before.qemu.fingerprint_parts, after.qemu.fingerprint_parts) == parts
    assert after.qemu.fingerprint != before.qemu.fingerprint
    # The proxmox-iso build's triggers are exactly these parts: unchanged means no rebuild.
    assert after.fingerprint_parts == before.fingerprint_parts
    assert after.build_spec.fingerprint_parts == before.build_spec.fingerprint_parts


def test_adding_the_qemu_target_does_not_rebuild_the_proxmox_template() -> None:
    only_proxmox, both = plan_for(), _both_targets()
    assert both.fingerprint_parts == only_proxmox.fingerprint_parts
    assert both.build_spec == only_proxmox.build_spec


def test_a_proxmox_iso_only_change_leaves_the_qcow2() -> None:
    before, after = _both_targets(), _both_targets(_build("packerPluginVersion", "1.2.3"))
    assert before.qemu is not None and after.qemu is not None
    assert _changed(before.fingerprint_parts, after.fingerprint_parts) == ["plugin"]
    assert after.qemu.fingerprint_parts == before.qemu.fingerprint_parts


@pytest.mark.parametrize(
    "change",
    [_qemu(accelerator="tcg"), _build("kickstartDelivery", "cd"), _build("sshTimeoutMinutes", 60)],
    ids=["accelerator", "delivery", "ssh-timeout"],
)
def test_how_the_qcow2_is_built_does_not_rebuild_it(change: Change) -> None:
    before, after = _both_targets(), _both_targets(change)
    assert before.qemu is not None and after.qemu is not None
    assert after.qemu.fingerprint == before.qemu.fingerprint


def test_each_target_has_the_shared_parts_and_its_own() -> None:
    plan = _both_targets()
    assert plan.qemu is not None
    assert set(plan.fingerprint_parts) == set(SHARED_PART_NAMES) | set(TARGET_PART_NAMES["proxmox-iso"])
    assert set(plan.qemu.fingerprint_parts) == set(SHARED_PART_NAMES) | set(TARGET_PART_NAMES["qemu"])
    shared = {name: plan.fingerprint_parts[name] for name in SHARED_PART_NAMES}
    assert {name: plan.qemu.fingerprint_parts[name] for name in SHARED_PART_NAMES} == shared
    assert plan.qemu.fingerprint != plan.fingerprint


def test_explain_shows_shared_and_per_target_parts(tmp_path: Path, capsys: Any) -> None:
    def with_qemu(config: dict[str, Any]) -> None:
        image(config)["targets"] = ["proxmox-iso", "qemu"]

    stack_file = write_stack_file(tmp_path, mutated_config(with_qemu))
    assert cli_main(["fingerprint", "--stack-file", str(stack_file), "--explain"]) == 0
    entry = json.loads(capsys.readouterr().out)[IMAGE]
    plan = _both_targets()
    assert plan.qemu is not None
    assert entry["shared"] == plan.shared_fingerprint_parts
    assert set(entry["shared"]) == set(SHARED_PART_NAMES)
    proxmox, qemu = entry["targets"]["proxmox-iso"], entry["targets"]["qemu"]
    assert proxmox["fingerprint"] == entry["fingerprint"] == plan.fingerprint
    assert set(proxmox["parts"]) == {"packer", "plugin"}
    assert qemu["fingerprint"] == plan.qemu.fingerprint
    assert set(qemu["parts"]) == {"builder", "plugin", "firmware", "format"}

    assert cli_main(["fingerprint", "--stack-file", str(stack_file)]) == 0
    plain = json.loads(capsys.readouterr().out)[IMAGE]
    assert plain["targets"] == {
        "proxmox-iso": {"fingerprint": plan.fingerprint, "lockDigest": content_fingerprint(plan.fingerprint_parts)},
        "qemu": {"fingerprint": plan.qemu.fingerprint, "lockDigest": content_fingerprint(plan.qemu.fingerprint_parts)},
    }
    assert "shared" not in plain


def test_image_selects_one_image_and_an_unknown_one_is_named(tmp_path: Path, capsys: Any) -> None:
    def second_image(config: dict[str, Any]) -> None:
        images = config["homelab-images:images"]
        images.append({**images[0], "name": "other"})

    stack_file = write_stack_file(tmp_path, mutated_config(second_image))
    assert cli_main(["fingerprint", "--stack-file", str(stack_file)]) == 0
    every = json.loads(capsys.readouterr().out)
    assert set(every) == {IMAGE, "other"}
    assert cli_main(["fingerprint", "--stack-file", str(stack_file), "--image", "other"]) == 0
    assert json.loads(capsys.readouterr().out) == {"other": every["other"]}
    assert cli_main(["fingerprint", "--stack-file", str(stack_file), "--image", "nope"]) == 1
    assert capsys.readouterr().err.strip() == f"error: no image 'nope' in the stack; images: {IMAGE}, other"
