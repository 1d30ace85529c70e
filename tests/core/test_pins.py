"""Reading the upstream layouts and deciding the newest pins, with an in-memory fetch."""

from __future__ import annotations

import json

import pytest

from homelab_images.core.config import Image
from homelab_images.core.pins import (
    PinsError,
    Sources,
    parse_bsd_checksums,
    parse_channels,
    parse_coreutils_checksums,
    parse_iso_url,
    report_image,
)
from homelab_images.core.stackfile import load_stack_file
from tests.cli.test_pins import FIXTURES

SOURCES = Sources("https://alma.test/almalinux", "https://chan.test/channels", "https://rel.test", "https://src.test")
PINNED = load_stack_file(FIXTURES / "Pulumi.homelab.yaml").images[0]


def _hex(char: str) -> str:
    return char * 64


def _image(iso_url: str, k3s_version: str, install_mirror: str | None) -> Image:
    return PINNED.model_copy(
        update={
            "iso": PINNED.iso.model_copy(update={"url": iso_url}),
            "k3s": PINNED.k3s.model_copy(update={"version": k3s_version, "airgap_images_sha256": None}),
            "install_mirror": install_mirror,
        }
    )


def _site(newest_minor: int, channel_latest: str) -> dict[str, bytes]:
    checksum = f"SHA256 (AlmaLinux-9.{newest_minor}-x86_64-minimal.iso) = {_hex('a')}\n".encode()
    return {
        "https://alma.test/almalinux/9/isos/x86_64/CHECKSUM": checksum,
        f"https://alma.test/almalinux/9.{newest_minor}/isos/x86_64/CHECKSUM": checksum,
        "https://alma.test/almalinux/9.9/isos/x86_64/CHECKSUM": (
            f"SHA256 (AlmaLinux-9.9-x86_64-minimal.iso) = {_hex('c')}\n".encode()
        ),
        "https://chan.test/channels": json.dumps({"data": [{"id": "v1.36", "latest": channel_latest}]}).encode(),
        f"https://rel.test/{channel_latest.replace('+', '%2B')}/sha256sum-amd64.txt": f"{_hex('b')}  k3s\n".encode(),
        "https://rel.test/v1.36.9%2Bk3s1/sha256sum-amd64.txt": f"{_hex('b')}  k3s\n".encode(),
        f"https://src.test/{channel_latest.replace('+', '%2B')}/install.sh": b"#!/bin/sh\n",
        "https://src.test/v1.36.9%2Bk3s1/install.sh": b"#!/bin/sh\n",
    }


def test_clear_signed_checksum_yields_only_its_sha256_lines() -> None:
    text = (
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"
        "# AlmaLinux-9.8-x86_64-boot.iso: 1519271936 bytes\n"
        f"SHA256 (AlmaLinux-9.8-x86_64-boot.iso) = {_hex('d')}\n"
        "-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCAAdFiEE\n=AbCd\n-----END PGP SIGNATURE-----\n"
    )
    assert parse_bsd_checksums(text) == {"AlmaLinux-9.8-x86_64-boot.iso": _hex("d")}


def test_sha256sum_listing_keeps_the_binary_apart_from_same_prefix_files() -> None:
    text = f"{_hex('1')}  k3s\n{_hex('2')}  k3s-airgap-images-amd64.tar.zst\n{_hex('3')} *k3s-images.txt\n"
    assert parse_coreutils_checksums(text) == {
        "k3s": _hex("1"),
        "k3s-airgap-images-amd64.tar.zst": _hex("2"),
        "k3s-images.txt": _hex("3"),
    }


def test_an_unversioned_iso_url_cannot_be_followed() -> None:
    with pytest.raises(PinsError, match=r"^iso\.url: .*AlmaLinux-9\.N-x86_64-<variant>\.iso"):
        parse_iso_url("https://repo.almalinux.org/almalinux/9/isos/x86_64/AlmaLinux-9-latest-x86_64-boot.iso")


def test_a_channel_list_that_is_not_json_names_the_url() -> None:
    with pytest.raises(PinsError, match=r"https://chan\.test/channels is not a channel list"):
        parse_channels("<html>", "https://chan.test/channels")


def test_the_iso_variant_and_a_custom_mirror_host_are_kept() -> None:
    image = _image(
        "https://mirror.lan/almalinux/9.7/isos/x86_64/AlmaLinux-9.7-x86_64-minimal.iso",
        "v1.36.4+k3s1",
        None,
    )
    site = _site(8, "v1.36.5+k3s1")
    report = report_image(image, SOURCES, lambda _source, url: site[url])
    changes = {change.dotted_key: change.new for change in report.changes}
    assert changes["iso.url"] == "https://mirror.lan/almalinux/9.8/isos/x86_64/AlmaLinux-9.8-x86_64-minimal.iso"
    assert changes["iso.sha256"] == _hex("a")
    assert "installMirror" not in changes  # unset means "install from the ISO": pins does not add one


def test_pins_never_go_back_when_the_pin_is_newer_than_upstream_says() -> None:
    image = _image(
        "https://repo.almalinux.org/almalinux/9.9/isos/x86_64/AlmaLinux-9.9-x86_64-minimal.iso",
        "v1.36.9+k3s1",
        "https://repo.almalinux.org/almalinux/9.9",
    )
    site = _site(8, "v1.36.5+k3s1")
    report = report_image(image, SOURCES, lambda _source, url: site[url])
    assert report.almalinux == (9, 9)
    assert report.k3s == ("v1.36.9+k3s1", "v1.36.9+k3s1")
    assert {change.dotted_key for change in report.changes} <= {
        "iso.sha256",
        "k3s.binarySha256",
        "k3s.installScriptSha256",
    }


def test_a_k3s_minor_without_a_channel_is_an_error() -> None:
    image = _image(
        "https://repo.almalinux.org/almalinux/9.8/isos/x86_64/AlmaLinux-9.8-x86_64-minimal.iso",
        "v1.99.1+k3s1",
        None,
    )
    site = _site(8, "v1.36.5+k3s1")
    with pytest.raises(PinsError, match=r"has no release for channel v1\.99"):
        report_image(image, SOURCES, lambda _source, url: site[url])


def test_a_release_checksum_without_the_iso_names_the_file_and_url() -> None:
    """A mirror caught mid-sync: 9/ already names 9.8, 9.8's own CHECKSUM lacks the ISO."""
    image = _image(
        "https://repo.almalinux.org/almalinux/9.7/isos/x86_64/AlmaLinux-9.7-x86_64-minimal.iso",
        "v1.36.4+k3s1",
        None,
    )
    site = _site(8, "v1.36.5+k3s1")
    site["https://alma.test/almalinux/9.8/isos/x86_64/CHECKSUM"] = b"-----BEGIN PGP SIGNED MESSAGE-----\n"
    with pytest.raises(PinsError) as raised:
        report_image(image, SOURCES, lambda _source, url: site[url])
    assert str(raised.value) == (
        "AlmaLinux mirror: https://alma.test/almalinux/9.8/isos/x86_64/CHECKSUM "
        "has no 'SHA256 (AlmaLinux-9.8-x86_64-minimal.iso) = …' line"
    )
