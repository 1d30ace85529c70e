"""Render, validate and canonicalize the kickstart of an image (pure functions)."""

from __future__ import annotations

import shlex
from functools import cache
from pathlib import Path

import jinja2

from homelab_images.core.config import Image
from homelab_images.core.kickstart_check import KickstartReport, check_kickstart
from homelab_images.core.paths import KICKSTART_DIR

TEMPLATE_NAME = "alma9-k3s.ks.j2"

# Stands for the per-build SSH public key until the runner supplies it.
BUILD_KEY_PLACEHOLDER = "@BUILD_SSH_PUBLIC_KEY@"


class KickstartInvalid(Exception):
    """The rendered kickstart is rejected; the message says where and why."""


def kickstart_word(value: object) -> str:
    """``value`` as exactly one argument of a kickstart command line.

    Anaconda splits each command line with ``shlex.split`` (pykickstart 3.78,
    pykickstart/parser.py, ``KickstartParser._stateMachine``), so ``shlex.quote``
    keeps a value with a space, quote or leading ``--`` one word instead of new
    options. The parser reads the file line by line before splitting: no
    quoting survives a line break, so control characters are refused outright.
    The config model already rejects such values; this holds even if it did not.
    """
    text = str(value)
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise KickstartInvalid(f"a value for the kickstart contains a control character: {text!r}")
    return shlex.quote(text)


@cache
def inspect_kickstart(text: str) -> KickstartReport:
    """What Anaconda's parser says about ``text``, computed once per distinct text in a process."""
    return check_kickstart(text)


@cache
def _environment(directory: Path) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    environment.filters["ks_word"] = kickstart_word
    return environment


def render_kickstart(
    image: Image,
    build_ssh_public_key: str = BUILD_KEY_PLACEHOLDER,
    template_dir: Path = KICKSTART_DIR,
) -> str:
    where = template_dir / TEMPLATE_NAME
    try:
        template = _environment(template_dir).get_template(TEMPLATE_NAME)
        return template.render(image=image, build_ssh_public_key=build_ssh_public_key)
    except UnicodeDecodeError as error:
        raise KickstartInvalid(f"{where}: not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    except jinja2.TemplateSyntaxError as error:
        raise KickstartInvalid(f"{where}, line {error.lineno}: {error.message}") from None
    except jinja2.TemplateError as error:
        raise KickstartInvalid(f"{where}: {error.message}") from None


def validate_kickstart(text: str) -> None:
    """Parse with Anaconda's own parser (RHEL9 handler) and check what every image needs."""
    report = inspect_kickstart(text)
    if report.error:
        raise KickstartInvalid(report.error)
    if report.problems:
        raise KickstartInvalid("kickstart misses image requirements: " + "; ".join(report.problems))


def canonical_kickstart(text: str) -> str:
    """The kickstart as Anaconda acts on it: commands, packages and script bodies.

    Layout and comments do not count; script bodies count line for line,
    here-documents verbatim (see kickstart_check.py).
    """
    report = inspect_kickstart(text)
    if report.error:
        raise KickstartInvalid(report.error)
    return report.canonical
