"""Plans of the shipped stack file and of variations, rendered through the program's own functions."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from homelab_images.core.config import load_config
from homelab_images.core.plan import ImagePlan, plan_stack
from tests.pulumi_harness import FIXTURE_KICKSTART_DIR
from tests.stack_files import Mutation, mutated_config

FIXED_NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def plan_for(mutate: Mutation | None = None, now: datetime = FIXED_NOW) -> ImagePlan:
    config = mutated_config(mutate or (lambda _: None))
    (plan,) = plan_stack(load_config(config), now, FIXTURE_KICKSTART_DIR)
    return plan


def source_of(plan: ImagePlan) -> dict[str, Any]:
    source: dict[str, Any] = plan.packer_template["source"]["proxmox-iso"][plan.name]
    return source


# shellcheck is a Debian package, not a Python one: `make test` says when it is missing; under CI
# (.ci/run installs it) a missing one fails the tests instead.
needs_shellcheck = pytest.mark.skipif(
    shutil.which("shellcheck") is None and not os.environ.get("CI"),
    reason="shellcheck is not installed: `apt-get install shellcheck` to check the shell scripts (CI installs it)",
)


def shellcheck_problems(directory: Path, scripts: Mapping[str, str]) -> list[str]:
    """shellcheck's findings (style and worse) for each named script; empty when all are clean."""
    problems = []
    for name, text in scripts.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        done = subprocess.run(["shellcheck", "--severity=style", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            problems.append(f"{name}:\n{done.stdout}")
    return problems
