"""Anaconda's own parser (pykickstart, RHEL9 handler) applied to a rendered kickstart.

Pure: the same text gives the same report, so kickstart.py remembers it per
text for the life of the process (images of one stack share their kickstart).
"""

from __future__ import annotations

import copy
import re
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

from pykickstart.constants import SELINUX_ENFORCING
from pykickstart.errors import KickstartError, KickstartParseError
from pykickstart.parser import KickstartParser
from pykickstart.version import RHEL9, makeVersion

ESSENTIAL_PACKAGES = ("cloud-init", "cloud-utils-growpart", "qemu-guest-agent", "openssh-server")
ESSENTIAL_SERVICES = ("sshd", "qemu-guest-agent", "cloud-init")

_COMMENT_OR_BLANK = re.compile(r"^\s*(#.*)?$")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")


@dataclass(frozen=True)
class KickstartReport:
    canonical: str = ""
    problems: tuple[str, ...] = ()
    error: str | None = None


@cache
def _pristine_rhel9_handler() -> Any:
    return makeVersion(RHEL9)


def check_kickstart(text: str) -> KickstartReport:
    # Building a handler registers ~700 argparse options; copying a built one is ~6x faster.
    handler = copy.deepcopy(_pristine_rhel9_handler())
    parser = KickstartParser(handler, errorsAreFatal=True)
    with warnings.catch_warnings():
        # Deprecated syntax is a defect of our template, not noise.
        warnings.simplefilter("error")
        try:
            parser.readKickstartFromString(text)
        except (KickstartParseError, KickstartError) as error:
            return KickstartReport(error=f"pykickstart (RHEL9) rejected the kickstart: {error}")
        except Warning as warning:
            return KickstartReport(error=f"pykickstart (RHEL9) warns about the kickstart: {warning}")
    return KickstartReport(canonical=_canonical(handler), problems=tuple(_missing_requirements(handler)))


def _missing_requirements(handler: Any) -> list[str]:
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
    return problems


def _canonical(handler: Any) -> str:
    """Commands, packages and script bodies; no comments or layout.

    pykickstart's serializer prints its own version in a header comment;
    comments are dropped, so it cannot leak into a fingerprint.
    """
    scripts = list(handler.scripts)
    handler.scripts = []
    serialized = str(handler)
    commands = [line.rstrip() for line in serialized.splitlines() if not _COMMENT_OR_BLANK.match(line)]
    sections = [
        f"%{script.type} interp={script.interp} chroot={script.inChroot} "
        f"erroronfail={script.errorOnFail}\n{script_without_comments(script.script)}"
        for script in scripts
    ]
    return "\n".join(commands + sections) + "\n"


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
