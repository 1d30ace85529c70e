"""Resolve templates from a ``pulumi.StackReference`` to the images stack."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pulumi

from homelab_images_consumer.contract import (
    ArtifactRef,
    TemplateRef,
    select_artifact,
    select_template,
    template_with_vm_id,
)

T = TypeVar("T")


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
    return _with_outputs(stack, lambda outputs, name: select_template(outputs, image, version, node, name))


def resolve_artifact(stack: pulumi.StackReference, image: str) -> pulumi.Output[ArtifactRef]:
    """The current qcow2 file of ``image`` (``artifacts.<image>.qemu``): its path, sha256 and size.

    Raises ``NoArtifactError`` for an image built without the qemu target, ``ImageNotFoundError`` for one
    the stack does not export.
    """
    return _with_outputs(stack, lambda outputs, name: select_artifact(outputs, image, name))


def resolve_template_by_vm_id(
    stack: pulumi.StackReference, image: str, vm_id: pulumi.Input[int | None]
) -> pulumi.Output[TemplateRef | None]:
    """The template of ``image`` with VM ID ``vm_id``, e.g. the one a VM was cloned from; None once retired."""

    def find(outputs: Mapping[str, Any], name: str, wanted: int | None) -> TemplateRef | None:
        return None if wanted is None else template_with_vm_id(outputs, image, wanted, name)

    return pulumi.Output.all(_outputs(stack), vm_id).apply(lambda values: find(values[0][0], values[0][1], values[1]))


def _with_outputs(stack: pulumi.StackReference, pick: Callable[[Mapping[str, Any], str], T]) -> pulumi.Output[T]:
    return _outputs(stack).apply(lambda values: pick(values[0], values[1]))


def _outputs(stack: pulumi.StackReference) -> pulumi.Output[tuple[dict[str, Any], str]]:
    def collect(values: list[Any]) -> tuple[dict[str, Any], str]:
        name, schema_version, templates, artifacts = values
        outputs = {"schemaVersion": schema_version, "templates": templates, "artifacts": artifacts}
        return {key: value for key, value in outputs.items() if value is not None}, f"stack {name!r}"

    # Named outputs rather than ``stack.outputs``: a secret anywhere in the
    # images stack would otherwise make every VM ID here a secret too. ``artifacts``
    # holds the qcow2 files, and explains an image that has no template (built for qemu only).
    return pulumi.Output.all(
        stack.name, stack.get_output("schemaVersion"), stack.get_output("templates"), stack.get_output("artifacts")
    ).apply(collect)
