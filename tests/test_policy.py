"""The policy pack's checks, applied to what the real program registers."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from policy.homelab_policies import (
    build_triggers,
    guest_agent,
    no_plaintext_secrets,
    selinux_enforcing,
    uefi_firmware,
)
from tests.pulumi_harness import run_program, unwrap_secrets
from tests.stack_files import image, mutated_config

CHECKS = [no_plaintext_secrets, uefi_firmware, selinux_enforcing, guest_agent, build_triggers]
TYPE = "command:local:Command"


@pytest.fixture(scope="module")
def build_props() -> dict[str, Any]:
    run = run_program(secrets={"proxmoxve:apiToken": "images@pve!build=3f1c0de5-aaaa-bbbb-cccc-000000000000"})
    return dict(unwrap_secrets(run.one(TYPE).inputs))


def _with_source(props: dict[str, Any], change: Any) -> dict[str, Any]:
    changed = copy.deepcopy(props)
    spec = json.loads(changed["stdin"])
    (source,) = spec["packer_template"]["source"]["proxmox-iso"].values()
    change(source)
    changed["stdin"] = json.dumps(spec)
    return changed


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_shipped_program_passes_every_policy(build_props: dict[str, Any], check: Any) -> None:
    assert check(TYPE, build_props) == []


def test_token_in_the_command_line_is_a_violation(build_props: dict[str, Any]) -> None:
    props = {**build_props, "create": build_props["create"] + " --token images@pve!build=3f1c0de5-aaaa-bbbb"}
    assert no_plaintext_secrets(TYPE, props) == [
        "`create` contains what looks like a credential; pass secrets in `environment` only"
    ]
    props = {**build_props, "stdin": build_props["stdin"].replace("}", ', "k": "PROXMOX_TOKEN=abc"}', 1)}
    assert no_plaintext_secrets(TYPE, props)
    env = {**build_props["environment"], "PKR_VAR_proxmox_token": "x"}
    assert no_plaintext_secrets(TYPE, {**build_props, "environment": env})


def test_private_key_in_stdin_is_a_violation(build_props: dict[str, Any]) -> None:
    props = {**build_props, "stdin": build_props["stdin"] + "-----BEGIN OPENSSH PRIVATE KEY-----"}
    assert no_plaintext_secrets(TYPE, props)


def test_bios_firmware_violates_uefi(build_props: dict[str, Any]) -> None:
    def seabios(source: dict[str, Any]) -> None:
        source["bios"] = "seabios"
        source.pop("efi_config")

    assert uefi_firmware(TYPE, _with_source(build_props, seabios)) == [
        "templates must be built for UEFI: bios = ovmf with an efi_config"
    ]


def test_permissive_selinux_is_a_violation(build_props: dict[str, Any]) -> None:
    def permissive(source: dict[str, Any]) -> None:
        source["http_content"]["/ks.cfg"] = source["http_content"]["/ks.cfg"].replace("--enforcing", "--permissive")

    assert selinux_enforcing(TYPE, _with_source(build_props, permissive))


def test_missing_guest_agent_is_a_violation(build_props: dict[str, Any]) -> None:
    def no_agent(source: dict[str, Any]) -> None:
        source["qemu_agent"] = False

    assert guest_agent(TYPE, _with_source(build_props, no_agent)) == [
        "the template must enable the QEMU guest agent (qemu_agent = true)"
    ]


def test_missing_triggers_are_a_violation(build_props: dict[str, Any]) -> None:
    assert build_triggers(TYPE, {**build_props, "triggers": []})
    partial = [{k: v for k, v in build_props["triggers"][0].items() if k != "kickstart"}]
    assert build_triggers(TYPE, {**build_props, "triggers": partial}) == [
        "the build's triggers must carry the fingerprint parts; missing: kickstart"
    ]


def test_other_resources_are_not_judged() -> None:
    assert all(check("proxmoxve:download/file:File", {"url": "https://x"}) == [] for check in CHECKS)


def _qemu_only(config: dict[str, Any]) -> None:
    image(config)["targets"] = ["qemu"]
    config["homelab-images:build"]["strictVersioning"] = False


@pytest.fixture(scope="module")
def qemu_props() -> dict[str, Any]:
    run = run_program(config=mutated_config(_qemu_only), secrets={}, owner_key=None)
    (command,) = run.of_type(TYPE)
    return dict(unwrap_secrets(command.inputs))


def _with_qemu_source(props: dict[str, Any], change: Any) -> dict[str, Any]:
    changed = copy.deepcopy(props)
    spec = json.loads(changed["stdin"])
    (source,) = spec["packer_template"]["source"]["qemu"].values()
    change(source)
    changed["stdin"] = json.dumps(spec)
    return changed


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_a_qemu_build_passes_every_policy(qemu_props: dict[str, Any], check: Any) -> None:
    """The qemu build is judged as what it is, not as a proxmox-iso build without its source."""
    assert check(TYPE, qemu_props) == []


def test_a_qemu_build_without_uefi_or_enforcing_selinux_is_a_violation(qemu_props: dict[str, Any]) -> None:
    def bios(source: dict[str, Any]) -> None:
        for option in ("efi_boot", "efi_firmware_code", "efi_firmware_vars", "efi_drop_efivars"):
            source.pop(option)

    def permissive(source: dict[str, Any]) -> None:
        source["http_content"]["/ks.cfg"] = source["http_content"]["/ks.cfg"].replace("--enforcing", "--permissive")

    assert uefi_firmware(TYPE, _with_qemu_source(qemu_props, bios)) == [
        "qcow2 images must be built for UEFI: efi_boot = true with OVMF firmware (efi_firmware_code)"
    ]
    assert selinux_enforcing(TYPE, _with_qemu_source(qemu_props, permissive))
    partial = [{k: v for k, v in qemu_props["triggers"][0].items() if k != "firmware"}]
    assert build_triggers(TYPE, {**qemu_props, "triggers": partial}) == [
        "the build's triggers must carry the fingerprint parts; missing: firmware"
    ]


def _imported(config: dict[str, Any]) -> None:
    image(config)["importFrom"] = {"url": "https://files.example.org/alma9-k3s.qcow2", "sha256": "ab" * 32}
    config["homelab-images:build"]["strictVersioning"] = False


@pytest.fixture(scope="module")
def import_props() -> dict[str, Any]:
    run = run_program(config=mutated_config(_imported), secrets={"proxmoxve:apiToken": "x"})
    (command,) = run.of_type(TYPE)
    return dict(unwrap_secrets(command.inputs))


def _with_import(props: dict[str, Any], **changes: Any) -> dict[str, Any]:
    spec = json.loads(props["stdin"])
    spec["import_from"] = {**spec["import_from"], **changes}
    return {**props, "stdin": json.dumps(spec)}


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_an_import_passes_every_policy(import_props: dict[str, Any], check: Any) -> None:
    """Judged as an import: its triggers are the import's parts, not a Packer build's."""
    assert check(TYPE, import_props) == []


def test_an_import_is_judged_by_its_own_parts_and_firmware(
    import_props: dict[str, Any], build_props: dict[str, Any]
) -> None:
    triggers = import_props["triggers"]
    assert set(triggers[0]) == {"artifact", "hardware", "k3s"}
    # A built template with an import's triggers lacks its own parts.
    assert build_triggers(TYPE, {**build_props, "triggers": triggers})
    partial = [{k: v for k, v in triggers[0].items() if k != "artifact"}, triggers[1]]
    assert build_triggers(TYPE, {**import_props, "triggers": partial}) == [
        "the build's triggers must carry the fingerprint parts; missing: artifact"
    ]
    # A part that cannot change the imported template would re-import it for nothing.
    extra = [{**triggers[0], "kickstart": build_props["triggers"][0]["kickstart"]}, triggers[1]]
    assert build_triggers(TYPE, {**import_props, "triggers": extra}) == [
        "an imported template's triggers must be its import parts only; not: kickstart"
    ]
    assert uefi_firmware(TYPE, _with_import(import_props, firmware="seabios")) == [
        "imported templates must be UEFI: hardware.firmware = ovmf"
    ]
