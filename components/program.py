"""What ``__main__.py`` needs before it declares anything: validated config, the token, the plans.

Every problem surfaces as a ``pulumi.RunError`` (shown without a traceback),
before any resource is declared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from homelab_images.contract.ownership import OWNER_KEY_MIN_CHARS
from homelab_images.contract.stack_keys import (
    INSECURE_KEY,
    OWNER_KEY,
    PROJECT,
    PROVIDER,
    SET_OWNER_KEY,
    SET_TOKEN,
    TOKEN_KEY,
    TOKEN_NAME,
)
from homelab_images.core.config import ConfigError, StackConfig, load_config
from homelab_images.core.kickstart import KickstartInvalid
from homelab_images.core.local_files import ca_bundle_problem
from homelab_images.core.paths import PROJECT_DIR, kickstart_dir_for, stack_file_path
from homelab_images.core.plan import ImagePlan, plan_stack
from homelab_images.core.versioning import Lock, lock_findings, lock_path, read_lock


@dataclass(frozen=True)
class ProgramSettings:
    config: StackConfig
    api_token: pulumi.Output[str] | None
    """None when no image has a Proxmox template: the stack then declares nothing on Proxmox."""
    owner_key: pulumi.Output[str] | None
    plans: list[ImagePlan]
    lock: Lock
    """The version lock: image -> version -> target -> content fingerprint."""


def _decoded(value: Any) -> Any:
    # Structured config reaches the program as JSON text.
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def runtime_config_raw() -> dict[str, Any]:
    """All stack config as full keys; values of other namespaces are never read, only their keys
    (to catch a misspelt namespace)."""
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return {
        key: _decoded(value) if key.split(":", 1)[0] in (PROJECT, PROVIDER) else None for key, value in merged.items()
    }


def _api_token(required: bool) -> pulumi.Output[str] | None:
    provider_config = pulumi.Config(PROVIDER)
    if provider_config.get(TOKEN_NAME) is None:
        if not required:
            return None
        raise ConfigError([f"{TOKEN_KEY}: is required; set it with {SET_TOKEN}"])
    # Refused even when unused: a token in plain text sits in the stack file, and so in Git.
    if not runtime_config.is_config_secret(TOKEN_KEY):
        raise ConfigError([f"{TOKEN_KEY}: is stored in plain text; set it again with {SET_TOKEN}"])
    return provider_config.require_secret(TOKEN_NAME) if required else None


def _owner_key(required: bool) -> pulumi.Output[str] | None:
    """The stack's secret owner key: generated once by the user, kept encrypted in the stack's config."""
    value = pulumi.Config(PROJECT).get("ownerKey")
    if value is None:
        if not required:
            return None
        raise ConfigError(
            [f"{OWNER_KEY}: is required (it proves which VMs this stack built); set it once with `{SET_OWNER_KEY}`"]
        )
    if not runtime_config.is_config_secret(OWNER_KEY):
        raise ConfigError([f"{OWNER_KEY}: is stored in plain text; set it again with `{SET_OWNER_KEY}`"])
    if len(value.strip()) < OWNER_KEY_MIN_CHARS:
        problem = f"expected at least {OWNER_KEY_MIN_CHARS} random characters"
        raise ConfigError([f"{OWNER_KEY}: {problem}; set it with `{SET_OWNER_KEY}`"])
    return pulumi.Output.secret(value.strip()) if required else None


def _version_guard(config: StackConfig, plans: list[ImagePlan], lock: Lock) -> None:
    findings = lock_findings(lock, plans)
    if findings and config.build.strict_versioning:
        raise ConfigError([f"{finding} (strictVersioning is on)" for finding in findings])
    for finding in findings:
        pulumi.log.warn(str(finding))


def load_program_settings(now: datetime | None = None) -> ProgramSettings:
    try:
        config = load_config(runtime_config_raw())
        # A stack whose images are all built for qemu only touches no Proxmox: it needs neither secret.
        uses_proxmox = any(image.has_template for image in config.images)
        api_token = _api_token(uses_proxmox)
        owner_key = _owner_key(uses_proxmox)
        stack_file = stack_file_path(pulumi.get_stack(), PROJECT_DIR)
        plans = plan_stack(config, now or datetime.now(UTC), kickstart_dir_for(stack_file))
        # The runner would stop on it only after the ISO was downloaded; say it before anything is declared.
        ca_bundle = ca_bundle_problem(config, stack_file.parent) if uses_proxmox else None
        if ca_bundle:
            raise ConfigError([ca_bundle])
        lock = read_lock(lock_path(stack_file))
        _version_guard(config, plans, lock)
    except ConfigError as error:
        raise pulumi.RunError("invalid stack configuration:\n  " + "\n  ".join(error.problems)) from None
    except KickstartInvalid as error:
        raise pulumi.RunError(str(error)) from None
    if config.insecure and uses_proxmox:
        pulumi.log.warn(f"{INSECURE_KEY} is true: the Proxmox TLS certificate is not verified")
    return ProgramSettings(config=config, api_token=api_token, owner_key=owner_key, plans=plans, lock=lock)
