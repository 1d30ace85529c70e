"""Would the pinned qemu plugin accept this qemu source? Its decoder's and Config.Prepare's rules.

The rules are the facts recorded in ``homelab_images.contract.qemu_plugin``, each citing the
plugin or SDK file it comes from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from homelab_images.contract.qemu_plugin import (
    ACCELERATORS,
    DISK_CACHES,
    DISK_DETECT_ZEROES,
    DISK_DISCARDS,
    DISK_INTERFACES,
    DISK_SIZE,
    DURATION,
    DURATION_OPTIONS,
    FORMATS,
    QEMU_IMG_ARGS_OPTIONS,
    SOURCE_OPTIONS,
)

_VARIABLE = re.compile(r"^\$\{var\.[A-Za-z_][A-Za-z0-9_]*\}$")


def _is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _has_type(value: Any, hcl_type: str) -> bool:
    """Stricter than HCL, which would convert a number to a string: the renderer never needs that."""
    if isinstance(value, str) and _VARIABLE.fullmatch(value):
        return True
    if hcl_type == "string":
        return isinstance(value, str)
    if hcl_type == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hcl_type == "bool":
        return isinstance(value, bool)
    if hcl_type == "list(string)":
        return _is_string_list(value)
    if hcl_type == "list(number)":
        return isinstance(value, list) and all(_has_type(item, "number") for item in value)
    if hcl_type == "list(list(string))":
        return isinstance(value, list) and all(_is_string_list(item) for item in value)
    if hcl_type == "map(string)":
        return isinstance(value, dict) and all(isinstance(item, str) for item in value.values())
    if hcl_type == "block":
        return (
            isinstance(value, dict)
            and set(value) <= set(QEMU_IMG_ARGS_OPTIONS)
            and all(_is_string_list(item) for item in value.values())
        )
    raise ValueError(f"unknown HCL type {hcl_type}")


def _one_of(source: Mapping[str, Any], option: str, allowed: frozenset[str]) -> list[str]:
    value = source.get(option)
    if value is None or value in allowed:
        return []
    return [f"{option}: {value!r} is not one of {', '.join(sorted(allowed))}"]


def source_problems(source: Mapping[str, Any]) -> list[str]:
    """What the plugin's decoder and Config.Prepare would reject in one qemu source, one line each."""
    problems = [f"unknown option {name}" for name in sorted(set(source) - set(SOURCE_OPTIONS))]
    for name, value in source.items():
        hcl_type = SOURCE_OPTIONS.get(name)
        if hcl_type is not None and not _has_type(value, hcl_type):
            problems.append(f"{name}: expected {hcl_type}, got {type(value).__name__}")
    if problems:
        return problems
    problems += _one_of(source, "accelerator", ACCELERATORS)
    problems += _one_of(source, "disk_interface", DISK_INTERFACES)
    problems += _one_of(source, "disk_cache", DISK_CACHES)
    problems += _one_of(source, "disk_discard", DISK_DISCARDS)
    problems += _one_of(source, "disk_detect_zeroes", DISK_DETECT_ZEROES)
    problems += _one_of(source, "format", FORMATS)
    disk_size = source.get("disk_size")
    if disk_size not in (None, "", "0") and not DISK_SIZE.fullmatch(str(disk_size).lower()):
        problems.append(f"disk_size: {disk_size!r} is not a size such as 40960M or 32G")
    # The plugin silently turns compression off for raw images; asking for both is a mistake.
    if source.get("disk_compression") and source.get("format", "qcow2") != "qcow2":
        problems.append("disk_compression: only qcow2 images are compressed")
    for name in DURATION_OPTIONS:
        value = source.get(name)
        if isinstance(value, str) and not _VARIABLE.fullmatch(value) and not DURATION.fullmatch(value):
            problems.append(f"{name}: {value!r} is not a Go duration such as 10s or 5m")
    # packer-plugin-sdk multistep/commonsteps: ISOConfig.Prepare, HTTPConfig.Prepare.
    if ("iso_url" in source) == ("iso_urls" in source):
        problems.append("exactly one of iso_url or iso_urls must be set")
    if not source.get("iso_checksum"):
        problems.append("iso_checksum: a checksum must be specified")
    if source.get("http_content") and source.get("http_directory"):
        problems.append("http_content cannot be used together with http_directory")
    if source.get("boot_command") and source.get("boot_steps"):
        problems.append("boot_command and boot_steps cannot be used together")
    if source.get("use_backing_file") and not (source.get("disk_image") and source.get("format", "qcow2") == "qcow2"):
        problems.append("use_backing_file needs disk_image and format qcow2")
    if source.get("skip_resize_disk") and not source.get("disk_image"):
        problems.append("skip_resize_disk needs disk_image")
    for name in ("cpus", "sockets", "cores", "threads"):
        if isinstance(source.get(name), int) and source[name] < 0:
            problems.append(f"{name}: must be a positive number")
    return problems
