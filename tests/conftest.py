"""Shared test setup."""

import logging
import os
from collections.abc import Generator

import pytest

# Tests that expect a Pulumi program to fail leave failed Output futures behind;
# asyncio reports each one at garbage collection, which is noise here.
logging.getLogger("asyncio").setLevel(logging.CRITICAL)


@pytest.hookimpl(wrapper=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> Generator[None, int, int]:
    """``-n auto``: one worker more than xdist counts CPUs. A runner test's worker mostly waits on the
    processes it started (runner, stand-in packer) and on their timeouts; the extra worker keeps every
    CPU busy meanwhile. PYTEST_XDIST_AUTO_NUM_WORKERS, when set, is taken as it is."""
    workers = yield
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return workers
    return workers + 1
