"""Fixtures for the runner against fakepve, run exactly as pulumi-command runs it.

The command strings from ``homelab_images.contract.commands`` run through ``/bin/sh -c``
in the project root, with the spec on stdin and the Proxmox endpoint and token
in the environment. ``packer`` on PATH is the stand-in in tests/fakes.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from homelab_images.contract.build_spec import BuildSpec
from homelab_images.contract.commands import CREATE_COMMAND, DELETE_COMMAND, UPDATE_COMMAND
from homelab_images.core.plan import plan_stack
from homelab_images.core.stackfile import load_stack_file
from homelab_images.runner.preflight import (
    BRIDGE_PRIVILEGES,
    ISO_STORAGE_PRIVILEGES,
    NODE_PRIVILEGES,
    ROOT_PRIVILEGES,
    VM_STORAGE_PRIVILEGES,
    vm_privileges,
)

REPO = Path(__file__).resolve().parents[2]
STAND_IN_PACKER = REPO / "tests" / "fakes" / "packer"
TOKEN_USER = "images@pve"
TOKEN_NAME = "build"
TOKEN_ID = f"{TOKEN_USER}!{TOKEN_NAME}"
SECRET = "5ecr3t-0f-the-build-token-d41d8cd98f00"
ISO_FILE = "AlmaLinux-9.7-x86_64-boot.iso"
COMMAND_TIMEOUT = 60


@cache
def shipped_spec() -> BuildSpec:
    """The spec of the (frozen) shipped stack's image, as the Pulumi program computes it."""
    config = load_stack_file(REPO / "tests" / "fixtures" / "Pulumi.homelab.yaml")
    return plan_stack(config, datetime.now(UTC))[0].build_spec


def grants() -> dict[str, tuple[str, ...]]:
    """Exactly the privileges the runner documents, on the paths fakepve serves."""
    return {
        "/": ROOT_PRIVILEGES,
        "/vms": vm_privileges(9),
        "/storage/local-lvm": VM_STORAGE_PRIVILEGES,
        "/storage/local": ISO_STORAGE_PRIVILEGES,
        "/sdn/zones/localnetwork/vmbr0": BRIDGE_PRIVILEGES,
        "/nodes/pve1": NODE_PRIVILEGES,
    }


def grant_build_role(pve: Any, omit: tuple[str, str] | None = None) -> None:
    for path, privileges in grants().items():
        kept = [p for p in privileges if omit is None or (path, p) != omit]
        if kept:
            pve.grant(TOKEN_ID, path, *kept)


@pytest.fixture
def pve(fakepve: Any) -> Any:
    """fakepve with the build token, the build role's grants and the installer ISO on 'local'."""
    fakepve.apitokens[TOKEN_ID] = SECRET
    grant_build_role(fakepve)
    fakepve.store_file("local", ISO_FILE, 64 * 1024**2)
    return fakepve


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def result(self) -> dict[str, Any]:
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        assert lines, f"no result line; stderr:\n{self.stderr}"
        value: dict[str, Any] = json.loads(lines[-1])
        return value

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error: ")]

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("warning: ")]

    def assert_clean(self) -> None:
        """No secret anywhere the user or Pulumi state sees, and no traceback."""
        for text in (self.stdout, self.stderr):
            assert SECRET not in text
            assert "Traceback" not in text
            assert "PRIVATE KEY" not in text


@dataclass
class Runner:
    """Runs the runner as pulumi-command does; one per test."""

    pve: Any
    cafile: str
    root: Path
    spec: BuildSpec
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def record_file(self) -> Path:
        return self.root / "packer-calls.jsonl"

    def env(self, **extra: str) -> dict[str, str]:
        bin_dir = self.root / "bin"
        env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.root / "home"),
            "TMPDIR": str(self.tmp),
            "HOMELAB_IMAGES_PYTHON": sys.executable,
            "HOMELAB_IMAGES_STATE_DIR": str(self.root / "state"),
            "HOMELAB_IMAGES_RETRY_BASE_SECONDS": "0.05",
            "HOMELAB_IMAGES_KILL_GRACE_SECONDS": "5",
            "PROXMOX_VE_ENDPOINT": f"https://127.0.0.1:{self.pve.port}/",
            "PROXMOX_VE_API_TOKEN": f"{TOKEN_ID}={SECRET}",
            "FAKE_PACKER_RECORD": str(self.record_file),
        }
        env.update(self.extra_env)
        env.update(extra)
        self._configure_stand_in(env)
        return env

    @property
    def stand_in_settings(self) -> Path:
        return self.root / "fake-packer.env"

    def _configure_stand_in(self, env: dict[str, str]) -> None:
        """The runner passes Packer an allowlisted environment only, so the stand-in's fault
        injection (``FAKE_PACKER_*``) reaches it through a file its wrapper reads."""
        settings = {key: value for key, value in env.items() if key.startswith("FAKE_PACKER_")}
        lines = [f"export {key}={shlex.quote(value)}" for key, value in sorted(settings.items())]
        self.stand_in_settings.write_text("".join(line + "\n" for line in lines))

    def stdin(self, spec: BuildSpec | None) -> str:
        return (spec or self.spec).to_json()

    def _run(self, command: str, spec: BuildSpec | None, env: dict[str, str]) -> Run:
        done = subprocess.run(
            ["/bin/sh", "-c", command],
            input=self.stdin(spec),
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    def create(self, spec: BuildSpec | None = None, **env: str) -> Run:
        return self._run(CREATE_COMMAND, spec, self.env(**env))

    def update(self, previous: Run, spec: BuildSpec | None = None, **env: str) -> Run:
        return self._run(UPDATE_COMMAND, spec, self.env(PULUMI_COMMAND_STDOUT=previous.stdout, **env))

    def delete(self, previous: Run, spec: BuildSpec | None = None, **env: str) -> Run:
        return self._run(
            DELETE_COMMAND,
            spec,
            self.env(PULUMI_COMMAND_STDOUT=previous.stdout, PULUMI_COMMAND_STDERR=previous.stderr, **env),
        )

    def start_create(self, spec: BuildSpec | None = None, **env: str) -> subprocess.Popen[str]:
        """A create running in its own process group, like a terminal's foreground job."""
        process = subprocess.Popen(
            ["/bin/sh", "-c", CREATE_COMMAND],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env(**env),
            cwd=REPO,
            text=True,
            start_new_session=True,
        )
        assert process.stdin is not None
        process.stdin.write(self.stdin(spec))
        process.stdin.close()
        process.stdin = None
        return process

    def packer_calls(self) -> list[dict[str, Any]]:
        if not self.record_file.exists():
            return []
        return [json.loads(line) for line in self.record_file.read_text().splitlines()]

    def leftover_files(self) -> list[str]:
        return sorted(p.name for p in self.tmp.iterdir())


@pytest.fixture
def runner(pve: Any, fakepve_cafile: str, tmp_path: Path) -> Iterator[Runner]:
    for name in ("bin", "home", "tmp", "state"):
        (tmp_path / name).mkdir()
    wrapper = tmp_path / "bin" / "packer"
    settings = tmp_path / "fake-packer.env"
    wrapper.write_text(f'#!/bin/sh\n. "{settings}"\nexec "{sys.executable}" "{STAND_IN_PACKER}" "$@"\n')
    wrapper.chmod(0o755)
    spec = shipped_spec().replace(ca_bundle=fakepve_cafile)
    yield Runner(pve, fakepve_cafile, tmp_path, spec)


def finish(process: subprocess.Popen[str], timeout: float = COMMAND_TIMEOUT) -> Run:
    stdout, stderr = process.communicate(timeout=timeout)
    return Run(process.returncode, stdout, stderr)


def interrupt(process: subprocess.Popen[str], signum: int = signal.SIGINT) -> None:
    os.killpg(process.pid, signum)


def vms(pve: Any) -> dict[int, Any]:
    return {vm.vmid: vm for vm in pve.vms}


def tags_of(vm: Any) -> set[str]:
    return {tag for tag in str(vm.config.get("tags", "")).split(";") if tag}


@pytest.fixture
def root(pve: Any, fakepve_cafile: str) -> Any:
    """An administrator's client, for what the tests do behind the runner's back."""
    from proxmoxer import ProxmoxAPI

    return ProxmoxAPI("127.0.0.1", port=pve.port, user="root@pam", password="secret", verify_ssl=fakepve_cafile)


def make_vm(root: Any, vmid: int, name: str, tags: str = "", description: str = "", template: bool = False) -> None:
    """A VM made by someone (or something) other than the runner under test."""
    params: dict[str, Any] = {"vmid": vmid, "name": name, "memory": 512, "scsi0": "local-lvm:1"}
    if tags:
        params["tags"] = tags
    if description:
        params["description"] = description
    root.nodes("pve1").qemu.post(**params)
    if template:
        root.nodes("pve1").qemu(vmid).template.post()


def next_spec(spec: BuildSpec, version: str, fingerprint_char: str) -> BuildSpec:
    """The same image after a change that alters its fingerprint (and version), as the planner renders it."""
    name = f"{spec.image}-v{version}"
    template = copy.deepcopy(spec.packer_template)
    source = next(iter(template["source"]["proxmox-iso"].values()))
    source["vm_name"] = source["template_name"] = name
    return spec.replace(
        version=version,
        template_name=name,
        fingerprint=fingerprint_char * 64,
        packer_template=template,
    )
