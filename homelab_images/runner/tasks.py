"""Proxmox tasks: a call that returns a UPID has only started; its exitstatus says how it ended."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from homelab_images.runner.proxmox import Api, TaskFailed

DEFAULT_TASK_TIMEOUT = 600.0


def wait(api: Api, node: str, upid: str, timeout: float = DEFAULT_TASK_TIMEOUT) -> dict[str, Any]:
    """Poll until the task stops; raise TaskFailed unless its exitstatus is exactly ``OK``."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        status: dict[str, Any] = api.nodes(node).tasks(upid).status.get()
        if status.get("status") == "stopped":
            exitstatus = str(status.get("exitstatus", ""))
            if exitstatus != "OK":
                raise TaskFailed(exitstatus or "task ended without an exit status")
            return status
        if time.monotonic() > deadline:
            raise TaskFailed(f"task {upid} still running after {int(timeout)}s")
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def run(api: Api, node: str, start: Callable[[], Any], timeout: float = DEFAULT_TASK_TIMEOUT) -> None:
    """Start a task-returning call and wait for it; a synchronous call (no UPID) is done when it returns."""
    upid = start()
    if isinstance(upid, str) and upid.startswith("UPID:"):
        wait(api, node, upid, timeout)
