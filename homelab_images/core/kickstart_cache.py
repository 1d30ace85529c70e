"""Remembered kickstart checks, so a preview does not pay for pykickstart every time.

A report depends only on the kickstart text, the pykickstart release and this
project's checking code; the cache key covers all three. The cache is
best effort: anything unreadable is recomputed, and a cache that cannot be
written is skipped. HOMELAB_IMAGES_CACHE_DIR overrides its location
(default: $XDG_CACHE_HOME/homelab-images or ~/.cache/homelab-images).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

CACHE_FORMAT = 1


@dataclass(frozen=True)
class KickstartReport:
    canonical: str = ""
    problems: list[str] = field(default_factory=list)
    error: str | None = None


_MEMORY: dict[str, KickstartReport] = {}


def cache_dir() -> Path:
    configured = os.environ.get("HOMELAB_IMAGES_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "homelab-images"


@cache
def _salt() -> str:
    """Changes with the pykickstart release and with the code that produces reports."""
    spec = importlib.util.find_spec("pykickstart")
    parts = [f"format {CACHE_FORMAT}"]
    if spec is not None and spec.origin:
        site = Path(spec.origin).parent.parent
        parts += sorted(path.name for path in site.glob("pykickstart-*.dist-info"))
    here = Path(__file__).parent
    for module in ("kickstart_check.py", "kickstart.py", "kickstart_cache.py"):
        parts.append(hashlib.sha256((here / module).read_bytes()).hexdigest())
    return "\n".join(parts)


def _key(text: str) -> str:
    return hashlib.sha256((_salt() + "\n" + text).encode("utf-8")).hexdigest()


def _read(path: Path) -> KickstartReport | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return KickstartReport(
            canonical=str(data["canonical"]),
            problems=[str(problem) for problem in data["problems"]],
            error=None if data["error"] is None else str(data["error"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write(path: Path, report: KickstartReport) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {"canonical": report.canonical, "problems": report.problems, "error": report.error}
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="utf-8") as handle:
            json.dump(document, handle)
        os.replace(handle.name, path)
    except OSError:
        return


def cached_report(text: str, compute: Callable[[], KickstartReport]) -> KickstartReport:
    key = _key(text)
    if key in _MEMORY:
        return _MEMORY[key]
    path = cache_dir() / "kickstart" / f"{key}.json"
    report = _read(path)
    if report is None:
        report = compute()
        _write(path, report)
    _MEMORY[key] = report
    return report
