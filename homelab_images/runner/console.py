"""Everything the runner tells the user goes to stderr; stdout carries only the result JSON.

Every line passes through ``scrub`` so no secret reaches the terminal or
Pulumi state, even if Packer or Proxmox were to echo one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import TextIO

REDACTED = "<redacted>"


class Console:
    def __init__(self, stream: TextIO | None = None, secrets: Iterable[str] = ()) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._secrets = [secret for secret in secrets if secret]
        self.started = time.monotonic()

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

    def _write(self, text: str) -> None:
        self._stream.write(self.scrub(text) + "\n")
        self._stream.flush()

    def stage(self, text: str) -> None:
        self._write(f"[build {self.elapsed()}] stage: {text}")

    def still(self, text: str) -> None:
        self._write(f"[build {self.elapsed()}] still: {text}")

    def raw(self, text: str) -> None:
        self._write(text)

    def note(self, text: str) -> None:
        self._write(f"note: {text}")

    def warn(self, text: str) -> None:
        self._write(f"warning: {text}")

    def error(self, text: str) -> None:
        self._write(f"error: {text}")
