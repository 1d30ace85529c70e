"""The qemu target's build command, run as pulumi-command runs it, with the stand-in Packer (tests/fakes).

No hypervisor runs: the stand-in checks the template against the pinned qemu
plugin's rules and makes a real (small) qcow2 with qemu-img, so what is checked
here is the runner's part: preflight, Packer's environment, verification,
checksum, manifest, placement, cleanup on failure, update and retention.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from homelab_images.contract.artifact import ArtifactSpec
from homelab_images.contract.commands import QEMU_CREATE_COMMAND, QEMU_DELETE_COMMAND, QEMU_UPDATE_COMMAND
from homelab_images.contract.gc_request import ArtifactGc, ArtifactImage
from homelab_images.core.config import load_config
from homelab_images.core.plan import plan_stack
from homelab_images.runner.artifact_gc import find_artifacts
from tests.engine import Run
from tests.runner.conftest import COMMAND_TIMEOUT, REPO, STAND_IN_PACKER
from tests.runner.test_engine_fidelity import alive, poll
from tests.stack_files import image, mutated_config

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img (Debian: qemu-utils)")
GIB = 1024**3
SECRET = "never-needed-by-a-qemu-build-5ecr3t"


def _spec(tmp: Path, accelerator: str = "tcg") -> ArtifactSpec:
    def mutate(config: dict[str, Any]) -> None:
        image(config)["targets"] = ["proxmox-iso", "qemu"]
        config["homelab-images:build"]["artifactDir"] = str(tmp / "artifacts")
        config["homelab-images:build"]["qemu"] = {
            "ovmfCode": str(tmp / "firmware" / "OVMF_CODE_4M.fd"),
            "ovmfVars": str(tmp / "firmware" / "OVMF_VARS_4M.fd"),
            "accelerator": accelerator,
        }

    (plan,) = plan_stack(load_config(mutated_config(mutate)), datetime.now(UTC))
    assert plan.qemu is not None
    return plan.qemu.spec


def _rebuilt(spec: ArtifactSpec, char: str) -> ArtifactSpec:
    """The same image after a change to its content: another fingerprint."""
    return spec.replace(fingerprint=char * 64)


@dataclass
class QemuRunner:
    root: Path
    spec: ArtifactSpec

    @property
    def image_dir(self) -> Path:
        return self.root / "artifacts" / self.spec.image

    @property
    def record_file(self) -> Path:
        return self.root / "packer-calls.jsonl"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.root / "home"),
            "TMPDIR": str(self.root / "tmp"),
            "HOMELAB_IMAGES_PYTHON": sys.executable,
            "HOMELAB_IMAGES_KILL_GRACE_SECONDS": "5",
            # In the caller's environment, never needed: it must not reach Packer or any output.
            "PROXMOX_VE_API_TOKEN": f"images@pve!build={SECRET}",
            **extra,
        }
        settings = {"FAKE_PACKER_RECORD": str(self.record_file)}
        settings.update({key: value for key, value in env.items() if key.startswith("FAKE_PACKER_")})
        (self.root / "fake-packer.env").write_text("".join(f"export {k}='{v}'\n" for k, v in settings.items()))
        return env

    def _run(self, command: str, spec: ArtifactSpec | None, env: dict[str, str]) -> Run:
        done = subprocess.run(
            ["/bin/sh", "-c", command],
            input=(spec or self.spec).to_json(),
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        return Run(command, done.returncode, done.stdout, done.stderr, env, secrets=(SECRET,))

    def create(self, spec: ArtifactSpec | None = None, **env: str) -> Run:
        return self._run(QEMU_CREATE_COMMAND, spec, self.env(**env))

    def update(self, previous: Run, spec: ArtifactSpec | None = None) -> Run:
        return self._run(QEMU_UPDATE_COMMAND, spec, self.env(PULUMI_COMMAND_STDOUT=previous.stdout))

    def delete(self, previous: Run, spec: ArtifactSpec | None = None) -> Run:
        return self._run(QEMU_DELETE_COMMAND, spec, self.env(PULUMI_COMMAND_STDOUT=previous.stdout))

    def packer_calls(self) -> list[dict[str, Any]]:
        """The stand-in's init and build runs (the `packer version` check before them left out)."""
        if not self.record_file.exists():
            return []
        calls = [json.loads(line) for line in self.record_file.read_text().splitlines()]
        return [call for call in calls if call["argv"][:1] != ["version"]]

    def builds(self) -> list[str]:
        return sorted(p.name for p in self.image_dir.iterdir()) if self.image_dir.exists() else []

    def assert_nothing_left(self) -> None:
        assert self.builds() == [], "a failed build keeps no file, no work directory, no Packer output"
        assert list((self.root / "tmp").iterdir()) == [], "the private build directory (and its key) is removed"


@pytest.fixture
def qemu(tmp_path: Path) -> Iterator[QemuRunner]:
    for name in ("bin", "home", "tmp", "firmware"):
        (tmp_path / name).mkdir()
    (tmp_path / "firmware" / "OVMF_CODE_4M.fd").write_bytes(b"\0" * 4096)
    (tmp_path / "firmware" / "OVMF_VARS_4M.fd").write_bytes(b"\1" * 4096)
    wrapper = tmp_path / "bin" / "packer"
    wrapper.write_text(
        f'#!/bin/sh\n. "{tmp_path / "fake-packer.env"}"\nexec "{sys.executable}" "{STAND_IN_PACKER}" "$@"\n'
    )
    wrapper.chmod(0o755)
    # Stand-in for QEMU's system emulator: the runner only checks that it is installed; no VM runs in tests.
    emulator = tmp_path / "bin" / "qemu-system-x86_64"
    emulator.write_text("#!/bin/sh\necho 'QEMU emulator version 7.2.0 (stand-in)'\n")
    emulator.chmod(0o755)
    yield QemuRunner(tmp_path, _spec(tmp_path))


def _gc_findings(qemu: QemuRunner, fingerprint: str, retain: int) -> list[tuple[Path, str]]:
    """What `homelab-images gc` finds in the artifact directory these builds used."""
    request = ArtifactGc(
        artifact_dir=str(qemu.root / "artifacts"),
        images=[ArtifactImage(name=qemu.spec.image, fingerprint=fingerprint)],
        retain_previous=retain,
    )
    return [(entry.directory, entry.reason) for entry in find_artifacts(request, qemu.root).entries]


def _qemu_img(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=False)


def test_build_leaves_a_checked_compressed_qcow2_its_sha256_and_manifest(qemu: QemuRunner) -> None:
    spec = qemu.spec
    run = qemu.create()
    run.assert_clean()
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 1, "stdout carries only the result line"
    result = run.result
    disk = Path(result["path"])
    assert disk == qemu.image_dir / f"{spec.template_name}-{spec.fingerprint[:12]}" / f"{spec.template_name}.qcow2"

    assert _qemu_img("check", str(disk)).returncode == 0, "qemu-img check accepts the image"
    info = json.loads(_qemu_img("info", "--output=json", str(disk)).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == 32 * GIB
    sha256 = hashlib.sha256(disk.read_bytes()).hexdigest()
    assert result["sha256"] == sha256 and result["size"] == disk.stat().st_size
    checksum = disk.with_name(disk.name + ".sha256")
    assert checksum.read_text() == f"{sha256}  {disk.name}\n"
    verified = subprocess.run(["sha256sum", "-c", checksum.name], cwd=disk.parent, capture_output=True, check=False)
    assert verified.returncode == 0, "the checksum file is in sha256sum's format"

    manifest = json.loads(Path(result["manifest"]).read_text())
    assert manifest["schema"] == 1 and manifest["builtBy"] == "homelab-images"
    assert (manifest["image"], manifest["version"], manifest["fingerprint"]) == (spec.image, "1.0.0", spec.fingerprint)
    assert manifest["fingerprintParts"] == spec.fingerprint_parts
    assert manifest["sha256"] == sha256 and manifest["file"] == disk.name and manifest["virtualSize"] == 32 * GIB
    assert manifest["builtAt"] == result["builtAt"] and manifest["builder"] == "github.com/hashicorp/qemu 1.1.4"
    assert manifest["isoSha256"] == spec.iso_sha256 and manifest["k3sVersion"] == spec.k3s_version
    assert manifest["hardware"] == {
        "firmware": "ovmf",
        "machine": "q35",
        "cores": 2,
        "memoryMiB": 4096,
        "diskBus": "scsi",
        "diskGiB": 32,
    }
    assert sorted(p.name for p in disk.parent.iterdir()) == sorted([disk.name, checksum.name, "manifest.json"])
    assert qemu.builds() == [disk.parent.name], "no work directory or Packer output is left next to it"
    assert list((qemu.root / "tmp").iterdir()) == []

    for stage in ("packer init", "installing the OS (waiting for SSH)", "provisioning: seal.sh", "verifying"):
        assert f"stage: {stage}" in run.stderr
    init, build = qemu.packer_calls()
    assert init["argv"] == ["init", "qemu.pkr.json"]
    assert build["argv"] == ["build", "-color=false", "-on-error=cleanup", "-timestamp-ui", "qemu.pkr.json"]
    for call in (init, build):
        assert call["cwd_mode"] == 0o700
        assert not {"PROXMOX_VE_API_TOKEN", "PROXMOX_TOKEN", "PROXMOX_URL"} & set(call["env"])
    assert {"PKR_VAR_output_directory", "PKR_VAR_build_ssh_private_key_file"} <= set(build["env"])


def test_a_second_run_of_the_same_fingerprint_keeps_the_verified_file(qemu: QemuRunner) -> None:
    first = qemu.create()
    assert first.returncode == 0, first.stderr
    again = qemu.create()
    assert again.returncode == 0, again.stderr
    assert again.result == first.result
    assert "already built from this fingerprint" in again.stderr
    assert len(qemu.packer_calls()) == 2, "Packer ran once"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update(cpus="2"), "cpus: expected number"),
        (lambda s: s.update(disk_interface="nvme"), "disk_interface: 'nvme' is not one of"),
        (lambda s: s.update(virtio_rng=True), "unknown option virtio_rng"),
    ],
)
def test_a_template_the_plugin_rejects_fails_before_building(qemu: QemuRunner, change: Any, message: str) -> None:
    template = json.loads(json.dumps(qemu.spec.packer_template))
    change(template["source"]["qemu"][qemu.spec.image])
    run = qemu.create(qemu.spec.replace(packer_template=template))
    run.assert_clean()
    assert run.returncode == 1
    assert message in run.stderr
    assert run.errors and "packer build failed" in run.errors[-1]
    qemu.assert_nothing_left()


def test_a_failed_provisioning_keeps_nothing(qemu: QemuRunner) -> None:
    run = qemu.create(FAKE_PACKER_FAIL_AT="provision")
    assert run.returncode == 1
    assert "Deleting output directory" in run.stderr
    assert "Script exited with non-zero exit status" in run.errors[-1]
    qemu.assert_nothing_left()


def test_the_timeout_stops_packer_and_keeps_nothing(qemu: QemuRunner) -> None:
    run = qemu.create(FAKE_PACKER_HANG="1", HOMELAB_IMAGES_TIMEOUT_SECONDS="2")
    assert run.returncode == 1
    assert "exceeded its timeout" in run.errors[-1]
    qemu.assert_nothing_left()


def test_an_interrupted_build_keeps_nothing(qemu: QemuRunner) -> None:
    process = subprocess.Popen(
        ["/bin/sh", "-c", QEMU_CREATE_COMMAND],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=qemu.env(FAKE_PACKER_HANG="1"),
        cwd=REPO,
        text=True,
        start_new_session=True,
    )
    assert process.stdin is not None
    process.stdin.write(qemu.spec.to_json())
    process.stdin.close()
    process.stdin = None
    deadline = time.monotonic() + 20
    while not list(qemu.image_dir.glob(".building-*/output/efivars.fd")):
        assert time.monotonic() < deadline, "the build never started"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
    # The shell pulumi-command starts may die of the same Ctrl-C before the runner reports.
    assert process.returncode in (-signal.SIGINT, 128 + signal.SIGINT), stderr
    assert "interrupted by SIGINT" in stderr
    qemu.assert_nothing_left()


def test_a_cancelled_pulumi_up_kills_the_runner_itself_and_packer_stops(qemu: QemuRunner) -> None:
    """pulumi-command's cancel SIGKILLs only the process it started (tests/engine.py, Running.cancel):
    that process must be the runner, not a shell the runner outlives while Packer keeps building."""
    pidfile = qemu.root / "packer.pid"
    process = subprocess.Popen(
        ["/bin/sh", "-c", QEMU_CREATE_COMMAND],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=qemu.env(FAKE_PACKER_HANG="1", FAKE_PACKER_PIDFILE=str(pidfile)),
        cwd=REPO,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdin is not None
        process.stdin.write(qemu.spec.to_json())
        process.stdin.close()
        process.stdin = None
        poll(pidfile.exists, 20, "waiting for Packer to start")
        packer = int(pidfile.read_text())
        process.kill()
        process.wait(timeout=COMMAND_TIMEOUT)
        poll(lambda: not alive(packer), 30, "a Packer process")
        poll(lambda: list((qemu.root / "tmp").iterdir()) == [], 30, "a private build directory with its key")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def test_missing_firmware_is_named_before_building(qemu: QemuRunner) -> None:
    (qemu.root / "firmware" / "OVMF_VARS_4M.fd").unlink()
    run = qemu.create()
    assert run.returncode == 1
    assert "OVMF_VARS_4M.fd does not exist" in run.errors[0]
    assert "homelab-images:build.qemu.ovmfCode / ovmfVars" in run.errors[0]
    assert qemu.packer_calls() == [], "no Packer run for a build that cannot succeed"


def test_kvm_without_dev_kvm_is_named_before_building(qemu: QemuRunner) -> None:
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("this machine has KVM")
    run = qemu.create(_spec(qemu.root, accelerator="kvm"))
    assert run.returncode == 1
    assert "/dev/kvm is missing" in run.errors[0] and "accelerator: tcg" in run.errors[0]
    assert qemu.packer_calls() == []


def test_missing_emulator_is_named_before_building(qemu: QemuRunner) -> None:
    (qemu.root / "bin" / "qemu-system-x86_64").unlink()
    run = qemu.create(PATH=f"{qemu.root / 'bin'}{os.pathsep}/nonexistent-bin")
    assert run.returncode == 1
    assert "qemu-system-x86_64 is not on PATH" in run.errors[0]


def test_update_verifies_the_file_and_refuses_a_changed_one(qemu: QemuRunner) -> None:
    built = qemu.create()
    assert built.returncode == 0, built.stderr
    updated = qemu.update(built)
    assert updated.returncode == 0, updated.stderr
    assert updated.result == built.result
    with open(built.result["path"], "r+b") as handle:
        handle.seek(1024)
        handle.write(b"tampered")
    refused = qemu.update(built)
    assert refused.returncode == 1
    assert "no longer matches its sha256" in refused.errors[0] and "--replace" in refused.errors[0]


def test_a_version_bump_without_a_content_change_renames_the_file(qemu: QemuRunner) -> None:
    built = qemu.create()
    bumped = qemu.spec.replace(version="1.0.1", template_name=f"{qemu.spec.image}-v1.0.1")
    bumped = bumped.replace(file_name=f"{bumped.template_name}.qcow2")
    updated = qemu.update(built, bumped)
    assert updated.returncode == 0, updated.stderr
    result = updated.result
    assert result["version"] == "1.0.1" and result["sha256"] == built.result["sha256"]
    disk = Path(result["path"])
    assert disk.name == f"{qemu.spec.image}-v1.0.1.qcow2" and disk.is_file()
    assert disk.parent.name == f"{qemu.spec.image}-v1.0.1-{qemu.spec.fingerprint[:12]}"
    assert json.loads(Path(result["manifest"]).read_text())["version"] == "1.0.1"
    assert disk.with_name(disk.name + ".sha256").read_text().endswith(f"  {disk.name}\n")
    assert not Path(built.result["path"]).exists()
    assert _gc_findings(qemu, qemu.spec.fingerprint, 0) == [], "gc knows the renamed file as this image's current one"


def test_replacing_keeps_retain_previous_files_and_deletes_older_ones(qemu: QemuRunner) -> None:
    foreign = qemu.image_dir / "someone-elses-notes"
    foreign.mkdir(parents=True)
    runs = []
    for char in "abc":
        spec = _rebuilt(qemu.spec, char)
        run = qemu.create(spec)
        assert run.returncode == 0, run.stderr
        if runs:
            deleted = qemu.delete(runs[-1][1], runs[-1][0])
            assert deleted.returncode == 0, deleted.stderr
        runs.append((spec, run))
    (_, first), (_, second), (_, third) = runs
    assert not Path(first.result["path"]).exists(), "beyond retainPrevious=1"
    assert Path(second.result["path"]).is_file(), "kept for rollback"
    assert (Path(second.result["path"]).parent / "SUPERSEDED").is_file()
    assert Path(third.result["path"]).is_file()
    assert third.result["retained"] == [second.result["path"]]
    assert foreign.is_dir(), "a directory without this program's manifest is never touched"
    assert _gc_findings(qemu, runs[2][0].fingerprint, 0) == [
        (Path(second.result["path"]).parent, "superseded, beyond retainPrevious=0")
    ], "gc proves the build's own directories this image's, and lists nothing else"

    destroyed = qemu.delete(third, runs[2][0])
    assert destroyed.returncode == 0, destroyed.stderr
    assert not Path(third.result["path"]).exists(), "destroy leaves no current file"


def test_delete_leaves_a_file_that_is_no_longer_this_builds(qemu: QemuRunner) -> None:
    built = qemu.create()
    manifest_path = Path(built.result["manifest"])
    manifest = json.loads(manifest_path.read_text())
    manifest["fingerprint"] = "e" * 64
    manifest_path.write_text(json.dumps(manifest))
    deleted = qemu.delete(built)
    assert deleted.returncode == 0, deleted.stderr
    assert "left untouched" in deleted.stderr
    assert Path(built.result["path"]).is_file()
