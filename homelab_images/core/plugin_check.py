"""Would the pinned proxmox plugin accept this proxmox-iso source? Its own rules, its own messages.

The rules are the facts recorded in ``homelab_images.contract.proxmox_plugin`` (each cites the
plugin or library file it comes from). They are checked in the order Packer meets them, because
that decides what a real build has already done when it fails:

* ``decode_problems``: Packer core decodes the source against the plugin's HCL spec;
* ``prepare_problems``: the plugin's Prepare, before it connects to Proxmox;
* ``create_problem``: the API library validates the VM config when the plugin creates the VM,
  before the API call (after "Creating VM").

Values still written as ``${...}`` expressions are skipped: ``validate`` resolves the
variables the runner sets before it asks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from homelab_images.contract import proxmox_plugin as plugin


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def _scalar(value: Any) -> bool:
    """cty converts any of these to a string."""
    return isinstance(value, (str, int, float, bool))


def _as_number(value: Any) -> str | None:
    """None when cty converts ``value`` to a number, else why not."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return plugin.TYPE_REQUIRED.format(type="number")
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return plugin.NOT_A_NUMBER
    return None


def _type_problem(kind: str, value: Any) -> str | None:
    if value is None or _is_expression(value):
        return None
    if kind == plugin.STRING:
        return None if _scalar(value) else plugin.TYPE_REQUIRED.format(type="string")
    if kind == plugin.NUMBER:
        return _as_number(value)
    if kind == plugin.BOOL:
        if isinstance(value, bool):
            return None
        if isinstance(value, str):
            return None if value in ("true", "false") else plugin.NOT_A_BOOL
        return plugin.TYPE_REQUIRED.format(type="bool")
    if kind in (plugin.LIST_OF_STRING, plugin.LIST_OF_NUMBER):
        element = plugin.STRING if kind == plugin.LIST_OF_STRING else plugin.NUMBER
        if not isinstance(value, list) or any(_type_problem(element, item) for item in value):
            return plugin.TYPE_REQUIRED.format(type=kind.replace("(", " of ").rstrip(")"))
        return None
    if kind == plugin.MAP_OF_STRING:
        if not isinstance(value, dict) or not all(_scalar(item) for item in value.values()):
            return plugin.TYPE_REQUIRED.format(type="map of string")
        return None
    raise ValueError(f"unknown cty type {kind!r}")


def _decode(body: Mapping[str, Any], spec: Mapping[str, plugin.Spec]) -> list[str]:
    problems: list[str] = []
    for name, value in body.items():
        kind = spec.get(name)
        if kind is None:
            problems.append(plugin.UNKNOWN_ARGUMENT.format(name=name))
        elif isinstance(kind, plugin.Block):
            blocks = value if isinstance(value, list) else [value]
            if not all(isinstance(block, dict) for block in blocks):
                problems.append(plugin.BLOCK_NOT_OBJECT)
                continue
            for block in blocks:
                problems.extend(_decode(block, kind.nested))
        else:
            detail = _type_problem(kind, value)
            if detail:
                problems.append(plugin.WRONG_TYPE.format(name=name, detail=detail))
    return problems


def decode_problems(source: Mapping[str, Any]) -> list[str]:
    """Unknown arguments, wrong nesting and values of the wrong type, as HCL reports them."""
    return _decode(source, plugin.SOURCE_SPEC)


def _blocks(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    return [item for item in value or [] if isinstance(item, dict)]


def _set(value: Any) -> bool:
    return value not in (None, "", [], {}, False)


def _iso_problems(iso: Mapping[str, Any], one_of: str, cd_pool: str) -> list[str]:
    problems = []
    kind = iso.get("type", "")
    if kind and not _is_expression(kind) and kind not in plugin.ISO_TYPES:
        problems.append(plugin.ISO_TYPE_INVALID)
    has_cd = _set(iso.get("cd_files")) or _set(iso.get("cd_content"))
    if has_cd and not iso.get("iso_storage_pool"):
        problems.append(cd_pool)
    options = sum(
        (
            _set(iso.get("iso_file")),
            _set(iso.get("iso_url")) or _set(iso.get("iso_urls")),
            has_cd,
        )
    )
    if options != 1:
        problems.append(one_of)
    return problems


def _disk_problems(source: Mapping[str, Any]) -> list[str]:
    problems = []
    for index, disk in enumerate(_blocks(source.get("disks"))):
        bus = disk.get("type") if disk.get("type") in plugin.DISK_TYPES else "scsi"
        if disk.get("io_thread") is True:
            if source.get("scsi_controller") != plugin.IO_THREAD_CONTROLLER:
                problems.append(plugin.IO_THREAD_NEEDS_CONTROLLER)
            elif bus not in ("scsi", "virtio"):
                problems.append(plugin.IO_THREAD_NEEDS_BUS)
        if disk.get("asyncio", "io_uring") not in plugin.ASYNC_IO:
            problems.append(plugin.ASYNC_IO_INVALID)
        if disk.get("ssd") is True and bus == "virtio":
            problems.append(plugin.SSD_ON_VIRTIO)
        if not disk.get("storage_pool"):
            problems.append(plugin.DISK_POOL_MISSING.format(index=index))
    return problems


def _name_problems(source: Mapping[str, Any]) -> list[str]:
    problems = []
    dns_name = re.compile(plugin.DNS_NAME)
    vm_name = source.get("vm_name")
    if vm_name and not _is_expression(vm_name) and not dns_name.match(str(vm_name)):
        problems.append(plugin.VM_NAME_INVALID)
    template_name = source.get("template_name")
    if template_name and not _is_expression(template_name) and not dns_name.match(str(template_name)):
        problems.append(plugin.TEMPLATE_NAME_INVALID)
    return problems


def prepare_problems(source: Mapping[str, Any]) -> list[str]:
    """What the plugin's Prepare rejects, in its order (common/config.go, then iso/config.go)."""
    problems = []
    vm_id = source.get("vm_id")
    if isinstance(vm_id, int) and vm_id != 0 and not plugin.VM_ID_MIN <= vm_id <= plugin.VM_ID_MAX:
        problems.append(plugin.VM_ID_RANGE)
    iso_file = re.compile(plugin.ISO_FILE)
    for index, iso in enumerate(_blocks(source.get("additional_iso_files"))):
        path = iso.get("iso_file")
        if path and not _is_expression(path) and not iso_file.match(str(path)):
            problems.append(plugin.ISO_FILE_INVALID.format(value=path))
        problems.extend(
            _iso_problems(iso, plugin.ADDITIONAL_ISO_ONE_OF.format(index=index), plugin.ADDITIONAL_ISO_CD_POOL)
        )
    problems.extend(_disk_problems(source))
    serials = source.get("serials") or []
    if len(serials) > plugin.SERIALS_MAX:
        problems.append(plugin.SERIALS_TOO_MANY.format(count=len(serials)))
    serial = re.compile(plugin.SERIAL)
    problems.extend(plugin.SERIAL_INVALID.format(value=s) for s in serials if not serial.match(str(s)))
    disk_type = source.get("cloud_init_disk_type", "")
    if source.get("cloud_init") is True and disk_type and disk_type not in plugin.CLOUD_INIT_DISK_TYPES:
        problems.append(plugin.CLOUD_INIT_DISK_TYPE_INVALID.format(value=disk_type))
    if not source.get("node"):
        problems.append(plugin.NODE_MISSING)
    problems.extend(_name_problems(source))
    for index, nic in enumerate(_blocks(source.get("network_adapters"))):
        if not nic.get("bridge"):
            problems.append(plugin.BRIDGE_MISSING.format(index=index))
    efi = (_blocks(source.get("efi_config")) or [{}])[0]
    if not efi.get("efi_storage_pool") and (efi.get("efi_type") or efi.get("pre_enrolled_keys")):
        problems.append(plugin.EFI_POOL_MISSING)
    tpm = (_blocks(source.get("tpm_config")) or [{}])[0]
    if tpm:
        if not tpm.get("tpm_storage_pool"):
            problems.append(plugin.TPM_POOL_MISSING)
        if tpm.get("tpm_version", "v2.0") not in plugin.TPM_VERSIONS:
            problems.append(plugin.TPM_VERSION_INVALID)
    rng0 = (_blocks(source.get("rng0")) or [{}])[0]
    if rng0 and rng0.get("source") not in plugin.RNG0_SOURCES:
        problems.append(plugin.RNG0_SOURCE_INVALID)
    boot_iso = (_blocks(source.get("boot_iso")) or [{}])[0]
    problems.extend(_iso_problems(boot_iso, plugin.BOOT_ISO_ONE_OF, plugin.BOOT_ISO_CD_POOL))
    return problems


def tag_problem(tags: Sequence[str]) -> str | None:
    """api-go's Tag validation of the plugin's tag list: the first problem, as api-go words it."""
    pattern = re.compile(plugin.TAG_PATTERN)
    for index, tag in enumerate(tags):
        if not tag:
            return plugin.TAG_EMPTY
        if len(tag) > plugin.TAG_MAX_LENGTH:
            return plugin.TAG_TOO_LONG
        if not pattern.match(tag):
            return plugin.TAG_INVALID
        if tag in tags[index + 1 :]:
            return plugin.TAG_DUPLICATE
    return None


def _normalized_cpu(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def create_problem(source: Mapping[str, Any]) -> str | None:
    """The error the plugin prints at "Creating VM" before any API call, or None (config_qemu.go Validate)."""
    cores = source.get("cores", 1)
    if isinstance(cores, int) and cores > plugin.CORES_MAX:
        return plugin.CREATE_FAILED.format(error=plugin.CORES_TOO_MANY)
    sockets = source.get("sockets", 1)
    if isinstance(sockets, int) and sockets > plugin.SOCKETS_MAX:
        return plugin.CREATE_FAILED.format(error=plugin.SOCKETS_TOO_MANY)
    cpu = source.get("cpu_type") or "kvm64"
    if _normalized_cpu(str(cpu)) not in {_normalized_cpu(known) for known in plugin.CPU_TYPES}:
        listing = ", ".join(sorted(plugin.CPU_TYPES))
        return plugin.CREATE_FAILED.format(error=plugin.CPU_TYPE_INVALID.format(types=listing))
    memory = source.get("memory", 512)
    if isinstance(memory, int) and memory > plugin.MEMORY_MAX_MIB:
        return plugin.CREATE_FAILED.format(error=plugin.MEMORY_TOO_MUCH)
    raw_tags = source.get("tags")
    if raw_tags and not _is_expression(raw_tags):
        problem = tag_problem(str(raw_tags).split(plugin.TAG_SEPARATOR))
        if problem:
            return plugin.CREATE_FAILED.format(error=problem)
    return None


def plugin_problems(source: Mapping[str, Any]) -> list[str]:
    """Everything the plugin would reject, in the order a build meets it."""
    problems = decode_problems(source) + prepare_problems(source)
    created = create_problem(source)
    return [*problems, created] if created else problems
