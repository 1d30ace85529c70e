"""QemuArtifact: the qemu target's build, run through pulumi-command on the machine that runs `pulumi up`.

Like PackerBuild, the Command is replaced exactly when the qemu fingerprint's
parts change (its ``triggers``): the new qcow2 is built before the old one is
retired. Any other change runs ``update``, which checks the existing file
against its sha256 instead of rebuilding it. No credential reaches it.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_command as command

from homelab_images.contract.artifact import ArtifactResult, ArtifactSpec
from homelab_images.contract.commands import QEMU_CREATE_COMMAND, QEMU_DELETE_COMMAND, QEMU_UPDATE_COMMAND
from homelab_images.contract.records import RecordError
from homelab_images.contract.result import last_json_line


class ArtifactResultInvalid(Exception):
    """The qemu build's stdout does not end with a result line."""


def require_artifact_result(stdout: str) -> dict[str, Any]:
    value = last_json_line(stdout)
    try:
        return ArtifactResult.from_mapping(value).to_mapping()
    except RecordError as error:
        raise ArtifactResultInvalid(
            f"the qemu build's stdout does not end with its result ({error}); see its stderr in the Pulumi output"
        ) from None


def command_inputs(spec: ArtifactSpec) -> dict[str, Any]:
    """The Command's inputs; tests/runner drives these very values through the engine model."""
    return {
        "create": QEMU_CREATE_COMMAND,
        "update": QEMU_UPDATE_COMMAND,
        "delete": QEMU_DELETE_COMMAND,
        "stdin": spec.to_json() + "\n",
        "triggers": [dict(sorted(spec.fingerprint_parts.items()))],
        "add_previous_output_in_env": True,
    }


class QemuArtifact(pulumi.ComponentResource):
    result: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, spec: ArtifactSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("homelab:images:QemuArtifact", name, None, opts)
        self.command = command.local.Command(
            f"{name}-packer",
            **command_inputs(spec),
            # Packer's log goes to stderr; it is long, keep it out of plain-text diffs.
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["stderr"]),
        )
        self.result = self.command.stdout.apply(require_artifact_result)
        self.register_outputs({"result": self.result})


def artifact_output(result: dict[str, Any]) -> dict[str, Any]:
    """One target's entry of the ``artifacts`` stack output (docs/outputs-contract.md)."""
    return {
        "format": "qcow2",
        "path": result["path"],
        "file": result["file"],
        "size": result["size"],
        "sha256": result["sha256"],
        "manifest": result["manifest"],
        "version": result["version"],
        "fingerprint": result["fingerprint"],
        "builtAt": result["builtAt"],
        "retained": list(result.get("retained", [])),
    }
