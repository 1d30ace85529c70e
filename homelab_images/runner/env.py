"""Read and check what the runner gets from its environment.

The component sets the same names the Proxmox Terraform/Pulumi provider uses:
PROXMOX_VE_ENDPOINT and PROXMOX_VE_API_TOKEN (``user@realm!tokenid=secret``).
Whether to verify TLS (caBundle, insecure) is in the spec, next to the Packer
template that uses the same setting. The ``HOMELAB_IMAGES_*`` knobs tune timing for tests and
unusual sites; none is needed in normal use.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from homelab_images.contract.commands import CURRENT_TOKEN_VAR, ENDPOINT_VAR, TOKEN_VAR
from homelab_images.contract.endpoint import https_url_parts
from homelab_images.contract.ownership import OWNER_KEY_MIN_CHARS, OWNER_KEY_VAR, OwnerKey
from homelab_images.contract.stack_keys import ENDPOINT_KEY, OWNER_KEY, SET_TOKEN, TOKEN_KEY
from homelab_images.runner.build_log import default_log_dir
from homelab_images.runner.errors import EXIT_INVALID, RunnerError

PREVIOUS_STDOUT_VAR = "PULUMI_COMMAND_STDOUT"
PREVIOUS_STDERR_VAR = "PULUMI_COMMAND_STDERR"

TIMEOUT_OVERRIDE_VAR = "HOMELAB_IMAGES_TIMEOUT_SECONDS"
SMOKE_TIMEOUT_OVERRIDE_VAR = "HOMELAB_IMAGES_SMOKE_TIMEOUT_SECONDS"
RETRY_BASE_VAR = "HOMELAB_IMAGES_RETRY_BASE_SECONDS"
KILL_GRACE_VAR = "HOMELAB_IMAGES_KILL_GRACE_SECONDS"
STATE_DIR_VAR = "HOMELAB_IMAGES_STATE_DIR"
LEASE_VAR = "HOMELAB_IMAGES_LEASE_SECONDS"
SMOKE_REPEAT_VAR = "HOMELAB_IMAGES_SMOKE_REPEAT_SECONDS"

TOKEN_FORMAT = re.compile(r"^(?P<user>[^@!=\s]+@[^@!=\s]+)!(?P<name>[A-Za-z][A-Za-z0-9._-]*)=(?P<secret>\S+)$")
_WHERE = "environment of the runner"


@dataclass(frozen=True)
class Credentials:
    endpoint: str
    host: str
    port: int
    user: str
    token_name: str
    secret: str = field(repr=False)

    @property
    def token_id(self) -> str:
        return f"{self.user}!{self.token_name}"

    @property
    def packer_url(self) -> str:
        return self.endpoint + "api2/json"


def parse_token(raw: str) -> tuple[str, str, str]:
    """``user@realm!tokenid=secret`` -> (user@realm, tokenid, secret); the message never shows the value."""
    match = TOKEN_FORMAT.match(raw.strip())
    if not match:
        raise RunnerError(
            f"{TOKEN_VAR} is not an API token of the form user@realm!tokenid=secret",
            _WHERE,
            f"set {TOKEN_KEY} with {SET_TOKEN}",
            EXIT_INVALID,
        )
    return match["user"], match["name"], match["secret"]


def _endpoint(raw: str) -> tuple[str, str, int]:
    try:
        host, port = https_url_parts(raw)
    except ValueError:
        raise RunnerError(
            f"{ENDPOINT_VAR} must be an https:// URL such as https://pve1:8006/",
            _WHERE,
            f"set {ENDPOINT_KEY} in the stack config",
            EXIT_INVALID,
        ) from None
    return f"https://{host}:{port}/", host, port


def token_text(environ: Mapping[str, str]) -> str:
    """The current token if the shell running pulumi sets one, else the token stored with the Command."""
    return environ.get(CURRENT_TOKEN_VAR) or environ.get(TOKEN_VAR, "")


def read_credentials(environ: Mapping[str, str]) -> Credentials:
    endpoint_raw = environ.get(ENDPOINT_VAR, "")
    token_raw = token_text(environ)
    if not endpoint_raw:
        raise RunnerError(f"{ENDPOINT_VAR} is not set", _WHERE, f"set {ENDPOINT_KEY} in the stack config", EXIT_INVALID)
    if not token_raw:
        raise RunnerError(
            f"{TOKEN_VAR} is not set",
            _WHERE,
            f"set the token with {SET_TOKEN}",
            EXIT_INVALID,
        )
    endpoint, host, port = _endpoint(endpoint_raw)
    user, name, secret = parse_token(token_raw)
    return Credentials(endpoint, host, port, user, name, secret)


def read_owner_key(environ: Mapping[str, str], where: str = _WHERE) -> OwnerKey:
    """The stack's owner key; the message never shows the value."""
    raw = environ.get(OWNER_KEY_VAR, "").strip()
    if len(raw) < OWNER_KEY_MIN_CHARS:
        problem = "is not set" if not raw else f"is shorter than {OWNER_KEY_MIN_CHARS} characters"
        raise RunnerError(
            f"{OWNER_KEY_VAR} {problem}",
            where,
            f'the component passes {OWNER_KEY}; by hand: export {OWNER_KEY_VAR}="$(pulumi config get {OWNER_KEY})"',
            EXIT_INVALID,
        )
    return OwnerKey(raw.encode())


def _seconds(environ: Mapping[str, str], name: str, default: float | None) -> float | None:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise RunnerError(f"{name} must be a number of seconds, got {raw!r}", _WHERE, f"fix or unset {name}") from None
    if value < 0:
        raise RunnerError(f"{name} must not be negative", _WHERE, f"fix or unset {name}")
    return value


def default_state_dir(environ: Mapping[str, str]) -> Path:
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "homelab-images"
    return Path(environ.get("HOME", os.path.expanduser("~"))) / ".cache" / "homelab-images"


@dataclass(frozen=True)
class Tuning:
    """Timing knobs; the defaults suit real builds."""

    timeout_override_seconds: float | None = None
    smoke_timeout_override_seconds: float | None = None
    retry_base_seconds: float = 0.5
    kill_grace_seconds: float = 90.0
    state_dir: Path = Path(".")
    log_dir: Path = Path(".")
    # How long a build's lease on its VM lasts; the runner renews it every tenth of that while Packer runs.
    lease_seconds: float = 600.0
    # A smoke check that waits for state to settle (root growth, node Ready) runs again after this long.
    smoke_repeat_seconds: float = 2.0


def read_tuning(environ: Mapping[str, str]) -> Tuning:
    retry = _seconds(environ, RETRY_BASE_VAR, 0.5)
    grace = _seconds(environ, KILL_GRACE_VAR, 90.0)
    lease = _seconds(environ, LEASE_VAR, 600.0)
    repeat = _seconds(environ, SMOKE_REPEAT_VAR, 2.0)
    assert retry is not None and grace is not None and lease is not None and repeat is not None
    state = environ.get(STATE_DIR_VAR)
    return Tuning(
        timeout_override_seconds=_seconds(environ, TIMEOUT_OVERRIDE_VAR, None),
        smoke_timeout_override_seconds=_seconds(environ, SMOKE_TIMEOUT_OVERRIDE_VAR, None),
        retry_base_seconds=retry,
        kill_grace_seconds=grace,
        lease_seconds=lease,
        smoke_repeat_seconds=repeat,
        state_dir=Path(state) if state else default_state_dir(environ),
        log_dir=default_log_dir(environ),
    )
