"""Resolve a template from a ``pulumi.StackReference`` to the images stack."""

from __future__ import annotations

from typing import Any

import pulumi

from homelab_images_consumer.contract import TemplateRef, select_template


def resolve_template(
    stack: pulumi.StackReference,
    image: str,
    version: str | None = None,
    node: str | None = None,
) -> pulumi.Output[TemplateRef]:
    """The template of ``image`` (pinned to ``version`` if given) that can be cloned on ``node``.

    Raises a ``TemplateResolutionError`` subclass when the stack's outputs hold
    no such template; the message names what the stack does export.
    """

    def select(values: list[Any]) -> TemplateRef:
        name, schema_version, templates = values
        outputs = {"schemaVersion": schema_version, "templates": templates}
        present = {key: value for key, value in outputs.items() if value is not None}
        return select_template(present, image, version, node, stack_name=f"stack {name!r}")

    # Two named outputs rather than ``stack.outputs``: a secret anywhere in the
    # images stack would otherwise make every VM ID here a secret too.
    return pulumi.Output.all(stack.name, stack.get_output("schemaVersion"), stack.get_output("templates")).apply(select)
