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
from homelab_images.core.paths import PROJECT_DIR, kickstart_dir_for, stack_file_path
from homelab_images.core.plan import ImagePlan, plan_stack
from homelab_images.core.versioning import lock_findings, lock_path, read_lock


@dataclass(frozen=True)
class ProgramSettings:
    config: StackConfig
    api_token: pulumi.Output[str]
    owner_key: pulumi.Output[str]
    plans: list[ImagePlan]
    lock: dict[str, dict[str, str]]
    """The version lock: image -> {version: content fingerprint}."""


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


def _api_token() -> pulumi.Output[str]:
    provider_config = pulumi.Config(PROVIDER)
    if provider_config.get(TOKEN_NAME) is None:
        raise ConfigError([f"{TOKEN_KEY}: is required; set it with {SET_TOKEN}"])
    if not runtime_config.is_config_secret(TOKEN_KEY):
        raise ConfigError([f"{TOKEN_KEY}: is stored in plain text; set it again with {SET_TOKEN}"])
    return provider_config.require_secret(TOKEN_NAME)


def _owner_key() -> pulumi.Output[str]:
    """The stack's secret owner key: generated once by the user, kept encrypted in the stack's config."""
    value = pulumi.Config(PROJECT).get("ownerKey")
    if value is None:
        raise ConfigError(
            [f"{OWNER_KEY}: is required (it proves which VMs this stack built); set it once with `{SET_OWNER_KEY}`"]
        )
    if not runtime_config.is_config_secret(OWNER_KEY):
        raise ConfigError([f"{OWNER_KEY}: is stored in plain text; set it again with `{SET_OWNER_KEY}`"])
    if len(value.strip()) < OWNER_KEY_MIN_CHARS:
        problem = f"expected at least {OWNER_KEY_MIN_CHARS} random characters"
        raise ConfigError([f"{OWNER_KEY}: {problem}; set it with `{SET_OWNER_KEY}`"])
    return pulumi.Output.secret(value.strip())


def _version_guard(config: StackConfig, plans: list[ImagePlan], lock: dict[str, dict[str, str]]) -> None:
    findings = lock_findings(lock, plans)
    if findings and config.build.strict_versioning:
        raise ConfigError([f"{finding} (strictVersioning is on)" for finding in findings])
    for finding in findings:
        pulumi.log.warn(str(finding))


def load_program_settings(now: datetime | None = None) -> ProgramSettings:
    try:
        config = load_config(runtime_config_raw())
        api_token = _api_token()
        owner_key = _owner_key()
        stack_file = stack_file_path(pulumi.get_stack(), PROJECT_DIR)
        plans = plan_stack(config, now or datetime.now(UTC), kickstart_dir_for(stack_file))
        lock = read_lock(lock_path(stack_file))
        _version_guard(config, plans, lock)
    except ConfigError as error:
        raise pulumi.RunError("invalid stack configuration:\n  " + "\n  ".join(error.problems)) from None
    except KickstartInvalid as error:
        raise pulumi.RunError(str(error)) from None
    if config.insecure:
        pulumi.log.warn(f"{INSECURE_KEY} is true: the Proxmox TLS certificate is not verified")
    return ProgramSettings(config=config, api_token=api_token, owner_key=owner_key, plans=plans, lock=lock)
