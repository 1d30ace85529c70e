"""Replica nodes: each node keeps its own rollback templates, and retention never crosses nodes."""

from __future__ import annotations

import copy
from typing import Any

from homelab_images.contract.build_spec import BuildSpec
from homelab_images.contract.ownership import SUPERSEDED_TAG
from homelab_images.runner.preflight import NODE_PRIVILEGES
from tests.runner.conftest import TOKEN_ID, Run, Runner, next_spec, tags_of, vms


def on_node(spec: BuildSpec, node: str) -> BuildSpec:
    """The same image built on ``node``, as the planner's plan_for_node renders it."""
    template = copy.deepcopy(spec.packer_template)
    for source in template["source"]["proxmox-iso"].values():
        source["node"] = node
    return spec.replace(node=node, packer_template=template)


def created(runner: Runner, spec: BuildSpec) -> Run:
    run = runner.create(spec)
    assert run.returncode == 0, run.stderr
    return run


def test_retention_and_retained_lists_are_per_node(runner: Runner, pve: Any) -> None:
    pve.add_node("pve2")
    pve.grant(TOKEN_ID, "/nodes/pve2", *NODE_PRIVILEGES)
    v1 = runner.spec
    v2 = next_spec(v1, "1.1.0", "b")
    v3 = next_spec(v1, "1.2.0", "c")
    first = {node: created(runner, on_node(v1, node)) for node in ("pve1", "pve2")}
    second = {node: created(runner, on_node(v2, node)) for node in ("pve1", "pve2")}
    for node in ("pve1", "pve2"):
        retained = second[node].result["retained"]
        assert [(r["vmId"], r["node"]) for r in retained] == [(first[node].result["vmId"], node)], (
            "a retained entry names a template on its own node, never a replica elsewhere"
        )
        assert runner.delete(first[node], on_node(v1, node)).returncode == 0

    kept = vms(pve)
    for node in ("pve1", "pve2"):
        old = kept[first[node].result["vmId"]]
        assert old.node == node and SUPERSEDED_TAG in tags_of(old), f"{node}'s rollback template is kept"

    third = {node: created(runner, on_node(v3, node)) for node in ("pve1", "pve2")}
    deleted = runner.delete(second["pve1"], on_node(v2, "pve1"))
    assert deleted.returncode == 0, deleted.stderr
    remaining = vms(pve)
    assert first["pve1"].result["vmId"] not in remaining, "pve1's oldest falls beyond retainPrevious=1"
    assert first["pve2"].result["vmId"] in remaining, "pve2's rollback template is not pve1's to prune"
    assert second["pve2"].result["vmId"] in remaining
    assert [r["node"] for r in third["pve2"].result["retained"]] == ["pve2"]
