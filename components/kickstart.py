"""Render, validate and canonicalize the kickstart of an image (pure functions)."""

from __future__ import annotations

import copy
import re
import warnings
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import jinja2
from pykickstart.constants import SELINUX_ENFORCING
from pykickstart.errors import KickstartError, KickstartParseError
from pykickstart.parser import KickstartParser
from pykickstart.version import RHEL9, makeVersion

from components.config import Image

KICKSTART_DIR = Path(__file__).resolve().parent.parent / "kickstart"
TEMPLATE_NAME = "alma9-k3s.ks.j2"

# Stands for the per-build SSH public key until the build command supplies it.
BUILD_KEY_PLACEHOLDER = "@BUILD_SSH_PUBLIC_KEY@"

ESSENTIAL_PACKAGES = (
    "cloud-init",
    "cloud-utils-growpart",
    "qemu-guest-agent",
    "openssh-server",
)
ESSENTIAL_SERVICES = ("sshd", "qemu-guest-agent", "cloud-init")


class KickstartInvalid(Exception):
    """The rendered kickstart is rejected; the message says where and why."""


@cache
def _environment(directory: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_kickstart(
    image: Image,
    build_ssh_public_key: str = BUILD_KEY_PLACEHOLDER,
    template_dir: Path = KICKSTART_DIR,
) -> str:
    template = _environment(template_dir).get_template(TEMPLATE_NAME)
    return template.render(image=image, build_ssh_public_key=build_ssh_public_key)


@cache
def _pristine_rhel9_handler() -> Any:
    return makeVersion(RHEL9)


@lru_cache(maxsize=64)
def _parse(text: str) -> KickstartParser:
    """Parse once per distinct text; callers must not modify the result."""
    # Building a handler registers ~700 argparse options; copying a built one is ~6x faster.
    parser = KickstartParser(copy.deepcopy(_pristine_rhel9_handler()), errorsAreFatal=True)
    with warnings.catch_warnings():
        # Deprecated syntax is a defect of our template, not noise.
        warnings.simplefilter("error")
        try:
            parser.readKickstartFromString(text)
        except (KickstartParseError, KickstartError) as error:
            raise KickstartInvalid(f"pykickstart (RHEL9) rejected the kickstart: {error}") from None
        except Warning as warning:
            raise KickstartInvalid(f"pykickstart (RHEL9) warns about the kickstart: {warning}") from None
    return parser


def validate_kickstart(text: str) -> None:
    """Parse with Anaconda's own parser (RHEL9 handler) and check what every image needs."""
    handler = _parse(text).handler
    problems = []
    packages = handler.packages
    for name in ESSENTIAL_PACKAGES:
        if name not in packages.packageList or name in packages.excludedList:
            problems.append(f"package {name} must be installed")
    if handler.selinux.selinux != SELINUX_ENFORCING:
        problems.append("SELinux must be enforcing")
    for name in ESSENTIAL_SERVICES:
        if name not in handler.services.enabled:
            problems.append(f"service {name} must be enabled")
    if not handler.rootpw.lock:
        problems.append("root must have no password (rootpw --lock)")
    if problems:
        raise KickstartInvalid("kickstart misses image requirements: " + "; ".join(problems))


_COMMENT_OR_BLANK = re.compile(r"^\s*(#.*)?$")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")


def script_without_comments(body: str) -> str:
    """Drop blank and comment-only shell lines, but never inside a here-document,
    whose lines become file content in the image."""
    kept: list[str] = []
    heredoc_end: str | None = None
    for raw_line in body.splitlines():
        line = raw_line.rstrip()
        if heredoc_end is not None:
            kept.append(line)
            if line.strip() == heredoc_end:
                heredoc_end = None
            continue
        if _COMMENT_OR_BLANK.match(line):
            continue
        kept.append(line)
        opened = _HEREDOC.search(line)
        if opened:
            heredoc_end = opened.group(2)
    return "\n".join(kept)


def canonical_kickstart(text: str) -> str:
    """The kickstart as Anaconda acts on it: commands, packages and script bodies.

    Layout and comments do not count. pykickstart's serializer prints its own
    version in a header comment; comments are dropped, so it cannot leak into a
    fingerprint. Script bodies count line for line, here-documents verbatim.
    """
    handler = _parse(text).handler
    scripts = list(handler.scripts)
    handler.scripts = []
    try:
        serialized = str(handler)
    finally:
        handler.scripts = scripts
    commands = [line.rstrip() for line in serialized.splitlines() if not _COMMENT_OR_BLANK.match(line)]
    sections = [
        f"%{script.type} interp={script.interp} chroot={script.inChroot} "
        f"erroronfail={script.errorOnFail}\n{script_without_comments(script.script)}"
        for script in scripts
    ]
    return "\n".join(commands + sections) + "\n"
