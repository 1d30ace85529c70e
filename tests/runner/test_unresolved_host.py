"""A Proxmox host name that does not resolve fails at once, naming the host, instead of backing off for seconds."""

from __future__ import annotations

import time

import requests

from homelab_images.runner.console import Console
from homelab_images.runner.proxmox import ATTEMPTS_WHEN_UNRESOLVED, Kind, Retrier, classify
from tests.runner.conftest import Runner
from tests.runner.test_gc import gc

# RFC 6761: .invalid never resolves, with or without a network.
UNRESOLVABLE = "https://pve.homelab-images-test.invalid:8006"


def unresolvable_call() -> object:
    return requests.get(f"{UNRESOLVABLE}/api2/json/version", timeout=5)


def test_a_name_that_does_not_resolve_is_retried_once_not_through_the_whole_backoff(capsys: object) -> None:
    retry = Retrier(Console(), base_seconds=0.5, attempts=6)
    slept: list[float] = []
    retry.sleep = slept.append
    try:
        retry(unresolvable_call, "version")
    except Exception as raised:
        error = classify(raised, "version")
    else:
        raise AssertionError("a .invalid host resolved")
    assert error.kind is Kind.UNRESOLVED
    assert len(slept) == ATTEMPTS_WHEN_UNRESOLVED - 1


def test_gc_against_a_host_that_does_not_resolve_names_it_in_one_line_within_seconds(runner: Runner) -> None:
    started = time.monotonic()
    done = gc(runner, extra_env={"PROXMOX_VE_ENDPOINT": UNRESOLVABLE})
    assert done.returncode != 0
    assert time.monotonic() - started < 10
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr
    assert lines[-1].startswith("error: the Proxmox host name 'pve.homelab-images-test.invalid' does not resolve (DNS)")
    assert "PROXMOX_VE_ENDPOINT" in lines[-1]
