"""What the Pulumi component gives pulumi-command's ``local.Command``: command strings, environment, triggers.

The commands run through ``/bin/sh -c`` with the project root as working directory;
``HOMELAB_IMAGES_PYTHON`` picks the interpreter (default: the project's venv).
``exec`` replaces the shell with the runner: a cancelled ``pulumi up`` SIGKILLs
the process pulumi-command started (Go's ``exec.CommandContext``), which is
then the runner itself and not a shell the runner would outlive.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from homelab_images.contract.ownership import OWNER_KEY_VAR

# Stable from now on: every stack that built an image keeps these in its state and runs the
# stored delete when the build is replaced (docs/build-runner.md).
RUNNER_MODULE = "homelab_images.runner"
_RUNNER = f'exec "${{HOMELAB_IMAGES_PYTHON:-venv/bin/python}}" -m {RUNNER_MODULE}'
CREATE_COMMAND = f"{_RUNNER} create"
UPDATE_COMMAND = f"{_RUNNER} update"
DELETE_COMMAND = f"{_RUNNER} delete"

# The runner's environment: the names the Proxmox Terraform/Pulumi provider reads.
ENDPOINT_VAR = "PROXMOX_VE_ENDPOINT"
TOKEN_VAR = "PROXMOX_VE_API_TOKEN"
CURRENT_TOKEN_VAR = "HOMELAB_IMAGES_API_TOKEN"
"""Set in the shell that runs ``pulumi``, never by the component: preferred over the token
stored with the Command, which ``delete`` gets from the old inputs (a rotated, revoked one)."""

Token = TypeVar("Token")


def command_environment(endpoint: str, api_token: Token, owner_key: Token) -> dict[str, str | Token]:
    """The Command's ``environment`` input (stored in state; the token and the owner key as secrets)."""
    return {ENDPOINT_VAR: endpoint, TOKEN_VAR: api_token, OWNER_KEY_VAR: owner_key}


def build_triggers(fingerprint_parts: Mapping[str, str], node: str, vm_storage: str) -> list[dict[str, str]]:
    """The Command's ``triggers``: a change replaces it, i.e. builds a new template.

    The fingerprint parts (what the template contains) and where it is built:
    moving to another node or VM storage must build there, not update in place.
    One small named map each, so ``pulumi preview --diff`` names what changed.
    """
    return [dict(sorted(fingerprint_parts.items())), {"node": node, "vmStorage": vm_storage}]


# The qemu target's build: it needs no Proxmox credential. Stable like the ones above.
QEMU_RUNNER_MODULE = "homelab_images.runner.qemu"
QEMU_CREATE_COMMAND = f'exec "${{HOMELAB_IMAGES_PYTHON:-venv/bin/python}}" -m {QEMU_RUNNER_MODULE} create'
QEMU_UPDATE_COMMAND = f'exec "${{HOMELAB_IMAGES_PYTHON:-venv/bin/python}}" -m {QEMU_RUNNER_MODULE} update'
QEMU_DELETE_COMMAND = f'exec "${{HOMELAB_IMAGES_PYTHON:-venv/bin/python}}" -m {QEMU_RUNNER_MODULE} delete'
