"""The qemu target's build resource as a user's `pulumi preview` / `up` / `destroy` runs it.

Each test drives the Command QemuArtifact declares (components.qemu_artifact.command_inputs of
the ArtifactSpec the plan makes for a variation of the fixture stack) through tests/engine.py,
the model of the Pulumi engine and pulumi-command: create, update with the previous stdout,
replace as create-then-delete with the old inputs, destroy, cancel and preview.

No hypervisor runs: the stand-in Packer (tests/fakes) checks the template against the pinned qemu
plugin's rules and makes a real (small) qcow2 with qemu-img, so what is checked here is the
runner's part: preflight, Packer's environment, verification, checksum, manifest, placement,
cleanup on failure, update and retention.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import pytest

from components.qemu_artifact import command_inputs
from homelab_images.contract.artifact import SUPERSEDED_MARKER, ArtifactResult, ArtifactSpec
from homelab_images.contract.commands import QEMU_CREATE_COMMAND, QEMU_DELETE_COMMAND, QEMU_UPDATE_COMMAND
from homelab_images.contract.gc_request import ArtifactGc, ArtifactImage
from homelab_images.core.config import load_config
from homelab_images.core.plan import plan_stack
from homelab_images.runner import qemu as qemu_runner
from homelab_images.runner.artifact_gc import find_artifacts
from homelab_images.runner.artifacts import stored_artifacts
from homelab_images.runner.console import Console
from homelab_images.runner.env import read_tuning
from homelab_images.runner.errors import RunnerError
from homelab_images.runner.signals import SignalHub
from tests.engine import PREVIOUS_STDOUT, CommandInputs, CommandProvider, Preview, Running, Stack, Step
from tests.runner.artifact_builds import result_of, write_build
from tests.runner.conftest import REPO, STAND_IN_PACKER, interrupt
from tests.runner.test_engine_fidelity import alive, poll
from tests.stack_files import Mutation, mutated_config, set_key

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img (Debian: qemu-utils)")
GIB = 1024**3
SECRET = "never-needed-by-a-qemu-build-5ecr3t"
NOW = datetime.now(UTC)
CANCEL_CLEANUP_SECONDS = 30.0
OTHER_OVMF_CODE = "OVMF_CODE_4M.ms.fd"


@dataclass
class QemuStack:
    """One image's QemuArtifact Command in a stack, on a machine with the stand-in Packer and QEMU."""

    root: Path
    stack: Stack = field(init=False)

    def __post_init__(self) -> None:
        self.stack = Stack(self.provider())
        self.base = self.spec()

    def spec(self, *changes: Mutation) -> ArtifactSpec:
        """The qemu build's spec as the program plans it, for the fixture stack with ``changes``."""
        firmware = self.root / "firmware"
        settings = [
            set_key("homelab-images:images/0.targets", ["proxmox-iso", "qemu"]),
            set_key("homelab-images:build/artifactDir", str(self.root / "artifacts")),
            set_key(
                "homelab-images:build/qemu",
                {
                    "ovmfCode": str(firmware / "OVMF_CODE_4M.fd"),
                    "ovmfVars": str(firmware / "OVMF_VARS_4M.fd"),
                    "accelerator": "tcg",
                },
            ),
            *changes,
        ]

        def mutate(config: dict[str, Any]) -> None:
            for change in settings:
                change(config)

        (plan,) = plan_stack(load_config(mutated_config(mutate)), NOW)
        assert plan.qemu is not None
        return plan.qemu.spec

    @property
    def image_dir(self) -> Path:
        return self.root / "artifacts" / self.base.image

    @property
    def record_file(self) -> Path:
        return self.root / "packer-calls.jsonl"

    def shell_env(self, **extra: str) -> dict[str, str]:
        """The environment of the shell that runs ``pulumi`` (the provider inherits it)."""
        env = {
            "PATH": f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.root / "home"),
            "TMPDIR": str(self.root / "tmp"),
            "HOMELAB_IMAGES_PYTHON": sys.executable,
            "HOMELAB_IMAGES_LOG_DIR": str(self.root / "logs"),
            "HOMELAB_IMAGES_KILL_GRACE_SECONDS": "5",
            # In the shell's environment, never needed: it must not reach Packer or any output.
            "PROXMOX_VE_API_TOKEN": f"images@pve!build={SECRET}",
            **extra,
        }
        # The runner passes Packer an allowlisted environment: the stand-in's settings go through a file.
        settings = {"FAKE_PACKER_RECORD": str(self.record_file)}
        settings.update({key: value for key, value in env.items() if key.startswith("FAKE_PACKER_")})
        lines = [f"export {key}={shlex.quote(value)}\n" for key, value in sorted(settings.items())]
        (self.root / "fake-packer.env").write_text("".join(lines))
        return env

    def provider(self, **shell: str) -> CommandProvider:
        return CommandProvider(self.shell_env(**shell), REPO, secrets=(SECRET,))

    def inputs(self, spec: ArtifactSpec | None = None) -> CommandInputs:
        """The Command's inputs as QemuArtifact declares them, as they come back from Pulumi's wire format."""
        declared = json.loads(json.dumps(command_inputs(spec or self.base)))
        return CommandInputs(environment={}, **declared)

    def preview(self, spec: ArtifactSpec | None = None) -> Preview:
        return self.stack.preview(self.inputs(spec))

    def up(self, spec: ArtifactSpec | None = None, **shell: str) -> Step:
        self.stack.provider = self.provider(**shell)
        return self.stack.up(self.inputs(spec))

    def destroy(self, **shell: str) -> Step:
        self.stack.provider = self.provider(**shell)
        return self.stack.destroy()

    def start_up(self, spec: ArtifactSpec | None = None, **shell: str) -> Running:
        self.stack.provider = self.provider(**shell)
        return self.stack.start_up(self.inputs(spec))

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
def qemu(tmp_path: Path) -> Iterator[QemuStack]:
    for name in ("bin", "home", "tmp", "firmware"):
        (tmp_path / name).mkdir()
    for name in ("OVMF_CODE_4M.fd", OTHER_OVMF_CODE):
        (tmp_path / "firmware" / name).write_bytes(b"\0" * 4096)
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
    yield QemuStack(tmp_path)


def _gc_findings(qemu: QemuStack, fingerprint: str, retain: int) -> list[tuple[Path, str]]:
    """What `homelab-images gc` finds in the artifact directory these builds used."""
    request = ArtifactGc(
        artifact_dir=str(qemu.root / "artifacts"),
        images=[ArtifactImage(name=qemu.base.image, fingerprint=fingerprint)],
        retain_previous=retain,
    )
    return [(entry.directory, entry.reason) for entry in find_artifacts(request, qemu.root).entries]


def _qemu_img(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=False)


def stored_build(qemu: QemuStack, fingerprint: str, built_at: str, superseded: bool = False) -> Path:
    """A finished build of the image left by an earlier run (a small file, but a valid manifest)."""
    spec = qemu.base.replace(fingerprint=fingerprint)
    return write_build(qemu.root / "artifacts", spec, built_at, b"an earlier build's qcow2", superseded)


def test_preview_then_create_leaves_a_checked_compressed_qcow2_its_sha256_and_manifest(qemu: QemuStack) -> None:
    spec = qemu.base
    preview = qemu.preview()
    assert (preview.operation, preview.stdout_known) == ("create", False), "the component's result is unknown"
    assert qemu.packer_calls() == [] and not qemu.image_dir.exists(), "a preview runs and reads nothing"

    step = qemu.up()
    assert step.operation == "create"
    run = step.run
    run.assert_clean()
    assert run.returncode == 0, run.stderr
    assert run.stdin == spec.to_json() + "\n" and PREVIOUS_STDOUT not in run.env
    assert len(run.stdout.splitlines()) == 1, "stdout carries only the result line"
    result = run.result
    assert ArtifactResult.from_mapping(result).to_mapping() == result, "the result line is what the component reads"
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

    assert qemu.stack.state is not None and qemu.stack.state.stdout == run.stdout.rstrip("\n")
    assert qemu.preview() == Preview("same", stdout_known=True)


def test_update_reverifies_the_file_renames_it_on_a_version_bump_and_refuses_a_changed_one(qemu: QemuStack) -> None:
    created = qemu.up().run
    assert created.returncode == 0, created.stderr

    retime = set_key("homelab-images:build/timeoutMinutes", 95)
    bump = set_key("homelab-images:images/0.version", "1.0.1")
    retimed = qemu.spec(retime)
    assert qemu.preview(retimed) == Preview("update", stdout_known=False), "a timeout is no reason to rebuild"
    step = qemu.up(retimed)
    assert step.operation == "update"
    updated = step.run
    updated.assert_clean()
    assert updated.returncode == 0, updated.stderr
    assert updated.command == QEMU_UPDATE_COMMAND and updated.stdin == retimed.to_json() + "\n"
    assert updated.env[PREVIOUS_STDOUT] == created.stdout.rstrip("\n"), "update checks the file it built"
    assert updated.result == created.result, "the same result, reprinted"
    assert f"verified (sha256 {created.result['sha256']})" in updated.stderr
    assert len(qemu.packer_calls()) == 2, "an update never runs Packer"

    bumped = qemu.spec(retime, bump)
    step = qemu.up(bumped)
    assert step.operation == "update", "a version alone changes no fingerprint part"
    result = step.run.result
    assert step.ok, step.run.stderr
    assert result["version"] == "1.0.1" and result["sha256"] == created.result["sha256"]
    disk = Path(result["path"])
    assert disk.name == f"{qemu.base.image}-v1.0.1.qcow2" and disk.is_file()
    assert disk.parent.name == f"{qemu.base.image}-v1.0.1-{qemu.base.fingerprint[:12]}"
    assert json.loads(Path(result["manifest"]).read_text())["version"] == "1.0.1"
    assert disk.with_name(disk.name + ".sha256").read_text().endswith(f"  {disk.name}\n")
    assert not Path(created.result["path"]).exists()
    assert len(qemu.packer_calls()) == 2, "same content: no Packer run"
    assert _gc_findings(qemu, qemu.base.fingerprint, 0) == [], "gc knows the renamed file as this image's current one"

    elsewhere = qemu.root / "elsewhere"
    relocate = set_key("homelab-images:build/artifactDir", str(elsewhere))
    step = qemu.up(qemu.spec(retime, bump, relocate))
    assert step.operation == "update", "where the file lies is no reason to rebuild"
    assert step.ok, step.run.stderr
    moved = Path(step.run.result["path"])
    assert moved == elsewhere / qemu.base.image / disk.parent.name / disk.name and moved.is_file()
    assert step.run.result["sha256"] == created.result["sha256"]
    assert not disk.parent.exists(), "moved, not copied"
    assert len(qemu.packer_calls()) == 2, "same content: no Packer run"
    disk = moved

    with open(disk, "r+b") as handle:
        handle.seek(1024)
        handle.write(b"tampered")
    recorded = qemu.stack.state
    refused = qemu.up(qemu.spec(bump, relocate))
    assert refused.operation == "update" and not refused.ok
    refused.run.assert_clean()
    assert refused.run.errors == [
        f"error: the image file built earlier cannot be used: {disk} no longer matches its sha256, "
        "homelab-images:build.artifactDir: "
        "run `pulumi up --replace <URN of the qemu build resource>` to build it again"
    ]
    assert qemu.stack.state is recorded, "a failed update keeps the state it had"


def test_replace_builds_the_new_file_first_retires_the_old_one_and_destroy_removes_the_current(
    qemu: QemuStack,
) -> None:
    foreign = qemu.image_dir / "someone-elses-notes"
    foreign.mkdir(parents=True)
    oldest = stored_build(qemu, "0" * 64, "2020-01-01T00:00:00Z", superseded=True)
    first_spec = qemu.base
    first = qemu.up().run
    assert first.returncode == 0, first.stderr
    assert first.result["retained"] == [str(oldest / first_spec.file_name)]
    old_dir = Path(first.result["path"]).parent

    # Another OVMF code file: the firmware part changes, and only the qemu build is replaced.
    other_code = str(qemu.root / "firmware" / OTHER_OVMF_CODE)
    second_spec = qemu.spec(set_key("homelab-images:build/qemu.ovmfCode", other_code))
    changed = {k for k, v in second_spec.fingerprint_parts.items() if first_spec.fingerprint_parts[k] != v}
    assert changed == {"firmware"}
    assert qemu.preview(second_spec) == Preview("replace", stdout_known=False)

    replaced = qemu.up(second_spec)
    assert replaced.operation == "replace" and replaced.ok, [run.stderr for run in replaced.runs]
    second, retired = replaced.runs
    assert (second.command, second.stdin) == (QEMU_CREATE_COMMAND, second_spec.to_json() + "\n")
    assert second.result["retained"] == [first.result["path"]], "built while the old file was still there"
    assert (retired.command, retired.stdin) == (QEMU_DELETE_COMMAND, first_spec.to_json() + "\n"), "old inputs"
    assert retired.env[PREVIOUS_STDOUT] == first.stdout.rstrip("\n")
    retired.assert_clean()
    assert (old_dir / SUPERSEDED_MARKER).is_file() and Path(first.result["path"]).is_file(), "kept for rollback"
    assert not oldest.exists(), "superseded files beyond retainPrevious=1 are pruned, oldest first"
    new_dir = Path(second.result["path"]).parent
    assert not (new_dir / SUPERSEDED_MARKER).exists()

    # Back to the first firmware: the file kept for rollback is current again, without a rebuild.
    rolled_back = qemu.up(first_spec)
    assert rolled_back.operation == "replace" and rolled_back.ok, [run.stderr for run in rolled_back.runs]
    assert "was already built from this fingerprint and verifies" in rolled_back.run.stderr
    assert len(qemu.packer_calls()) == 4, "no third Packer build"
    assert rolled_back.run.result["path"] == first.result["path"]
    assert rolled_back.run.result["retained"] == [second.result["path"]]
    assert not (old_dir / SUPERSEDED_MARKER).exists(), "the current file is not marked superseded"
    assert (new_dir / SUPERSEDED_MARKER).is_file(), "the replaced one is kept for rollback in its turn"
    assert _gc_findings(qemu, first_spec.fingerprint, 0) == [(new_dir, "superseded, beyond retainPrevious=0")], (
        "gc proves the build's own directories this image's, and lists nothing else"
    )

    destroyed = qemu.destroy()
    assert destroyed.ok, [run.stderr for run in destroyed.runs]
    (deleted,) = destroyed.runs
    assert deleted.stdin == first_spec.to_json() + "\n", "destroy deletes with the last inputs"
    assert deleted.env[PREVIOUS_STDOUT] == rolled_back.run.stdout.rstrip("\n")
    assert qemu.stack.state is None
    assert not old_dir.exists(), "destroy removes the current file"
    assert qemu.builds() == sorted([new_dir.name, foreign.name]), (
        "the file kept for rollback stays (README: pulumi destroy); a directory without this program's "
        "manifest is never touched"
    )
    assert _gc_findings(qemu, first_spec.fingerprint, 1) == [], "gc keeps it too while the image is built with qemu"


def test_a_cancelled_pulumi_up_stops_packer_keeps_no_file_and_the_next_create_starts_clean(qemu: QemuStack) -> None:
    """pulumi-command's cancel SIGKILLs only the process it started (tests/engine.py [cancel]): that
    must be the runner, whose guardian then stops Packer, which deletes its half-written disk."""
    pidfile = qemu.root / "packer.pid"
    running = qemu.start_up(FAKE_PACKER_HANG="1", FAKE_PACKER_PIDFILE=str(pidfile))
    disk = f".building-*/output/{qemu.base.file_name}"
    try:
        poll(lambda: pidfile.exists() and list(qemu.image_dir.glob(disk)), 20, "waiting for Packer's disk")
        packer = int(pidfile.read_text())
        running.cancel()
        cancelled = running.finish()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(running.process.pid, signal.SIGKILL)
    assert cancelled.returncode == -signal.SIGKILL
    assert qemu.stack.state is None, "a cancelled create records nothing"
    poll(lambda: not alive(packer), CANCEL_CLEANUP_SECONDS, "a Packer process")
    poll(lambda: list((qemu.root / "tmp").iterdir()) == [], CANCEL_CLEANUP_SECONDS, "a private build directory")
    assert list(qemu.image_dir.rglob("*.qcow2")) == [], "no half-written disk is left"
    assert stored_artifacts(qemu.image_dir, qemu.base.image) == [], "nothing looks like a finished build"

    again = qemu.up()
    assert again.operation == "create" and again.ok, again.run.stderr
    assert "removing the leftover of an interrupted build" in again.run.stderr
    assert qemu.builds() == [Path(again.run.result["path"]).parent.name], "exactly one file, the new one"


def test_a_build_past_its_timeout_fails_records_nothing_and_keeps_nothing(qemu: QemuStack) -> None:
    step = qemu.up(FAKE_PACKER_HANG="1", HOMELAB_IMAGES_TIMEOUT_SECONDS="1")
    assert step.operation == "create" and not step.ok
    run = step.run
    run.assert_clean()
    assert run.returncode == 1
    assert "exceeded its timeout" in run.errors[-1]
    assert "stage: packer build" in run.stderr and "Deleting output directory" in run.stderr, "Packer was stopped"
    assert run.recorded is None and qemu.stack.state is None, "a failed create records nothing"
    assert qemu.preview().operation == "create", "the next pulumi up builds again"
    qemu.assert_nothing_left()


def test_a_failed_provisioning_keeps_nothing(qemu: QemuStack) -> None:
    step = qemu.up(FAKE_PACKER_FAIL_AT="provision")
    assert not step.ok and qemu.stack.state is None
    run = step.run
    assert run.returncode == 1
    assert "Deleting output directory" in run.stderr
    assert "Script exited with non-zero exit status" in run.errors[-1]
    qemu.assert_nothing_left()


def test_a_template_the_plugin_rejects_fails_before_building(qemu: QemuStack) -> None:
    """One rule through the runner; every rule is tested in-process in tests/core/test_qemu_template.py."""
    template = json.loads(json.dumps(qemu.base.packer_template))
    template["source"]["qemu"][qemu.base.image]["cpus"] = "2"
    step = qemu.up(qemu.base.replace(packer_template=template))
    run = step.run
    run.assert_clean()
    assert run.returncode == 1 and qemu.stack.state is None
    assert "cpus: expected number" in run.stderr
    assert run.errors and "packer build failed" in run.errors[-1]
    qemu.assert_nothing_left()


def test_an_interrupted_build_keeps_nothing(qemu: QemuStack) -> None:
    running = qemu.start_up(FAKE_PACKER_HANG="1")
    poll(lambda: list(qemu.image_dir.glob(".building-*/output/efivars.fd")), 20, "waiting for the build to start")
    interrupt(running, signal.SIGINT)
    run = running.finish()
    assert run.returncode == 128 + signal.SIGINT, run.stderr
    assert "interrupted by SIGINT" in run.errors[-1]
    qemu.assert_nothing_left()


def test_missing_firmware_is_named_before_building(qemu: QemuStack) -> None:
    (qemu.root / "firmware" / "OVMF_VARS_4M.fd").unlink()
    run = qemu.up().run
    assert run.returncode == 1
    assert "OVMF_VARS_4M.fd does not exist" in run.errors[0]
    assert "homelab-images:build.qemu.ovmfCode / ovmfVars" in run.errors[0]
    assert qemu.packer_calls() == [], "no Packer run for a build that cannot succeed"


def test_kvm_without_dev_kvm_is_named_before_building(qemu: QemuStack) -> None:
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("this machine has KVM")
    run = qemu.up(qemu.spec(set_key("homelab-images:build/qemu.accelerator", "kvm"))).run
    assert run.returncode == 1
    assert "/dev/kvm is missing" in run.errors[0] and "accelerator: tcg" in run.errors[0]
    assert qemu.packer_calls() == []


def test_missing_emulator_is_named_before_building(qemu: QemuStack) -> None:
    (qemu.root / "bin" / "qemu-system-x86_64").unlink()
    run = qemu.up(PATH=f"{qemu.root / 'bin'}{os.pathsep}/nonexistent-bin").run
    assert run.returncode == 1
    assert "qemu-system-x86_64 is not on PATH" in run.errors[0]


def test_delete_leaves_a_file_that_is_no_longer_this_builds(qemu: QemuStack) -> None:
    """In-process: the delete command's path through the engine is covered above."""
    directory = stored_build(qemu, "e" * 64, "2026-01-01T00:00:00Z")
    spec = qemu.base
    previous = result_of(directory).replace(fingerprint=spec.fingerprint)
    stderr = StringIO()
    environ = {PREVIOUS_STDOUT: previous.to_json()}
    context = qemu_runner.QemuContext(spec, read_tuning({}), Console(stderr), SignalHub(), environ, qemu.root)
    qemu_runner.delete(context)
    assert "left untouched" in stderr.getvalue()
    assert (directory / spec.file_name).is_file() and not (directory / SUPERSEDED_MARKER).exists()


def test_a_move_to_another_filesystem_copies_through_a_work_directory(
    qemu: QemuStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process: an artifactDir on another filesystem cannot be renamed into (EXDEV); the update path through
    the engine is covered above."""
    spec = qemu.base
    directory = stored_build(qemu, spec.fingerprint, "2026-01-01T00:00:00Z")
    previous = result_of(directory)
    other_fs = qemu.root / "other-filesystem"
    rename = Path.rename
    renamed: list[Path] = []

    def cross_device(self: Path, target: Any) -> Path:
        if self == directory:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        renamed.append(self)
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", cross_device)
    moved_spec = spec.replace(artifact_dir=str(other_fs))
    environ = {PREVIOUS_STDOUT: previous.to_json()}
    context = qemu_runner.QemuContext(moved_spec, read_tuning({}), Console(StringIO()), SignalHub(), environ, qemu.root)
    result = qemu_runner.update(context)
    final = other_fs / spec.image / directory.name
    assert Path(result.path) == final / spec.file_name
    assert [path.name.startswith(".building-") for path in renamed] == [True], "copied aside, then renamed into place"
    assert hashlib.sha256((final / spec.file_name).read_bytes()).hexdigest() == previous.sha256
    assert not directory.exists()
    assert sorted(path.name for path in (other_fs / spec.image).iterdir()) == [directory.name]


def test_an_artifact_dir_that_is_a_file_is_named_before_building_or_moving(qemu: QemuStack) -> None:
    """In-process: a file where build.artifactDir should be stops create, and an update that would move the
    current file there, with one line naming the file and the key; nothing is built or moved."""
    spec = qemu.base
    in_the_way = qemu.root / "not-a-directory"
    in_the_way.write_text("someone's notes\n")
    file_spec = spec.replace(artifact_dir=str(in_the_way))
    context = qemu_runner.QemuContext(file_spec, read_tuning({}), Console(StringIO()), SignalHub(), {}, qemu.root)
    with pytest.raises(RunnerError) as created:
        qemu_runner.create(context)
    assert created.value.what == f"cannot create {in_the_way / spec.image}: {in_the_way} is a file, not a directory"
    assert created.value.where == "homelab-images:build.artifactDir"
    assert qemu.packer_calls() == []

    directory = stored_build(qemu, spec.fingerprint, "2026-01-01T00:00:00Z")
    previous = result_of(directory)
    environ = {PREVIOUS_STDOUT: previous.to_json()}
    context = qemu_runner.QemuContext(file_spec, read_tuning({}), Console(StringIO()), SignalHub(), environ, qemu.root)
    with pytest.raises(RunnerError, match="is a file, not a directory") as moved:
        qemu_runner.update(context)
    assert moved.value.where == "homelab-images:build.artifactDir"
    assert (directory / spec.file_name).is_file(), "the current file stays where it was"
    assert in_the_way.read_text() == "someone's notes\n"
