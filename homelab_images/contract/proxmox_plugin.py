"""What the pinned Packer plugin github.com/hashicorp/proxmox accepts, read from its source. Data only.

Every fact names where it was read. Unless a comment says otherwise:
  plugin  = hashicorp/packer-plugin-proxmox at tag v1.2.4 (commit 125377540780857e3b0b96f5645580ad2e50cc81)
  api-go  = Telmate/proxmox-api-go at commit b149708f750b75dbb4e332322d7cdba6fc4c0c38, the version
            plugin v1.2.4 pins in go.mod (v0.0.0-20241022204517-b149708f750b)
Both ``homelab_images.core.plugin_check`` (used by ``validate``) and the stand-in Packer in the
tests enforce these facts, so neither can accept a template the real plugin rejects. When
``build.packerPluginVersion`` moves, re-read the files named here (docs/verified-against.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PLUGIN_VERSION = "1.2.4"
PLUGIN_COMMIT = "125377540780857e3b0b96f5645580ad2e50cc81"
API_GO_COMMIT = "b149708f750b75dbb4e332322d7cdba6fc4c0c38"

# --- Schema: plugin builder/proxmox/iso/config.hcl2spec.go (FlatConfig.HCL2Spec) and
# builder/proxmox/common/config.hcl2spec.go (the nested Flat*Config specs). cty types by name.
STRING = "string"
NUMBER = "number"
BOOL = "bool"
LIST_OF_STRING = "list(string)"
LIST_OF_NUMBER = "list(number)"
MAP_OF_STRING = "map(string)"


@dataclass(frozen=True)
class Block:
    """An HCL block (hcldec.BlockSpec) or, when ``repeated``, a list of blocks (hcldec.BlockListSpec)."""

    nested: Mapping[str, str]
    repeated: bool


Spec = str | Block

ISOS_CONFIG: Mapping[str, str] = {
    "iso_checksum": STRING,
    "iso_url": STRING,
    "iso_urls": LIST_OF_STRING,
    "iso_target_path": STRING,
    "iso_target_extension": STRING,
    "device": STRING,
    "type": STRING,
    "index": STRING,
    "iso_file": STRING,
    "iso_storage_pool": STRING,
    "iso_download_pve": BOOL,
    "unmount": BOOL,
    "keep_cdrom_device": BOOL,
    "cd_files": LIST_OF_STRING,
    "cd_content": MAP_OF_STRING,
    "cd_label": STRING,
}
NIC_CONFIG: Mapping[str, str] = {
    "model": STRING,
    "packet_queues": NUMBER,
    "mac_address": STRING,
    "mtu": NUMBER,
    "bridge": STRING,
    "vlan_tag": STRING,
    "firewall": BOOL,
}
DISK_CONFIG: Mapping[str, str] = {
    "type": STRING,
    "storage_pool": STRING,
    "storage_pool_type": STRING,
    "disk_size": STRING,
    "cache_mode": STRING,
    "format": STRING,
    "io_thread": BOOL,
    "asyncio": STRING,
    "exclude_from_backup": BOOL,
    "discard": BOOL,
    "ssd": BOOL,
}
EFI_CONFIG: Mapping[str, str] = {
    "efi_storage_pool": STRING,
    "efi_format": STRING,
    "pre_enrolled_keys": BOOL,
    "efi_type": STRING,
}
PCI_DEVICE_CONFIG: Mapping[str, str] = {
    "host": STRING,
    "device_id": STRING,
    "legacy_igd": BOOL,
    "mapping": STRING,
    "pcie": BOOL,
    "mdev": STRING,
    "hide_rombar": BOOL,
    "romfile": STRING,
    "sub_device_id": STRING,
    "sub_vendor_id": STRING,
    "vendor_id": STRING,
    "x_vga": BOOL,
}
RNG0_CONFIG: Mapping[str, str] = {"source": STRING, "max_bytes": NUMBER, "period": NUMBER}
TPM_CONFIG: Mapping[str, str] = {"tpm_storage_pool": STRING, "tpm_version": STRING}
VGA_CONFIG: Mapping[str, str] = {"type": STRING, "memory": NUMBER}

# Every argument and block of a proxmox-iso source, in the order of the generated spec.
SOURCE_SPEC: Mapping[str, Spec] = {
    "packer_build_name": STRING,
    "packer_builder_type": STRING,
    "packer_core_version": STRING,
    "packer_debug": BOOL,
    "packer_force": BOOL,
    "packer_on_error": STRING,
    "packer_user_variables": MAP_OF_STRING,
    "packer_sensitive_variables": LIST_OF_STRING,
    "http_directory": STRING,
    "http_content": MAP_OF_STRING,
    "http_port_min": NUMBER,
    "http_port_max": NUMBER,
    "http_bind_address": STRING,
    "http_interface": STRING,
    "http_network_protocol": STRING,
    "boot_keygroup_interval": STRING,
    "boot_wait": STRING,
    "boot_command": LIST_OF_STRING,
    "boot_key_interval": STRING,
    "communicator": STRING,
    "pause_before_connecting": STRING,
    "ssh_host": STRING,
    "ssh_port": NUMBER,
    "ssh_username": STRING,
    "ssh_password": STRING,
    "ssh_keypair_name": STRING,
    "temporary_key_pair_name": STRING,
    "temporary_key_pair_type": STRING,
    "temporary_key_pair_bits": NUMBER,
    "ssh_ciphers": LIST_OF_STRING,
    "ssh_clear_authorized_keys": BOOL,
    "ssh_key_exchange_algorithms": LIST_OF_STRING,
    "ssh_private_key_file": STRING,
    "ssh_certificate_file": STRING,
    "ssh_pty": BOOL,
    "ssh_timeout": STRING,
    "ssh_wait_timeout": STRING,
    "ssh_agent_auth": BOOL,
    "ssh_disable_agent_forwarding": BOOL,
    "ssh_handshake_attempts": NUMBER,
    "ssh_bastion_host": STRING,
    "ssh_bastion_port": NUMBER,
    "ssh_bastion_agent_auth": BOOL,
    "ssh_bastion_username": STRING,
    "ssh_bastion_password": STRING,
    "ssh_bastion_interactive": BOOL,
    "ssh_bastion_private_key_file": STRING,
    "ssh_bastion_certificate_file": STRING,
    "ssh_file_transfer_method": STRING,
    "ssh_proxy_host": STRING,
    "ssh_proxy_port": NUMBER,
    "ssh_proxy_username": STRING,
    "ssh_proxy_password": STRING,
    "ssh_keep_alive_interval": STRING,
    "ssh_read_write_timeout": STRING,
    "ssh_remote_tunnels": LIST_OF_STRING,
    "ssh_local_tunnels": LIST_OF_STRING,
    "ssh_public_key": LIST_OF_NUMBER,
    "ssh_private_key": LIST_OF_NUMBER,
    "winrm_username": STRING,
    "winrm_password": STRING,
    "winrm_host": STRING,
    "winrm_no_proxy": BOOL,
    "winrm_port": NUMBER,
    "winrm_timeout": STRING,
    "winrm_use_ssl": BOOL,
    "winrm_insecure": BOOL,
    "winrm_use_ntlm": BOOL,
    "proxmox_url": STRING,
    "insecure_skip_tls_verify": BOOL,
    "username": STRING,
    "password": STRING,
    "token": STRING,
    "node": STRING,
    "pool": STRING,
    "task_timeout": STRING,
    "vm_name": STRING,
    "vm_id": NUMBER,
    "tags": STRING,
    "boot": STRING,
    "memory": NUMBER,
    "ballooning_minimum": NUMBER,
    "cores": NUMBER,
    "cpu_type": STRING,
    "sockets": NUMBER,
    "numa": BOOL,
    "os": STRING,
    "bios": STRING,
    "efi_config": Block(EFI_CONFIG, repeated=False),
    "efidisk": STRING,
    "machine": STRING,
    "rng0": Block(RNG0_CONFIG, repeated=False),
    "tpm_config": Block(TPM_CONFIG, repeated=False),
    "vga": Block(VGA_CONFIG, repeated=False),
    "network_adapters": Block(NIC_CONFIG, repeated=True),
    "disks": Block(DISK_CONFIG, repeated=True),
    "pci_devices": Block(PCI_DEVICE_CONFIG, repeated=True),
    "serials": LIST_OF_STRING,
    "qemu_agent": BOOL,
    "scsi_controller": STRING,
    "onboot": BOOL,
    "disable_kvm": BOOL,
    "template_name": STRING,
    "template_description": STRING,
    "skip_convert_to_template": BOOL,
    "cloud_init": BOOL,
    "cloud_init_storage_pool": STRING,
    "cloud_init_disk_type": STRING,
    "cloud_init_disable_upgrade_packages": BOOL,
    "additional_iso_files": Block(ISOS_CONFIG, repeated=True),
    "vm_interface": STRING,
    "qemu_additional_args": STRING,
    "iso_checksum": STRING,
    "iso_url": STRING,
    "iso_urls": LIST_OF_STRING,
    "iso_target_path": STRING,
    "iso_target_extension": STRING,
    "iso_file": STRING,
    "iso_storage_pool": STRING,
    "iso_download_pve": BOOL,
    "unmount_iso": BOOL,
    "boot_iso": Block(ISOS_CONFIG, repeated=False),
}

# Accepted with a deprecation warning (plugin builder/proxmox/iso/config.go Prepare and
# common/config.go Prepare); this program writes their replacements (boot_iso, efi_config).
DEPRECATED_OPTIONS = frozenset(
    {
        "iso_file",
        "iso_url",
        "iso_urls",
        "iso_checksum",
        "iso_storage_pool",
        "iso_download_pve",
        "unmount_iso",
        "iso_target_path",
        "iso_target_extension",
        "efidisk",
    }
)

# --- Messages of Packer core's HCL decoding of the source block against that spec.
# hashicorp/hcl v2.24.0 (the plugin's go.mod; commit 6b5068090eef06b1f127f61529db5ba0be7ed343):
# json/structure.go and hcldec/spec.go. Conversion details: zclconf/go-cty v1.13.3
# (commit 2893b67936c370bb72a5687a232e347519cb784f; the plugin replaces it with the nywilken
# fork of the same version) cty/convert/conversion_primitive.go and mismatch_msg.go.
UNKNOWN_ARGUMENT = 'Extraneous JSON object property: No argument or block type is named "{name}".'
WRONG_TYPE = 'Incorrect attribute value type: Inappropriate value for attribute "{name}": {detail}.'
NOT_A_NUMBER = "a number is required"
NOT_A_BOOL = "a bool is required"
TYPE_REQUIRED = "{type} required"
BLOCK_NOT_OBJECT = (
    "Incorrect JSON value type: Either a JSON object or JSON array of objects is required here, "
    "to define arguments and child blocks."
)

# --- Prepare: plugin builder/proxmox/common/config.go and iso/config.go. Packer reports them
# together before it touches the API, as "N error(s) occurred:" followed by "* <message>" lines.
VM_ID_MIN = 100
VM_ID_MAX = 999_999_999
VM_ID_RANGE = "vm_id must be in range 100-999999999"
# vm_name and template_name must match this DNS-name pattern.
DNS_NAME = r"^(?:(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?)\.)*(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?))$"
VM_NAME_INVALID = "vm_name must be a valid DNS name"
TEMPLATE_NAME_INVALID = "template_name must be a valid DNS name"
# Additional ISOs given as iso_file (the boot ISO's iso_file is not checked by the plugin).
ISO_FILE = r"^.+:iso\/.+$"
ISO_FILE_INVALID = 'iso_path should match pattern "<storage>:iso/<ISO filename>". Provided value was "{value}"'
ISO_TYPES = ("ide", "sata", "scsi")
ISO_TYPE_INVALID = "ISOs must be of type ide, sata or scsi. VirtIO not supported by Proxmox for ISO devices"
BOOT_ISO_ONE_OF = "one of iso_file, iso_url, or a combination of cd_files and cd_content must be specified for boot_iso"
ADDITIONAL_ISO_ONE_OF = (
    "one of iso_file, iso_url, or a combination of cd_files and cd_content must be specified for additional_iso {index}"
)
BOOT_ISO_CD_POOL = "boot_iso storage_pool not set for storage of generated ISO from cd_files or cd_content"
ADDITIONAL_ISO_CD_POOL = "storage_pool not set for storage of generated ISO from cd_files or cd_content"
DISK_TYPES = ("ide", "sata", "scsi", "virtio")
IO_THREAD_CONTROLLER = "virtio-scsi-single"
IO_THREAD_NEEDS_CONTROLLER = "io thread option requires virtio-scsi-single controller"
IO_THREAD_NEEDS_BUS = "io thread option requires scsi or a virtio disk"
ASYNC_IO = ("native", "threads", "io_uring")
ASYNC_IO_INVALID = "AsyncIO must be native, threads or io_uring"
SSD_ON_VIRTIO = "SSD emulation is not supported on virtio disks"
DISK_POOL_MISSING = "disks[{index}].storage_pool must be specified"
SERIALS_MAX = 4
SERIALS_TOO_MANY = "too many serials: {count} serials defined, but proxmox accepts 4 elements maximum"
SERIAL = r"^(/dev/.+|socket)$"
SERIAL_INVALID = 'serials must respond to pattern "/dev/.+" or be "socket". It was "{value}"'
CLOUD_INIT_DISK_TYPES = ("ide", "scsi", "sata")
CLOUD_INIT_DISK_TYPE_INVALID = (
    "invalid value for `cloud_init_disk_type` \"{value}\": only one of 'ide', 'scsi', 'sata' is valid"
)
BRIDGE_MISSING = "network_adapters[{index}].bridge must be specified"
EFI_POOL_MISSING = "efi_storage_pool not set for efi_config"
RNG0_SOURCES = ("/dev/urandom", "/dev/random", "/dev/hwrng")
RNG0_SOURCE_INVALID = 'source must be one of "/dev/urandom", "/dev/random", "/dev/hwrng"'
TPM_VERSIONS = ("v1.2", "v2.0")
TPM_VERSION_INVALID = 'TPM Version must be one of "v1.2", "v2.0"'
TPM_POOL_MISSING = "tpm_storage_pool not set for tpm_config"
NODE_MISSING = "node must be specified"

# --- Creating the VM: plugin builder/proxmox/common/step_start_vm.go passes the source to
# api-go's ConfigQemu.Create, which validates before any API call (proxmox/config_qemu.go
# Validate) and prefixes its error with "Error creating VM: ".
CREATE_FAILED = "Error creating VM: {error}"
# step_start_vm.go generateTags: the tags option is split on ';' into one api-go Tag each.
TAG_SEPARATOR = ";"
# api-go proxmox/type_tag.go. Proxmox itself also allows '+' and '.'; the plugin does not.
TAG_PATTERN = r"^[a-zA-Z0-9_][a-zA-Z0-9_-]*$"
TAG_MAX_LENGTH = 124
TAG_INVALID = (
    "tag may not start with - and may only include the following characters: "
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
)
TAG_DUPLICATE = "duplicate tag found"
TAG_TOO_LONG = "tag may only be 124 characters"
TAG_EMPTY = "tag may not be empty"
# api-go proxmox/config_qemu_cpu.go: the CpuType constants, accepted on PVE 8 and later (cpuBase + cpuV8).
# The plugin defaults cpu_type to kvm64 (common/config.go). Matching ignores case, '-' and '_'.
CPU_TYPES = frozenset(
    {
        "486", "athlon", "Broadwell", "Broadwell-IBRS", "Broadwell-noTSX", "Broadwell-noTSX-IBRS",
        "Cascadelake-Server", "Cascadelake-Server-noTSX", "Cascadelake-Server-V2", "Cascadelake-Server-V4",
        "Cascadelake-Server-V5", "Conroe", "Cooperlake", "Cooperlake-V2", "core2duo", "coreduo", "EPYC",
        "EPYC-IBPB", "EPYC-Milan", "EPYC-Rome", "EPYC-Rome-v2", "EPYC-v3", "host", "Haswell", "Haswell-IBRS",
        "Haswell-noTSX", "Haswell-noTSX-IBRS", "Icelake-Client", "Icelake-Client-noTSX", "Icelake-Server",
        "Icelake-Server-noTSX", "Icelake-Server-v3", "Icelake-Server-v4", "Icelake-Server-v5",
        "Icelake-Server-v6", "IvyBridge", "IvyBridge-IBRS", "KnightsMill", "kvm32", "kvm64", "max", "Nahalem",
        "Nahalem-IRBS", "Opteron_G1", "Opteron_G2", "Opteron_G3", "Opteron_G4", "Opteron_G5", "Penrym",
        "pentium", "pentium2", "pentium3", "phenom", "qemu32", "qemu64", "SandyBridge", "SandyBridge-IBRS",
        "SapphireRapids", "Skylake-Client", "Skylake-Client-IBRS", "Skylake-Client-noTSX-IBRS",
        "Skylake-Client-v4", "Skylake-Server", "Skylake-Server-IBRS", "Skylake-Server-noTSX-IBRS",
        "Skylake-Server-v4", "Skylake-Server-v5", "Westmere", "Westmere-IBRS", "x86-64-v2", "x86-64-v2-AES",
        "x86-64-v3", "x86-64-v4",
    }
)  # fmt: skip
CPU_TYPE_INVALID = "cpuType can only be one of the following values: {types}"
CORES_MIN, CORES_MAX = 1, 128
CORES_TOO_MANY = "maximum value of QemuCpuCores is 128"
SOCKETS_MIN, SOCKETS_MAX = 1, 4
SOCKETS_TOO_MANY = "maximum value of QemuCpuSockets is 4"
MEMORY_MAX_MIB = 4_178_944
MEMORY_TOO_MUCH = "memory capacity has a maximum of 4178944"

# --- Privileges the plugin's cleanups need. A cleanup that fails sets the build's error, so
# Packer exits non-zero even though the template was finished (plugin common/builder.go Run
# returns state["error"] after the steps' cleanups ran).
# common/step_upload_iso.go Cleanup deletes the ISO it generated from cd_files/cd_content
# (after a failed build, and after a successful one when unmount is true) and reports
# "delete volume failed: <error>". Deleting a non-backup volume needs Datastore.Allocate on
# its storage: proxmox/pve-storage src/PVE/API2/Storage/Content.pm, method delete
# (commit 025067598cc30fe33b08ff85f61749e1cdc175ec). Uploading it needs
# Datastore.AllocateTemplate (same repository, src/PVE/API2/Storage/Status.pm, upload,
# commit a81ee831271f1f256bccf264ff42649346da6d1a).
CD_UPLOAD_PRIVILEGE = "Datastore.AllocateTemplate"
CD_CLEANUP_PRIVILEGE = "Datastore.Allocate"
CD_CLEANUP_FAILED = "delete volume failed: {error}"
