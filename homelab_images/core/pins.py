"""Which AlmaLinux and k3s pins are current, read from the upstream layouts.

No network here: every read goes through the ``Fetch`` the caller passes, so the
same logic runs against the real sites and against a local copy of their layouts.

The layouts, as the upstream projects publish them:

- AlmaLinux mirror ``https://repo.almalinux.org/almalinux``: one directory per minor release
  ``9.N/`` with ``isos/x86_64/AlmaLinux-9.N-x86_64-<variant>.iso`` and a PGP clear-signed
  ``CHECKSUM`` of BSD-style lines ``SHA256 (<file>) = <hex>``; ``9/`` is the link to the current
  minor, so ``9/isos/x86_64/CHECKSUM`` names the newest release. When 9.(N+1) ships, 9.N moves
  to the vault ``https://vault.almalinux.org/9.N/`` (no ``almalinux/`` segment) and its repo
  URLs stop working.
- k3s channel server ``https://update.k3s.io/v1-release/channels`` (rancher/channelserver,
  pkg/server/store/channel/store.go and pkg/model/config.go at 0d8ed6dbad28): a JSON collection
  whose ``data`` holds one ``{"id": <channel>, "latest": <tag>}`` per channel. k3s-io/k3s
  channel.yaml defines a ``v1.NN`` channel per minor whose ``latest`` is its newest release
  without a pre-release suffix; k3s' own install.sh resolves versions through this server.
  It is used instead of GitHub's releases API, which lists pre-releases, pages its results and
  allows 60 unauthenticated requests an hour.
- k3s release assets ``https://github.com/k3s-io/k3s/releases/download/<tag>/sha256sum-amd64.txt``:
  coreutils lines ``<hex>  <file>``; the amd64 binary is the line named exactly ``k3s``
  (install.sh ``download_hash`` greps ``" k3s${SUFFIX}$"``, SUFFIX empty on amd64).
- k3s' ``install.sh`` of a tag: ``https://raw.githubusercontent.com/k3s-io/k3s/<tag>/install.sh``,
  the file kickstart/scripts/install-k3s.sh downloads and verifies.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from urllib.parse import quote

from homelab_images.core.config import Image

ALMALINUX_URL = "https://repo.almalinux.org/almalinux"
ALMALINUX_VAULT_URL = "https://vault.almalinux.org"
K3S_CHANNELS_URL = "https://update.k3s.io/v1-release/channels"
K3S_RELEASES_URL = "https://github.com/k3s-io/k3s/releases/download"
K3S_SOURCE_URL = "https://raw.githubusercontent.com/k3s-io/k3s"

K3S_BINARY = "k3s"
K3S_AIRGAP_IMAGES = "k3s-airgap-images-amd64.tar.zst"

ISO_URL = re.compile(
    r"^(?P<mirror>https://.+?)/9\.(?P<minor>\d+)/isos/x86_64/"
    r"AlmaLinux-9\.(?P=minor)-x86_64-(?P<variant>[a-z]+)\.iso$"
)
RELEASE_DIRECTORY = re.compile(r"^(?P<mirror>https://.+?)/9\.(?P<minor>\d+)/?$")
BSD_CHECKSUM = re.compile(r"^SHA256 \((?P<name>[^)]+)\) = (?P<digest>[0-9a-f]{64})$")
COREUTILS_CHECKSUM = re.compile(r"^(?P<digest>[0-9a-f]{64}) [ *](?P<name>.+)$")
K3S_TAG = re.compile(r"^v1\.(?P<minor>\d+)\.(?P<patch>\d+)\+k3s(?P<build>\d+)$")


@dataclass(frozen=True)
class Sources:
    """Base URLs the pins are read from; the defaults are the upstream sites."""

    almalinux: str = ALMALINUX_URL
    k3s_channels: str = K3S_CHANNELS_URL
    k3s_releases: str = K3S_RELEASES_URL
    k3s_source: str = K3S_SOURCE_URL


# How errors name each source; the keys are the fields of ``Sources``.
SOURCE_LABELS = {
    "almalinux": "AlmaLinux mirror",
    "k3s_channels": "k3s channel server",
    "k3s_releases": "k3s release assets",
    "k3s_source": "k3s install script",
}

Fetch = Callable[[str, str], bytes]
"""``fetch(source, url)``: the body at ``url``; ``source`` is a key of ``SOURCE_LABELS``.
Raises ``SourceError`` when the source cannot be read."""


class PinsError(Exception):
    """An upstream answer or a pinned URL that pins cannot work with; the message says which."""


class SourceError(PinsError):
    """A source could not be read (offline, refused, HTTP error, timeout)."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(message)
        self.source = source


@dataclass(frozen=True)
class ImagePins:
    """The values of one image that follow upstream releases, by their stack-file key."""

    iso_url: str = field(metadata={"key": ("iso", "url")})
    iso_sha256: str = field(metadata={"key": ("iso", "sha256")})
    install_mirror: str | None = field(metadata={"key": ("installMirror",)})
    k3s_version: str = field(metadata={"key": ("k3s", "version")})
    k3s_binary_sha256: str = field(metadata={"key": ("k3s", "binarySha256")})
    k3s_install_script_sha256: str = field(metadata={"key": ("k3s", "installScriptSha256")})
    k3s_airgap_images_sha256: str | None = field(metadata={"key": ("k3s", "airgapImagesSha256")})

    @classmethod
    def of(cls, image: Image) -> ImagePins:
        return cls(
            iso_url=image.iso.url,
            iso_sha256=image.iso.sha256,
            install_mirror=image.install_mirror,
            k3s_version=image.k3s.version,
            k3s_binary_sha256=image.k3s.binary_sha256,
            k3s_install_script_sha256=image.k3s.install_script_sha256,
            k3s_airgap_images_sha256=image.k3s.airgap_images_sha256,
        )


@dataclass(frozen=True)
class PinChange:
    key: tuple[str, ...]  # inside the image's mapping, e.g. ("iso", "url")
    old: str
    new: str

    @property
    def dotted_key(self) -> str:
        return ".".join(self.key)


@dataclass(frozen=True)
class ImageReport:
    """What upstream offers for one image compared with its pins."""

    name: str
    almalinux: tuple[int, int]  # (pinned minor, newest minor)
    k3s: tuple[str, str]  # (pinned tag, newest tag of the same minor)
    changes: tuple[PinChange, ...]
    newer_k3s_minor: str | None  # newest release of a later k3s minor, if any

    @property
    def current(self) -> bool:
        return not self.changes


@dataclass(frozen=True)
class AlmaLinuxIso:
    mirror: str
    minor: int
    variant: str


def iso_file_name(minor: int, variant: str) -> str:
    return f"AlmaLinux-9.{minor}-x86_64-{variant}.iso"


def parse_iso_url(url: str) -> AlmaLinuxIso:
    match = ISO_URL.fullmatch(url)
    if match is None:
        raise PinsError(
            f"iso.url: pins follows AlmaLinux mirror URLs of the form "
            f"<mirror>/9.N/isos/x86_64/AlmaLinux-9.N-x86_64-<variant>.iso, got {url!r}"
        )
    return AlmaLinuxIso(match["mirror"], int(match["minor"]), match["variant"])


def parse_release_directory(url: str) -> tuple[str, int]:
    match = RELEASE_DIRECTORY.fullmatch(url)
    if match is None:
        raise PinsError(f"installMirror: pins follows AlmaLinux release directories (<mirror>/9.N), got {url!r}")
    return match["mirror"], int(match["minor"])


def current_mirror(mirror: str) -> str:
    """Where the newest minor lives for a stack that used ``mirror``: the vault only keeps old ones."""
    return ALMALINUX_URL if mirror.rstrip("/") == ALMALINUX_VAULT_URL else mirror


def parse_bsd_checksums(text: str) -> dict[str, str]:
    """File name → sha256 from an AlmaLinux CHECKSUM file (clear-signed armour and comments skipped)."""
    return {m["name"]: m["digest"] for line in text.splitlines() if (m := BSD_CHECKSUM.match(line.strip()))}


def parse_coreutils_checksums(text: str) -> dict[str, str]:
    """File name → sha256 from a ``sha256sum`` listing such as k3s' sha256sum-amd64.txt."""
    return {m["name"]: m["digest"] for line in text.splitlines() if (m := COREUTILS_CHECKSUM.match(line.rstrip()))}


def k3s_order(tag: str) -> tuple[int, int, int]:
    match = K3S_TAG.fullmatch(tag)
    if match is None:
        raise PinsError(f"not a k3s release tag: {tag!r}")
    return int(match["minor"]), int(match["patch"]), int(match["build"])


def parse_channels(text: str, url: str) -> dict[str, str]:
    """Channel id → latest tag from the channel server's collection."""
    try:
        document = json.loads(text)
        entries = document["data"]
        channels = {str(entry["id"]): str(entry["latest"]) for entry in entries if "latest" in entry}
    except (ValueError, KeyError, TypeError):
        raise PinsError(f"k3s channel server: {url} is not a channel list (JSON with data[].id and .latest)") from None
    return channels


def _text(fetch: Fetch, source: str, url: str) -> str:
    return fetch(source, url).decode("utf-8", errors="replace")


def _newest_minor(fetch: Fetch, sources: Sources, variant: str) -> int:
    url = f"{sources.almalinux.rstrip('/')}/9/isos/x86_64/CHECKSUM"
    pattern = re.compile(rf"^AlmaLinux-9\.(\d+)-x86_64-{re.escape(variant)}\.iso$")
    minors = [int(m[1]) for name in parse_bsd_checksums(_text(fetch, "almalinux", url)) if (m := pattern.match(name))]
    if not minors:
        raise PinsError(f"AlmaLinux mirror: {url} has no 'SHA256 (AlmaLinux-9.N-x86_64-{variant}.iso) = …' line")
    return max(minors)


def _iso_sha256(fetch: Fetch, sources: Sources, minor: int, variant: str) -> str:
    url = f"{sources.almalinux.rstrip('/')}/9.{minor}/isos/x86_64/CHECKSUM"
    name = iso_file_name(minor, variant)
    digest = parse_bsd_checksums(_text(fetch, "almalinux", url)).get(name)
    if digest is None:
        raise PinsError(f"AlmaLinux mirror: {url} has no 'SHA256 ({name}) = …' line")
    return digest


def _k3s_assets(fetch: Fetch, sources: Sources, tag: str) -> dict[str, str]:
    url = f"{sources.k3s_releases.rstrip('/')}/{quote(tag, safe='')}/sha256sum-amd64.txt"
    assets = parse_coreutils_checksums(_text(fetch, "k3s_releases", url))
    if K3S_BINARY not in assets:
        raise PinsError(f"k3s release assets: {url} has no line for the binary '{K3S_BINARY}'")
    return assets


def _install_script_sha256(fetch: Fetch, sources: Sources, tag: str) -> str:
    url = f"{sources.k3s_source.rstrip('/')}/{quote(tag, safe='')}/install.sh"
    return hashlib.sha256(fetch("k3s_source", url)).hexdigest()


def _newest_k3s(channels: dict[str, str], pinned: str, url: str) -> tuple[str, str | None]:
    """The newest tag of the pinned minor (never older than the pin), and of any later minor."""
    minor = k3s_order(pinned)[0]
    channel = f"v1.{minor}"
    latest = channels.get(channel)
    if latest is None or not K3S_TAG.fullmatch(latest):
        raise PinsError(f"k3s channel server: {url} has no release for channel {channel}")
    newest = max(pinned, latest, key=k3s_order)
    later = [tag for tag in channels.values() if K3S_TAG.fullmatch(tag) and k3s_order(tag)[0] > minor]
    return newest, max(later, key=k3s_order) if later else None


def report_image(image: Image, sources: Sources, fetch: Fetch) -> ImageReport:
    """Compare one image's pins with the newest AlmaLinux 9 minor and k3s patch of its minor."""
    pinned = ImagePins.of(image)
    iso = parse_iso_url(pinned.iso_url)
    install_mirror = None if pinned.install_mirror is None else parse_release_directory(pinned.install_mirror)

    minor = max(iso.minor, _newest_minor(fetch, sources, iso.variant))
    latest = replace(pinned, iso_sha256=_iso_sha256(fetch, sources, minor, iso.variant))
    if minor != iso.minor:
        iso_url = f"{current_mirror(iso.mirror)}/9.{minor}/isos/x86_64/{iso_file_name(minor, iso.variant)}"
        latest = replace(latest, iso_url=iso_url)
    if install_mirror is not None and install_mirror[1] != minor:
        latest = replace(latest, install_mirror=f"{current_mirror(install_mirror[0])}/9.{minor}")

    channels_url = sources.k3s_channels
    channels = parse_channels(_text(fetch, "k3s_channels", channels_url), channels_url)
    tag, later_minor = _newest_k3s(channels, pinned.k3s_version, channels_url)
    assets = _k3s_assets(fetch, sources, tag)
    latest = replace(
        latest,
        k3s_version=tag,
        k3s_binary_sha256=assets[K3S_BINARY],
        k3s_install_script_sha256=_install_script_sha256(fetch, sources, tag),
    )
    if pinned.k3s_airgap_images_sha256 is not None:
        if K3S_AIRGAP_IMAGES not in assets:
            raise PinsError(f"k3s release assets: sha256sum-amd64.txt of {tag} has no line for {K3S_AIRGAP_IMAGES}")
        latest = replace(latest, k3s_airgap_images_sha256=assets[K3S_AIRGAP_IMAGES])

    return ImageReport(
        name=image.name,
        almalinux=(iso.minor, minor),
        k3s=(pinned.k3s_version, tag),
        changes=pin_changes(pinned, latest),
        newer_k3s_minor=later_minor,
    )


def pin_changes(pinned: ImagePins, latest: ImagePins) -> tuple[PinChange, ...]:
    changes = []
    for item in fields(ImagePins):
        old, new = getattr(pinned, item.name), getattr(latest, item.name)
        if old is not None and new is not None and old != new:
            changes.append(PinChange(item.metadata["key"], old, new))
    return tuple(changes)
