"""The stack configuration, validated once into frozen models.

Both entry points feed this module the same raw mapping of full config keys
(``proxmoxve:endpoint``, ``homelab-images:images`` ...): the Pulumi program from
its runtime config, the offline CLI from ``Pulumi.<stack>.yaml``. Every problem is
reported with the dotted key path a user would edit and what was expected.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails

from homelab_images.contract.endpoint import https_url_parts
from homelab_images.contract.stack_keys import ENDPOINT_KEY, INSECURE_KEY, OWNER_KEY, PROJECT, PROVIDER, TOKEN_KEY
from homelab_images.core.unknown_keys import unknown_key_problem

# Proxmox accepts VM IDs 100..999999999 (pve-vmid format).
MIN_VMID = 100
MAX_VMID = 999_999_999

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?$"
)
SHA256 = re.compile(r"^[0-9a-f]{64}$")
K3S_RELEASE = re.compile(r"^v1\.\d+\.\d+\+k3s\d+$")
# Image names end up in VM names (DNS labels) and in Proxmox tags.
IMAGE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
# Proxmox storage IDs and node names.
PVE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9._-]*$")
BRIDGE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,14}$")
RPM_NAME = re.compile(r"^@?\^?[A-Za-z0-9][A-Za-z0-9._+*-]*$")
PERIOD = re.compile(r"^([1-9]\d{0,3})([dw])$")
LANG = re.compile(r"^[a-z]{2,3}_[A-Z]{2}\.UTF-8$")
KEYMAP = re.compile(r"^[a-z]{2}(?:-[a-z0-9]+)?$")
TIMEZONE = re.compile(r"^(?:UTC|[A-Z][A-Za-z_]+(?:/[A-Za-z0-9_+-]+){1,2})$")


def _matching(pattern: re.Pattern[str], expected: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"expected {expected}, got {value!r}")
        return value

    return AfterValidator(check)


def _https_url(value: str) -> str:
    https_url_parts(value)
    return value


# AlmaLinux serves the current minor of each major at repo.almalinux.org/almalinux/9.N; when 9.N+1
# ships, 9.N moves to vault.almalinux.org/9.N, without the almalinux/ segment.
ALMALINUX_REPO_HOST = "repo.almalinux.org"
ALMALINUX_VAULT_HOST = "vault.almalinux.org"
ALMALINUX_MINOR = re.compile(r"/9\.(\d+)(?:/|$)")


def _almalinux_layout(value: str) -> str:
    """The two AlmaLinux hosts differ in one path segment; a URL of one with the other's layout is a 404."""
    parts = urlsplit(value)
    if parts.hostname == ALMALINUX_VAULT_HOST and parts.path.startswith("/almalinux/"):
        fixed = value.replace(f"{ALMALINUX_VAULT_HOST}/almalinux/", f"{ALMALINUX_VAULT_HOST}/", 1)
        raise ValueError(f"the AlmaLinux vault has no almalinux/ segment: use {fixed!r}, got {value!r}")
    if parts.hostname == ALMALINUX_REPO_HOST and not parts.path.startswith("/almalinux/"):
        raise ValueError(
            f"{ALMALINUX_REPO_HOST} serves releases under /almalinux/ "
            f"(https://{ALMALINUX_REPO_HOST}/almalinux/9.N/...), got {value!r}"
        )
    return value


def almalinux_minor(url: str) -> int | None:
    """N of an AlmaLinux 9.N release URL, if the URL names one."""
    match = ALMALINUX_MINOR.search(urlsplit(url).path)
    return int(match.group(1)) if match else None


def _release_mirror(value: str) -> str:
    """The release directory of a mirror: ``…/almalinux/9.8``; the kickstart appends BaseOS/AppStream."""
    value = _almalinux_layout(_https_url(value).rstrip("/"))
    if re.search(r"/(BaseOS|AppStream)(/|$)", value):
        raise ValueError(
            "expected the release directory (e.g. https://repo.almalinux.org/almalinux/9.8, or "
            f"https://vault.almalinux.org/9.7 for an older minor), not a repository: {value!r}"
        )
    return value


def _iso_url(value: str) -> str:
    value = _https_url(value)
    # A URL that names no .iso file gets that message instead (IsoSource).
    return _almalinux_layout(value) if urlsplit(value).path.endswith(".iso") else value


def _http_bind_address(value: str) -> str:
    """An address the build VM can reach Packer's HTTP server on: one IPv4 address of this machine."""
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"expected an IPv4 address of the machine running Packer, got {value!r}") from None
    if address.is_loopback or address.is_unspecified:
        raise ValueError(f"expected an address the build VM can reach, not {value!r}")
    return value


def _bool_from_cli_string(value: Any) -> Any:
    # `pulumi config set proxmoxve:insecure true` stores the string "true".
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


SemVer = Annotated[str, _matching(SEMVER, 'a semantic version such as "1.4.0" (quoted)')]


def _lowercase(value: Any) -> Any:
    # Windows' Get-FileHash prints uppercase; fingerprints and the runner compare lowercase digests.
    return value.lower() if isinstance(value, str) else value


Sha256 = Annotated[str, BeforeValidator(_lowercase), _matching(SHA256, "64 hex characters (a sha256 digest, quoted)")]
K3sRelease = Annotated[str, _matching(K3S_RELEASE, 'a k3s release tag such as "v1.33.5+k3s1"')]
ImageName = Annotated[
    str,
    _matching(
        IMAGE_NAME,
        "lowercase letters, digits and '-', 1-40 characters, no leading/trailing '-'",
    ),
]
PveId = Annotated[str, _matching(PVE_ID, "a Proxmox identifier (letters, digits, '.', '_', '-')")]
BridgeName = Annotated[str, _matching(BRIDGE, "a Linux bridge name such as vmbr0")]
RpmName = Annotated[str, _matching(RPM_NAME, "an RPM package or @group name")]
HttpsUrl = Annotated[str, AfterValidator(_https_url)]
MirrorUrl = Annotated[str, AfterValidator(_release_mirror)]
IsoUrl = Annotated[str, AfterValidator(_iso_url)]
HttpBindAddress = Annotated[str, AfterValidator(_http_bind_address)]
Period = Annotated[str, _matching(PERIOD, 'a period in days or weeks such as "30d" or "2w"')]


def _not_expanded(value: str) -> str:
    """Nothing between the config and the file expands ~ or $VARIABLES: they would become directory names."""
    if value.startswith("~") or "$" in value:
        raise ValueError(f"~ and $VARIABLES are not expanded: write the full path, got {value!r}")
    return value


LocalPath = Annotated[str, AfterValidator(_not_expanded)]


class Model(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        alias_generator=to_camel,
        populate_by_name=False,
    )


class VmIdRange(Model):
    """VM IDs the build may use; new templates take free IDs from this range."""

    first: int = Field(ge=MIN_VMID, le=MAX_VMID, description="Lowest VM ID to use.")
    last: int = Field(ge=MIN_VMID, le=MAX_VMID, description="Highest VM ID to use.")

    @model_validator(mode="after")
    def _ordered(self) -> VmIdRange:
        if self.last < self.first:
            raise ValueError(f"last ({self.last}) must not be below first ({self.first})")
        # How many IDs are enough depends on the images with a template: the budget check in _cross_checks.
        return self


class ProxmoxSettings(Model):
    """Where on the cluster images are built and stored."""

    node: PveId = Field(description="Node that runs the builds and holds the templates.")
    vm_storage: PveId = Field(description="Storage pool for the template's disks (content type images).")
    iso_storage: PveId = Field(description="Storage for ISO images (content type iso).")
    cloud_init_storage: PveId | None = Field(
        default=None,
        description="Storage for the cloud-init drive; defaults to vmStorage.",
    )
    bridge: BridgeName = Field(description="Bridge the build VM's network adapter attaches to.")
    vm_id_range: VmIdRange = Field(description="Range of VM IDs owned by this program.")
    ca_bundle: LocalPath | None = Field(
        default=None,
        description="PEM file of the CA that signed the Proxmox certificate.",
    )
    shared_storage: bool = Field(
        default=False,
        description="vmStorage is shared by all nodes (Ceph, NFS): one template can be cloned on every node.",
    )
    replica_nodes: list[PveId] = Field(
        default_factory=list,
        description="Without shared storage: also build each image on these nodes (one template per node).",
    )

    @property
    def cloud_init_pool(self) -> str:
        return self.cloud_init_storage or self.vm_storage

    @property
    def template_nodes(self) -> list[str]:
        """Every node that holds a template of each image, the build node first."""
        return [self.node, *self.replica_nodes]


def _absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"expected an absolute path, got {value!r}")
    return value


def _artifact_directory(value: str) -> str:
    """A directory of the build's own: gc removes what it finds there, and the runner resolves it as written."""
    if "\x00" in value or value != value.strip():
        raise ValueError(f"expected a directory path, got {value!r}")
    _not_expanded(value)
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"expected a path without '..' components (a directory of its own), got {value!r}")
    if not parts:
        where = "the filesystem root" if value.startswith("/") else "the project directory itself"
        raise ValueError(f"expected a directory of its own for the qcow2 files, not {where}: got {value!r}")
    return value


AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]
ArtifactDirectory = Annotated[str, AfterValidator(_artifact_directory)]

# Where an image is built: proxmox-iso installs on the Proxmox node and leaves a
# template there; qemu installs on the machine that runs the build and leaves a
# qcow2 file.
Target = Literal["proxmox-iso", "qemu"]
# The target that makes the Proxmox template; an image without it declares nothing on Proxmox.
TEMPLATE_TARGET: Target = "proxmox-iso"


def _targets_once(targets: list[Target]) -> list[Target]:
    if len(set(targets)) != len(targets):
        raise ValueError(f"lists a target twice: {', '.join(targets)}")
    return targets


Targets = Annotated[list[Target], AfterValidator(_targets_once)]


def _proxmox_iso_only() -> list[Target]:
    return ["proxmox-iso"]


class QemuSettings(Model):
    """The qemu target: Packer's qemu builder on the machine that runs the build.

    The plugin's version is not a setting: the template is checked against the
    options of the version this program pins (homelab_images.contract.qemu_plugin).
    """

    ovmf_code: AbsolutePath = Field(
        default="/usr/share/OVMF/OVMF_CODE_4M.fd",
        description="UEFI firmware code on the build host (Debian's ovmf package).",
    )
    ovmf_vars: AbsolutePath = Field(
        default="/usr/share/OVMF/OVMF_VARS_4M.fd",
        description="UEFI variable store template matching ovmfCode; Packer copies it per build.",
    )
    accelerator: Literal["kvm", "tcg"] = Field(
        default="kvm",
        description="kvm needs /dev/kvm on the build host; tcg emulates (many times slower).",
    )


class BuildSettings(Model):
    """How builds run. None of these change the image itself."""

    kickstart_delivery: Literal["http", "cd"] = Field(
        default="http",
        description="http: Packer serves ks.cfg; cd: an OEMDRV CD carries it (VM cannot reach Packer).",
    )
    timeout_minutes: int = Field(default=90, ge=10, le=1440, description="Whole build, minutes.")
    ssh_timeout_minutes: int = Field(default=45, ge=5, le=600, description="Wait for SSH after boot, minutes.")
    task_timeout_minutes: int = Field(default=10, ge=1, le=120, description="One Proxmox task, minutes.")
    boot_wait_seconds: int = Field(default=10, ge=1, le=300, description="Wait before typing the boot command.")
    retain_previous: int = Field(
        default=1,
        ge=0,
        le=10,
        description="Superseded builds kept for rollback, per image: templates and qcow2 files.",
    )
    strict_versioning: bool = Field(
        default=False,
        description="Fail preview when an image changed without a version bump.",
    )
    packer_plugin_version: SemVer = Field(
        default="1.2.4",
        description="Version of github.com/hashicorp/proxmox pinned in required_plugins.",
    )
    http_bind_address: HttpBindAddress | None = Field(
        default=None,
        description=(
            "IPv4 address of the machine running Packer that the build VM can reach; Packer serves ks.cfg "
            "there and puts it in the boot command (default: its first non-loopback IPv4 address)."
        ),
    )
    artifact_dir: ArtifactDirectory = Field(
        default="artifacts",
        description="Where qemu builds leave their qcow2 files; a relative path starts at the project directory.",
    )
    qemu: QemuSettings = Field(default=QemuSettings(), description="Settings of the qemu target.")
    smoke_test: bool = Field(
        default=True,
        description="Before a new template is used, boot a linked clone of it and check it through the guest "
        "agent (cloud-init, disk growth, SELinux, fresh identity, k3s Ready); a failure stops the build.",
    )
    smoke_timeout_minutes: int = Field(
        default=15,
        ge=2,
        le=240,
        description="Whole smoke test (clone, boot, checks, k3s Ready), minutes.",
    )
    keep_failed_templates: bool = Field(
        default=False,
        description="Keep a template that failed its smoke test, tagged smoke-failed and never used, for "
        "inspection (gc deletes it); false deletes it.",
    )


class IsoSource(Model):
    url: IsoUrl = Field(description="Where Proxmox downloads the installer ISO (https).")
    sha256: Sha256 = Field(description="Checksum of the ISO, verified by Proxmox on download.")

    @property
    def file_name(self) -> str:
        return urlsplit(self.url).path.rsplit("/", 1)[-1]

    @model_validator(mode="after")
    def _is_iso(self) -> IsoSource:
        if not self.file_name.endswith(".iso"):
            raise ValueError(f"url must name an .iso file, got {self.url!r}")
        return self


# pve-storage src/PVE/Storage.pm (9.1.7, 0c56bad8): SAFE_CHAR_CLASS_RE and UPLOAD_IMPORT_EXT_RE_1, the names
# download-url and upload accept for content import (qcow2 since libpve-storage-perl 8.3.6, commit 76f695f2: PVE
# 8.4); decompression is refused for anything but an ISO, so the file is the qcow2 itself (its clusters may be
# compressed inside), never a .qcow2.gz. The uploaded name is the runner's own (<template>-<sha256[:12]>.qcow2);
# a local file's name is held to the same rule so the file is recognizably the qemu target's.
QCOW2_FILE = re.compile(r"^[-_.a-zA-Z0-9]+\.qcow2$")


def _qcow2_path(value: str) -> str:
    name = value.rsplit("/", 1)[-1]
    if value != value.strip() or "\x00" in value or not QCOW2_FILE.fullmatch(name):
        raise ValueError(
            "expected the path of a .qcow2 file whose name has only letters, digits and -_. "
            f"(the qemu target's artifacts/<image>/<dir>/<name>-v<version>.qcow2), got {value!r}"
        )
    return _not_expanded(value)


ONE_SOURCE = "expected exactly one of url (Proxmox downloads the qcow2) and path (this machine uploads it)"


class ImportSource(Model):
    url: Annotated[str, AfterValidator(_https_url)] | None = Field(
        default=None,
        description="Where Proxmox downloads the qcow2 built by the qemu target (https, a .qcow2 file).",
    )
    path: Annotated[str, AfterValidator(_qcow2_path)] | None = Field(
        default=None,
        description="The qcow2 on this machine, uploaded to Proxmox by the build; a relative path starts at the "
        "project directory.",
    )
    sha256: Sha256 = Field(description="Checksum of the qcow2 (the artifact's sha256), verified before and by Proxmox.")

    @property
    def file_name(self) -> str:
        if self.path is not None:
            return self.path.rsplit("/", 1)[-1]
        return urlsplit(self.url or "").path.rsplit("/", 1)[-1]

    @model_validator(mode="wrap")
    @classmethod
    def _neither_source_is_reported_with_the_rest(
        cls, data: Any, handler: ModelWrapValidatorHandler[ImportSource]
    ) -> ImportSource:
        """`importFrom: {}` lacks a source and the sha256: one run names both, though the after-check below
        runs only once every field is valid."""
        try:
            return handler(data)
        except ValidationError as error:
            if not isinstance(data, Mapping) or data.get("url") is not None or data.get("path") is not None:
                raise
            details: list[InitErrorDetails] = [
                {"type": detail["type"], "loc": detail["loc"], "input": detail["input"], "ctx": detail.get("ctx", {})}
                for detail in error.errors()
            ]
            neither = ValueError(ONE_SOURCE)
            details.append({"type": "value_error", "loc": (), "input": data, "ctx": {"error": neither}})
            raise ValidationError.from_exception_data(error.title, details) from None

    @model_validator(mode="after")
    def _one_source(self) -> ImportSource:
        if (self.url is None) == (self.path is None):
            raise ValueError(ONE_SOURCE)
        if self.url is not None and not QCOW2_FILE.fullmatch(self.file_name):
            raise ValueError(f"url must name a .qcow2 file (letters, digits, -_.), got {self.url!r}")
        return self


class K3sSettings(Model):
    version: K3sRelease = Field(description="k3s release installed in the image.")
    binary_sha256: Sha256 = Field(description="sha256 of the amd64 k3s binary (sha256sum-amd64.txt).")
    install_script_sha256: Sha256 = Field(description="sha256 of install.sh at that release tag.")
    airgap_images_sha256: Sha256 | None = Field(
        default=None,
        description="sha256 of k3s-airgap-images-amd64.tar.zst; set to bake the images in.",
    )


class Hardware(Model):
    firmware: Literal["ovmf", "seabios"] = Field(default="ovmf", description="ovmf = UEFI.")
    machine: Literal["q35", "pc"] = Field(default="q35", description="QEMU machine type.")
    cpu_type: Literal["x86-64-v2-AES", "x86-64-v3", "x86-64-v4", "host"] = Field(
        default="x86-64-v2-AES", description="AlmaLinux 9 needs x86-64-v2 or newer."
    )
    cores: int = Field(default=2, ge=1, le=128, description="vCPUs of the build VM and template.")
    memory_mib: int = Field(default=4096, ge=2048, le=1_048_576, alias="memoryMiB", description="MiB.")
    disk_gib: int = Field(default=32, ge=10, le=65536, alias="diskGiB", description="System disk, GiB.")
    disk_bus: Literal["scsi", "virtio", "sata"] = Field(default="scsi", description="Bus of the system disk.")


class Partitioning(Model):
    efi_mib: int = Field(
        default=600,
        ge=200,
        le=4096,
        alias="efiMiB",
        description="EFI system partition, MiB.",
    )
    boot_mib: int = Field(default=1024, ge=512, le=8192, alias="bootMiB", description="/boot, MiB.")
    root_min_gib: int = Field(
        default=8,
        ge=4,
        le=65536,
        alias="rootMinGiB",
        description="Minimum root LV, GiB; it grows to fill.",
    )


class Packages(Model):
    extra: list[RpmName] = Field(default_factory=list, description="Packages added to the base set.")
    exclude: list[RpmName] = Field(default_factory=list, description="Packages removed from the base set.")


class Image(Model):
    name: ImageName = Field(description="Image name; the template is named <name>-v<version>.")
    version: SemVer = Field(description="Semantic version; bump it whenever the image changes.")
    iso: IsoSource
    k3s: K3sSettings = Field(alias="k3s", description="The k3s release baked into the image.")
    hardware: Hardware = Hardware()
    partitioning: Partitioning = Partitioning()
    packages: Packages = Packages()
    timezone: Annotated[str, _matching(TIMEZONE, 'an Olson time zone such as "UTC"')] = "UTC"
    lang: Annotated[str, _matching(LANG, 'a UTF-8 locale such as "en_US.UTF-8"')] = "en_US.UTF-8"
    keyboard: Annotated[str, _matching(KEYMAP, 'a console keymap such as "us"')] = "us"
    firewall: Literal["enabled", "disabled"] = Field(
        default="disabled",
        description="firewalld on (k3s' ports open per role) or off, as k3s recommends.",
    )
    install_mirror: MirrorUrl | None = Field(
        default=None,
        description="Install from this AlmaLinux mirror (…/almalinux/9.x) instead of the packages on the ISO.",
    )
    rebuild_every: Period | None = Field(default=None, description="Deliberate rebuild period, e.g. 30d.")
    targets: Targets = Field(
        default_factory=_proxmox_iso_only,
        min_length=1,
        description="Where the image is built: proxmox-iso (a template on Proxmox), qemu (a qcow2 file).",
    )
    import_from: ImportSource | None = Field(
        default=None,
        description="Make the Proxmox template by importing this qcow2 (PVE 8.4+) instead of installing it.",
    )

    @property
    def template_name(self) -> str:
        return f"{self.name}-v{self.version}"

    @property
    def has_template(self) -> bool:
        """The image has a Proxmox template (built by proxmox-iso, or imported with importFrom)."""
        return TEMPLATE_TARGET in self.targets

    @property
    def install_repositories(self) -> dict[str, str]:
        """The repositories Anaconda installs from (name -> base URL); none when it installs from the ISO."""
        if self.install_mirror is None:
            return {}
        return {name: f"{self.install_mirror}/{name}/x86_64/os/" for name in ("BaseOS", "AppStream")}

    @model_validator(mode="after")
    def _installer_matches_packages(self) -> Image:
        iso_minor = almalinux_minor(self.iso.url)
        mirror_minor = almalinux_minor(self.install_mirror) if self.install_mirror else None
        if iso_minor is not None and mirror_minor is not None and iso_minor != mirror_minor:
            raise ValueError(
                f"installMirror is AlmaLinux 9.{mirror_minor} but iso.url is 9.{iso_minor}: "
                "the installer must install packages of its own minor release"
            )
        return self

    @model_validator(mode="after")
    def _disk_fits_partitions(self) -> Image:
        p = self.partitioning
        needed_mib = p.efi_mib + p.boot_mib + p.root_min_gib * 1024 + 64  # 64 MiB: GPT + LVM metadata
        if self.hardware.disk_gib * 1024 < needed_mib:
            raise ValueError(
                f"hardware.diskGiB ({self.hardware.disk_gib}) is too small for the partitions "
                f"(EFI + /boot + rootMinGiB need {-(-needed_mib // 1024)} GiB)"
            )
        return self

    @model_validator(mode="after")
    def _template_name_fits(self) -> Image:
        if len(self.template_name) > 63:
            raise ValueError(f"name + version make a template name longer than 63 characters: {self.template_name}")
        return self


class StackConfig(Model):
    """The whole stack configuration."""

    endpoint: HttpsUrl = Field(validation_alias=ENDPOINT_KEY, description="Proxmox API URL.")
    insecure: Annotated[bool, BeforeValidator(_bool_from_cli_string)] = Field(
        default=False,
        validation_alias=INSECURE_KEY,
        description="Skip TLS verification (warns each run).",
    )
    api_token_set: bool = Field(default=False, validation_alias=TOKEN_KEY, description="Secret API token.")
    owner_key_set: bool = Field(
        default=False,
        validation_alias=OWNER_KEY,
        description="Secret key proving which VMs this stack built (see docs/build-runner.md, Ownership).",
    )
    proxmox: ProxmoxSettings = Field(alias="homelab-images:proxmox")
    build: BuildSettings = Field(default=BuildSettings(), alias="homelab-images:build")
    images: list[Image] = Field(alias="homelab-images:images", min_length=1)

    def image(self, name: str) -> Image:
        for image in self.images:
            if image.name == name:
                return image
        raise KeyError(name)


class ConfigError(Exception):
    """The stack configuration is invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


_TYPE_HINTS = {
    "string_type": "expected a string (quote the value in YAML)",
    "int_type": "expected a whole number",
    "bool_type": "expected true or false",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "dict_type": "expected a mapping of keys to values",
    "model_type": "expected a mapping of keys to values",
    "model_attributes_type": "expected a mapping of keys to values",
    "missing": "is required but missing",
}


def _dotted(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not path:
            path = part
        else:
            path += f".{part}"
    return path


def _as_yaml_read_it(value: Any) -> str:
    """The value in the words of the YAML file: an unquoted 1.10 shows up as "the number 1.1"."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _describe(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    context = error.get("ctx", {})
    got = _as_yaml_read_it(error.get("input"))
    if kind in _TYPE_HINTS:
        message = _TYPE_HINTS[kind]
        if kind.endswith("_type"):
            message += f", got {got}"
        return message
    if kind == "literal_error":
        return f"expected {context['expected']}, got {got}"
    if kind == "greater_than_equal":
        return f"expected at least {context['ge']}, got {error['input']}"
    if kind == "less_than_equal":
        return f"expected at most {context['le']}, got {error['input']}"
    if kind == "too_short":
        return f"expected at least {context['min_length']} item(s), got none"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _owned_keys(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in raw.items() if key.split(":", 1)[0] in (PROJECT, PROVIDER)}


def _misspelt_namespaces(raw: Mapping[str, Any]) -> list[str]:
    """Keys of another namespace that is almost ours: a typo would silently drop a whole section."""
    problems = []
    for key in raw:
        namespace = key.split(":", 1)[0]
        if namespace in (PROJECT, PROVIDER):
            continue
        close = difflib.get_close_matches(namespace, (PROJECT, PROVIDER), n=1, cutoff=0.75)
        if close:
            problems.append(f"{key}: unknown namespace {namespace!r}; did you mean {close[0]!r}?")
    return problems


def _cross_checks(config: StackConfig) -> list[str]:
    """Rules that span several keys, each reported under the key to edit."""
    images_key = f"{PROJECT}:images"
    problems = []
    seen: dict[str, int] = {}
    isos: dict[str, IsoSource] = {}
    for index, image in enumerate(config.images):
        if image.name in seen:
            problems.append(
                f"{images_key}[{index}].name: {image.name!r} is used twice (also images[{seen[image.name]}])"
            )
        seen.setdefault(image.name, index)
        if image.import_from is not None and image.targets != [TEMPLATE_TARGET]:
            problems.append(
                f"{images_key}[{index}].targets: expected [{TEMPLATE_TARGET}] with importFrom, which makes the "
                f"Proxmox template from a qcow2 built elsewhere; got [{', '.join(image.targets)}]"
            )
        known = isos.setdefault(image.iso.file_name, image.iso)
        if known != image.iso:
            problems.append(
                f"{images_key}[{index}].iso: the same ISO file {image.iso.file_name} appears with another url or sha256"
            )
    if config.build.http_bind_address and config.build.kickstart_delivery != "http":
        problems.append(
            f"{PROJECT}:build.httpBindAddress: only used with kickstartDelivery: http (the cd delivery serves nothing)"
        )
    proxmox = config.proxmox
    nodes = proxmox.template_nodes
    if len(set(nodes)) != len(nodes):
        problems.append(f"{PROJECT}:proxmox.replicaNodes: lists the build node or a node twice: {', '.join(nodes)}")
    if proxmox.shared_storage and proxmox.replica_nodes:
        problems.append(
            f"{PROJECT}:proxmox.replicaNodes: not needed with sharedStorage: true (every node clones the one template)"
        )
    ids = proxmox.vm_id_range
    # Per image and node: the current template, the retained ones, the next build and its smoke-test clone.
    smoke_clone = 1 if config.build.smoke_test else 0
    # An image built for qemu only has no template, so it takes no VM ID.
    templates = sum(1 for image in config.images if image.has_template)
    needed = templates * len(nodes) * (config.build.retain_previous + 2 + smoke_clone)
    if ids.last - ids.first + 1 < needed:
        problems.append(
            f"{PROJECT}:proxmox.vmIdRange: holds {ids.last - ids.first + 1} IDs; {templates} image(s) with a "
            f"template on {len(nodes)} node(s) with retainPrevious={config.build.retain_previous} need at least "
            f"{needed} (current, retained, next build{', its smoke-test clone' if smoke_clone else ''})"
        )
    return problems


def load_config(raw: Mapping[str, Any]) -> StackConfig:
    """Validate a raw mapping of full config keys; raise ConfigError listing every problem.

    Keys of other namespaces are ignored. ``proxmoxve:apiToken`` and
    ``homelab-images:ownerKey`` only count as set or not: their values never enter the model.
    """
    misspelt = _misspelt_namespaces(raw)
    owned = _owned_keys(raw)
    for secret_key in (TOKEN_KEY, OWNER_KEY):
        if secret_key in owned:
            owned[secret_key] = owned[secret_key] not in (None, "")
    try:
        config = StackConfig.model_validate(owned)
    except ValidationError as error:
        problems = []
        for detail in error.errors():
            path = _dotted(detail["loc"])
            if detail["type"] == "extra_forbidden" and path.startswith(f"{PROVIDER}:"):
                problems.append(
                    f"{path}: is not used: this program configures its provider from "
                    f"{ENDPOINT_KEY}, {TOKEN_KEY} and {INSECURE_KEY} only; remove it"
                )
                continue
            if detail["type"] == "extra_forbidden":
                problems.append(unknown_key_problem(StackConfig, detail["loc"], path))
                continue
            problems.append(f"{path or 'config'}: {_describe(detail)}")
        raise ConfigError(misspelt + problems) from None
    problems = misspelt + _cross_checks(config)
    if problems:
        raise ConfigError(problems)
    return config
