"""Rebuild exactly when the image would change: the edit corpus, explain, idempotence, freshness."""

from __future__ import annotations

import builtins
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from homelab_images.core.fingerprint import canonical_kickstart, combine, fingerprint_parts, freshness_epoch
from homelab_images.core.packer_template import build_affecting_parts
from homelab_images.core.plan import plan_stack
from homelab_images.core.stackfile import load_stack_file
from tests.pulumi_harness import FIXTURE_KICKSTART_DIR, FIXTURE_STACK_FILE
from tests.rendering import FIXED_NOW, plan_for

TextEdit = Callable[[str], str]


def _replace(old: str, new: str, count: int = 1) -> TextEdit:
    def edit(text: str) -> str:
        assert old in text, f"corpus edit does not apply: {old!r}"
        return text.replace(old, new, count)

    return edit


def _append(line: str) -> TextEdit:
    return lambda text: text + line


def changed_parts(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """The fingerprint parts that differ: what `pulumi preview --diff` shows in the triggers."""
    return sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))


class Workspace:
    """A copy of the stack file and kickstart/ to edit, fingerprinted by the program's own functions."""

    def __init__(self, root: Path) -> None:
        self.kickstart_dir = root / "kickstart"
        shutil.copytree(FIXTURE_KICKSTART_DIR, self.kickstart_dir)
        self.stack_file = root / "Pulumi.homelab.yaml"
        shutil.copy(FIXTURE_STACK_FILE, self.stack_file)

    def edit(self, target: str, edit: TextEdit) -> None:
        path = {
            "stack": self.stack_file,
            "kickstart": self.kickstart_dir / "alma9-k3s.ks.j2",
            "install-k3s": self.kickstart_dir / "scripts" / "install-k3s.sh",
            "seal": self.kickstart_dir / "scripts" / "seal.sh",
        }[target]
        path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")

    def parts(self, now: datetime = FIXED_NOW) -> dict[str, str]:
        (plan,) = plan_stack(load_stack_file(self.stack_file), now, self.kickstart_dir)
        return plan.fingerprint_parts


IMG = "    - name: alma9-k3s-node-amd64\n"

NO_REBUILD: dict[str, tuple[str, TextEdit]] = {
    "kickstart-comment": ("kickstart", _replace("selinux --enforcing\n", "# SELinux stays on.\nselinux --enforcing\n")),
    "kickstart-blank-lines": ("kickstart", _replace("zerombr\n", "\n\nzerombr\n\n")),
    "kickstart-jinja-comment": ("kickstart", _replace("zerombr\n", "{# partitioning #}zerombr\n")),
    "kickstart-option-order": (
        "kickstart",
        _replace("--bootproto=dhcp --device=link", "--device=link --bootproto=dhcp"),
    ),
    "kickstart-extra-spaces": ("kickstart", _replace("selinux --enforcing", "selinux   --enforcing")),
    "kickstart-package-order": ("kickstart", _replace("chrony\ncurl\n", "curl\nchrony\n")),
    "post-comment": (
        "kickstart",
        _replace("systemctl enable qemu-guest-agent.service", "# agent\nsystemctl enable qemu-guest-agent.service"),
    ),
    "script-comment": ("install-k3s", _replace("set -euo pipefail\n", "# strict mode\nset -euo pipefail\n\n")),
    "seal-comment": ("seal", _append("# end of seal.sh\n")),
    "stack-comment": ("stack", _replace(IMG, "    # the workhorse image\n" + IMG)),
    "stack-key-order": (
        "stack",
        _replace("        cores: 2\n        memoryMiB: 4096\n", "        memoryMiB: 4096\n        cores: 2\n"),
    ),
    "stack-quoting": ("stack", _replace('version: "1.0.0"', "version: '1.0.0'")),
    "stack-flow-style": (
        "stack",
        _replace(
            "extra: [nfs-utils, iscsi-initiator-utils]",
            "extra:\n          - nfs-utils\n          - iscsi-initiator-utils",
        ),
    ),
    "timeout": ("stack", _replace("timeoutMinutes: 90", "timeoutMinutes: 120")),
    "ssh-and-task-timeouts": (
        "stack",
        _replace(
            "  homelab-images:build:\n",
            "  homelab-images:build:\n    sshTimeoutMinutes: 60\n    taskTimeoutMinutes: 20\n    bootWaitSeconds: 15\n",
        ),
    ),
    "delivery-cd": ("stack", _replace("kickstartDelivery: http", "kickstartDelivery: cd")),
    "build-node": ("stack", _replace("node: pve1", "node: pve2")),
    "storage-and-bridge": ("stack", _replace("bridge: vmbr0", "bridge: vmbr1")),
    "vm-id-range": ("stack", _replace("first: 9000", "first: 8000")),
    "retention": ("stack", _replace("retainPrevious: 1", "retainPrevious: 3")),
    "strictness": ("stack", _replace("strictVersioning: true", "strictVersioning: false")),
    "iso-mirror-same-checksum": (
        "stack",
        _replace(
            "url: https://repo.almalinux.org/almalinux/9.7/isos", "url: https://mirror.example.org/almalinux/9.7/isos"
        ),
    ),
    "endpoint": ("stack", _replace("https://pve1.home.arpa:8006/", "https://pve.lan:8006/")),
    "version-bump-alone": ("stack", _replace('version: "1.0.0"', 'version: "1.0.1"')),
}

REBUILD: dict[str, tuple[str, TextEdit, str]] = {
    "package-added": ("stack", _replace("extra: [nfs-utils, ", "extra: [htop, nfs-utils, "), "kickstart"),
    "package-excluded": ("stack", _replace("exclude: []", "exclude: [rsync]"), "kickstart"),
    "partition-size": ("stack", _replace("rootMinGiB: 8", "rootMinGiB: 10"), "kickstart"),
    "boot-size": ("stack", _replace("bootMiB: 1024", "bootMiB: 2048"), "kickstart"),
    "k3s-version": ("stack", _replace('version: "v1.36.4+k3s1"', 'version: "v1.36.5+k3s1"'), "k3s"),
    "k3s-binary-checksum": ("stack", _replace('binarySha256: "8358', 'binarySha256: "9358'), "k3s"),
    "airgap-dropped": (
        "stack",
        _replace(
            '        airgapImagesSha256: "9024613e2d468c51ba0e5ba21898604c41339354449fb3338cc6a7931189eb6a"\n', ""
        ),
        "k3s",
    ),
    "iso-checksum": ("stack", _replace('sha256: "494d', 'sha256: "594d'), "iso"),
    "post-line": (
        "kickstart",
        _replace(
            "systemctl enable qemu-guest-agent.service",
            "systemctl enable qemu-guest-agent.service\nsystemctl enable fstrim.timer",
        ),
        "kickstart",
    ),
    "post-heredoc-content": (
        "kickstart",
        _replace("PasswordAuthentication no\n", "PasswordAuthentication no\n# managed by homelab-images\n"),
        "kickstart",
    ),
    "kickstart-command": ("kickstart", _replace("bootloader --timeout=1", "bootloader --timeout=3"), "kickstart"),
    "services": ("kickstart", _replace("--disabled=kdump", "--disabled=kdump,firewalld"), "kickstart"),
    "script-line": (
        "install-k3s",
        _replace("/usr/local/bin/k3s --version\n", "/usr/local/bin/k3s --version\nk3s check-config || true\n"),
        "scripts",
    ),
    "seal-line": ("seal", _append("rm -rf /tmp/*\n"), "scripts"),
    "firmware": ("stack", _replace("firmware: ovmf", "firmware: seabios"), "hardware"),
    "disk-bus": ("stack", _replace("diskBus: scsi", "diskBus: virtio"), "hardware"),
    "disk-size": ("stack", _replace("diskGiB: 32", "diskGiB: 40"), "hardware"),
    "cpu-type": ("stack", _replace("cpuType: x86-64-v2-AES", "cpuType: x86-64-v3"), "hardware"),
    "memory": ("stack", _replace("memoryMiB: 4096", "memoryMiB: 8192"), "hardware"),
    "plugin-version": ("stack", _replace('packerPluginVersion: "1.2.4"', 'packerPluginVersion: "1.2.5"'), "plugin"),
    "firewall": ("stack", _replace("firewall: disabled", "firewall: enabled"), "kickstart"),
    "timezone": (
        "stack",
        _replace("      firewall: disabled", "      timezone: Europe/Berlin\n      firewall: disabled"),
        "kickstart",
    ),
    "install-mirror": (
        "stack",
        _replace(
            "installMirror: https://repo.almalinux.org/almalinux/9.7",
            "installMirror: https://mirror.example.org/almalinux/9.7",
        ),
        "kickstart",
    ),
}


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


def test_corpus_sizes() -> None:
    assert len(NO_REBUILD) >= 15 and len(REBUILD) >= 15


@pytest.mark.parametrize(("target", "edit"), NO_REBUILD.values(), ids=NO_REBUILD.keys())
def test_edits_that_must_not_rebuild(workspace: Workspace, target: str, edit: TextEdit) -> None:
    before = workspace.parts()
    workspace.edit(target, edit)
    after = workspace.parts()
    assert after == before, f"changed parts: {changed_parts(before, after)}"


@pytest.mark.parametrize(("target", "edit", "part"), REBUILD.values(), ids=REBUILD.keys())
def test_edits_that_must_rebuild_name_their_part(workspace: Workspace, target: str, edit: TextEdit, part: str) -> None:
    before = workspace.parts()
    workspace.edit(target, edit)
    after = workspace.parts()
    assert combine(after) != combine(before)
    assert part in changed_parts(before, after)
    if part in ("k3s", "iso", "plugin"):
        assert changed_parts(before, after) == [part], "one change, one named cause"


def test_selinux_mode_changes_the_kickstart_part() -> None:
    rendered = plan_for().kickstart
    assert canonical_kickstart(rendered) != canonical_kickstart(rendered.replace("--enforcing", "--permissive"))


def test_parts_are_identical_across_evaluations_and_dict_order(workspace: Workspace) -> None:
    assert workspace.parts() == workspace.parts()
    (plan,) = plan_stack(load_stack_file(workspace.stack_file), FIXED_NOW, workspace.kickstart_dir)
    shuffled = dict(reversed(list(build_affecting_parts(plan.image).items())))
    again = fingerprint_parts(plan.image, plan.kickstart, shuffled, plan.scripts, "1.2.4", FIXED_NOW)
    assert again == plan.fingerprint_parts


def test_only_kickstart_sources_are_read(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """README, docs and anything else outside kickstart/ cannot affect the fingerprint."""
    config = load_stack_file(workspace.stack_file)
    opened: list[str] = []
    real_open = builtins.open

    def recording_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", recording_open)
    plan_stack(config, FIXED_NOW, workspace.kickstart_dir)
    assert opened and all(path.startswith(str(workspace.kickstart_dir)) for path in opened), opened


def test_freshness_rebuilds_once_per_period(workspace: Workspace) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    epochs = {freshness_epoch("30d", start + timedelta(days=day)) for day in range(0, 30)}
    assert len(epochs) <= 2
    assert freshness_epoch("30d", start) != freshness_epoch("30d", start + timedelta(days=31))
    same = workspace.parts(FIXED_NOW) == workspace.parts(FIXED_NOW + timedelta(hours=1))
    later = workspace.parts(FIXED_NOW + timedelta(days=31))
    assert same and changed_parts(workspace.parts(FIXED_NOW), later) == ["freshness"]


def test_without_rebuild_every_time_does_not_matter(workspace: Workspace) -> None:
    workspace.edit("stack", _replace("      rebuildEvery: 30d           # pick up security updates monthly\n", ""))
    assert workspace.parts(FIXED_NOW) == workspace.parts(FIXED_NOW + timedelta(days=400))
