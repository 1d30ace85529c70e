"""A spec on stdin the runner cannot use is one error line naming the field, exit 2, before any Proxmox call."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.runner.conftest import REPO, shipped_spec


def run_create(stdin: str) -> subprocess.CompletedProcess[str]:
    # No endpoint or token: the spec is read first, so none is needed to reject it.
    return subprocess.run(
        [sys.executable, "-m", "homelab_images.runner", "create"],
        input=stdin, cwd=REPO, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "named"),
    [({"timeout_minutes": "60"}, "timeout_minutes"), ({"vm_id_range": None}, "vm_id_range"), ({"typo": 1}, "typo")],
)
def test_a_bad_spec_is_one_line_naming_the_field(change: dict[str, object], named: str) -> None:
    document = {**json.loads(shipped_spec().to_json()), **change}
    done = run_create(json.dumps(document))
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: the build spec on stdin is invalid (") and named in line
    assert done.stdout == ""


def test_text_that_is_not_json_is_one_line() -> None:
    done = run_create("not json\n")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: the build spec on stdin is invalid (")
