"""The Proxmox API client as production uses it, and how its failures are told apart.

Transient faults (a locked VM, a config-lock timeout, a dropped connection) are
retried with bounded exponential backoff. Everything else ends the run with a
message saying what to fix; retrying a 401 or a missing privilege only delays it.
"""

from __future__ import annotations

import enum
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
import urllib3
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

from homelab_images.runner.console import Console
from homelab_images.runner.env import Credentials
from homelab_images.runner.errors import RunnerError

T = TypeVar("T")
Api = Any  # proxmoxer builds its resources dynamically and ships no type hints

# connect, read: a dead endpoint fails in seconds; a slow PVE call still completes.
HTTP_TIMEOUT = (5.0, 60.0)
DOCS = "docs/build-runner.md"


class Kind(enum.Enum):
    LOCKED = "locked"
    NETWORK = "network"
    UNRESOLVED = "unresolved"
    TLS = "tls"
    AUTH = "auth"
    FORBIDDEN = "forbidden"
    QUORUM = "quorum"
    OFFLINE = "offline"
    FULL = "full"
    PROTECTED = "protected"
    LINKED_CLONES = "linked-clones"
    GONE = "gone"
    EXISTS = "exists"
    OTHER = "other"


TRANSIENT = frozenset({Kind.LOCKED, Kind.NETWORK, Kind.UNRESOLVED})
# A host name that does not resolve is almost always a typo in the endpoint: one retry covers a resolver
# blip without making the user wait through the whole backoff.
ATTEMPTS_WHEN_UNRESOLVED = 2

_PATTERNS: tuple[tuple[re.Pattern[str], Kind], ...] = (
    (re.compile(r"VM is locked|can't lock file|got timeout", re.I), Kind.LOCKED),
    (re.compile(r"no quorum", re.I), Kind.QUORUM),
    (re.compile(r"No route to host|^595\b", re.I), Kind.OFFLINE),
    (re.compile(r"No space left", re.I), Kind.FULL),
    (re.compile(r"protection mode enabled", re.I), Kind.PROTECTED),
    (re.compile(r"in use by linked clone", re.I), Kind.LINKED_CLONES),
    (re.compile(r"Configuration file '[^']+' does not exist", re.I), Kind.GONE),
    (re.compile(r"already exists", re.I), Kind.EXISTS),
    (re.compile(r"Permission check failed", re.I), Kind.FORBIDDEN),
    (re.compile(r"authentication failure", re.I), Kind.AUTH),
)
PERMISSION = re.compile(r"Permission check failed \((?P<path>[^,)]+)(?:, (?P<priv>[^)]+))?\)")


def kind_of_message(message: str) -> Kind:
    for pattern, kind in _PATTERNS:
        if pattern.search(message):
            return kind
    return Kind.OTHER


class TaskFailed(Exception):
    """A Proxmox task ended with an exitstatus other than OK."""

    def __init__(self, exitstatus: str) -> None:
        super().__init__(exitstatus)
        self.exitstatus = exitstatus


@dataclass
class ApiError(Exception):
    """A failed Proxmox call, classified; ``where`` names what the call was about."""

    kind: Kind
    message: str
    where: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def _name_not_resolved(error: requests.exceptions.ConnectionError) -> bool:
    """requests wraps urllib3's MaxRetryError, whose reason is a NameResolutionError for a DNS failure."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, urllib3.exceptions.NameResolutionError)


def classify(error: BaseException, where: str) -> ApiError:
    if isinstance(error, ApiError):
        return error
    if isinstance(error, requests.exceptions.SSLError):
        return ApiError(Kind.TLS, str(error), where)
    if isinstance(error, requests.exceptions.ConnectionError) and _name_not_resolved(error):
        return ApiError(Kind.UNRESOLVED, "the host name does not resolve", where)
    if isinstance(error, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return ApiError(Kind.NETWORK, type(error).__name__, where)
    if isinstance(error, TaskFailed):
        return ApiError(kind_of_message(error.exitstatus), error.exitstatus, where)
    if isinstance(error, ResourceException):
        status = int(error.status_code)
        message = str(error)
        if status == 401:
            return ApiError(Kind.AUTH, message, where)
        if status == 595:
            return ApiError(Kind.OFFLINE, message, where)
        if status in (502, 503, 504):
            return ApiError(Kind.NETWORK, message, where)
        kind = kind_of_message(message)
        if status == 403:
            kind = Kind.FORBIDDEN
        return ApiError(kind, message, where)
    raise error


def explain(error: ApiError, creds: Credentials) -> RunnerError:
    """The message a user needs for a failure nobody handled more specifically."""
    where = error.where
    if error.kind is Kind.TLS:
        return RunnerError(
            "TLS verification of the Proxmox API failed",
            creds.endpoint,
            "set homelab-images:proxmox.caBundle to the PEM file of the CA that signed the Proxmox certificate "
            "(or proxmoxve:insecure: true for a self-signed certificate you cannot trust)",
        )
    if error.kind is Kind.UNRESOLVED:
        return RunnerError(
            f"the Proxmox host name {creds.host!r} does not resolve (DNS)",
            creds.endpoint,
            "check proxmoxve:endpoint (PROXMOX_VE_ENDPOINT for gc) for a typo and this machine's DNS, then run again",
        )
    if error.kind is Kind.NETWORK:
        return RunnerError(
            "cannot reach the Proxmox API (connection dropped or timed out, retried)",
            creds.endpoint,
            "check proxmoxve:endpoint, DNS and that pveproxy answers on that port, then run again",
        )
    if error.kind is Kind.AUTH:
        return RunnerError(
            f"the API token {creds.token_id} was rejected (401 authentication failure)",
            creds.endpoint,
            "check proxmoxve:apiToken (user@realm!tokenid=secret): the token must exist, not be expired, "
            "and the secret must match",
        )
    if error.kind is Kind.FORBIDDEN:
        match = PERMISSION.search(error.message)
        if match and match["priv"]:
            return RunnerError(
                f"permission denied: token {creds.token_id} lacks {match['priv']} on {match['path']}",
                where,
                f"grant {match['priv']} on {match['path']} to the token (see {DOCS})",
            )
        return RunnerError(f"permission denied: {error.message}", where, f"grant the token the build role (see {DOCS})")
    if error.kind is Kind.QUORUM:
        return RunnerError(
            "the Proxmox cluster has no quorum",
            where,
            "restore quorum (check `pvecm status`) and run again; writes are refused until then",
        )
    if error.kind is Kind.OFFLINE:
        return RunnerError(
            "the node is offline or unreachable (No route to host)",
            where,
            "bring the node back online or set homelab-images:proxmox.node to an online node",
        )
    if error.kind is Kind.FULL:
        return RunnerError(
            "storage is full (No space left on device)",
            where,
            "free space on the storage or set homelab-images:proxmox.vmStorage to a pool with room",
        )
    if error.kind is Kind.LOCKED:
        return RunnerError(
            f"the VM stayed locked ({error.message}) after retrying",
            where,
            "wait for the running backup/migration/task to finish and run again",
        )
    return RunnerError(f"Proxmox refused the request ({error.message})", where, "fix the cause above and run again")


class Retrier:
    """Runs a call, retrying transient faults: delays base, 2*base, ... capped, ``attempts`` tries in all."""

    def __init__(
        self, console: Console, base_seconds: float = 0.5, attempts: int = 6, cap_seconds: float = 8.0
    ) -> None:
        self.console = console
        self.base_seconds = base_seconds
        self.attempts = attempts
        self.cap_seconds = cap_seconds
        self.sleep: Callable[[float], None] = time.sleep

    def __call__(self, call: Callable[[], T], where: str) -> T:
        delay = self.base_seconds
        for attempt in range(1, self.attempts + 1):
            try:
                return call()
            except (ResourceException, TaskFailed, requests.exceptions.RequestException) as raw:
                error = classify(raw, where)
                attempts = ATTEMPTS_WHEN_UNRESOLVED if error.kind is Kind.UNRESOLVED else self.attempts
                if error.kind not in TRANSIENT or attempt >= attempts:
                    raise error from None
                self.console.note(f"{where}: {error.message}; retrying in {delay:.1f}s ({attempt}/{attempts})")
                self.sleep(delay)
                delay = min(delay * 2, self.cap_seconds)
        raise AssertionError("unreachable")


def connect(creds: Credentials, ca_bundle: str | None, insecure: bool, console: Console) -> Api:
    """A client that verifies TLS against ``ca_bundle`` (or the system CAs) unless insecure is configured."""
    verify: bool | str = True
    if insecure:
        console.warn(
            f"TLS verification of {creds.endpoint} is off (insecure is configured): "
            "anyone on the path can read the API token; set caBundle instead"
        )
        verify = False
        warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    elif ca_bundle:
        verify = ca_bundle
    return ProxmoxAPI(
        creds.host,
        port=creds.port,
        user=creds.user,
        token_name=creds.token_name,
        token_value=creds.secret,
        verify_ssl=verify,
        timeout=HTTP_TIMEOUT,
    )
