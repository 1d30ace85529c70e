"""Run ``packer init`` and ``packer build`` in a private directory and read the artifact Packer reports.

Secrets travel only through Packer's environment: the API token as
PROXMOX_TOKEN, the per-build SSH key as a file in the 0700 build directory.
Packer's output goes to the build log (build_log.py); stderr gets the stage it
is in, so a user watching ``pulumi up`` sees where a long build is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from homelab_images.contract.ownership import packer_tags
from homelab_images.contract.packer_files import (
    MANIFEST_FILE,
    MIN_PACKER_VERSION,
    SCRIPTS_DIR,
    TEMPLATE_FILE,
    VAR_DESCRIPTION,
    VAR_PRIVATE_KEY_FILE,
    VAR_PUBLIC_KEY,
    VAR_TAGS,
    VAR_VM_ID,
)
from homelab_images.runner.build_log import BuildLog, packer_log_environment
from homelab_images.runner.console import Console
from homelab_images.runner.env import Credentials
from homelab_images.runner.errors import RunnerError
from homelab_images.runner.guardian import BUILD_DIR_PREFIX, Guardian, record_owners
from homelab_images.runner.signals import SignalHub, forward

if TYPE_CHECKING:
    # For annotations only: the qemu build never reads a BuildSpec, so its start-up skips that model.
    from homelab_images.contract.build_spec import BuildSpec

PRIVATE_KEY_FILE = "build_ssh_key"
INIT_ARGS = ("init", TEMPLATE_FILE)
# -on-error=cleanup: never "ask" (no terminal) and never "abort" (would keep the VM).
BUILD_ARGS = ("build", "-color=false", "-on-error=cleanup", "-timestamp-ui", TEMPLATE_FILE)
HEARTBEAT_SECONDS = 60.0
TAIL_LINES = 200
POLL_SECONDS = 0.25
# What Packer may see of the runner's own environment: nothing else reaches it (the runner's
# environment can hold Pulumi's passphrase, cloud credentials and the provider's password).
# Packer's own variables: hashicorp/packer v1.11.2 website/content/docs/configure.mdx.
PASSED_TO_PACKER = frozenset(
    {
        "PATH",
        "HOME",
        "TMPDIR",
        "USER",
        "LOGNAME",
        "LANG",
        "LC_ALL",
        "TZ",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "XDG_CONFIG_HOME",
        "XDG_CACHE_HOME",
        "XDG_DATA_HOME",
        "XDG_RUNTIME_DIR",
        "PACKER_PLUGIN_PATH",
        "PACKER_CACHE_DIR",
        "PACKER_CONFIG_DIR",
        "PACKER_CONFIG",
        "PACKER_PLUGIN_MIN_PORT",
        "PACKER_PLUGIN_MAX_PORT",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    }
)
# ``packer init`` downloads the plugin from GitHub; its API token only lifts the rate limit.
PASSED_TO_PACKER_INIT = PASSED_TO_PACKER | {"PACKER_GITHUB_API_TOKEN"}

STAGES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Installed plugin|already installed", re.I), "Packer plugin ready"),
    (re.compile(r"Retrieving ISO", re.I), "fetching the installer ISO"),
    (re.compile(r"Creating VM|Creating required virtual machine disks", re.I), "creating the VM"),
    (re.compile(r"Starting VM", re.I), "booting the installer"),
    (re.compile(r"Typing the boot command", re.I), "typing the boot command"),
    (re.compile(r"Waiting for SSH", re.I), "installing the OS (waiting for SSH)"),
    (re.compile(r"Connected to SSH", re.I), "OS installed, connected over SSH"),
    (re.compile(r"Provisioning with shell script: (?:\S*/)?(\S+)", re.I), "provisioning: {0}"),
    (re.compile(r"Stopping VM|Gracefully halting virtual machine", re.I), "stopping the VM"),
    (re.compile(r"Converting hard drive", re.I), "compressing the disk image"),
    (re.compile(r"Converting VM to template", re.I), "converting to a template"),
    (re.compile(r"Adding a cloud-init", re.I), "adding the cloud-init drive"),
    (re.compile(r"Running post-processor", re.I), "writing the manifest"),
    (
        re.compile(r"Deleting VM|Destroying VM|Stopping and deleting|Deleting output directory", re.I),
        "Packer is cleaning up the VM",
    ),
    (re.compile(r"Build '[^']*' errored", re.I), "Packer build failed"),
    (re.compile(r"Build '[^']*' finished", re.I), "Packer finished"),
)


BUILD_ERRORED = re.compile(r"Build '[^']*' errored after [^:]*: (?P<message>.+)")
PACKER_ERROR = re.compile(r"(?:^|: )(?:Error|error)\b.*")


def stage_of(line: str) -> str | None:
    for pattern, text in STAGES:
        match = pattern.search(line)
        if match:
            return text.format(*match.groups())
    return None


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes = field(repr=False)
    public_openssh: str


def generate_key_pair() -> KeyPair:
    # Imported here: cryptography costs ~15 ms of start-up, and only a build that runs Packer needs a key.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return KeyPair(private, public.decode() + " homelab-images-build")


@dataclass(frozen=True)
class BuildDirectory:
    path: Path
    log: BuildLog
    guardian: Guardian


@contextmanager
def build_directory(
    log_dir: Path, image: str, vmid: int, scrub: Callable[[str], str], kill_grace: float
) -> Iterator[BuildDirectory]:
    """A private (0700) directory that is removed however the build ends, the runner's death included."""
    directory = Path(tempfile.mkdtemp(prefix=BUILD_DIR_PREFIX))
    log = BuildLog.for_build(directory, log_dir, image, vmid)
    guardian = Guardian.start(directory, log, scrub, kill_grace)
    try:
        record_owners(directory, guardian)
        yield BuildDirectory(directory, log, guardian)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        guardian.stop()


@dataclass(frozen=True)
class BuildFiles:
    directory: Path
    private_key: Path
    public_key: str


def write_build_files(spec: BuildSpec, directory: Path) -> BuildFiles:
    return write_packer_files(directory, TEMPLATE_FILE, spec.packer_template, spec.scripts)


def write_packer_files(
    directory: Path, template_file: str, template: Mapping[str, object], scripts: Mapping[str, str]
) -> BuildFiles:
    """The template, the provisioning scripts and a fresh key pair (the private key 0600) in ``directory``."""
    (directory / template_file).write_text(json.dumps(template, indent=2) + "\n", encoding="utf-8")
    scripts_dir = directory / SCRIPTS_DIR
    scripts_dir.mkdir(mode=0o700)
    for name, text in scripts.items():
        (scripts_dir / name).write_text(text, encoding="utf-8")
    keys = generate_key_pair()
    private_key = directory / PRIVATE_KEY_FILE
    fd = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(keys.private_pem)
    return BuildFiles(directory, private_key, keys.public_openssh)


def packer_environment(
    base: Mapping[str, str],
    creds: Credentials,
    ca_bundle: Path | None,
    vmid: int,
    files: BuildFiles,
    description: str,
    tags: list[str],
) -> dict[str, str]:
    """``packer build``'s whole environment: the allowed part of ``base`` and what the build needs."""
    env = {key: value for key, value in base.items() if key in PASSED_TO_PACKER}
    env.update(packer_log_environment(base))
    env.update(
        {
            "PROXMOX_URL": creds.packer_url,
            "PROXMOX_USERNAME": creds.token_id,
            "PROXMOX_TOKEN": creds.secret,
            "CHECKPOINT_DISABLE": "1",
            "PACKER_NO_COLOR": "1",
            f"PKR_VAR_{VAR_VM_ID}": str(vmid),
            f"PKR_VAR_{VAR_PUBLIC_KEY}": files.public_key,
            f"PKR_VAR_{VAR_PRIVATE_KEY_FILE}": str(files.private_key),
            f"PKR_VAR_{VAR_DESCRIPTION}": description,
            f"PKR_VAR_{VAR_TAGS}": packer_tags(tags),
        }
    )
    if ca_bundle is not None:
        env["SSL_CERT_FILE"] = str(ca_bundle)
    return env


def packer_init_environment(base: Mapping[str, str], build_env: Mapping[str, str]) -> dict[str, str]:
    """``packer init``'s: it runs a downloaded plugin's installer, so no Proxmox credential reaches it."""
    env = {key: value for key, value in base.items() if key in PASSED_TO_PACKER_INIT}
    env.update({key: value for key, value in build_env.items() if key.startswith("PKR_VAR_")})
    env.update({"CHECKPOINT_DISABLE": "1", "PACKER_NO_COLOR": "1"})
    return env


@dataclass
class PackerRun:
    exit_code: int | None
    seconds: float
    timed_out: bool = False
    signum: int | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.signum is None


def _lines(handle: TextIO, pending: str) -> tuple[list[str], str]:
    """Complete lines appended to Packer's output file since the last read, and the unfinished rest."""
    text = pending + handle.read()
    *lines, rest = text.split("\n")
    return lines, rest


def run_packer(
    packer: str,
    args: tuple[str, ...],
    directory: Path,
    env: Mapping[str, str],
    console: Console,
    hub: SignalHub,
    deadline: float,
    kill_grace: float,
    log: BuildLog,
    guardian: Guardian | None = None,
) -> PackerRun:
    """One Packer command: its output into the build log, stages to stderr, bounded by ``deadline``
    (monotonic), signals forwarded to its process group."""
    started = time.monotonic()
    result = PackerRun(exit_code=None, seconds=0.0)
    output_fd = log.open_for_packer()
    offset = os.fstat(output_fd).st_size
    stage: str | None = None
    last_news = time.monotonic()
    kill_at: float | None = None
    with hub.forwarding() as forward_to, open(log.raw, encoding="utf-8", errors="replace") as output:
        output.seek(offset)
        try:
            process = subprocess.Popen(
                [packer, *args],
                cwd=directory,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=output_fd,
                stderr=output_fd,
                start_new_session=True,
                # Only the main thread runs here, so preexec_fn is safe.
                preexec_fn=guardian.announce_self if guardian else None,
            )
        finally:
            os.close(output_fd)
        forward_to(process.pid)
        pending = ""
        while True:
            exited = process.poll() is not None
            lines, pending = _lines(output, pending)
            if exited and pending:
                lines, pending = [*lines, pending], ""
            for line in lines:
                text = console.scrub(line.rstrip("\r"))
                result.tail.append(text)
                found = stage_of(text)
                if found and found != stage:
                    stage = found
                    console.stage(stage)
                    last_news = time.monotonic()
            now = time.monotonic()
            if hub.received is not None and result.signum is None:
                result.signum = hub.received
                kill_at = now + kill_grace
                console.stage(f"signal {hub.received} forwarded to Packer; waiting for it to clean up")
            if exited:
                break
            if now > deadline and not result.timed_out and result.signum is None:
                result.timed_out = True
                kill_at = now + kill_grace
                console.stage("timeout reached: interrupting Packer so it cleans up")
                forward(process.pid, signal.SIGINT)
            if kill_at is not None and now > kill_at:
                console.stage("Packer did not stop in time: killing it")
                forward(process.pid, signal.SIGKILL)
                kill_at = now + 3600
            if stage and now - last_news > HEARTBEAT_SECONDS:
                console.still(stage)
                last_news = now
            # Returns as soon as Packer exits, so a finished build is not held up by the poll interval.
            with suppress(subprocess.TimeoutExpired):
                process.wait(POLL_SECONDS)
    result.exit_code = process.returncode
    result.seconds = time.monotonic() - started
    return result


def packer_error(run: PackerRun) -> str:
    """Packer's own summary of why the build failed, else its last error line."""
    for line in reversed(run.tail):
        match = BUILD_ERRORED.search(line)
        if match:
            return match["message"].strip()
    for line in reversed(run.tail):
        match = PACKER_ERROR.search(line)
        if match:
            return match.group(0).lstrip(": ").strip()
    return "no error message in Packer's output"


def find_packer(environ: Mapping[str, str]) -> str:
    packer = shutil.which("packer", path=environ.get("PATH"))
    if packer is None:
        raise RunnerError(
            "packer is not on PATH",
            "the machine running pulumi up",
            "install Packer >= 1.11 (https://developer.hashicorp.com/packer/install) and make it available as `packer`",
        )
    return packer


# hashicorp/packer command/version.go prints "Packer v%s" (FormattedVersion: x.y.z, maybe "-dev").
PACKER_VERSION_LINE = re.compile(r"^Packer v(\d+)\.(\d+)\.(\d+)", re.M)
VERSION_CHECK_SECONDS = 30.0


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def check_packer_version(packer: str, environ: Mapping[str, str]) -> str:
    """The installed Packer's version, if it is at least MIN_PACKER_VERSION; checked before `packer init`."""
    where = f"{packer} on the machine running pulumi up"
    todo = (
        f"install Packer >= {MIN_PACKER_VERSION} from https://developer.hashicorp.com/packer/install "
        "(Debian's and Ubuntu's packer packages are older) and put it first on PATH"
    )
    env = {name: environ[name] for name in ("PATH", "HOME", "TMPDIR") if name in environ}
    try:
        done = subprocess.run(
            [packer, "version"],
            env={**env, "CHECKPOINT_DISABLE": "1"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=VERSION_CHECK_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RunnerError(f"`packer version` did not run ({error})", where, todo) from None
    match = PACKER_VERSION_LINE.search(done.stdout)
    if done.returncode != 0 or match is None:
        output = (done.stdout + done.stderr).strip().splitlines()
        raise RunnerError(
            f"`packer version` answered {output[0] if output else 'nothing'!r} (exit {done.returncode}), "
            f"not a Packer version; {MIN_PACKER_VERSION} or newer is required",
            where,
            todo,
        )
    installed = ".".join(match.groups())
    if _version_key(installed) < _version_key(MIN_PACKER_VERSION):
        raise RunnerError(f"Packer {installed} is installed; {MIN_PACKER_VERSION} or newer is required", where, todo)
    return installed


def read_manifest(directory: Path) -> int:
    """The template's VM ID as Packer's manifest post-processor recorded it."""
    path = directory / MANIFEST_FILE
    where = f"Packer manifest {MANIFEST_FILE}"
    todo = "the template must keep its manifest post-processor (output manifest.json); this is a bug if it does"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunnerError("Packer reported success but wrote no manifest", where, todo) from None
    except ValueError:
        raise RunnerError("Packer's manifest is not valid JSON", where, todo) from None
    builds = document.get("builds") if isinstance(document, dict) else None
    if not isinstance(builds, list) or not builds:
        raise RunnerError("Packer's manifest lists no build", where, todo)
    run = document.get("last_run_uuid")
    current = [b for b in builds if isinstance(b, dict) and b.get("packer_run_uuid") == run] or builds[-1:]
    build = current[-1]
    artifact = str(build.get("artifact_id", ""))
    if build.get("builder_type") != "proxmox-iso" or not artifact.isdigit():
        raise RunnerError(
            f"Packer's manifest names no proxmox-iso template (builder {build.get('builder_type')!r}, "
            f"artifact {artifact!r})",
            where,
            todo,
        )
    return int(artifact)
