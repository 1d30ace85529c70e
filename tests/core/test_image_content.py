"""What the shipped stack's image carries, in the variants users pick: checked on the artifacts as rendered.

These read your own stack file and kickstart/ (not the frozen fixture): the shipped stack,
its kickstartDelivery cd, seabios and firewall-enabled variants. Each must pass the pinned
proxmox plugin's rules and carry what a clone relies on.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from pykickstart.parser import KickstartParser
from pykickstart.version import RHEL9, makeVersion

from homelab_images.core.config import load_config
from homelab_images.core.packer_template import validate_packer_template, with_variables
from homelab_images.core.paths import KICKSTART_DIR
from homelab_images.core.plan import ImagePlan, packer_variables, plan_stack
from homelab_images.core.plugin_check import plugin_problems
from tests.pulumi_harness import SHIPPED_STACK_FILE
from tests.rendering import FIXED_NOW, needs_shellcheck, shellcheck_problems

Variant = Callable[[dict[str, Any]], None]


def _build(**settings: Any) -> Variant:
    return lambda config: config["homelab-images:build"].update(settings)


def _image(**settings: Any) -> Variant:
    def edit(config: dict[str, Any]) -> None:
        for image in config["homelab-images:images"]:
            for key, value in settings.items():
                target = image
                *parents, last = key.split("__")
                for parent in parents:
                    target = target.setdefault(parent, {})
                target[last] = value

    return edit


VARIANTS: dict[str, Variant] = {
    "shipped": lambda _: None,
    "cd": _build(kickstartDelivery="cd"),
    "seabios": _image(hardware__firmware="seabios"),
    "firewall-enabled": _image(firewall="enabled"),
}

# k3s' inbound rules per role: k3s-io/docs docs/installation/requirements.md
# (commit 005d295410cd2ed4539880c00e0cd3fa62f1b64d), "Inbound Rules for K3s Nodes".
K3S_ALL_NODES = {"8472/udp", "10250/tcp", "51820/udp", "51821/udp", "5001/tcp", "6443/tcp"}
K3S_SERVERS = K3S_ALL_NODES | {"2379-2380/tcp"}

# What AlmaLinux's cleanup_vm role removes or empties (AlmaLinux/cloud-images
# ansible/roles/cleanup_vm/tasks/main.yml, commit bac09d68122ee16309e2f10433bfae5ab248b212).
CLEANUP_VM = (
    "dnf -y remove --oldinstallonly",
    "/etc/udev/rules.d/70*",
    "/etc/NetworkManager/system-connections/*",
    "dnf clean all",
    "/var/lib/dnf/history*",
    "/tmp /var/tmp",
    "/etc/ssh/ssh_host_*",
    "/root/anaconda-ks.cfg",
    "/root/original-ks.cfg",
    "truncate --size=0 /etc/machine-id",
    "truncate --size=0 /etc/resolv.conf",
    "find /var/log -type f -exec truncate --size=0",
    "/var/log/anaconda",
    "/var/log/qemu-ga",
    "/var/log/tuned",
    "/var/lib/cloud",
    "/etc/hostname",
    "/etc/machine-info",
    "/var/lib/systemd/credential.secret",
    "/var/lib/systemd/random-seed",
    "/etc/ssh/sshd_config.d/01-permitrootlogin.conf",
    "'*.old'",
    "'*.gz'",
    "/root/.bash_history",
)


def shipped_plan(variant: Variant) -> ImagePlan:
    config = dict(yaml.safe_load(SHIPPED_STACK_FILE.read_text(encoding="utf-8"))["config"])
    variant(config)
    plan, *_ = plan_stack(load_config(config), FIXED_NOW, KICKSTART_DIR)
    return plan


def _handler(kickstart: str) -> Any:
    parser = KickstartParser(makeVersion(RHEL9))
    parser.readKickstartFromString(kickstart)
    return parser.handler


def _post(kickstart: str) -> str:
    return "\n".join(script.script for script in _handler(kickstart).scripts)


def _heredoc(text: str, marker: str) -> list[str]:
    return re.findall(rf"<<'{marker}'\n(.*?)\n{marker}\n", text, re.S)


@pytest.fixture(params=VARIANTS.values(), ids=VARIANTS.keys())
def plan(request: Any) -> ImagePlan:
    return shipped_plan(request.param)


def test_the_pinned_plugin_accepts_the_template_a_build_hands_it(plan: ImagePlan) -> None:
    variables = packer_variables(plan.build_spec)
    source = plan.packer_template["source"]["proxmox-iso"][plan.name]
    assert plugin_problems(with_variables(source, variables)) == []
    validate_packer_template(plan.packer_template, plan.kickstart, variables)


def test_clones_do_not_upgrade_packages_on_first_boot(plan: ImagePlan) -> None:
    source = plan.packer_template["source"]["proxmox-iso"][plan.name]
    assert source["cloud_init_disable_upgrade_packages"] is True


def test_the_root_lv_grows_on_every_boot_of_every_clone(plan: ImagePlan) -> None:
    post = _post(plan.kickstart)
    (unit,) = _heredoc(post, "UNIT")
    assert "ExecStart=/usr/local/sbin/homelab-grow-root" in unit and "WantedBy=multi-user.target" in unit
    assert "systemctl enable homelab-grow-root.service" in post
    (script,) = _heredoc(post, "GROWROOT")
    for step in ("growpart", "pvresize", "lvextend --resizefs --extents +100%FREE"):
        assert step in script
    assert {"lvm2", "xfsprogs", "cloud-utils-growpart"} <= set(_handler(plan.kickstart).packages.packageList)


@needs_shellcheck
def test_the_root_growth_script_passes_shellcheck(plan: ImagePlan, tmp_path: Any) -> None:
    (script,) = _heredoc(_post(plan.kickstart), "GROWROOT")
    assert shellcheck_problems(tmp_path, {"homelab-grow-root": script + "\n"}) == []


def test_generalization_covers_almalinux_cleanup_role(plan: ImagePlan) -> None:
    seal = plan.scripts["seal.sh"]
    missing = [step for step in CLEANUP_VM if step not in seal]
    assert missing == []


def test_the_initramfs_is_generic(plan: ImagePlan) -> None:
    packages = _handler(plan.kickstart).packages
    assert "dracut-config-generic" in packages.packageList
    assert "dracut-config-rescue" in packages.excludedList
    assert "dracut --force --regenerate-all" in plan.scripts["seal.sh"]


def _service_ports(post: str) -> dict[str, set[str]]:
    services = {}
    for document in _heredoc(post, "SERVICE"):
        root = ElementTree.fromstring(document)
        name = str(root.findtext("short")).replace(" ", "-")
        services[name] = {f"{port.get('port')}/{port.get('protocol')}" for port in root.iter("port")}
    return services


def test_firewall_opens_k3s_ports_per_role_only_when_enabled(plan: ImagePlan) -> None:
    handler = _handler(plan.kickstart)
    services = _service_ports(_post(plan.kickstart))
    if not handler.firewall.enabled:
        assert services == {}, "firewalld is off (k3s' advice): no rules are written"
        return
    post = _post(plan.kickstart)
    assert services["k3s-node"] == K3S_ALL_NODES, "what every node needs is open on every clone"
    assert services["k3s-node"] | services["k3s-server"] == K3S_SERVERS
    assert "firewall-offline-cmd --add-service=k3s-node" in post
    (drop_in,) = _heredoc(post, "DROPIN")
    assert "--add-service=k3s-server" in drop_in, "servers open theirs when k3s.service starts"
    assert "k3s.service.d" in post
    for cidr in ("10.42.0.0/16", "10.43.0.0/16"):
        assert f"--zone=trusted --add-source={cidr}" in post
