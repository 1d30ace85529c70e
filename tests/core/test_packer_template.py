"""The generated pkr.json and provisioning scripts, checked as rendered (not as templates)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from homelab_images.cli.main import main as cli_main
from homelab_images.contract.packer_files import embedded_kickstart
from homelab_images.contract.proxmox_plugin import SOURCE_SPEC
from homelab_images.core.kickstart import BUILD_KEY_PLACEHOLDER
from homelab_images.core.packer_template import (
    PackerTemplateInvalid,
    hcl_literal,
    packer_kickstart,
    validate_packer_template,
)
from tests.pulumi_harness import FIXTURE_STACK_FILE
from tests.rendering import needs_shellcheck, plan_for, shellcheck_problems, source_of
from tests.stack_files import fixture_document, image, mutated_config, write_stack_file

IMAGE = "alma9-k3s-node-amd64"


def _delivery_cd(config: dict[str, Any]) -> None:
    config["homelab-images:build"]["kickstartDelivery"] = "cd"


def test_source_is_proxmox_iso_with_uefi_agent_cloud_init_and_boot_iso() -> None:
    plan = plan_for()
    source = source_of(plan)
    assert set(source) <= set(SOURCE_SPEC)
    assert source["bios"] == "ovmf"
    assert source["efi_config"] == {
        "efi_storage_pool": "local-lvm",
        "efi_type": "4m",
        "pre_enrolled_keys": True,
        "efi_format": "raw",
    }
    assert source["machine"] == "q35" and source["cpu_type"] == "x86-64-v2-AES"
    assert source["qemu_agent"] is True and source["cloud_init"] is True
    assert source["boot_iso"]["iso_file"] == "local:iso/AlmaLinux-9.7-x86_64-boot.iso"
    assert "iso_file" not in source, "top-level iso_file is deprecated"
    assert source["template_name"] == f"{IMAGE}-v1.0.0"
    assert source["tags"] == "${var.tags}" and source["vm_id"] == "${var.vm_id}"
    assert source["task_timeout"] == "10m" and source["ssh_timeout"] == "45m"
    assert source["network_adapters"] == [{"model": "virtio", "bridge": "vmbr0", "firewall": False}]
    assert source["disks"][0]["storage_pool"] == "local-lvm" and source["disks"][0]["disk_size"] == "32G"
    plugin = plan.packer_template["packer"]["required_plugins"]["proxmox"]
    assert plugin == {"version": "= 1.2.4", "source": "github.com/hashicorp/proxmox"}


def test_no_credentials_in_the_template() -> None:
    text = json.dumps(plan_for().packer_template)
    for option in ('"token"', '"password"', '"username"', '"proxmox_url"', '"ssh_password"'):
        assert option not in text
    assert plan_for().packer_template["variable"]["build_ssh_private_key_file"]["sensitive"] is True


def test_http_delivery_embeds_the_kickstart_and_points_the_installer_at_it() -> None:
    plan = plan_for()
    source = source_of(plan)
    assert set(source["http_content"]) == {"/ks.cfg"}
    assert embedded_kickstart(plan.packer_template) == packer_kickstart(plan.kickstart)
    assert "${var.build_ssh_public_key}" in source["http_content"]["/ks.cfg"]
    assert BUILD_KEY_PLACEHOLDER not in source["http_content"]["/ks.cfg"]
    assert any("inst.ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg" in key for key in source["boot_command"])
    assert "additional_iso_files" not in source


def test_cd_delivery_uses_an_oemdrv_cd_on_iso_storage() -> None:
    plan = plan_for(_delivery_cd)
    source = source_of(plan)
    (cd,) = source["additional_iso_files"]
    assert cd["cd_label"] == "OEMDRV" and set(cd["cd_content"]) == {"ks.cfg"}
    assert cd["iso_storage_pool"] == "local"
    assert "http_content" not in source
    assert any("inst.ks=hd:LABEL=OEMDRV:/ks.cfg" in key for key in source["boot_command"])
    validate_packer_template(plan.packer_template, plan.kickstart)


def test_boot_command_stays_short() -> None:
    assert sum(len(key) for key in source_of(plan_for())["boot_command"]) < 150


def test_shell_syntax_in_the_kickstart_is_escaped_for_hcl() -> None:
    assert hcl_literal('echo "${HOME}" %{x}') == 'echo "$${HOME}" %%{x}'
    kickstart = 'text\n%post\necho ${HOSTNAME}\n%end\nsshkey --username=root "' + BUILD_KEY_PLACEHOLDER + '"\n'
    embedded = packer_kickstart(kickstart)
    assert "$${HOSTNAME}" in embedded and '"${var.build_ssh_public_key}"' in embedded


def test_provisioning_installs_pinned_k3s_then_seals() -> None:
    plan = plan_for()
    first, second = plan.packer_template["build"]["provisioner"]
    assert first["shell"]["scripts"] == ["scripts/install-k3s.sh"]
    assert second["shell"]["scripts"] == ["scripts/seal.sh"]
    environment = dict(item.split("=", 1) for item in first["shell"]["environment_vars"])
    k3s = image(fixture_document()["config"])["k3s"]
    assert environment["HI_K3S_VERSION"] == k3s["version"]
    assert environment["HI_K3S_BINARY_SHA256"] == k3s["binarySha256"]
    assert environment["HI_K3S_INSTALL_SHA256"] == k3s["installScriptSha256"]
    assert environment["HI_K3S_AIRGAP_SHA256"] == k3s["airgapImagesSha256"]
    assert not [name for name in environment if name.startswith("K3S_")], "k3s keeps K3S_* for its service"
    post = plan.packer_template["build"]["post-processor"]
    assert post == [{"manifest": {"output": "manifest.json", "strip_path": True}}]


def test_install_script_verifies_checksums_and_never_starts_k3s() -> None:
    script = plan_for().scripts["install-k3s.sh"]
    assert "sha256sum --check" in script
    for flag in ("INSTALL_K3S_SKIP_ENABLE=true", "INSTALL_K3S_SKIP_START=true", "INSTALL_K3S_SKIP_DOWNLOAD=true"):
        assert flag in script
    assert "k3s-selinux" in script and "gpgcheck=1" in script
    assert "/var/lib/rancher/k3s/agent/images" in script
    assert not re.search(r"^\s*(export\s+)?K3S_[A-Z_]+=", script, re.M)
    assert "systemctl start" not in script and "systemctl enable" not in script


def test_seal_script_generalizes_the_image() -> None:
    script = plan_for().scripts["seal.sh"]
    for step in (
        "truncate --size=0 /etc/machine-id",
        "rm -f /etc/ssh/ssh_host_*",
        "rm -f /etc/rancher/node/password",
        "cloud-init clean",
        "/etc/NetworkManager/system-connections/",
        "dnf clean all",
        "/root/anaconda-ks.cfg",
        "passwd --lock root",
        "rm -f /root/.ssh/authorized_keys",
        "fstrim",
    ):
        assert step in script, step
    assert "rm -f /etc/machine-id" not in script
    assert "/dev/zero" not in script


@needs_shellcheck
def test_provisioning_scripts_pass_shellcheck(tmp_path: Path) -> None:
    problems = shellcheck_problems(tmp_path, plan_for().scripts)
    assert not problems, "\n".join(problems)


def test_validation_catches_structural_mistakes() -> None:
    plan = plan_for()
    broken = json.loads(json.dumps(plan.packer_template))
    source = broken["source"]["proxmox-iso"][IMAGE]
    source["iso_file"] = "local:iso/x.iso"
    source["tokn"] = "x"
    with pytest.raises(PackerTemplateInvalid, match=r"deprecated options.*iso_file.*named \"tokn\""):
        validate_packer_template(broken, plan.kickstart)
    with pytest.raises(PackerTemplateInvalid, match="differs from the rendered kickstart"):
        validate_packer_template(plan.packer_template, plan.kickstart + "# edited\n")


@pytest.mark.parametrize("delivery", [lambda _: None, _delivery_cd], ids=["http", "cd"])
def test_render_command_writes_valid_artifacts(tmp_path: Path, capsys: Any, delivery: Any) -> None:
    stack_file = write_stack_file(tmp_path, mutated_config(delivery))
    out = tmp_path / "out"
    assert cli_main(["render", "--stack-file", str(stack_file), "--out", str(out)]) == 0
    directory = out / IMAGE
    kickstart = (directory / "ks.cfg").read_text(encoding="utf-8")
    template = json.loads((directory / "build.pkr.json").read_text(encoding="utf-8"))
    assert embedded_kickstart(template) == packer_kickstart(kickstart)
    assert sorted(p.name for p in (directory / "scripts").iterdir()) == ["install-k3s.sh", "seal.sh"]
    for path in directory.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"rootpw\s+(--plaintext|--iscrypted)|ssh_password|\"password\"", text), path


def test_fingerprint_command_prints_version_and_fingerprint(capsys: Any) -> None:
    assert cli_main(["fingerprint", "--stack-file", str(FIXTURE_STACK_FILE)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed[IMAGE]["version"] == "1.0.0"
    assert re.fullmatch(r"[0-9a-f]{64}", printed[IMAGE]["fingerprint"])


def test_spec_command_prints_the_build_commands_stdin(capsys: Any) -> None:
    from homelab_images.contract.build_spec import BuildSpec

    assert cli_main(["spec", "--stack-file", str(FIXTURE_STACK_FILE), "--image", IMAGE]) == 0
    spec = BuildSpec.from_json(capsys.readouterr().out)
    assert spec == plan_for().build_spec.replace(fingerprint_parts=spec.fingerprint_parts, fingerprint=spec.fingerprint)
    assert cli_main(["spec", "--stack-file", str(FIXTURE_STACK_FILE), "--image", "nope"]) == 1
    assert "no image 'nope' in the stack; images: alma9-k3s-node-amd64" in capsys.readouterr().err


def test_http_bind_address_reaches_packer_and_does_not_change_the_image() -> None:
    plain = plan_for()
    bound = plan_for(lambda config: config["homelab-images:build"].update(httpBindAddress="192.168.1.20"))
    assert source_of(bound)["http_bind_address"] == "192.168.1.20"
    assert "http_bind_address" not in source_of(plain)
    assert bound.fingerprint == plain.fingerprint


@pytest.mark.parametrize(
    ("address", "delivery", "problem"),
    [
        ("127.0.0.1", "http", "expected an address the build VM can reach, not '127.0.0.1'"),
        ("pve-builder", "http", "expected an IPv4 address of the machine running Packer, got 'pve-builder'"),
        ("192.168.1.20", "cd", "only used with kickstartDelivery: http"),
    ],
)
def test_http_bind_address_must_be_reachable_and_used(address: str, delivery: str, problem: str) -> None:
    from homelab_images.core.config import ConfigError, load_config

    def edit(config: dict[str, Any]) -> None:
        config["homelab-images:build"].update(httpBindAddress=address, kickstartDelivery=delivery)

    with pytest.raises(ConfigError) as raised:
        load_config(mutated_config(edit))
    (line,) = raised.value.problems
    assert line.startswith("homelab-images:build.httpBindAddress: ") and problem in line


def test_clones_do_not_upgrade_packages_on_first_boot() -> None:
    assert source_of(plan_for())["cloud_init_disable_upgrade_packages"] is True
