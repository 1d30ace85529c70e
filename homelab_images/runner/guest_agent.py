"""Commands run inside a VM through its QEMU guest agent, as the Proxmox API offers them.

qemu-server (src/PVE/API2/Qemu/Agent.pm at e6352be6, 9.2.6): ``POST .../agent/exec``
takes ``command`` as an array (program, then arguments) and answers ``{pid}``;
``GET .../agent/exec-status?pid=`` answers ``exited`` and, once exited,
``exitcode`` (or ``signal``), ``out-data`` and ``err-data`` (decoded from base64
by qemu-server, src/PVE/QemuServer/Agent.pm ``qemu_exec_status``). Until the
guest's agent answers, every agent call fails with "QEMU guest agent is not
running" (``assert_agent_available``) or a QMP "got timeout".
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from proxmoxer.core import ResourceException

from homelab_images.runner.proxmox import Api, Kind, Retrier, classify

NOT_ANSWERING = re.compile(r"guest agent is not running|got timeout|VM \d+ is not running", re.I)
# What is kept of a command's output for messages: its last characters.
KEPT_CHARS = 2000


class AgentSilent(Exception):
    """The guest agent did not answer before the deadline."""


@dataclass
class Clock:
    """Time as the smoke test sees it; ``waited`` adds up the seconds spent waiting on the guest."""

    now: Callable[[], float] = time.monotonic
    pause: Callable[[float], None] = time.sleep
    waited: float = 0.0

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            started = self.now()
            self.pause(seconds)
            self.waited += self.now() - started


@dataclass(frozen=True)
class Execution:
    """How a command ended in the guest; ``finished`` is False when it was still running at its deadline."""

    finished: bool
    exitcode: int | None = None
    signal: int | None = None
    out: str = ""
    err: str = ""
    seconds: float = field(default=0.0, compare=False)

    @property
    def output(self) -> str:
        """stdout and stderr, trimmed to their last KEPT_CHARS characters, for messages."""
        text = "\n".join(part.strip() for part in (self.out, self.err) if part.strip())
        return text if len(text) <= KEPT_CHARS else "..." + text[-KEPT_CHARS:]


class GuestAgent:
    """One VM's guest agent."""

    def __init__(self, api: Api, retry: Retrier, node: str, vmid: int, clock: Clock) -> None:
        self._vm = api.nodes(node).qemu(vmid)
        self._retry = retry
        self._where = f"guest agent of VM {vmid} on {node}"
        self._clock = clock

    def wait_until_answering(self, deadline: float) -> None:
        """Ping until the agent answers; AgentSilent at ``deadline``."""
        delay = 0.5
        while True:
            try:
                self._vm.agent.ping.post()
                return
            except (ResourceException, requests.exceptions.ConnectionError, requests.exceptions.Timeout) as raw:
                error = classify(raw, self._where)
                if not NOT_ANSWERING.search(error.message) and error.kind is not Kind.NETWORK:
                    raise error from None
            remaining = deadline - self._clock.now()
            if remaining <= 0:
                raise AgentSilent()
            self._clock.sleep(min(delay, remaining))
            delay = min(delay * 2, 5.0)

    def run(self, argv: list[str], deadline: float) -> Execution:
        """Start ``argv`` in the guest and poll its status until it exits or ``deadline`` passes."""
        started = self._clock.now()
        answer = self._retry(lambda: self._vm.agent.exec.post(command=list(argv)), self._where)
        pid = int(answer["pid"])
        delay = 0.1
        while True:
            status = self._retry(lambda: self._vm.agent("exec-status").get(pid=pid), self._where)
            if status.get("exited"):
                return Execution(
                    finished=True,
                    exitcode=_int_or_none(status.get("exitcode")),
                    signal=_int_or_none(status.get("signal")),
                    out=str(status.get("out-data") or ""),
                    err=str(status.get("err-data") or ""),
                    seconds=self._clock.now() - started,
                )
            remaining = deadline - self._clock.now()
            if remaining <= 0:
                return Execution(finished=False, seconds=self._clock.now() - started)
            self._clock.sleep(min(delay, remaining))
            delay = min(delay * 2, 2.0)


def _int_or_none(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(str(value))
    except ValueError:
        return None
