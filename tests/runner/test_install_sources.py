"""Preflight reads the installer's package repositories: a rotted mirror fails in seconds, not after ssh_timeout.

The mirror is a local HTTP server on 127.0.0.1 (tests/runner/conftest.py ``Mirror``);
nothing here reaches the Internet.
"""

from __future__ import annotations

import time
from typing import Any

from homelab_images.runner.install_sources import REPOMD
from tests.runner.conftest import Mirror, Runner, vms


def test_a_mirror_that_answers_404_fails_preflight_within_seconds_naming_the_url(
    runner: Runner, pve: Any, mirror: Mirror
) -> None:
    moved = [url.replace("/9.", "/moved-9.") for url in runner.spec.install_repositories]
    started = time.monotonic()
    run = runner.create(runner.spec.replace(install_repositories=moved))
    seconds = time.monotonic() - started
    run.assert_clean()
    assert run.returncode != 0
    (error,) = run.errors
    assert f"the install source {moved[0]}{REPOMD} answered 404" in error
    assert "vault.almalinux.org/9.N" in error and "pins --update" in error
    assert runner.packer_calls() == [] and vms(pve) == {}
    assert seconds < 20


def test_every_repository_is_checked(runner: Runner, mirror: Mirror) -> None:
    base_os, app_stream = runner.spec.install_repositories
    assert "/BaseOS/x86_64/os/" in base_os and "/AppStream/x86_64/os/" in app_stream
    broken = app_stream.replace("AppStream", "AppStream-gone")
    run = runner.create(runner.spec.replace(install_repositories=[base_os, broken]))
    (error,) = run.errors
    assert f"{broken}{REPOMD} answered 404" in error


def test_a_mirror_this_machine_cannot_reach_is_a_warning(runner: Runner, pve: Any) -> None:
    unreachable = ["http://127.0.0.1:9/almalinux/9.8/BaseOS/x86_64/os/"]
    run = runner.create(runner.spec.replace(install_repositories=unreachable))
    assert run.returncode == 0, run.stderr
    assert any(f"could not read {unreachable[0]}{REPOMD} from this machine" in w for w in run.warnings)
