"""Rewriting values in a stack file keeps its layout, comments and quoting byte for byte."""

from __future__ import annotations

import pytest
import yaml

from homelab_images.core.stackfile_edit import StackFileEditError, replace_scalars

# Not this project's layout: 4-space mappings, unindented sequence, aligned values,
# single quotes, a flow mapping, CRLF line ends and comments everywhere.
ODD_LAYOUT = (
    "# my stack\r\n"
    "config:\r\n"
    "    homelab-images:images:\r\n"
    "    - name: a        # first\r\n"
    "      iso:\r\n"
    "          url:     https://m.lan/9.7/isos/x86_64/AlmaLinux-9.7-x86_64-boot.iso   # keep me\r\n"
    "          sha256:  'aaaa'\r\n"
    '      k3s: {version: "v1.36.4+k3s1", binarySha256: bbbb}\r\n'
)


def test_only_the_value_spans_change() -> None:
    image = ("config", "homelab-images:images", 0)
    text = replace_scalars(
        ODD_LAYOUT,
        {
            (*image, "iso", "url"): "https://m.lan/9.8/isos/x86_64/AlmaLinux-9.8-x86_64-boot.iso",
            (*image, "iso", "sha256"): "cccc",
            (*image, "k3s", "version"): "v1.36.5+k3s1",
            (*image, "k3s", "binarySha256"): "dddd",
        },
    )
    assert text == (
        "# my stack\r\n"
        "config:\r\n"
        "    homelab-images:images:\r\n"
        "    - name: a        # first\r\n"
        "      iso:\r\n"
        "          url:     https://m.lan/9.8/isos/x86_64/AlmaLinux-9.8-x86_64-boot.iso   # keep me\r\n"
        "          sha256:  'cccc'\r\n"
        '      k3s: {version: "v1.36.5+k3s1", binarySha256: dddd}\r\n'
    )


def test_a_plain_value_that_yaml_would_read_as_a_number_gets_quoted() -> None:
    text = replace_scalars(ODD_LAYOUT, {("config", "homelab-images:images", 0, "k3s", "binarySha256"): "1234"})
    assert 'binarySha256: "1234"}' in text
    assert yaml.safe_load(text)["config"]["homelab-images:images"][0]["k3s"]["binarySha256"] == "1234"


def test_a_missing_key_is_named() -> None:
    with pytest.raises(StackFileEditError, match=r"^config\.homelab-images:images\[0\]\.installMirror: not found"):
        replace_scalars(ODD_LAYOUT, {("config", "homelab-images:images", 0, "installMirror"): "x"})
