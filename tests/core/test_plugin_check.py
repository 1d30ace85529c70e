"""The plugin facts and the checks built on them: what the pinned proxmox plugin rejects, ``validate`` rejects."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from homelab_images.contract import proxmox_plugin
from homelab_images.contract.ownership import Ownership, build_tags, packer_tags
from homelab_images.core.packer_template import PackerTemplateInvalid, validate_packer_template
from homelab_images.core.plan import packer_variables
from homelab_images.core.plugin_check import create_problem, decode_problems, plugin_problems, tag_problem
from tests.rendering import plan_for, source_of

FINGERPRINT = "0123456789abcdef" * 4


def test_the_tags_of_a_build_pass_the_plugins_tag_rule_and_read_back_as_written() -> None:
    tags = build_tags("alma9-k3s-node-amd64", "1.2.0-rc.1", FINGERPRINT)
    assert tag_problem(tags) is None
    assert create_problem({"tags": packer_tags(tags)}) is None
    ownership = Ownership.of(tags)
    assert ownership.belongs_to("alma9-k3s-node-amd64") and ownership.pending
    assert ownership.version == "1.2.0-rc.1"
    assert ownership.matches(FINGERPRINT)


def test_dotted_tags_are_rejected_with_the_api_librarys_message() -> None:
    problem = create_problem({"tags": "homelab-images;image.alma9;version.1.0.0"})
    assert problem == f"Error creating VM: {proxmox_plugin.TAG_INVALID}"


def test_every_option_of_the_shipped_source_is_in_the_plugins_spec() -> None:
    source = source_of(plan_for())
    assert decode_problems(source) == []
    assert set(source) <= set(proxmox_plugin.SOURCE_SPEC)
    assert not set(source) & proxmox_plugin.DEPRECATED_OPTIONS


def test_nested_blocks_are_checked_against_their_own_spec() -> None:
    source = {"disks": [{"type": "scsi", "disk_size": "32G", "size": "32G"}], "boot_iso": {"iso_file": 1}}
    assert decode_problems(source) == [proxmox_plugin.UNKNOWN_ARGUMENT.format(name="size")]


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("vm_id", 42, proxmox_plugin.VM_ID_RANGE),
        ("template_name", "alma9_k3s", proxmox_plugin.TEMPLATE_NAME_INVALID),
        ("serials", ["socket"] * 5, proxmox_plugin.SERIALS_TOO_MANY.format(count=5)),
        ("node", "", proxmox_plugin.NODE_MISSING),
    ],
)
def test_prepare_rules_reach_validate(key: str, value: Any, problem: str) -> None:
    plan = plan_for()
    template = copy.deepcopy(plan.packer_template)
    template["source"]["proxmox-iso"][plan.name][key] = value
    with pytest.raises(PackerTemplateInvalid, match=r"proxmox plugin v1\.2\.4 rejects it") as raised:
        validate_packer_template(template, plan.kickstart, packer_variables(plan.build_spec))
    assert problem in str(raised.value)


def test_validate_sees_the_values_a_build_sets() -> None:
    plan = plan_for()
    variables = packer_variables(plan.build_spec)
    assert plugin_problems(source_of(plan)) == [], "expressions alone are not judged"
    validate_packer_template(plan.packer_template, plan.kickstart, variables)
    dotted = {**variables, "tags": "homelab-images;version.1.0.0"}
    with pytest.raises(PackerTemplateInvalid, match="Error creating VM: tag may not start with -"):
        validate_packer_template(plan.packer_template, plan.kickstart, dotted)


def test_another_plugin_version_is_refused_until_its_facts_are_read() -> None:
    plan = plan_for(lambda config: config["homelab-images:build"].update(packerPluginVersion="1.3.0"))
    with pytest.raises(PackerTemplateInvalid, match=r"pins github.com/hashicorp/proxmox 1.3.0.*read from v1.2.4"):
        validate_packer_template(plan.packer_template, plan.kickstart, packer_variables(plan.build_spec))


def test_cpu_types_follow_the_api_library() -> None:
    assert create_problem({"cpu_type": "x86-64-v2-AES"}) is None
    assert create_problem({"cpu_type": "host"}) is None
    problem = create_problem({"cpu_type": "x86-64-v9"})
    assert problem is not None and problem.startswith("Error creating VM: cpuType can only be one of")
