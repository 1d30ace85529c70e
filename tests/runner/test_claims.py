"""Local VM ID claims: an optimisation only, and never a race that hides a live claim."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from homelab_images.runner.vmids import Claims


def test_looking_at_claims_never_unlinks_a_file_another_process_may_be_claiming(tmp_path: Path) -> None:
    claims = Claims(tmp_path, "https://pve1:8006/")
    # A claim file nobody holds: a dead process's, or one a live process has opened but not locked yet.
    unheld = claims.directory / "9000.claim"
    unheld.write_text("{}")
    assert claims.live() == set()
    assert unheld.exists(), "live() only looks: unlinking here could orphan a claim being taken"

    with claims.locked():
        claims.prune()
    assert not unheld.exists(), "dead claims are pruned under the directory lock, where every take happens"


def test_a_held_claim_is_live_and_survives_pruning(tmp_path: Path) -> None:
    claims = Claims(tmp_path, "https://pve1:8006/")
    with claims.locked():
        claim = claims.take(9001, {"image": "alma9"})
    other = os.open(claim.path, os.O_RDWR)
    try:
        assert claims.live() == {9001}
        with claims.locked():
            claims.prune()
        assert claim.path.exists()
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(other)
        claim.release()
    assert claims.live() == set()
