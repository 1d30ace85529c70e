"""``pins --check / --update`` against a local copy of the upstream sites.

No internet here, so an HTTP server on 127.0.0.1 serves tests/fixtures/upstream: the same
paths and file formats as the real sites (see homelab_images/core/pins.py for where each
layout was read from), with made-up digests and an install.sh stand-in:

- almalinux/9.8/isos/x86_64/CHECKSUM  clear-signed BSD-style list, newest minor 9.8;
  almalinux/9 is a link to 9.8 as on repo.almalinux.org
- k3s/v1-release/channels             the channel server's JSON collection (v1.36 → v1.36.5+k3s1,
                                      a later minor v1.37 and a v1.37 release candidate)
- k3s/releases/v1.36.5+k3s1/sha256sum-amd64.txt, k3s/source/v1.36.5+k3s1/install.sh
"""

from __future__ import annotations

import argparse
import difflib
import functools
import hashlib
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from homelab_images.cli.main import main as cli_main
from homelab_images.cli.pins import PinsFailed, add_arguments, sources_from, write_validated
from homelab_images.cli.upstream_http import HttpFetch
from homelab_images.core.pins import SourceError, Sources, parse_bsd_checksums, parse_coreutils_checksums
from homelab_images.core.stackfile import load_stack_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
UPSTREAM_FIXTURE = FIXTURES / "upstream"
REPO_97 = "https://repo.almalinux.org/almalinux/9.7"
REPO_98 = "https://repo.almalinux.org/almalinux/9.8"
PINNED_K3S = "v1.36.4+k3s1"
NEWEST_K3S = "v1.36.5+k3s1"


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""


@dataclass
class Upstream:
    root: Path
    base: str

    def options(self) -> list[str]:
        return [
            "--almalinux-url",
            f"{self.base}/almalinux",
            "--k3s-channels-url",
            f"{self.base}/k3s/v1-release/channels",
            "--k3s-releases-url",
            f"{self.base}/k3s/releases",
            "--k3s-source-url",
            f"{self.base}/k3s/source",
        ]

    def text(self, relative: str) -> str:
        return (self.root / relative).read_text(encoding="utf-8")


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    root = tmp_path / "upstream"
    shutil.copytree(UPSTREAM_FIXTURE, root, symlinks=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    # shutdown() returns at serve_forever's next poll: the default half second was each test's teardown.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield Upstream(root, f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()


def _pin(text: str, key: str, value: str) -> str:
    """Set a one-line ``key: value`` of the stack text, keeping the line's indentation and comment."""
    pattern = re.compile(rf"^(\s*{re.escape(key)}:\s*)(\"[^\"]*\"|\S+)", re.MULTILINE)
    assert pattern.search(text), key
    return pattern.sub(lambda m: m[1] + value, text, count=1)


def stack_at_97(directory: Path, iso_mirror: str = REPO_97, install_mirror: str = REPO_97) -> Path:
    """The frozen shipped stack, pinned to AlmaLinux 9.7 and k3s v1.36.4+k3s1 whatever it ships today."""
    text = (FIXTURES / "Pulumi.homelab.yaml").read_text(encoding="utf-8")
    text = _pin(text, "url", f"{iso_mirror}/isos/x86_64/AlmaLinux-9.7-x86_64-boot.iso")
    text = _pin(text, "installMirror", install_mirror)
    text = _pin(text, "version", '"1.0.0"')
    text = re.sub(r'version: "v1\.\d+\.\d+\+k3s\d+"', f'version: "{PINNED_K3S}"', text)
    path = directory / "Pulumi.pins.yaml"
    path.write_text(text, encoding="utf-8")
    load_stack_file(path)
    return path


def pins(mode: str, stack: Path, upstream: Upstream, capsys: Any) -> tuple[int, str, str]:
    code = cli_main(["pins", mode, "--stack-file", str(stack), *upstream.options()])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_check_reports_the_newer_almalinux_minor_and_k3s_patch(tmp_path: Path, upstream: Upstream, capsys: Any) -> None:
    stack = stack_at_97(tmp_path)
    before = stack.read_bytes()
    code, out, err = pins("--check", stack, upstream, capsys)
    assert code == 1, err
    assert "alma9-k3s-node-amd64: newer pins available" in out
    assert "AlmaLinux 9.7 -> 9.8" in out
    assert f"k3s {PINNED_K3S} -> {NEWEST_K3S} (newest of v1.36)" in out
    # The later minor is mentioned, never taken; the release candidate is ignored.
    assert "k3s v1.37.1+k3s1 is a newer minor" in out
    assert "rc1" not in out
    assert "pins --update" in out
    assert stack.read_bytes() == before


def test_update_rewrites_the_pins_and_no_other_byte(tmp_path: Path, upstream: Upstream, capsys: Any) -> None:
    stack = stack_at_97(tmp_path)
    before = stack.read_text(encoding="utf-8")
    code, out, err = pins("--update", stack, upstream, capsys)
    assert code == 0, err
    after = stack.read_text(encoding="utf-8")

    iso_sha = parse_bsd_checksums(upstream.text("almalinux/9.8/isos/x86_64/CHECKSUM"))["AlmaLinux-9.8-x86_64-boot.iso"]
    assets = parse_coreutils_checksums(upstream.text(f"k3s/releases/{NEWEST_K3S}/sha256sum-amd64.txt"))
    script_sha = hashlib.sha256((upstream.root / f"k3s/source/{NEWEST_K3S}/install.sh").read_bytes()).hexdigest()
    config = load_stack_file(stack)
    (image,) = config.images
    assert image.iso.url == f"{REPO_98}/isos/x86_64/AlmaLinux-9.8-x86_64-boot.iso"
    assert image.iso.sha256 == iso_sha
    assert image.install_mirror == REPO_98
    assert image.k3s.version == NEWEST_K3S
    assert image.k3s.binary_sha256 == assets["k3s"]
    assert image.k3s.install_script_sha256 == script_sha
    assert image.k3s.airgap_images_sha256 == assets["k3s-airgap-images-amd64.tar.zst"]
    assert image.version == "1.0.0"  # the bump is the user's decision, and printed as the next step

    changed = [
        (old, new)
        for old, new in zip(before.splitlines(keepends=True), after.splitlines(keepends=True), strict=True)
        if old != new
    ]
    assert len(changed) == 7, "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True)))
    for old, new in changed:
        # Same key, indentation, quoting and trailing comment; only the value differs.
        old_key, old_value = old.split(":", 1)
        new_key, new_value = new.split(":", 1)
        assert old_key == new_key
        assert old_value.startswith(' "') == new_value.startswith(' "')
        assert old_value.rsplit("#", 1)[-1] == new_value.rsplit("#", 1)[-1] or "#" not in old_value
    assert "next: bump the version of alma9-k3s-node-amd64 (now 1.0.0)" in out
    assert f"lock --update --stack-file {stack}" in out


def test_after_an_update_check_says_up_to_date(tmp_path: Path, upstream: Upstream, capsys: Any) -> None:
    stack = stack_at_97(tmp_path)
    assert pins("--update", stack, upstream, capsys)[0] == 0
    code, out, err = pins("--check", stack, upstream, capsys)
    assert code == 0, out + err
    assert f"alma9-k3s-node-amd64: up to date (AlmaLinux 9.8, k3s {NEWEST_K3S}, newest of v1.36)" in out
    updated = stack.read_bytes()
    assert pins("--update", stack, upstream, capsys)[0] == 0
    assert stack.read_bytes() == updated


def test_a_pinned_hash_that_disagrees_with_upstream_is_reported(
    tmp_path: Path, upstream: Upstream, capsys: Any
) -> None:
    stack = stack_at_97(tmp_path)
    assert pins("--update", stack, upstream, capsys)[0] == 0
    stack.write_text(_pin(stack.read_text(encoding="utf-8"), "binarySha256", f'"{"0" * 64}"'), encoding="utf-8")
    code, out, _ = pins("--check", stack, upstream, capsys)
    assert code == 1
    assert "pins --update changes: k3s.binarySha256" in out


def test_vault_urls_move_to_the_repository_of_the_newest_minor(tmp_path: Path, upstream: Upstream, capsys: Any) -> None:
    vault = "https://vault.almalinux.org/9.7"
    stack = stack_at_97(tmp_path, iso_mirror=vault, install_mirror=vault)
    code, _, err = pins("--update", stack, upstream, capsys)
    assert code == 0, err
    (image,) = load_stack_file(stack).images
    assert image.iso.url == f"{REPO_98}/isos/x86_64/AlmaLinux-9.8-x86_64-boot.iso"
    assert image.install_mirror == REPO_98


def test_a_checksum_file_without_the_iso_is_a_clear_error(tmp_path: Path, upstream: Upstream, capsys: Any) -> None:
    checksum = upstream.root / "almalinux/9.8/isos/x86_64/CHECKSUM"
    checksum.write_text(
        "".join(line for line in checksum.read_text().splitlines(True) if "9.8-x86_64-boot.iso)" not in line)
    )
    stack = stack_at_97(tmp_path)
    before = stack.read_bytes()
    code, _, err = pins("--update", stack, upstream, capsys)
    assert code == 1
    assert err.splitlines() == [
        f"error: homelab-images:images[0] (alma9-k3s-node-amd64): AlmaLinux mirror: "
        f"{upstream.base}/almalinux/9/isos/x86_64/CHECKSUM has no 'SHA256 (AlmaLinux-9.N-x86_64-boot.iso) = …' line"
    ]
    assert stack.read_bytes() == before


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("option", "label"),
    [
        ("--almalinux-url", "AlmaLinux mirror"),
        ("--k3s-channels-url", "k3s channel server"),
        ("--k3s-releases-url", "k3s release assets"),
        ("--k3s-source-url", "k3s install script"),
    ],
)
def test_an_unreachable_source_is_named_in_one_line(
    tmp_path: Path, upstream: Upstream, capsys: Any, option: str, label: str
) -> None:
    stack = stack_at_97(tmp_path)
    dead = f"http://127.0.0.1:{_closed_port()}"
    code = cli_main(["pins", "--check", "--stack-file", str(stack), *upstream.options(), option, dead])
    err = capsys.readouterr().err
    assert code == 1
    (line,) = err.splitlines()
    assert line.startswith(f"error: cannot reach the {label} at {dead}")
    assert option in line
    assert "Traceback" not in err


def test_a_missing_release_answers_with_its_http_status(tmp_path: Path, upstream: Upstream, capsys: Any) -> None:
    shutil.rmtree(upstream.root / "k3s/releases" / NEWEST_K3S)
    code, _, err = pins("--check", stack_at_97(tmp_path), upstream, capsys)
    assert code == 1
    (line,) = err.splitlines()
    assert (
        f"k3s release assets: {upstream.base}/k3s/releases/v1.36.5%2Bk3s1/sha256sum-amd64.txt answered HTTP 404" in line
    )


def test_a_source_that_accepts_but_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel completes the connection; nobody ever reads or answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/9/isos/x86_64/CHECKSUM"
        with pytest.raises(SourceError, match=r"^the AlmaLinux mirror at .* did not answer within 0\.2 s$"):
            HttpFetch(timeout=0.2)("almalinux", url)


def test_the_printed_next_steps_satisfy_the_version_lock(tmp_path: Path, upstream: Upstream, capsys: Any) -> None:
    """New pins change the image, so the lock wants a version bump: exactly what --update prints."""
    stack = stack_at_97(tmp_path)
    assert cli_main(["lock", "--update", "--stack-file", str(stack)]) == 0
    assert pins("--update", stack, upstream, capsys)[0] == 0
    assert cli_main(["lock", "--check", "--stack-file", str(stack)]) == 1
    assert "alma9-k3s-node-amd64" in capsys.readouterr().err
    stack.write_text(_pin(stack.read_text(encoding="utf-8"), "version", '"1.1.0"'), encoding="utf-8")
    assert cli_main(["lock", "--update", "--stack-file", str(stack)]) == 0
    assert cli_main(["lock", "--check", "--stack-file", str(stack)]) == 0, capsys.readouterr().err


def test_sources_come_from_options_then_environment_then_upstream() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--check", "--almalinux-url", "https://mirror.lan/almalinux/"])
    sources = sources_from(
        args, {"HOMELAB_IMAGES_ALMALINUX_URL": "https://env.lan", "HOMELAB_IMAGES_K3S_SOURCE_URL": "https://src.lan"}
    )
    assert sources == Sources(almalinux="https://mirror.lan/almalinux", k3s_source="https://src.lan")


def test_a_result_that_would_not_validate_is_never_written(tmp_path: Path) -> None:
    stack = stack_at_97(tmp_path)
    before = stack.read_bytes()
    broken = _pin(stack.read_text(encoding="utf-8"), "sha256", '"not-a-hash"')
    with pytest.raises(PinsFailed, match=r"would not validate, Pulumi\.pins\.yaml left unchanged: .*iso\.sha256"):
        write_validated(stack, broken)
    assert stack.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["Pulumi.pins.yaml"]
