"""Facts about Packer's qemu builder (github.com/hashicorp/qemu) at the pinned version.

Read from hashicorp/packer-plugin-qemu at tag v1.1.4 (commit
7db0aae19166404c9ba02771c1d0572d98159203) and the packer-plugin-sdk it builds
with, v0.6.1 (commit d037325f70ad5d1696c7dc78546bf26904b404ad). The renderer's
validation and the tests' stand-in for the builder both check templates against
these facts, so a template the real plugin rejects fails here first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PLUGIN_SOURCE = "github.com/hashicorp/qemu"
PLUGIN_VERSION = "1.1.4"
SOURCE_TYPE = "qemu"

# Every option of the source and its HCL type: builder/qemu/config.hcl2spec.go,
# FlatConfig.HCL2Spec(). The packer_* options Packer core sets itself are left out.
# "block" is qemu_img_args, an object of convert/create/resize string lists.
SOURCE_OPTIONS: Mapping[str, str] = {
    "http_directory": "string",
    "http_content": "map(string)",
    "http_port_min": "number",
    "http_port_max": "number",
    "http_bind_address": "string",
    "http_interface": "string",
    "http_network_protocol": "string",
    "iso_checksum": "string",
    "iso_url": "string",
    "iso_urls": "list(string)",
    "iso_target_path": "string",
    "iso_target_extension": "string",
    "boot_keygroup_interval": "string",
    "boot_wait": "string",
    "boot_command": "list(string)",
    "disable_vnc": "bool",
    "boot_key_interval": "string",
    "shutdown_command": "string",
    "shutdown_timeout": "string",
    "communicator": "string",
    "pause_before_connecting": "string",
    "ssh_host": "string",
    "ssh_port": "number",
    "ssh_username": "string",
    "ssh_password": "string",
    "ssh_keypair_name": "string",
    "temporary_key_pair_name": "string",
    "temporary_key_pair_type": "string",
    "temporary_key_pair_bits": "number",
    "ssh_ciphers": "list(string)",
    "ssh_clear_authorized_keys": "bool",
    "ssh_key_exchange_algorithms": "list(string)",
    "ssh_private_key_file": "string",
    "ssh_certificate_file": "string",
    "ssh_pty": "bool",
    "ssh_timeout": "string",
    "ssh_wait_timeout": "string",
    "ssh_agent_auth": "bool",
    "ssh_disable_agent_forwarding": "bool",
    "ssh_handshake_attempts": "number",
    "ssh_bastion_host": "string",
    "ssh_bastion_port": "number",
    "ssh_bastion_agent_auth": "bool",
    "ssh_bastion_username": "string",
    "ssh_bastion_password": "string",
    "ssh_bastion_interactive": "bool",
    "ssh_bastion_private_key_file": "string",
    "ssh_bastion_certificate_file": "string",
    "ssh_file_transfer_method": "string",
    "ssh_proxy_host": "string",
    "ssh_proxy_port": "number",
    "ssh_proxy_username": "string",
    "ssh_proxy_password": "string",
    "ssh_keep_alive_interval": "string",
    "ssh_read_write_timeout": "string",
    "ssh_remote_tunnels": "list(string)",
    "ssh_local_tunnels": "list(string)",
    "ssh_public_key": "list(number)",
    "ssh_private_key": "list(number)",
    "winrm_username": "string",
    "winrm_password": "string",
    "winrm_host": "string",
    "winrm_no_proxy": "bool",
    "winrm_port": "number",
    "winrm_timeout": "string",
    "winrm_use_ssl": "bool",
    "winrm_insecure": "bool",
    "winrm_use_ntlm": "bool",
    "host_port_min": "number",
    "host_port_max": "number",
    "skip_nat_mapping": "bool",
    "ssh_host_port_min": "number",
    "ssh_host_port_max": "number",
    "floppy_files": "list(string)",
    "floppy_dirs": "list(string)",
    "floppy_content": "map(string)",
    "floppy_label": "string",
    "cd_files": "list(string)",
    "cd_content": "map(string)",
    "cd_label": "string",
    "cpus": "number",
    "sockets": "number",
    "cores": "number",
    "threads": "number",
    "efi_boot": "bool",
    "efi_firmware_code": "string",
    "efi_firmware_vars": "string",
    "efi_drop_efivars": "bool",
    "iso_skip_cache": "bool",
    "accelerator": "string",
    "disk_additional_size": "list(string)",
    "firmware": "string",
    "use_pflash": "bool",
    "disk_interface": "string",
    "disk_size": "string",
    "skip_resize_disk": "bool",
    "disk_cache": "string",
    "disk_discard": "string",
    "disk_detect_zeroes": "string",
    "skip_compaction": "bool",
    "disk_compression": "bool",
    "format": "string",
    "headless": "bool",
    "disk_image": "bool",
    "use_backing_file": "bool",
    "machine_type": "string",
    "memory": "number",
    "net_device": "string",
    "net_bridge": "string",
    "output_directory": "string",
    "qemuargs": "list(list(string))",
    "qemu_img_args": "block",
    "qemu_binary": "string",
    "qmp_enable": "bool",
    "qmp_socket_path": "string",
    "use_default_display": "bool",
    "vga": "string",
    "display": "string",
    "vnc_bind_address": "string",
    "vnc_use_password": "bool",
    "vnc_password": "string",
    "vnc_port_min": "number",
    "vnc_port_max": "number",
    "vm_name": "string",
    "cdrom_interface": "string",
    "vtpm": "bool",
    "use_tpm1": "bool",
    "tpm_device_type": "string",
    "boot_steps": "list(list(string))",
    "cpu_model": "string",
    "run_once": "bool",
}
QEMU_IMG_ARGS_OPTIONS: Mapping[str, str] = {
    "convert": "list(string)",
    "create": "list(string)",
    "resize": "list(string)",
}

# builder/qemu/config.go: accels, diskInterface, diskCache, diskDiscard, diskDZeroes,
# and Config.Prepare (format, disk_size).
ACCELERATORS = frozenset({"none", "kvm", "tcg", "xen", "hax", "hvf", "whpx"})
DISK_INTERFACES = frozenset({"ide", "sata", "scsi", "virtio", "virtio-scsi"})
DISK_CACHES = frozenset({"writethrough", "writeback", "none", "unsafe", "directsync"})
DISK_DISCARDS = frozenset({"unmap", "ignore"})
DISK_DETECT_ZEROES = frozenset({"unmap", "on", "off"})
FORMATS = frozenset({"qcow2", "raw"})
# Matched against the lower-cased value; a bare number means MiB.
DISK_SIZE = re.compile(r"^[\d]+(b|k|m|g|t){0,1}$")
# Go's time.ParseDuration, which the plugin and the SDK use for every *_wait, *_interval and *_timeout.
DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")
DURATION_OPTIONS = ("boot_wait", "boot_key_interval", "boot_keygroup_interval", "shutdown_timeout", "ssh_timeout")

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
