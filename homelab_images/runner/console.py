"""Everything the runner tells the user goes to stderr; stdout carries only the result JSON.

Every line passes through ``scrub`` so no secret reaches the terminal or
Pulumi state, even if Packer or Proxmox were to echo one.

stderr is bounded: pulumi-command v1.2.1 stores it and passes it to the next
update and delete as PULUMI_COMMAND_STDERR (provider/pkg/provider/local/
commandOutputs.go, ``run``), and Linux refuses one environment string over
MAX_ARG_STRLEN (32 pages, 128 KiB; include/uapi/linux/binfmts.h) with E2BIG.
After ``BUDGET_BYTES`` only the error line is written.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import TextIO

REDACTED = "<redacted>"
BUDGET_BYTES = 48 * 1024
LINE_CHARS = 1000
ERROR_CHARS = 4000


class Console:
    def __init__(self, stream: TextIO | None = None, secrets: Iterable[str] = ()) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._secrets = [secret for secret in secrets if secret]
        self.started = time.monotonic()
        self.written = 0
        self._omitting = False

    def add_secret(self, secret: str) -> None:
        if secret:
            self._secrets.append(secret)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        minutes, seconds = divmod(seconds, 60)
        return f"{minutes:02d}:{seconds:02d}"

    def _write(self, text: str, limit: int = LINE_CHARS, always: bool = False) -> None:
        line = self.scrub(text)
        if len(line) > limit:
            line = line[: limit - 1] + "…"
        size = len(line.encode("utf-8", "replace")) + 1
        if not always and self.written + size > BUDGET_BYTES:
            if not self._omitting:
                self._omitting = True
                self._emit("note: further progress lines omitted to keep this output small")
            return
        self._emit(line)

    def _emit(self, line: str) -> None:
        self.written += len(line.encode("utf-8", "replace")) + 1
        self._stream.write(line + "\n")
        self._stream.flush()

    def stage(self, text: str) -> None:
        self._write(f"[build {self.elapsed()}] stage: {text}")

    def still(self, text: str) -> None:
        self._write(f"[build {self.elapsed()}] still: {text}")

    def raw(self, text: str) -> None:
        self._write(text)

    def note(self, text: str, always: bool = False) -> None:
        self._write(f"note: {text}", always=always)

    def warn(self, text: str) -> None:
        self._write(f"warning: {text}", limit=ERROR_CHARS, always=True)

    def error(self, text: str) -> None:
        self._write(f"error: {text}", limit=ERROR_CHARS, always=True)
