"""Fixtures for the runner against fakepve, run exactly as pulumi-command runs it.

The command strings, environment and triggers from ``homelab_images.contract.commands``
run through tests/engine.py, the model of pulumi-command and the Pulumi engine:
``/bin/sh -c`` in the project root, the spec on stdin, the Proxmox endpoint and
token in the Command's environment on top of the shell's. ``packer`` on PATH is
the stand-in in tests/fakes.
"""

from __future__ import annotations

import copy
import http.server
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from homelab_images.contract.build_spec import BuildSpec
from homelab_images.contract.commands import (
    CREATE_COMMAND,
    DELETE_COMMAND,
    UPDATE_COMMAND,
    build_triggers,
    command_environment,
)
from homelab_images.contract.ownership import (
    PENDING_TAG,
    OwnerKey,
    build_tags,
    join_tags,
    new_build_id,
)
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
from tests.engine import CommandInputs, CommandProvider, Run, Running, Stack, Step
from tests.fakes.guest import Guest
from tests.fakes.guest import install as install_guest
from tests.pulumi_harness import FIXTURE_KICKSTART_DIR, FIXTURE_STACK_FILE

REPO = Path(__file__).resolve().parents[2]
STAND_IN_PACKER = REPO / "tests" / "fakes" / "packer"
TOKEN_USER = "images@pve"
TOKEN_NAME = "build"
TOKEN_ID = f"{TOKEN_USER}!{TOKEN_NAME}"
SECRET = "5ecr3t-0f-the-build-token-d41d8cd98f00"
OWNER_KEY = "0wner-key-of-this-stack-9c1d5e7a3b24f680"
ISO_FILE = "AlmaLinux-9.7-x86_64-boot.iso"
COMMAND_TIMEOUT = 60


@cache
def shipped_spec() -> BuildSpec:
    """The spec of the (frozen) shipped stack's image, as the Pulumi program computes it."""
    config = load_stack_file(FIXTURE_STACK_FILE)
    return plan_stack(config, datetime.now(UTC), FIXTURE_KICKSTART_DIR)[0].build_spec


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
def guest(fakepve: Any) -> Guest:
    """The operating system in every VM fakepve creates: a healthy first boot of the image, which the
    smoke test's clone finds. Break one of its answers to make a check fail."""
    return install_guest(fakepve, Guest(fakepve, shipped_spec().k3s_version))


@pytest.fixture
def pve(fakepve: Any, guest: Guest) -> Any:
    """fakepve with the build token, the build role's grants, the installer ISO on 'local' and the guest."""
    fakepve.apitokens[TOKEN_ID] = SECRET
    grant_build_role(fakepve)
    fakepve.store_file("local", ISO_FILE, 64 * 1024**2)
    return fakepve


COMMAND_ENV = frozenset(command_environment("", "", ""))


@dataclass
class Runner:
    """Runs the runner as pulumi-command does (tests/engine.py); one per test.

    Keyword arguments named like the Command's ``environment`` (PROXMOX_VE_*) change that
    input; any other goes into the environment of the shell running ``pulumi``.
    """

    pve: Any
    cafile: str
    root: Path
    spec: BuildSpec
    extra_env: dict[str, str] = field(default_factory=dict)
    stack: Stack = field(init=False)

    def __post_init__(self) -> None:
        self.stack = Stack(self.provider())

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def record_file(self) -> Path:
        return self.root / "packer-calls.jsonl"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    def shell_env(self, **extra: str) -> dict[str, str]:
        """The environment of the shell that runs ``pulumi`` (the provider inherits it)."""
        bin_dir = self.root / "bin"
        env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.root / "home"),
            "TMPDIR": str(self.tmp),
            "HOMELAB_IMAGES_PYTHON": sys.executable,
            "HOMELAB_IMAGES_STATE_DIR": str(self.root / "state"),
            "HOMELAB_IMAGES_LOG_DIR": str(self.log_dir),
            "HOMELAB_IMAGES_RETRY_BASE_SECONDS": "0.01",
            "HOMELAB_IMAGES_KILL_GRACE_SECONDS": "5",
            # A smoke check that waits for state to settle runs again this soon; only failing ones repeat.
            "HOMELAB_IMAGES_SMOKE_REPEAT_SECONDS": "0.1",
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

    def env(self, **extra: str) -> dict[str, str]:
        """Everything a command run by hand (gc, the CLI) would have: the shell's and the Command's variables."""
        return {**self.shell_env(), **self.inputs().environment, **extra}

    def provider(self, **shell: str) -> CommandProvider:
        return CommandProvider(self.shell_env(**shell), REPO, secrets=(SECRET, OWNER_KEY))

    def inputs(self, spec: BuildSpec | None = None, **environment: str) -> CommandInputs:
        """The Command's inputs as PackerBuild declares them."""
        spec = spec or self.spec
        env = command_environment(f"https://127.0.0.1:{self.pve.port}/", f"{TOKEN_ID}={SECRET}", OWNER_KEY)
        env.update(environment)
        return CommandInputs(
            create=CREATE_COMMAND,
            update=UPDATE_COMMAND,
            delete=DELETE_COMMAND,
            stdin=spec.to_json(),
            environment=env,
            triggers=json.loads(json.dumps(build_triggers(spec.fingerprint_parts, spec.node, spec.vm_storage))),
        )

    @staticmethod
    def _split(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        command = {k: v for k, v in env.items() if k in COMMAND_ENV}
        return command, {k: v for k, v in env.items() if k not in COMMAND_ENV}

    # One provider operation each, for tests of a single step.
    def create(self, spec: BuildSpec | None = None, **env: str) -> Run:
        command, shell = self._split(env)
        return self.provider(**shell).create(self.inputs(spec, **command))[0]

    def update(self, previous: Run, spec: BuildSpec | None = None, **env: str) -> Run:
        assert previous.recorded is not None, "update follows a successful create or update"
        command, shell = self._split(env)
        return self.provider(**shell).update(previous.recorded, self.inputs(spec, **command))[0]

    def delete(self, previous: Run, spec: BuildSpec | None = None, **shell: str) -> Run:
        """pulumi-command deletes with the old resource's inputs and outputs: only the shell can differ."""
        assert previous.recorded is not None, "only a recorded resource is deleted"
        assert spec is None or spec.to_json() == previous.recorded.inputs.stdin, "delete runs with the old spec"
        return self.provider(**shell).delete(previous.recorded)

    # Whole deployments of one build resource.
    def up(self, spec: BuildSpec | None = None, **env: str) -> Step:
        command, shell = self._split(env)
        self.stack.provider = self.provider(**shell)
        return self.stack.up(self.inputs(spec, **command))

    def destroy(self, **shell: str) -> Step:
        self.stack.provider = self.provider(**shell)
        return self.stack.destroy()

    def start_up(self, spec: BuildSpec | None = None, **env: str) -> Running:
        command, shell = self._split(env)
        self.stack.provider = self.provider(**shell)
        return self.stack.start_up(self.inputs(spec, **command))

    def start_create(self, spec: BuildSpec | None = None, **env: str) -> Running:
        """A create run by hand from a terminal: its own process group, as a foreground job."""
        return self.start_up(spec, **env)

    def packer_calls(self, with_version: bool = False) -> list[dict[str, Any]]:
        """The stand-in's recorded runs; the `packer version` check before each build only when asked."""
        if not self.record_file.exists():
            return []
        calls = [json.loads(line) for line in self.record_file.read_text().splitlines()]
        return [call for call in calls if with_version or call["argv"][:1] != ["version"]]

    def leftover_files(self) -> list[str]:
        return sorted(p.name for p in self.tmp.iterdir())

    def kept_logs(self) -> list[Path]:
        return sorted(self.log_dir.glob("*.log")) if self.log_dir.exists() else []


class Mirror:
    """A package mirror on 127.0.0.1 that serves ``repodata/repomd.xml`` for the repositories it holds."""

    def __init__(self) -> None:
        self.served: set[str] = set()
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = self.path in mirror.served
                body = b"<repomd/>" if found else b"not found"
                self.send_response(200 if found else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def host(self, repositories: list[str]) -> list[str]:
        """The same repositories, served here (path kept, so the URLs still name the release)."""
        local = []
        for url in repositories:
            path = urlsplit(url).path
            self.served.add(path.rstrip("/") + "/repodata/repomd.xml")
            local.append(f"http://127.0.0.1:{self.server.server_port}{path}")
        return local


@pytest.fixture(scope="session")
def mirror() -> Iterator[Mirror]:
    serving = Mirror()
    yield serving
    serving.server.shutdown()


@pytest.fixture
def runner(pve: Any, fakepve_cafile: str, tmp_path: Path, mirror: Mirror) -> Iterator[Runner]:
    for name in ("bin", "home", "tmp", "state"):
        (tmp_path / name).mkdir()
    wrapper = tmp_path / "bin" / "packer"
    settings = tmp_path / "fake-packer.env"
    wrapper.write_text(f'#!/bin/sh\n. "{settings}"\nexec "{sys.executable}" "{STAND_IN_PACKER}" "$@"\n')
    wrapper.chmod(0o755)
    shipped = shipped_spec()
    spec = shipped.replace(ca_bundle=fakepve_cafile, install_repositories=mirror.host(shipped.install_repositories))
    yield Runner(pve, fakepve_cafile, tmp_path, spec)


def finish(running: Running, timeout: float = COMMAND_TIMEOUT) -> Run:
    return running.finish(timeout)


def interrupt(running: Running, signum: int = signal.SIGINT) -> None:
    """A signal to the command's process group, as a terminal sends Ctrl-C to its foreground job."""
    os.killpg(running.process.pid, signum)


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
        fingerprint_parts={**spec.fingerprint_parts, "kickstart": fingerprint_char * 64},
        packer_template=template,
    )


def stack_tags(
    vmid: int,
    image: str,
    fingerprint: str,
    *extra: str,
    pending: bool = False,
    node: str = "pve1",
    key: str = OWNER_KEY,
) -> str:
    """The tags a build of the stack owning ``key`` leaves on VM ``vmid`` (a crashed run, an earlier one,
    or with another key another stack's)."""
    tags = build_tags(image, "1.0.0", fingerprint)
    if not pending:
        tags.remove(PENDING_TAG)
    tags += OwnerKey(key.encode()).identity_tags(vmid, node, new_build_id(), image, fingerprint)
    return join_tags([*tags, *extra])
