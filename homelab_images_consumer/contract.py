"""The images stack's outputs contract, read without Pulumi: pick one template.

See docs/outputs-contract.md. Within a schema version the images stack only
adds keys, so everything here ignores keys it does not know.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

SUPPORTED_SCHEMA_VERSIONS = frozenset({1})

# A retained template or a per-node copy has the hardware of the current
# template unless its own entry says otherwise.
_INHERITED = ("node", "storage", "shared", "firmware", "machine", "diskBus", "scsiController", "cloudInit")
# Builds before the key existed used this controller (docs/outputs-contract.md).
_DEFAULT_SCSI_CONTROLLER = "virtio-scsi-single"


class TemplateResolutionError(Exception):
    """The images stack's outputs hold no template matching the request."""


class UnsupportedSchemaError(TemplateResolutionError):
    """The images stack exports a ``schemaVersion`` this helper does not understand."""


class ImageNotFoundError(TemplateResolutionError):
    """No image of that name is exported."""


class NoTemplateError(ImageNotFoundError):
    """The image is exported, but only as a qcow2 file (``targets: [qemu]``): it has no Proxmox template."""


class NoArtifactError(ImageNotFoundError):
    """The image is exported, but with no qcow2 file: its ``targets`` do not include ``qemu``."""


class VersionNotFoundError(TemplateResolutionError):
    """The image exists, but no template of it has (or had) that version."""


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
    scsi_controller: str = _DEFAULT_SCSI_CONTROLLER
    # Earlier version labels of the same content: a pin on one of them resolves here.
    former_versions: tuple[str, ...] = ()
    built_at: str | None = None


@dataclass(frozen=True)
class ArtifactRef:
    """The current qcow2 file of an image (``artifacts[<image>].qemu``): what ``importFrom`` needs.

    ``path`` is on the machine that ran the images stack's ``pulumi up``; publish it to hand it elsewhere.
    """

    path: str
    file: str
    sha256: str
    size: int
    version: str
    fingerprint: str
    built_at: str | None = None


@dataclass(frozen=True)
class _Candidate:
    entry: Mapping[str, Any]
    current: bool

    @property
    def node(self) -> str:
        return str(self.entry.get("node"))

    def has_version(self, version: str) -> bool:
        return self.entry.get("version") == version or version in (self.entry.get("formerVersions") or [])


def select_template(
    outputs: Mapping[str, Any],
    image: str,
    version: str | None = None,
    node: str | None = None,
    stack_name: str = "the images stack",
) -> TemplateRef:
    """The template of ``image`` in an images stack's ``outputs`` (its ``schemaVersion``, ``templates`` and,
    to explain a missing template, ``artifacts``).

    ``version`` pins a version: the newest build on ``node`` that has or had that
    version label, else the current template. ``node`` is where the clone will run.
    """
    current = _image(outputs, image, stack_name)
    candidates = list(_candidates(current))
    if version is None:
        matching = [c for c in candidates if c.current]
    else:
        matching = [c for c in candidates if c.has_version(version)]
        if not matching:
            raise VersionNotFoundError(
                f"{stack_name}: image {image!r} has no template of version {version!r}; "
                f"versions available: {_listing(candidates)}"
            )
    home = str(current.get("node"))
    wanted = node or home
    on_node = [c for c in matching if c.node == wanted]
    if not on_node and current.get("shared") is True:
        on_node = matching  # shared storage: clone from wherever the template is
    if not on_node:
        what = f"version {version!r}" if version else "the current template"
        raise NodeNotAvailableError(
            f"{stack_name}: {what} of image {image!r} is on node(s) "
            f"{', '.join(sorted({c.node for c in matching}))} and its storage {current.get('storage')!r} is not "
            f"shared, so it cannot be cloned on node {wanted!r}; templates on {wanted}: "
            f"{_listing([c for c in candidates if c.node == wanted]) or 'none'}"
        )
    # The same content can be built more than once (rebuildEvery, a renamed version): the newest build wins.
    chosen = max(on_node, key=lambda c: (str(c.entry.get("builtAt") or ""), c.current, c.node == home))
    return _ref(chosen.entry, image, stack_name)


def template_with_vm_id(
    outputs: Mapping[str, Any], image: str, vm_id: int, stack_name: str = "the images stack"
) -> TemplateRef | None:
    """The template of ``image`` with VM ID ``vm_id`` (current, per-node or retained); None once it is gone."""
    current = _image(outputs, image, stack_name)
    for candidate in _candidates(current):
        if _vm_id(candidate.entry) == vm_id:
            return _ref(candidate.entry, image, stack_name)
    return None


def select_artifact(outputs: Mapping[str, Any], image: str, stack_name: str = "the images stack") -> ArtifactRef:
    """The current qcow2 file of ``image`` in an images stack's ``outputs`` (``schemaVersion``, ``artifacts``)."""
    _check_schema(outputs, stack_name)
    artifacts = outputs.get("artifacts")
    artifacts = artifacts if isinstance(artifacts, Mapping) else {}
    entry = artifacts.get(image)
    qemu = entry.get("qemu") if isinstance(entry, Mapping) else None
    if not isinstance(qemu, Mapping):
        known = ", ".join(sorted(artifacts)) or "none"
        if image in _exported(outputs):
            raise NoArtifactError(
                f"{stack_name}: image {image!r} has no qcow2 file: its targets do not include qemu; "
                f"images with a qcow2 file: {known}"
            )
        raise ImageNotFoundError(
            f"{stack_name} exports no image {image!r}; images it exports: {_known(outputs) or 'none'}"
        )
    size = qemu.get("size")
    if isinstance(size, float) and size.is_integer():
        size = int(size)  # stack outputs travel as JSON numbers
    if not isinstance(size, int) or isinstance(size, bool):
        raise TemplateResolutionError(f"{stack_name}: qcow2 file of image {image!r} has no integer 'size'")

    def text(key: str) -> str:
        return _text(qemu, key, image, stack_name, "qcow2 file")

    return ArtifactRef(
        path=text("path"),
        file=text("file"),
        sha256=text("sha256"),
        size=size,
        version=text("version"),
        fingerprint=text("fingerprint"),
        built_at=qemu.get("builtAt") if isinstance(qemu.get("builtAt"), str) else None,
    )


def _exported(outputs: Mapping[str, Any]) -> dict[str, bool]:
    """Every image the outputs name, each with whether it has a template (False: a qcow2 file only)."""
    found: dict[str, bool] = {}
    for key, has_template in (("artifacts", False), ("templates", True)):
        value = outputs.get(key)
        found.update(dict.fromkeys(value if isinstance(value, Mapping) else (), has_template))
    return found


def _known(outputs: Mapping[str, Any]) -> str:
    images = _exported(outputs)
    return ", ".join(name if template else f"{name} (qcow2 file only)" for name, template in sorted(images.items()))


def _image(outputs: Mapping[str, Any], image: str, stack_name: str) -> Mapping[str, Any]:
    templates = _templates(outputs, stack_name)
    current = templates.get(image)
    if not isinstance(current, Mapping):
        known = ", ".join(sorted(templates)) or "none"
        artifacts = outputs.get("artifacts")
        if isinstance(artifacts, Mapping) and image in artifacts:
            raise NoTemplateError(
                f"{stack_name}: image {image!r} has no Proxmox template: its targets do not include proxmox-iso, "
                f"so the stack exports it only as a file (output 'artifacts'); images with a template: {known}"
            )
        raise ImageNotFoundError(
            f"{stack_name} exports no image {image!r}; images it exports: {_known(outputs) or 'none'}"
        )
    return current


def _check_schema(outputs: Mapping[str, Any], stack_name: str) -> None:
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


def _templates(outputs: Mapping[str, Any], stack_name: str) -> Mapping[str, Any]:
    _check_schema(outputs, stack_name)
    templates = outputs.get("templates")
    if not isinstance(templates, Mapping):
        raise TemplateResolutionError(f"{stack_name} exports no 'templates' map")
    return templates


def _candidates(current: Mapping[str, Any]) -> Iterator[_Candidate]:
    """Every template of the image the outputs describe, each with its node and hardware filled in."""
    inherited = {key: current[key] for key in _INHERITED if key in current}
    seen: set[tuple[str, Any]] = set()

    def fresh(entry: Mapping[str, Any]) -> bool:
        key = (str(entry.get("node")), entry.get("vmId"))
        if key in seen:
            return False
        seen.add(key)
        return True

    def retained_of(holder: Mapping[str, Any]) -> Iterator[_Candidate]:
        for old in holder.get("retained") or []:
            if isinstance(old, Mapping):
                # Entries written before retained templates carried a node are on the holder's node.
                entry = {**inherited, "node": holder.get("node"), **_identity(old)}
                if fresh(entry):
                    yield _Candidate(entry, current=False)

    if fresh(current):
        yield _Candidate(current, current=True)
    copies = current.get("nodes")
    copies = copies if isinstance(copies, Mapping) else {}
    for copy_node, copy in copies.items():
        if isinstance(copy, Mapping):
            entry = {**current, **_identity(copy), "node": copy_node}
            entry.pop("retained", None)
            if fresh(entry):
                yield _Candidate(entry, current=True)
    yield from retained_of(current)
    for copy_node, copy in copies.items():
        if isinstance(copy, Mapping):
            yield from retained_of({**copy, "node": copy_node})


def _identity(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An entry's own keys, without None values that would hide the inherited ones."""
    return {key: value for key, value in entry.items() if value is not None or key in ("fingerprint", "builtAt")}


def _listing(candidates: list[_Candidate]) -> str:
    def label(candidate: _Candidate) -> str:
        entry = candidate.entry
        former = entry.get("formerVersions") or []
        also = f", formerly {', '.join(former)}" if former else ""
        kind = "" if candidate.current else "retained, "
        return f"{entry.get('version')} ({kind}{candidate.node}{also})"

    return ", ".join(label(c) for c in candidates)


def _vm_id(entry: Mapping[str, Any]) -> int | None:
    vm_id = entry.get("vmId")
    if isinstance(vm_id, float) and vm_id.is_integer():
        vm_id = int(vm_id)
    if not isinstance(vm_id, int) or isinstance(vm_id, bool):
        return None
    return vm_id


def _ref(entry: Mapping[str, Any], image: str, stack_name: str) -> TemplateRef:
    vm_id = _vm_id(entry)
    if vm_id is None:
        raise TemplateResolutionError(f"{stack_name}: template of image {image!r} has no integer 'vmId'")
    former = entry.get("formerVersions")
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
        scsi_controller=str(entry.get("scsiController") or _DEFAULT_SCSI_CONTROLLER),
        former_versions=tuple(str(v) for v in former) if isinstance(former, list) else (),
        built_at=entry.get("builtAt") if isinstance(entry.get("builtAt"), str) else None,
    )


def _text(entry: Mapping[str, Any], key: str, image: str, stack_name: str, what: str = "template") -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise TemplateResolutionError(f"{stack_name}: {what} of image {image!r} has no {key!r}")
    return value
