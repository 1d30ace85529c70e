"""``pins --check | --update``: keep each image's AlmaLinux and k3s pins on the newest releases.

The only offline-CLI command besides gc that uses the network: it reads the AlmaLinux mirror,
the k3s channel server, the k3s release assets and install.sh (see homelab_images.core.pins).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TextIO

from homelab_images.cli.upstream_http import HttpFetch
from homelab_images.contract.stack_keys import PROJECT
from homelab_images.core.config import ConfigError, StackConfig
from homelab_images.core.pins import (
    SOURCE_LABELS,
    Fetch,
    ImageReport,
    PinsError,
    SourceError,
    Sources,
    k3s_order,
    report_image,
)
from homelab_images.core.stackfile import load_stack_file
from homelab_images.core.stackfile_edit import KeyPath, replace_scalars

IMAGES_KEY = f"{PROJECT}:images"

# Each source's base URL: the option wins over the environment variable, which wins over upstream.
SETTINGS = {
    "almalinux": ("--almalinux-url", "HOMELAB_IMAGES_ALMALINUX_URL"),
    "k3s_channels": ("--k3s-channels-url", "HOMELAB_IMAGES_K3S_CHANNELS_URL"),
    "k3s_releases": ("--k3s-releases-url", "HOMELAB_IMAGES_K3S_RELEASES_URL"),
    "k3s_source": ("--k3s-source-url", "HOMELAB_IMAGES_K3S_SOURCE_URL"),
}


class PinsFailed(Exception):
    """One line for the user: which source or value stopped the command."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="report newer releases; exit 1 if any pin is behind")
    mode.add_argument("--update", action="store_true", help="rewrite the pins in the stack file, keeping its layout")
    defaults = Sources()
    for name, (option, env) in SETTINGS.items():
        parser.add_argument(
            option,
            dest=f"{name}_url",
            metavar="URL",
            help=f"{SOURCE_LABELS[name]} base URL (env {env}; default {getattr(defaults, name)})",
        )


def sources_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Sources:
    chosen = {}
    for item in fields(Sources):
        env = SETTINGS[item.name][1]
        value = getattr(args, f"{item.name}_url", None) or environ.get(env)
        if value:
            chosen[item.name] = value.rstrip("/")
    return Sources(**chosen)


def run_pins(
    args: argparse.Namespace,
    path: Path,
    rerun_hint: str,
    out: TextIO,
    fetch: Fetch | None = None,
) -> int:
    """``rerun_hint`` is how the user named the stack (``--stack NAME`` or ``--stack-file PATH``)."""
    config = load_stack_file(path)
    reports = _reports(config, sources_from(args, os.environ), fetch or HttpFetch())
    if args.update:
        return _update(path, config, reports, rerun_hint, out)
    for report in reports:
        _print_check(report, out)
    if all(report.current for report in reports):
        print("every pin is on the newest release", file=out)
        return 0
    print(f"to take them: venv/bin/homelab-images pins --update {rerun_hint}", file=out)
    return 1


def _reports(config: StackConfig, sources: Sources, fetch: Fetch) -> list[ImageReport]:
    reports = []
    for index, image in enumerate(config.images):
        try:
            reports.append(report_image(image, sources, fetch))
        except SourceError as error:
            option, env = SETTINGS[error.source]
            raise PinsFailed(f"{error}; check the network, or point {option} / {env} at a reachable copy") from None
        except PinsError as error:
            raise PinsFailed(f"{IMAGES_KEY}[{index}] ({image.name}): {error}") from None
    return reports


def _print_check(report: ImageReport, out: TextIO) -> None:
    pinned_minor, newest_minor = report.almalinux
    pinned_k3s, newest_k3s = report.k3s
    channel = f"v1.{k3s_order(pinned_k3s)[0]}"
    if report.current:
        print(
            f"{report.name}: up to date (AlmaLinux 9.{pinned_minor}, k3s {pinned_k3s}, newest of {channel})", file=out
        )
    else:
        print(f"{report.name}: newer pins available", file=out)
        if newest_minor != pinned_minor:
            print(
                f"  AlmaLinux 9.{pinned_minor} -> 9.{newest_minor} (newest AlmaLinux 9 minor; "
                "older minors leave repo.almalinux.org for vault.almalinux.org)",
                file=out,
            )
        if newest_k3s != pinned_k3s:
            print(f"  k3s {pinned_k3s} -> {newest_k3s} (newest of {channel})", file=out)
        print(f"  pins --update changes: {', '.join(c.dotted_key for c in report.changes)}", file=out)
    if report.newer_k3s_minor:
        print(
            f"  note: k3s {report.newer_k3s_minor} is a newer minor; moving to it is a deliberate edit of k3s.version",
            file=out,
        )


def _update(path: Path, config: StackConfig, reports: Sequence[ImageReport], rerun_hint: str, out: TextIO) -> int:
    values: dict[KeyPath, str] = {}
    for index, report in enumerate(reports):
        if report.current:
            continue
        print(f"{report.name}:", file=out)
        for change in report.changes:
            values[("config", IMAGES_KEY, index, *change.key)] = change.new
            print(f"  {change.dotted_key}: {change.old} -> {change.new}", file=out)
    if not values:
        print(f"every pin is on the newest release; {path.name} unchanged", file=out)
        return 0
    original = path.read_bytes().decode("utf-8")
    write_validated(path, replace_scalars(original, values))
    print(f"updated {path.name}", file=out)
    changed = [f"{report.name} (now {config.image(report.name).version})" for report in reports if not report.current]
    print(
        f"next: bump the version of {', '.join(changed)} in {path.name}, "
        f"then venv/bin/homelab-images lock --update {rerun_hint}",
        file=out,
    )
    return 0


def write_validated(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` only if the result still loads as a valid stack."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as tmp:
        tmp.write(text.encode("utf-8"))
    staged = Path(tmp.name)
    try:
        load_stack_file(staged)
        shutil.copymode(path, staged)
        os.replace(staged, path)
    except ConfigError as error:
        problem = error.problems[0].replace(str(staged), str(path))
        raise PinsFailed(f"the updated stack file would not validate, {path.name} left unchanged: {problem}") from None
    finally:
        staged.unlink(missing_ok=True)
