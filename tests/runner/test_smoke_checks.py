"""Each smoke check passes only on positive evidence: every way the guest can say "no" or say nothing fails it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from homelab_images.runner import smoke_checks as checks
from homelab_images.runner.guest_agent import Execution
from homelab_images.runner.smoke_checks import Check, Expectations
from tests.rendering import needs_shellcheck, shellcheck_problems

GIB = 1024**3
MIB = 1024**2
UUID = "5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
EXPECTED = Expectations(k3s_version="v1.36.4+k3s1", vm_uuid=UUID, disk_bytes=36 * GIB)
BOOT = int(time.time()) - 40


def ran(out: str, exitcode: int = 0, err: str = "") -> Execution:
    return Execution(finished=True, exitcode=exitcode, out=out, err=err)


def lsblk(disk: int = 36 * GIB, lv: int | None = None, fs: int | None = None) -> str:
    pv = disk - 600 * MIB - GIB - 2 * MIB
    lv = pv - 4 * MIB if lv is None else lv
    fs = lv - 64 * MIB if fs is None else fs
    return (
        f"rootfs {fs}\nchain vg_system-lv_root lvm {lv}\nchain sda3 part {pv}\nchain sda disk {disk}\n"
        f"disk sda disk {disk}\ndisk sda1 part {600 * MIB}\ndisk sda2 part {GIB}\ndisk sda3 part {pv}\n"
        f"disk vg_system-lv_root lvm {lv}\n"
    )


def keys(*mtimes: int) -> str:
    kinds = ("ecdsa", "ed25519", "rsa")
    return (
        f"boot {BOOT}\n"
        + "".join(f"key {m} /etc/ssh/ssh_host_{k}_key\n" for m, k in zip(mtimes, kinds, strict=True))
        + "checked\n"
    )


AGENT_UNIT = "unit k3s-agent.service disabled inactive\n"
ABSENT = "".join(f"absent {path}\n" for path in checks.TOKEN_FILES)
HEALTHY: dict[str, Execution] = {
    checks.CLOUD_INIT.name: ran("\nstatus: done\nextended_status: done\nerrors: []\nrecoverable_errors: {}\n"),
    checks.SELINUX.name: ran("Enforcing\n"),
    checks.MACHINE_ID.name: ran(UUID.replace("-", "") + "\n"),
    checks.HOST_KEYS.name: ran(keys(BOOT + 10, BOOT + 10, BOOT + 11)),
    checks.ROOT_GROWTH.name: ran(lsblk()),
    checks.K3S_VERSION.name: ran("k3s version v1.36.4+k3s1 (3c2a5b1e)\ngo version go1.24.9\n"),
    checks.K3S_UNITS_CHECK.name: ran("unit k3s.service disabled inactive\nunit k3s-agent.service disabled inactive\n"),
    checks.NO_TOKEN.name: ran(ABSENT + "checked\n"),
    checks.K3S_START.name: ran("checked\n"),
    checks.NODE_READY.name: ran("node-1 Ready control-plane,master 9s v1.36.4+k3s1\n"),
}

BROKEN = [
    (checks.CLOUD_INIT, ran("\nstatus: error\nextended_status: error - done\n", 1), "cloud-init status is 'error'"),
    (checks.CLOUD_INIT, ran("\nstatus: disabled\n", 0), "cloud-init status is 'disabled'"),
    (checks.SELINUX, ran("Permissive\n"), "getenforce says 'Permissive'"),
    (checks.SELINUX, ran("Disabled\n"), "getenforce says 'Disabled'"),
    (checks.MACHINE_ID, ran("uninitialized\n"), "holds 'uninitialized'"),
    (checks.MACHINE_ID, ran("0123456789abcdef0123456789abcdef\n"), "the template carries a machine-id"),
    (checks.HOST_KEYS, ran(keys(BOOT - 86400, BOOT + 10, BOOT + 10)), "made before this boot"),
    (checks.HOST_KEYS, ran(f"boot {BOOT}\nchecked\n"), "no SSH host key"),
    (checks.ROOT_GROWTH, ran(lsblk(lv=32 * GIB - 1700 * MIB)), "the partition, physical volume or root volume"),
    (checks.ROOT_GROWTH, ran(lsblk(fs=32 * GIB - 1700 * MIB)), "the root filesystem (30.3 GiB) did not grow"),
    (checks.ROOT_GROWTH, ran(lsblk(disk=32 * GIB)), "the guest sees a 32.0 GiB disk, Proxmox enlarged it to 36.0"),
    (checks.K3S_VERSION, ran("k3s version v1.35.0+k3s1 (0a1b2c3d)\n"), "k3s v1.35.0+k3s1 is installed"),
    (checks.K3S_UNITS_CHECK, ran(f"unit k3s.service enabled inactive\n{AGENT_UNIT}"), "enabled and inactive"),
    (checks.K3S_UNITS_CHECK, ran(f"unit k3s.service disabled active\n{AGENT_UNIT}"), "disabled and active"),
    (checks.K3S_UNITS_CHECK, ran("unit k3s.service  \nunit k3s-agent.service  \n"), "k3s.service is not installed"),
    (checks.NO_TOKEN, ran(ABSENT.replace("absent /etc/rancher/node/", "present /etc/rancher/node/") + "checked\n"),
     "/etc/rancher/node/password exists"),
    (checks.NO_TOKEN, ran(ABSENT + "sets /etc/systemd/system/k3s.service.env K3S_TOKEN\nchecked\n"),
     "/etc/systemd/system/k3s.service.env sets K3S_TOKEN"),
    (checks.NO_TOKEN, ran(ABSENT), "the check did not finish"),
    (checks.K3S_START, ran("Job for k3s.service failed\n", 1), "systemctl start k3s.service failed (exit 1)"),
    (checks.NODE_READY, ran("node-1 NotReady control-plane,master 9s v1.36.4+k3s1\n"), "not Ready: node-1 NotReady"),
    (checks.NODE_READY, ran("node-1 Ready control-plane,master 9s v1.35.0+k3s1\n"), "runs v1.35.0+k3s1"),
]  # fmt: skip


@pytest.mark.parametrize("check", checks.CHECKS, ids=lambda c: c.name)
def test_the_healthy_answer_passes(check: Check) -> None:
    verdict = check.judge(HEALTHY[check.name], EXPECTED)
    assert verdict.passed, verdict.found
    assert verdict.warning is None


@pytest.mark.parametrize(("check", "answer", "found"), BROKEN, ids=lambda v: getattr(v, "name", None))
def test_a_broken_answer_fails_and_says_why(check: Check, answer: Execution, found: str) -> None:
    verdict = check.judge(answer, EXPECTED)
    assert not verdict.passed
    assert found in verdict.found


def test_every_check_has_a_broken_answer() -> None:
    assert {check.name for check, _, _ in BROKEN} == {check.name for check in checks.CHECKS}


@pytest.mark.parametrize("check", checks.CHECKS, ids=lambda c: c.name)
def test_empty_output_is_a_failure(check: Check) -> None:
    assert not check.judge(ran(""), EXPECTED).passed


@pytest.mark.parametrize("check", checks.CHECKS, ids=lambda c: c.name)
def test_a_missing_command_is_a_failure(check: Check) -> None:
    verdict = check.judge(ran("", 127, "sh: 1: tool: not found"), EXPECTED)
    assert not verdict.passed
    assert "a command is missing" in verdict.found or "did not finish" in verdict.found


def test_cloud_init_with_recoverable_errors_passes_with_a_warning() -> None:
    verdict = checks.judge_cloud_init(ran("\nstatus: done\nextended_status: degraded done\n", 2), EXPECTED)
    assert verdict.passed
    assert verdict.warning and "recoverable errors" in verdict.warning


def test_the_guest_clock_may_have_been_stepped_a_little_after_boot() -> None:
    verdict = checks.judge_host_keys(ran(keys(BOOT - 30, BOOT - 30, BOOT - 30)), EXPECTED)
    assert verdict.passed, verdict.found


@needs_shellcheck
def test_check_scripts_pass_shellcheck(tmp_path: Path) -> None:
    scripts = {f"check-{index}.sh": "#!/bin/sh\n" + check.argv[-1] for index, check in enumerate(checks.CHECKS)}
    assert shellcheck_problems(tmp_path, scripts) == []


def test_the_token_check_prints_setting_names_never_their_values(tmp_path: Path) -> None:
    """Its output reaches the build's stderr (and Pulumi state): a baked K3S_TOKEN must fail it unseen."""
    env_file = tmp_path / "k3s.service.env"
    env_file.write_text("K3S_TOKEN='s3cr3t-value'\nexport K3S_URL=https://10.0.0.1:6443\nHTTP_PROXY=x\n")
    config = tmp_path / "config.yaml"
    config.write_text("token: s3cr3t-value\nnode-name: a\n")
    script = checks.NO_TOKEN.argv[-1]
    for path, stand_in in zip(checks.TOKEN_SETTINGS, (env_file, tmp_path / "none.env", config), strict=True):
        script = script.replace(path, str(stand_in))
    for index, path in enumerate(checks.TOKEN_FILES):
        script = script.replace(path, str(tmp_path / f"absent-{index}"))
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert "s3cr3t" not in out
    verdict = checks.judge_no_token(ran(out), EXPECTED)
    assert not verdict.passed
    assert f"{env_file} sets K3S_TOKEN, K3S_URL" in verdict.found
    assert f"{config} sets token" in verdict.found


def test_the_image_installs_the_trampoline_every_check_runs_through() -> None:
    """The runner and the kickstart agree on the guest-exec entry point and what it needs."""
    kickstart = (Path(__file__).resolve().parents[2] / "kickstart" / "alma9-k3s.ks.j2").read_text(encoding="utf-8")
    assert all(check.argv[0] == checks.TRAMPOLINE for check in checks.CHECKS)
    assert f"cat > {checks.TRAMPOLINE} <<" in kickstart
    assert f"semanage fcontext -N -a -t virt_qemu_ga_unconfined_exec_t {checks.TRAMPOLINE}" in kickstart
    assert "semanage boolean -N -m --on virt_qemu_ga_run_unconfined" in kickstart
    assert "for rpc in guest-exec guest-exec-status; do" in kickstart
    assert "guest-file" not in kickstart.replace("never the guest-file-* RPCs", "")
