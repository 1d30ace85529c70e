"""Signals to the runner around Packer's start, the bounded stderr and Packer's log settings."""

from __future__ import annotations

import io
import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

from homelab_images.runner.build_log import PACKER_LOG_VARS_NOT_PASSED, packer_log_environment
from homelab_images.runner.console import BUDGET_BYTES, Console
from homelab_images.runner.errors import Interrupted
from homelab_images.runner.packer_run import PASSED_TO_PACKER, PASSED_TO_PACKER_INIT
from homelab_images.runner.signals import HANDLED, SignalHub


@pytest.fixture
def hub() -> Iterator[SignalHub]:
    previous = {signum: signal.getsignal(signum) for signum in HANDLED}
    hub = SignalHub()
    hub.install()
    yield hub
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def test_a_signal_while_packer_is_being_started_reaches_packer(hub: SignalHub) -> None:
    """SIGTERM after fork but before the group is known: recorded, then forwarded, never lost."""
    with hub.forwarding() as forward_to:
        os.kill(os.getpid(), signal.SIGTERM)  # delivered here, before the "Packer" below exists
        packer = subprocess.Popen(["sleep", "30"], start_new_session=True)
        forward_to(packer.pid)
    assert packer.wait(timeout=10) == -signal.SIGTERM
    assert hub.received == signal.SIGTERM


def test_a_hang_up_reaches_packer_as_an_interrupt(hub: SignalHub) -> None:
    packer = subprocess.Popen(["sleep", "30"], start_new_session=True)
    with hub.forwarding() as forward_to:
        forward_to(packer.pid)
        os.kill(os.getpid(), signal.SIGHUP)
    assert packer.wait(timeout=10) == -signal.SIGINT


def test_outside_packer_a_signal_interrupts_the_runner(hub: SignalHub) -> None:
    with pytest.raises(Interrupted) as caught:
        os.kill(os.getpid(), signal.SIGHUP)
    assert caught.value.signum == signal.SIGHUP


def test_stderr_stays_under_its_budget_but_errors_always_get_out() -> None:
    stream = io.StringIO()
    console = Console(stream, secrets=["s3cret"])
    for index in range(5000):
        console.stage(f"line {index} " + "x" * 200)
    console.warn("could not remove VM 9000 (s3cret)")
    console.error("Packer build failed: " + "y" * 10_000)
    text = stream.getvalue()
    assert len(text.encode()) < BUDGET_BYTES + 10_000 < 128 * 1024
    assert text.count("further progress lines omitted") == 1
    assert "warning: could not remove VM 9000 (<redacted>)" in text
    assert text.splitlines()[-1].startswith("error: Packer build failed: yyy")


def test_packer_log_settings_are_the_runners_to_make_not_passed_through() -> None:
    """PACKER_LOG_PATH would write an unscrubbed debug log anywhere: never in Packer's allowlist."""
    assert not (PASSED_TO_PACKER | PASSED_TO_PACKER_INIT) & PACKER_LOG_VARS_NOT_PASSED
    assert packer_log_environment({"PACKER_LOG": "1", "PACKER_LOG_PATH": "/tmp/x"}) == {"PACKER_LOG": "1"}
    assert packer_log_environment({"PACKER_LOG": "0"}) == packer_log_environment({}) == {}
