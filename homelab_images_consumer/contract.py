"""The images stack's outputs contract, read without Pulumi: pick one template.

See docs/outputs-contract.md. Within a schema version the images stack only
adds keys, so everything here ignores keys it does not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SUPPORTED_SCHEMA_VERSIONS = frozenset({1})

# A retained (older) template lives where the current one does and has the same
# hardware unless its entry says otherwise.
_INHERITED_BY_RETAINED = ("node", "storage", "shared", "firmware", "machine", "diskBus", "cloudInit")


class TemplateResolutionError(Exception):
    """The images stack's outputs hold no template matching the request."""


class UnsupportedSchemaError(TemplateResolutionError):
    """The images stack exports a ``schemaVersion`` this helper does not understand."""


class ImageNotFoundError(TemplateResolutionError):
    """No image of that name is exported."""


class VersionNotFoundError(TemplateResolutionError):
    """The image exists, but neither its current nor a retained template has that version."""


class NodeNotAvailableError(TemplateResolutionError):
    """The template cannot be cloned on the requested node."""


@dataclass(frozen=True)
class TemplateRef:
    """One template to clone, as the images stack describes it.

    ``node`` is the node holding the template: clone *from* there. With shared
    storage the clone may target any node; otherwise ``node`` is the node asked for.
    """

    vm_id: int
    node: str
    name: str
    version: str
    # None only for a retained build whose fingerprint the images stack could not read back.
    fingerprint: str | None
    storage: str
    firmware: str
    machine: str
    disk_bus: str
    cloud_init: bool


def select_template(
    outputs: Mapping[str, Any],
    image: str,
    version: str | None = None,
    node: str | None = None,
    stack_name: str = "the images stack",
) -> TemplateRef:
    """The template of ``image`` in an images stack's ``outputs`` (its ``schemaVersion`` and ``templates``).

    ``version`` pins a version: the current template if it has it, else the newest
    retained one that does. ``node`` is where the clone will run.
    """
    templates = _templates(outputs, stack_name)
    current = templates.get(image)
    if not isinstance(current, Mapping):
        known = ", ".join(sorted(templates)) or "none"
        raise ImageNotFoundError(f"{stack_name} exports no image {image!r}; images it exports: {known}")
    entry = _with_version(current, image, version, stack_name)
    return _on_node(entry, image, node, stack_name)


def _templates(outputs: Mapping[str, Any], stack_name: str) -> Mapping[str, Any]:
    schema = outputs.get("schemaVersion")
    if schema is None:
        raise UnsupportedSchemaError(
            f"{stack_name} exports no 'schemaVersion' output: is it a homelab-images stack? "
            f"(outputs: {', '.join(sorted(outputs)) or 'none'})"
        )
    if isinstance(schema, float) and schema.is_integer():
        schema = int(schema)  # stack outputs travel as JSON numbers
    if schema not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(str(v) for v in sorted(SUPPORTED_SCHEMA_VERSIONS))
        raise UnsupportedSchemaError(
            f"{stack_name} exports schemaVersion {schema!r}; this helper supports {supported}: "
            "update homelab_images_consumer"
        )
    templates = outputs.get("templates")
    if not isinstance(templates, Mapping):
        raise TemplateResolutionError(f"{stack_name} exports no 'templates' map")
    return templates


def _with_version(current: Mapping[str, Any], image: str, version: str | None, stack_name: str) -> Mapping[str, Any]:
    if version is None or current.get("version") == version:
        return current
    retained = [entry for entry in current.get("retained") or [] if isinstance(entry, Mapping)]
    matching = [entry for entry in retained if entry.get("version") == version]
    if not matching:
        available = [str(current.get("version"))] + [f"{entry.get('version')} (retained)" for entry in retained]
        raise VersionNotFoundError(
            f"{stack_name}: image {image!r} has no template of version {version!r}; "
            f"versions available: {', '.join(available)}"
        )
    # The same version can be rebuilt (a periodic rebuild): take the newest build.
    newest = sorted(matching, key=lambda entry: str(entry.get("builtAt") or ""), reverse=True)[0]
    inherited = {key: current[key] for key in _INHERITED_BY_RETAINED if key in current}
    return {**inherited, **newest}


def _on_node(entry: Mapping[str, Any], image: str, node: str | None, stack_name: str) -> TemplateRef:
    home = _text(entry, "node", image, stack_name)
    if node is None or node == home:
        return _ref(entry, image, stack_name)
    copies = entry.get("nodes")
    if isinstance(copies, Mapping) and isinstance(copies.get(node), Mapping):
        return _ref({**entry, **copies[node], "node": node}, image, stack_name)
    if entry.get("shared") is True:
        return _ref(entry, image, stack_name)
    elsewhere = sorted([home, *copies]) if isinstance(copies, Mapping) else [home]
    raise NodeNotAvailableError(
        f"{stack_name}: template {entry.get('name')!r} of image {image!r} is on node(s) {', '.join(elsewhere)} "
        f"and its storage {entry.get('storage')!r} is not shared, so it cannot be cloned on node {node!r}"
    )


def _ref(entry: Mapping[str, Any], image: str, stack_name: str) -> TemplateRef:
    vm_id = entry.get("vmId")
    if isinstance(vm_id, float) and vm_id.is_integer():
        vm_id = int(vm_id)
    if not isinstance(vm_id, int) or isinstance(vm_id, bool):
        raise TemplateResolutionError(f"{stack_name}: template of image {image!r} has no integer 'vmId'")
    return TemplateRef(
        vm_id=vm_id,
        node=_text(entry, "node", image, stack_name),
        name=_text(entry, "name", image, stack_name),
        version=_text(entry, "version", image, stack_name),
        fingerprint=entry.get("fingerprint") if isinstance(entry.get("fingerprint"), str) else None,
        storage=_text(entry, "storage", image, stack_name),
        firmware=_text(entry, "firmware", image, stack_name),
        machine=_text(entry, "machine", image, stack_name),
        disk_bus=_text(entry, "diskBus", image, stack_name),
        cloud_init=entry.get("cloudInit") is True,
    )


def _text(entry: Mapping[str, Any], key: str, image: str, stack_name: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise TemplateResolutionError(f"{stack_name}: template of image {image!r} has no {key!r}")
    return value
