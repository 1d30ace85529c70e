"""A watcher forked at the start of a build that cleans up if the runner dies without doing so.

When ``pulumi up`` is cancelled, pulumi-command's process is killed with
SIGKILL (Go's ``exec.CommandContext``): the runner's own signal handling never
runs. The guardian is a forked copy of the runner in its own session that
holds the read end of a pipe. The runner announces each Packer process group
on it (from the child, before Packer starts, so there is no window in which
Packer runs unannounced) and closes it when it has cleaned up. End of file
with the build directory still present means the runner died: the guardian
interrupts Packer's group (SIGINT, so Packer deletes its VM, as on Ctrl-C),
kills it after the grace period, keeps the scrubbed log and removes the build
directory with the private key. Linux and macOS; nothing here needs a terminal.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from homelab_images.runner.build_log import BuildLog
from homelab_images.runner.signals import HANDLED

POLL_SECONDS = 0.1
BUILD_DIR_PREFIX = "homelab-images-build-"
OWNERS_FILE = "owners"
"""In each build directory: the PIDs of the runner and its guardian."""
RUNNER_KILLED = (
    "the runner was killed before it finished; its guardian interrupted Packer "
    "(which deletes its VM) and removed the build directory"
)


def group_alive(pgid: int) -> bool:
    """Any member of the process group that is not a zombie (a dead runner's children may wait unreaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def stop_group(pgid: int, grace_seconds: float) -> None:
    """SIGINT the group as a terminal's Ctrl-C would, SIGKILL what is left after the grace period."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGINT)
    deadline = time.monotonic() + grace_seconds
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class Guardian:
    def __init__(self, pid: int, announce_fd: int) -> None:
        self.pid = pid
        self._fd: int | None = announce_fd

    @classmethod
    def start(cls, directory: Path, log: BuildLog, scrub: Callable[[str], str], grace_seconds: float) -> Guardian:
        read_fd, write_fd = os.pipe()
        # Blocked across fork so no handler of the runner ever runs in the child.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        pid = os.fork()
        if pid == 0:
            try:
                os.close(write_fd)
                _watch(read_fd, directory, log, scrub, grace_seconds)
            finally:
                os._exit(0)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        os.close(read_fd)
        return cls(pid, write_fd)

    def announce_self(self) -> None:
        """Run in Packer's child between fork and exec (``preexec_fn``): its session ID is its PID."""
        if self._fd is None:
            return
        # A guardian already gone must not keep Packer from starting (subprocess has
        # restored SIGPIPE's default action in the child by now).
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        with suppress(OSError):
            os.write(self._fd, f"{os.getpid()}\n".encode())
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    def stop(self) -> None:
        """The runner cleaned up: let the guardian go."""
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        with suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _detach(keep_fd: int) -> None:
    os.setsid()
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
    # pulumi-command waits until every holder of the command's stdout/stderr closes them.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, _max_fd())


def _max_fd() -> int:
    try:
        return int(os.sysconf("SC_OPEN_MAX"))
    except (ValueError, OSError):
        return 1024


def _watch(read_fd: int, directory: Path, log: BuildLog, scrub: Callable[[str], str], grace_seconds: float) -> None:
    _detach(read_fd)
    announced = b""
    while chunk := os.read(read_fd, 4096):
        announced += chunk
    if not directory.exists():
        return
    groups = [int(word) for word in announced.split()]
    if groups:
        stop_group(groups[-1], grace_seconds)
    with suppress(OSError):
        log.keep(scrub, trailer=RUNNER_KILLED)
    shutil.rmtree(directory, ignore_errors=True)


def record_owners(directory: Path, guardian: Guardian) -> None:
    (directory / OWNERS_FILE).write_text(f"{os.getpid()} {guardian.pid}\n", encoding="ascii")


def process_alive(pid: int) -> bool:
    """Whether a process with this PID exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_build_directories(parent: Path) -> list[Path]:
    """Build directories of this user whose runner and guardian are both gone (both killed at once).

    A reused PID only makes a dead build look alive, never the other way round."""
    stale = []
    for directory in parent.glob(f"{BUILD_DIR_PREFIX}*"):
        try:
            if directory.stat().st_uid != os.getuid():
                continue
            pids = [int(word) for word in (directory / OWNERS_FILE).read_text(encoding="ascii").split()]
        except (OSError, ValueError):
            continue
        if pids and not any(process_alive(pid) for pid in pids):
            stale.append(directory)
    return stale
