"""The qemu target's pkr.json: same kickstart, ISO and scripts as proxmox-iso, accepted by the pinned plugin."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from homelab_images.cli.main import main as cli_main
from homelab_images.contract.packer_files import embedded_kickstart
from homelab_images.contract.qemu_plugin import SOURCE_OPTIONS
from homelab_images.core.packer_template import packer_kickstart
from homelab_images.core.plan import ImagePlan
from homelab_images.core.qemu_plugin_check import source_problems
from homelab_images.core.qemu_template import (
    QemuTemplateInvalid,
    qemu_embedded_kickstart,
    validate_qemu_template,
)
from tests.rendering import plan_for
from tests.stack_files import image, mutated_config, write_stack_file

IMAGE = "alma9-k3s-node-amd64"


def _with_qemu(config: dict[str, Any]) -> None:
    image(config)["targets"] = ["proxmox-iso", "qemu"]


def _qemu_plan(*more: Any) -> ImagePlan:
    def mutate(config: dict[str, Any]) -> None:
        _with_qemu(config)
        for change in more:
            change(config)

    return plan_for(mutate)


def _qemu_source(plan: ImagePlan) -> dict[str, Any]:
    assert plan.qemu.template is not None
    source: dict[str, Any] = plan.qemu.template["source"]["qemu"][IMAGE]
    return source


def _delivery_cd(config: dict[str, Any]) -> None:
    config["homelab-images:build"]["kickstartDelivery"] = "cd"


def test_only_images_that_list_qemu_get_a_qemu_template() -> None:
    assert plan_for().qemu is None
    assert _qemu_plan().qemu is not None


@pytest.mark.parametrize("delivery", [lambda _: None, _delivery_cd], ids=["http", "cd"])
def test_same_kickstart_iso_and_scripts_as_the_proxmox_iso_build(delivery: Any) -> None:
    plan = _qemu_plan(delivery)
    assert plan.qemu.template is not None
    validate_qemu_template(plan.qemu.template, plan.kickstart)
    assert qemu_embedded_kickstart(plan.qemu.template) == embedded_kickstart(plan.packer_template)
    assert qemu_embedded_kickstart(plan.qemu.template) == packer_kickstart(plan.kickstart)
    assert plan.qemu.template["build"]["provisioner"] == plan.packer_template["build"]["provisioner"]
    source = _qemu_source(plan)
    assert source["iso_url"] == plan.image.iso.url
    assert source["iso_checksum"] == f"sha256:{plan.image.iso.sha256}"
    proxmox_boot = plan.packer_template["source"]["proxmox-iso"][IMAGE]["boot_command"]
    assert source["boot_command"] == proxmox_boot


def test_cd_delivery_carries_the_kickstart_on_an_oemdrv_cd() -> None:
    source = _qemu_source(_qemu_plan(_delivery_cd))
    assert source["cd_label"] == "OEMDRV" and "ks.cfg" in source["cd_content"]
    assert "http_content" not in source
    assert "inst.ks=hd:LABEL=OEMDRV:/ks.cfg" in "".join(source["boot_command"])


def test_a_compressed_uefi_qcow2_named_after_the_template() -> None:
    source = _qemu_source(_qemu_plan())
    assert source["format"] == "qcow2" and source["disk_compression"] is True
    assert source["vm_name"] == f"{IMAGE}-v1.0.0.qcow2"
    assert source["output_directory"] == "${var.output_directory}"
    assert source["efi_boot"] is True and source["efi_drop_efivars"] is True
    assert source["efi_firmware_code"] == "/usr/share/OVMF/OVMF_CODE_4M.fd"
    assert source["efi_firmware_vars"] == "/usr/share/OVMF/OVMF_VARS_4M.fd"
    assert source["machine_type"] == "q35" and source["disk_interface"] == "virtio-scsi"
    assert source["disk_size"] == "32G" and source["memory"] == 4096 and source["cpus"] == 2
    assert source["accelerator"] == "kvm" and source["cpu_model"] == "host"
    assert source["headless"] is True and source["shutdown_command"] == "systemctl poweroff"


def test_firmware_paths_and_accelerator_come_from_build_qemu() -> None:
    def settings(config: dict[str, Any]) -> None:
        config["homelab-images:build"]["qemu"] = {
            "ovmfCode": "/opt/edk2/CODE.fd",
            "ovmfVars": "/opt/edk2/VARS.fd",
            "accelerator": "tcg",
        }

    source = _qemu_source(_qemu_plan(settings))
    assert source["efi_firmware_code"] == "/opt/edk2/CODE.fd"
    assert source["efi_firmware_vars"] == "/opt/edk2/VARS.fd"
    assert source["accelerator"] == "tcg" and source["cpu_model"] == "max"


def test_bios_images_boot_without_ovmf() -> None:
    def seabios(config: dict[str, Any]) -> None:
        image(config)["hardware"]["firmware"] = "seabios"

    plan = _qemu_plan(seabios)
    assert plan.qemu.template is not None
    validate_qemu_template(plan.qemu.template, plan.kickstart)
    assert not {key for key in _qemu_source(plan) if key.startswith("efi_")}


def test_pins_the_plugin_whose_options_it_checks() -> None:
    plan = _qemu_plan()
    assert plan.qemu.template is not None
    plugin = plan.qemu.template["packer"]["required_plugins"]
    assert plugin == {"qemu": {"version": "= 1.1.4", "source": "github.com/hashicorp/qemu"}}
    assert plan.qemu.template["build"]["sources"] == [f"source.qemu.{IMAGE}"]


def test_no_credentials_in_the_qemu_template() -> None:
    plan = _qemu_plan()
    text = json.dumps(plan.qemu.template)
    for option in ('"ssh_password"', '"vnc_password"', '"vnc_use_password"', '"ssh_private_key"'):
        assert option not in text
    assert "${var.build_ssh_private_key_file}" in text and "PRIVATE KEY" not in text
    assert plan.qemu.template is not None
    assert plan.qemu.template["variable"]["build_ssh_private_key_file"]["sensitive"] is True


def _broken(change: Any) -> tuple[dict[str, Any], str]:
    plan = _qemu_plan()
    template = copy.deepcopy(plan.qemu.template)
    assert template is not None
    change(template["source"]["qemu"][IMAGE])
    return template, plan.kickstart


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update(disk_size_gb=32), "unknown option disk_size_gb"),
        (lambda s: s.update(cpus="2"), "cpus: expected number"),
        (lambda s: s.update(headless="true"), "headless: expected bool"),
        (lambda s: s.update(boot_command="<enter>"), "boot_command: expected list(string)"),
        (lambda s: s.update(disk_interface="nvme"), "disk_interface: 'nvme' is not one of"),
        (lambda s: s.update(accelerator="hvm"), "accelerator: 'hvm' is not one of"),
        (lambda s: s.update(disk_size="32 GiB"), "disk_size"),
        (lambda s: s.update(format="vmdk"), "format: 'vmdk' is not one of"),
        (lambda s: s.update(format="raw"), "only qcow2 images are compressed"),
        (lambda s: s.update(boot_wait="10"), "boot_wait: '10' is not a Go duration"),
        (lambda s: s.pop("iso_checksum"), "a checksum must be specified"),
        (lambda s: s.update(iso_urls=[s["iso_url"]]), "exactly one of iso_url or iso_urls"),
        (lambda s: s.update(http_directory="http"), "http_content cannot be used together with http_directory"),
        (lambda s: s.update(boot_steps=[["<enter>"]]), "boot_command and boot_steps"),
        (lambda s: s.update(ssh_password="x"), "ssh_password must not be in the template"),
        (lambda s: s.update(http_content={"/ks.cfg": "text\n"}), "differs from the rendered kickstart"),
    ],
)
def test_validation_rejects_what_the_plugin_would(change: Any, message: str) -> None:
    template, kickstart = _broken(change)
    with pytest.raises(QemuTemplateInvalid, match=re.escape(message)):
        validate_qemu_template(template, kickstart)


def test_validation_rejects_another_plugin_pin() -> None:
    plan = _qemu_plan()
    template = copy.deepcopy(plan.qemu.template)
    assert template is not None
    template["packer"]["required_plugins"]["qemu"]["version"] = "= 1.1.0"
    with pytest.raises(QemuTemplateInvalid, match=re.escape("must pin github.com/hashicorp/qemu to 1.1.4")):
        validate_qemu_template(template, plan.kickstart)


def test_every_rendered_option_is_one_of_the_plugin_and_of_its_type() -> None:
    source = _qemu_source(_qemu_plan())
    assert set(source) <= set(SOURCE_OPTIONS)
    assert source_problems(source) == []
    assert source_problems({**source, "cpus": True}) == ["cpus: expected number, got bool"]


def test_render_writes_the_qemu_template_next_to_the_proxmox_one(tmp_path: Path, capsys: Any) -> None:
    def unlocked_with_qemu(config: dict[str, Any]) -> None:
        _with_qemu(config)
        config["homelab-images:build"]["strictVersioning"] = False

    stack_file = write_stack_file(tmp_path, mutated_config(unlocked_with_qemu))
    out = tmp_path / "out"
    assert cli_main(["render", "--stack-file", str(stack_file), "--out", str(out)]) == 0
    assert "qemu.pkr.json" in capsys.readouterr().out
    directory = out / IMAGE
    kickstart = (directory / "ks.cfg").read_text(encoding="utf-8")
    template = json.loads((directory / "qemu.pkr.json").read_text(encoding="utf-8"))
    validate_qemu_template(template, kickstart)
    assert cli_main(["validate", "--stack-file", str(stack_file)]) == 0
    assert "kickstart and Packer templates valid" in capsys.readouterr().out

    only_proxmox = write_stack_file(tmp_path, mutated_config(lambda _: None))
    assert cli_main(["render", "--stack-file", str(only_proxmox), "--out", str(out)]) == 0
    assert not (directory / "qemu.pkr.json").exists(), "a stale qemu template would be mistaken for current"
