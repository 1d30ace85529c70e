"""The rendered kickstart: accepted by Anaconda's parser and carrying the image's promises."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pykickstart.constants import DISPLAY_MODE_TEXT, SELINUX_ENFORCING
from pykickstart.parser import KickstartParser
from pykickstart.version import RHEL9, makeVersion

from homelab_images.core.kickstart import BUILD_KEY_PLACEHOLDER, KickstartInvalid, render_kickstart, validate_kickstart
from homelab_images.core.plan import plan_stack
from homelab_images.core.stackfile import load_stack_file
from tests.pulumi_harness import FIXTURE_KICKSTART_DIR, SHIPPED_STACK_FILE
from tests.rendering import FIXED_NOW, needs_shellcheck, plan_for, shellcheck_problems
from tests.stack_files import image

Variation = Callable[[dict[str, Any]], None]


def _image(**changes: Any) -> Variation:
    def mutate(config: dict[str, Any]) -> None:
        for dotted, value in changes.items():
            target = image(config)
            *parents, last = dotted.split("__")
            for parent in parents:
                target = target.setdefault(parent, {})
            if value is None:
                target.pop(last, None)
            else:
                target[last] = value

    return mutate


def _delivery_cd(config: dict[str, Any]) -> None:
    config["homelab-images:build"]["kickstartDelivery"] = "cd"


# Every documented option, each rendered and parsed on its own.
OPTIONS: dict[str, Variation] = {
    "shipped": lambda _: None,
    "delivery-cd": _delivery_cd,
    "install-from-iso": _image(installMirror=None),
    "firewall-enabled": _image(firewall="enabled"),
    "seabios": _image(hardware__firmware="seabios"),
    "virtio-disk": _image(hardware__diskBus="virtio"),
    "sata-disk": _image(hardware__diskBus="sata"),
    "extra-and-excluded-packages": _image(packages={"extra": ["htop", "@container-management"], "exclude": ["rsync"]}),
    "no-airgap": _image(k3s__airgapImagesSha256=None),
    "locale": _image(lang="de_DE.UTF-8", keyboard="de", timezone="Europe/Berlin"),
}


def _parsed(text: str) -> Any:
    parser = KickstartParser(makeVersion(RHEL9))
    parser.readKickstartFromString(text)
    return parser.handler


@pytest.mark.parametrize("option", OPTIONS.values(), ids=OPTIONS.keys())
def test_every_option_parses_without_errors_or_warnings(option: Variation, recwarn: Any) -> None:
    kickstart = plan_for(option).kickstart
    _parsed(kickstart)
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning | UserWarning)]
    validate_kickstart(kickstart)


def test_shipped_kickstart_installs_the_promised_system() -> None:
    handler = _parsed(plan_for().kickstart)
    mounts = {p.mountpoint: p for p in handler.partition.partitions}
    assert mounts["/boot/efi"].fstype == "efi"
    assert mounts["/boot"].fstype == "xfs"
    assert handler.clearpart.disklabel == "gpt"
    (root,) = handler.logvol.lvList
    assert (root.mountpoint, root.fstype, root.grow, root.size) == ("/", "xfs", True, 8 * 1024)
    assert handler.volgroup.vgList[0].vgname == root.vgname
    assert handler.selinux.selinux == SELINUX_ENFORCING
    assert handler.timezone.timezone == "UTC" and handler.timezone.isUtc
    assert handler.network.network[0].bootProto == "dhcp"
    assert handler.displaymode.displayMode == DISPLAY_MODE_TEXT
    assert "kdump" in handler.services.disabled
    assert {"sshd", "qemu-guest-agent", "cloud-init"} <= set(handler.services.enabled)
    packages = handler.packages
    assert {"cloud-init", "cloud-utils-growpart", "qemu-guest-agent"} <= set(packages.packageList)
    assert packages.excludeWeakdeps and packages.excludeDocs
    assert "kexec-tools" in packages.excludedList
    assert handler.firewall.enabled is False


def test_partition_sizes_come_from_config() -> None:
    handler = _parsed(plan_for(_image(partitioning={"efiMiB": 800, "bootMiB": 2048, "rootMinGiB": 12})).kickstart)
    sizes = {p.mountpoint: p.size for p in handler.partition.partitions}
    assert sizes["/boot/efi"] == 800 and sizes["/boot"] == 2048
    assert handler.logvol.lvList[0].size == 12 * 1024


def test_bios_firmware_gets_a_bios_boot_partition_instead_of_esp() -> None:
    mounts = {
        p.mountpoint for p in _parsed(plan_for(_image(hardware__firmware="seabios")).kickstart).partition.partitions
    }
    assert "biosboot" in mounts and "/boot/efi" not in mounts


def test_install_source_is_the_iso_or_the_pinned_mirror() -> None:
    mirror = _parsed(plan_for().kickstart)
    assert mirror.url.url == "https://repo.almalinux.org/almalinux/9.7/BaseOS/x86_64/os/"
    assert [r.name for r in mirror.repo.repoList] == ["AppStream"]
    media = _parsed(plan_for(_image(installMirror=None)).kickstart)
    assert media.method.method == "cdrom"


def test_firewall_is_off_unless_enabled_as_k3s_recommends() -> None:
    assert not _parsed(plan_for(_image(firewall=None)).kickstart).firewall.enabled
    handler = _parsed(plan_for(_image(firewall="enabled")).kickstart)
    assert handler.firewall.enabled and handler.firewall.services == ["ssh"]


def test_extra_and_excluded_packages_reach_the_package_section() -> None:
    handler = _parsed(plan_for(_image(packages={"extra": ["htop"], "exclude": ["rsync"]})).kickstart)
    assert "htop" in handler.packages.packageList
    assert "rsync" in handler.packages.excludedList


def test_no_password_only_a_locked_root_and_the_build_key_placeholder() -> None:
    kickstart = plan_for().kickstart
    handler = _parsed(kickstart)
    assert handler.rootpw.lock and not handler.rootpw.password
    assert handler.user.userList == []
    assert [key.key for key in handler.sshkey.sshUserList] == [BUILD_KEY_PLACEHOLDER]
    assert not re.search(r"--(plaintext|iscrypted)|\bpassword\s*=", kickstart)


def test_post_configures_cloud_init_for_proxmox_and_key_only_ssh() -> None:
    (post,) = _parsed(plan_for().kickstart).scripts
    assert post.inChroot and post.errorOnFail
    assert "datasource_list: [NoCloud, ConfigDrive, None]" in post.script
    assert "PasswordAuthentication no" in post.script


def test_validation_rejects_a_kickstart_missing_image_requirements() -> None:
    kickstart = plan_for().kickstart.replace("selinux --enforcing", "selinux --permissive")
    with pytest.raises(KickstartInvalid, match="SELinux must be enforcing"):
        validate_kickstart(kickstart)
    without_agent = plan_for().kickstart.replace("\nqemu-guest-agent\n", "\n")
    with pytest.raises(KickstartInvalid, match="qemu-guest-agent"):
        validate_kickstart(without_agent)


def test_validation_rejects_a_syntax_error_with_its_line() -> None:
    with pytest.raises(KickstartInvalid, match="line 2"):
        validate_kickstart("text\nnot-a-command --foo\n")


def test_template_variables_are_strict(tmp_path: Path) -> None:
    (tmp_path / "alma9-k3s.ks.j2").write_text("text\nlang {{ image.no_such_field }}\n", encoding="utf-8")
    with pytest.raises(Exception, match="no_such_field"):
        render_kickstart(plan_for().image, template_dir=tmp_path)


def _post_bodies(kickstart: str) -> list[str]:
    return [script.script for script in _parsed(kickstart).scripts]


@needs_shellcheck
@pytest.mark.parametrize("option", OPTIONS.values(), ids=OPTIONS.keys())
def test_post_scripts_pass_shellcheck(option: Variation, tmp_path: Path) -> None:
    bodies = _post_bodies(plan_for(option).kickstart)
    problems = shellcheck_problems(tmp_path, {f"post-{i}.sh": "#!/bin/bash\n" + body for i, body in enumerate(bodies)})
    assert not problems, "\n".join(problems)


@needs_shellcheck
def test_your_kickstart_and_scripts_pass_shellcheck(tmp_path: Path) -> None:
    """Your own kickstart/ and stack file, as edited (README, "Customizing safely")."""
    (plan,) = plan_stack(load_stack_file(SHIPPED_STACK_FILE), FIXED_NOW)
    bodies = _post_bodies(plan.kickstart)
    scripts = {**plan.scripts, **{f"post-{i}.sh": "#!/bin/bash\n" + body for i, body in enumerate(bodies)}}
    problems = shellcheck_problems(tmp_path, scripts)
    assert not problems, "\n".join(problems)


# Values that got past the config model (a future key, a loosened pattern) still can't add options or lines.
SMUGGLED = {
    "option": " --noverifyssl --proxy=http://evil.lan",
    "double-quote": '" --noverifyssl "',
    "single-quote": "' --noverifyssl '",
    "substitution": "$(reboot)`reboot`",
}


@pytest.mark.parametrize("suffix", SMUGGLED.values(), ids=SMUGGLED.keys())
def test_every_command_line_value_stays_one_argument(suffix: str) -> None:
    valid = plan_for().image
    mirror = f"{valid.install_mirror}{suffix}"
    hostile = valid.model_copy(
        update={"install_mirror": mirror, "lang": f"en_US.UTF-8{suffix}", "keyboard": f"us{suffix}"}
    )
    handler = _parsed(render_kickstart(hostile, template_dir=FIXTURE_KICKSTART_DIR))
    assert handler.url.url == f"{mirror}/BaseOS/x86_64/os/"
    assert not handler.url.noverifyssl and not handler.url.proxy
    assert [r.baseurl for r in handler.repo.repoList] == [f"{mirror}/AppStream/x86_64/os/"]
    assert handler.lang.lang == f"en_US.UTF-8{suffix}"
    assert handler.keyboard.vc_keymap == f"us{suffix}"


@pytest.mark.parametrize("key", ["install_mirror", "lang", "keyboard", "timezone"])
def test_a_line_break_in_a_value_is_refused_not_rendered(key: str) -> None:
    valid = plan_for().image
    hostile = valid.model_copy(update={key: f"{getattr(valid, key)}\n%post\nreboot\n%end"})
    with pytest.raises(KickstartInvalid, match="control character"):
        render_kickstart(hostile, template_dir=FIXTURE_KICKSTART_DIR)
