"""PackerBuild: runs the runner through pulumi-command.

The Command is replaced exactly when the image's fingerprint parts, its node
or its VM storage change (its ``triggers``); any other change to its inputs (a
timeout, the retention, a rotated token) runs the ``update`` step, which
re-verifies the existing template instead of rebuilding it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_command as command

from homelab_images.contract.build_spec import BuildSpec
from homelab_images.contract.commands import (
    CREATE_COMMAND,
    DELETE_COMMAND,
    UPDATE_COMMAND,
    build_triggers,
    command_environment,
)
from homelab_images.contract.result import require_result


@dataclass(frozen=True)
class PackerBuildArgs:
    spec: BuildSpec
    endpoint: str
    api_token: pulumi.Output[str]
    """Secret ``user@realm!tokenid=secret``; reaches the command only through its environment."""
    owner_key: pulumi.Output[str]
    """The stack's secret owner key; reaches the command only through its environment."""


class PackerBuild(pulumi.ComponentResource):
    result: pulumi.Output[dict[str, Any]]
    vm_id: pulumi.Output[int]
    node: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: PackerBuildArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("homelab:images:PackerBuild", name, None, opts)
        self.command = command.local.Command(
            f"{name}-packer",
            create=CREATE_COMMAND,
            update=UPDATE_COMMAND,
            delete=DELETE_COMMAND,
            stdin=args.spec.to_json(),
            environment=command_environment(args.endpoint, args.api_token, args.owner_key),
            triggers=build_triggers(args.spec.fingerprint_parts, args.spec.node, args.spec.vm_storage),
            add_previous_output_in_env=True,
            # pulumi-command replaces the resource when a trigger changes
            # (replaceOnChanges triggers[*]): the new template is built before
            # the old one is retired.
            opts=pulumi.ResourceOptions(
                parent=self,
                # Packer's log goes to stderr; keep it out of plain-text diffs.
                additional_secret_outputs=["stderr"],
            ),
        )
        # The runner prints only the result JSON on stdout and scrubs
        # secrets from everything it echoes, so its stdout is safe to show;
        # the vmId must stay readable for the stacks that clone it.
        stdout = pulumi.Output.unsecret(self.command.stdout)
        self.result = stdout.apply(require_result)
        self.vm_id = self.result.apply(lambda result: int(result["vmId"]))
        self.node = self.result.apply(lambda result: str(result["node"]))
        self.register_outputs({"result": self.result})
