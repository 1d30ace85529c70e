"""The image's first-boot contract as code: cloud-init user data that makes a clone a k3s node.

The template ships both k3s units (``k3s.service``, ``k3s-agent.service``)
installed but neither enabled nor started, and no ``/etc/rancher/k3s``: the
user data written here decides the role. See docs/first-boot.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

import pulumi
import yaml

Role = Literal["server", "agent"]

K3S_CONFIG_PATH = "/etc/rancher/k3s/config.yaml"
UNITS: Mapping[str, str] = {"server": "k3s.service", "agent": "k3s-agent.service"}
# Set from the arguments; extra_config may not override them.
RESERVED_KEYS = frozenset({"token", "agent-token", "server", "node-name", "cluster-init"})
# k3s' secure token: K10<sha256 of the cluster CA>::<user>:<password> (https://docs.k3s.io/cli/token).
_SECURE_TOKEN = re.compile(r"^K10[0-9a-f]{64}::[^:\s]+:\S+$")
# A short token is a password: long enough that guessing it is hopeless (`openssl rand -hex 32` gives 64).
MIN_SHORT_TOKEN_LENGTH = 32

# Kubernetes node names and Linux hostnames: one lowercase DNS label.
_DNS_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_SSH_KEY = re.compile(
    r"^(?:ssh-(?:ed25519|rsa)|ecdsa-sha2-nistp(?:256|384|521)"
    r"|sk-(?:ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/]+={0,3}(?: [^\r\n]*)?$"
)


class UserDataError(ValueError):
    """The arguments cannot make valid k3s user data."""


def k3s_user_data(
    role: Role,
    hostname: str,
    ssh_authorized_keys: Sequence[str],
    token: pulumi.Input[str],
    server_url: pulumi.Input[str] | None = None,
    cluster_init: bool = False,
    extra_config: Mapping[str, Any] | None = None,
    domain: str | None = None,
    agent_token: pulumi.Input[str] | None = None,
) -> pulumi.Output[str]:
    """The ``#cloud-config`` user data of one k3s node, as a secret (it carries the token).

    ``token`` is what the node starts with: the server token on servers, the
    agent token on agents (k3s treats the server token as cluster-admin, so an
    agent never gets it). ``agent_token`` (servers only) sets the cluster's agent
    token. ``server_url`` (``https://host:6443``) is required for agents and for
    servers joining an existing cluster; ``cluster_init`` marks the first server
    of an embedded-etcd cluster. ``extra_config`` adds keys to k3s' config.yaml.
    Invalid arguments raise ``UserDataError`` at once, before any resource exists.
    """
    _check_arguments(role, hostname, ssh_authorized_keys, server_url, cluster_init, extra_config, domain, agent_token)

    def render(values: list[Any]) -> str:
        secret, url, agent_secret = values
        return render_k3s_user_data(
            role, hostname, ssh_authorized_keys, secret, url, cluster_init, extra_config, domain, agent_secret
        )

    agent_secret = pulumi.Output.secret(agent_token) if agent_token is not None else None
    return pulumi.Output.all(pulumi.Output.secret(token), server_url, agent_secret).apply(render)


def render_k3s_user_data(
    role: Role,
    hostname: str,
    ssh_authorized_keys: Sequence[str],
    token: str,
    server_url: str | None = None,
    cluster_init: bool = False,
    extra_config: Mapping[str, Any] | None = None,
    domain: str | None = None,
    agent_token: str | None = None,
) -> str:
    """Plain-text form of ``k3s_user_data``, for tests and hand inspection."""
    _check_arguments(role, hostname, ssh_authorized_keys, server_url, cluster_init, extra_config, domain, agent_token)
    _check_token(hostname, "token", token)
    k3s_config: dict[str, Any] = {"token": token}
    if agent_token is not None:
        _check_token(hostname, "agent_token", agent_token)
        if agent_token == token:
            raise UserDataError(f"{hostname}: agent_token equals token: agents would hold the server token")
        k3s_config["agent-token"] = agent_token
    if server_url is not None:
        k3s_config["server"] = server_url
    if cluster_init:
        k3s_config["cluster-init"] = True
    k3s_config["node-name"] = hostname
    k3s_config.update(extra_config or {})
    document = {
        "hostname": hostname,
        "fqdn": f"{hostname}.{domain}" if domain else hostname,
        "prefer_fqdn_over_hostname": False,
        "ssh_authorized_keys": list(ssh_authorized_keys),
        "write_files": [
            {
                "path": K3S_CONFIG_PATH,
                "owner": "root:root",
                "permissions": "0600",
                "content": _Literal(yaml.safe_dump(k3s_config, sort_keys=False)),
            }
        ],
        "runcmd": [f"systemctl enable --now {UNITS[role]}"],
    }
    return "#cloud-config\n" + yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1000)


def _check_arguments(
    role: str,
    hostname: str,
    ssh_authorized_keys: Sequence[str],
    server_url: object,
    cluster_init: bool,
    extra_config: Mapping[str, Any] | None,
    domain: str | None,
    agent_token: object = None,
) -> None:
    if role not in UNITS:
        raise UserDataError(f"role must be 'server' or 'agent', got {role!r}")
    if not isinstance(hostname, str) or not _DNS_LABEL.fullmatch(hostname):
        raise UserDataError(
            f"hostname {hostname!r} is not a DNS label (lowercase letters, digits, '-', at most 63 characters)"
        )
    if domain is not None and not all(_DNS_LABEL.fullmatch(label) for label in domain.split(".")):
        raise UserDataError(f"domain {domain!r} is not a DNS name of lowercase labels")
    if isinstance(ssh_authorized_keys, str) or not ssh_authorized_keys:
        raise UserDataError(f"{hostname}: give at least one SSH public key as a list: the image has no password login")
    for key in ssh_authorized_keys:
        if not isinstance(key, str) or not _SSH_KEY.fullmatch(key.strip()):
            raise UserDataError(f"{hostname}: not an SSH public key: {str(key)[:40]!r}")
    if role == "agent" and server_url is None:
        raise UserDataError(f"{hostname}: an agent needs server_url (https://<server>:6443)")
    if cluster_init and (role != "server" or server_url is not None):
        raise UserDataError(f"{hostname}: cluster_init is only for the first server, which has no server_url")
    if isinstance(server_url, str):
        _check_server_url(hostname, server_url)
    elif server_url is not None and not isinstance(server_url, pulumi.Output):
        raise UserDataError(f"{hostname}: server_url must be a string, got {type(server_url).__name__}")
    if role == "agent" and agent_token is not None:
        raise UserDataError(f"{hostname}: agent_token is for servers; an agent joins with the agent token as token")
    clashes = RESERVED_KEYS & set(extra_config or {})
    if clashes:
        raise UserDataError(
            f"{hostname}: extra_config may not set {', '.join(sorted(clashes))}: use the arguments of k3s_user_data"
        )


def _check_token(hostname: str, name: str, token: object) -> None:
    if not isinstance(token, str) or not token.strip():
        raise UserDataError(f"{hostname}: the k3s {name} is empty")
    if token.startswith("K10"):
        if not _SECURE_TOKEN.fullmatch(token):
            raise UserDataError(
                f"{hostname}: the k3s {name} starts with K10 but is not a secure token "
                "(K10<64 hex digits of the CA hash>::<user>:<password>)"
            )
    elif len(token) < MIN_SHORT_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise UserDataError(
            f"{hostname}: the k3s {name} is too short: use at least {MIN_SHORT_TOKEN_LENGTH} characters "
            "without spaces, e.g. `openssl rand -hex 32`"
        )


def _check_server_url(hostname: str, url: str) -> None:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/") or port == -1:
        raise UserDataError(f"{hostname}: server_url must look like https://<server>:6443, got {url!r}")


class _Literal(str):
    """A string dumped as a YAML literal block, so config.yaml reads as a file."""


class _Dumper(yaml.SafeDumper):
    pass


def _represent_literal(dumper: yaml.SafeDumper, value: _Literal) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


_Dumper.add_representer(_Literal, _represent_literal)
