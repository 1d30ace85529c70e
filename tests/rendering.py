"""Plans of the shipped stack file and of variations, rendered through the program's own functions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

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
