"""The one https check for URLs the program and the runner both accept (the Proxmox endpoint, ISO URLs)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

PROXMOX_API_PORT = 8006

# RFC 3986's characters (unreserved, reserved and %), less the single quote, ``$``, the parentheses
# and ``#``: these URLs are written into kickstart lines, where a space, quote or newline would split
# or end the line, ``#`` starts a comment, and nothing shell-like belongs in a mirror's address.
_URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?\[\]@!&*+,;=%]+")
# user:password@ before the host: the URL is stored and rendered in plain text, so it is refused unechoed.
_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@")


def https_url_parts(raw: str) -> tuple[str, int]:
    """(host, port) of an https:// URL; ValueError naming what was expected.

    The host is bracketed if it is an IPv6 address; the port defaults to Proxmox's 8006.
    """
    if _USERINFO.match(raw.strip()):
        raise ValueError(
            "expected an https:// URL without user:password@ (it would be stored and rendered in plain text)"
        )
    if not _URL_CHARACTERS.fullmatch(raw):
        raise ValueError(
            "expected an https:// URL without spaces, quotes or control characters "
            f"(RFC 3986 characters only, none of $()#), got {raw!r}"
        )
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError:
        raise ValueError(f"expected an https:// URL, got {raw!r}") from None
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"expected an https:// URL, got {raw!r}")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return host, port or PROXMOX_API_PORT
