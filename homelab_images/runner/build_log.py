"""Packer's full output: a raw file while it runs, a scrubbed log kept when a build fails.

pulumi-command stores the command's stderr in state and passes it back to the
next update and delete as ``PULUMI_COMMAND_STDERR``; Linux refuses an
environment string over 128 KiB there (E2BIG), so stderr only gets progress
lines and, on failure, Packer's last lines. The full output goes to a file.

Packer writes into ``packer-output.raw`` in the private build directory (a file,
not a pipe: Packer never dies of a broken pipe when the runner is killed). When
Packer is done — or, after the runner was killed, the guardian — the raw file is
scrubbed of secrets into ``<log dir>/<image>-<UTC time>-vm<id>.log``. It is
removed after a successful build unless Packer's debug log was asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

RAW_OUTPUT_FILE = "packer-output.raw"
LOG_DIR_VAR = "HOMELAB_IMAGES_LOG_DIR"
KEPT_LOGS_PER_IMAGE = 10

# Packer's debug log (hashicorp/packer, website/content/docs/configure.mdx,
# "PACKER_LOG": any value other than "" or "0" enables it, on stderr unless
# PACKER_LOG_PATH names a file). The runner decides both names itself:
PACKER_LOG_VAR = "PACKER_LOG"
PACKER_LOG_PATH_VAR = "PACKER_LOG_PATH"
# Never passed through to Packer from the runner's environment: PACKER_LOG_PATH
# would write an unscrubbed debug log (tokens in request dumps included) wherever
# it points, outside the build directory; PACKER_LOG is set by the runner only.
PACKER_LOG_VARS_NOT_PASSED = frozenset({PACKER_LOG_VAR, PACKER_LOG_PATH_VAR})


def debug_log_requested(environ: Mapping[str, str]) -> bool:
    """The user asked for Packer's debug log the way Packer's docs say (``PACKER_LOG=1``)."""
    return environ.get(PACKER_LOG_VAR, "") not in ("", "0")


def packer_log_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What Packer gets for its debug log: ``PACKER_LOG=1`` on its stderr (into the raw file), never a path."""
    return {PACKER_LOG_VAR: "1"} if debug_log_requested(environ) else {}


def default_log_dir(environ: Mapping[str, str]) -> Path:
    override = environ.get(LOG_DIR_VAR)
    if override:
        return Path(override)
    state = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", os.path.expanduser("~"))) / ".local/state")
    return Path(state) / "homelab-images" / "logs"


@dataclass(frozen=True)
class BuildLog:
    raw: Path
    """Packer's unscrubbed output, inside the private build directory."""
    kept: Path
    """Where the scrubbed log goes."""

    @classmethod
    def for_build(cls, directory: Path, log_dir: Path, image: str, vmid: int) -> BuildLog:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return cls(directory / RAW_OUTPUT_FILE, log_dir / f"{image}-{stamp}-vm{vmid}.log")

    def open_for_packer(self) -> int:
        """A file descriptor Packer writes to (stdout and stderr); appended to by init and build."""
        return os.open(self.raw, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def keep(self, scrub: Callable[[str], str], trailer: str = "") -> Path:
        """Write the scrubbed log (0600) and prune this image's oldest ones."""
        self.kept.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = self.raw.read_text(encoding="utf-8", errors="replace") if self.raw.exists() else ""
        fd = os.open(self.kept, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(scrub(text))
            if trailer:
                handle.write(scrub(trailer) + "\n")
        prefix = self.kept.name.rsplit("-", 2)[0] + "-"
        logs = sorted(p for p in self.kept.parent.glob(f"{prefix}*.log") if p.name[len(prefix) :][:1].isdigit())
        for old in logs[:-KEPT_LOGS_PER_IMAGE]:
            old.unlink(missing_ok=True)
        return self.kept

    def discard(self) -> None:
        self.kept.unlink(missing_ok=True)
