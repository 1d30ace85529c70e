"""What Packer's qemu builder (github.com/hashicorp/qemu) accepts at the pinned version. Data only.

Read from hashicorp/packer-plugin-qemu at tag v1.1.4 (commit
7db0aae19166404c9ba02771c1d0572d98159203) and the packer-plugin-sdk it builds
with, v0.6.1 (commit d037325f70ad5d1696c7dc78546bf26904b404ad). The renderer's
checks (homelab_images.core.qemu_plugin_check, used by ``validate``) and the
tests' stand-in for the builder both enforce these facts, so a template the real
plugin rejects fails here first. When PLUGIN_VERSION moves, re-read the files named here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

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
