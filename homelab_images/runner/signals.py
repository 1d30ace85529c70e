"""SIGINT/SIGTERM/SIGHUP handling: forwarded to Packer while it runs, an ``Interrupted`` exception otherwise.

Packer runs in its own session, so a terminal's Ctrl-C reaches it once,
through us, and we know it happened: on a signal Packer deletes its VM, and
the runner still checks afterwards. From just before Packer is started until
its process group is known, a signal is only recorded and then forwarded:
there is no moment in which Packer runs and a signal to the runner is lost.

Under ``pulumi up`` none of this runs on a cancel: the engine's cancel makes
pulumi-command SIGKILL the command (see guardian.py for what cleans up then).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType

from homelab_images.runner.errors import Interrupted

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def for_packer(signum: int) -> int:
    """The signal Packer gets: a hang-up becomes an interrupt, Packer's documented way to cancel and clean up."""
    return signal.SIGINT if signum == signal.SIGHUP else signum


class SignalHub:
    def __init__(self) -> None:
        self.received: int | None = None
        self._group: int | None = None
        self._deferring = False

    def install(self) -> None:
        for signum in HANDLED:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signum
        if self._group is not None:
            forward(self._group, for_packer(signum))
            return
        if self._deferring:
            return
        raise Interrupted(signum)

    @contextmanager
    def forwarding(self) -> Iterator[Callable[[int], None]]:
        """Enter before starting Packer; call the yielded function with its process group as soon as it exists."""

        def forward_to(group: int) -> None:
            self._group = group
            if self.received is not None:
                forward(group, for_packer(self.received))

        self._deferring = True
        try:
            yield forward_to
        finally:
            self._group = None
            self._deferring = False


def forward(group: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)
