"""SIGINT/SIGTERM handling: forwarded to Packer while it runs, an ``Interrupted`` exception otherwise.

Packer runs in its own process group so a terminal's Ctrl-C reaches it once,
through us, and we know it happened: on a signal Packer deletes its VM, and
the runner still checks afterwards.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType

from homelab_images.runner.errors import Interrupted

HANDLED = (signal.SIGINT, signal.SIGTERM)


class SignalHub:
    def __init__(self) -> None:
        self.received: int | None = None
        self._group: int | None = None

    def install(self) -> None:
        for signum in HANDLED:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signum
        if self._group is not None:
            forward(self._group, signum)
            return
        raise Interrupted(signum)

    @contextmanager
    def forwarding_to(self, group: int) -> Iterator[None]:
        self._group = group
        try:
            yield
        finally:
            self._group = None


def forward(group: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)
