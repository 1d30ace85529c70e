"""A pinned cluster across the images stack's life: rebuilds, new versions, renamed versions, replicas.

The images stack is the real program under mocks, with the runner's
result standing in for Packer and Proxmox; the cluster is the example program,
run a second time against the first run's state (ignore_changes applied as the
engine applies them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homelab_images_consumer import NodeNotAvailableError, select_template
from tests.consumer.harness import (
    IMAGE,
    VM,
    Build,
    ClusterRun,
    changed_inputs,
    content_of,
    example_config,
    images_config,
    images_stack_outputs,
    replaced_vms,
    retained,
    run_cluster,
)

FIRST_BUILD = "2026-10-01T10:00:00Z"
REBUILD = "2026-11-01T10:00:00Z"
NEW_VERSION = "2026-11-20T10:00:00Z"


def cluster_config(**changes: Any) -> dict[str, Any]:
    settings = example_config()
    for key, value in changes.items():
        if value is None:
            settings.pop(f"k3s-cluster:{key}", None)
        else:
            settings[f"k3s-cluster:{key}"] = value
    return settings


@pytest.fixture(scope="module")
def first_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return images_stack_outputs(tmp_path_factory.mktemp("first"), {"pve1": Build(9007, FIRST_BUILD)})


@pytest.fixture(scope="module")
def rebuilt_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """rebuildEvery: the same version built again as a new VM, the first build retained."""
    builds = {"pve1": Build(9011, REBUILD, (retained(9007, "1.0.0", FIRST_BUILD),))}
    return images_stack_outputs(tmp_path_factory.mktemp("rebuilt"), builds)


@pytest.fixture(scope="module")
def new_version_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """1.1.0 with a new k3s release; both 1.0.0 builds retained."""
    old = images_config()
    new = images_config(version="1.1.0", k3s_version="v1.36.5+k3s1")
    builds = {
        "pve1": Build(
            9012,
            NEW_VERSION,
            (retained(9011, "1.0.0", REBUILD), retained(9007, "1.0.0", FIRST_BUILD)),
        )
    }
    lock = {"1.0.0": content_of(old), "1.1.0": content_of(new)}
    return images_stack_outputs(tmp_path_factory.mktemp("new"), builds, config=new, lock=lock)


@pytest.fixture(scope="module")
def first_cluster(first_images: dict[str, Any]) -> ClusterRun:
    return run_cluster(images=first_images)


def assert_untouched(before: ClusterRun, after: ClusterRun) -> None:
    assert replaced_vms(before, after) == {}
    old = {vm.name: vm for vm in before.of_type(VM)}
    for vm in after.of_type(VM):
        assert changed_inputs(old[vm.name], vm) == set(), f"{vm.name} would be updated in place"


def test_a_rebuild_of_the_pinned_version_leaves_the_cluster_untouched(
    first_cluster: ClusterRun, rebuilt_images: dict[str, Any]
) -> None:
    after = run_cluster(images=rebuilt_images, prior=first_cluster)
    assert after.outputs["template"]["vmId"] == 9011, "the pin resolves to the newest build of 1.0.0"
    assert_untouched(first_cluster, after)
    server = after.outputs["server"]
    assert server["clonedFrom"]["vmId"] == 9007 and server["clonedFrom"]["version"] == "1.0.0"
    assert server["pendingTemplate"]["vmId"] == 9011, "the outputs say a newer build exists"


@pytest.mark.parametrize("pin", ["1.0.0", None])
def test_a_new_version_leaves_pinned_and_unpinned_clusters_untouched(
    first_cluster: ClusterRun, new_version_images: dict[str, Any], pin: str | None
) -> None:
    after = run_cluster(images=new_version_images, config=cluster_config(imageVersion=pin), prior=first_cluster)
    assert after.outputs["template"]["version"] == (pin or "1.1.0")
    assert_untouched(first_cluster, after)
    for node in [after.outputs["server"], *after.outputs["agents"]]:
        assert node["clonedFrom"]["vmId"] == 9007
        assert node["pendingTemplate"]["vmId"] == (9011 if pin else 9012)


def test_rolling_a_node_replaces_that_node_only_and_deletes_it_first(
    first_cluster: ClusterRun, new_version_images: dict[str, Any]
) -> None:
    config = cluster_config(imageVersion=None, rollNodes=["k3s-agent-1"])
    after = run_cluster(images=new_version_images, config=config, prior=first_cluster)
    assert replaced_vms(first_cluster, after) == {"k3s-agent-1": {"clone"}}
    rolled = after.named("k3s-agent-1")
    assert rolled.inputs["clone"]["vmId"] == 9012
    assert rolled.delete_before_replace, "the new clone reuses VM ID 301 and hostname k3s-agent-1"
    agent = next(a for a in after.outputs["agents"] if a["name"] == "k3s-agent-1")
    assert agent["clonedFrom"]["version"] == "1.1.0" and agent["pendingTemplate"] is None


def test_a_roll_of_an_unknown_node_is_refused(first_images: dict[str, Any]) -> None:
    with pytest.raises(Exception, match=r"rollNodes names no VM of this cluster: k3s-agent-9"):
        run_cluster(images=first_images, config=cluster_config(rollNodes=["k3s-agent-9"]))


def test_a_version_bump_without_a_content_change_keeps_the_old_label_resolvable(
    tmp_path: Path, first_cluster: ClusterRun
) -> None:
    """The runner renames the template (same VM) instead of rebuilding it; a pin on the old label still works."""
    config = images_config(version="1.0.1")
    content = content_of(config)
    assert content == content_of(images_config()), "a version is not part of the content"
    renamed = images_stack_outputs(
        tmp_path, {"pve1": Build(9007, FIRST_BUILD)}, config=config, lock={"1.0.0": content, "1.0.1": content}
    )
    entry = renamed["templates"][IMAGE]
    assert (entry["version"], entry["formerVersions"]) == ("1.0.1", ["1.0.0"])
    after = run_cluster(images=renamed, prior=first_cluster)  # still pinned to 1.0.0
    assert after.outputs["template"] == {"vmId": 9007, "name": f"{IMAGE}-v1.0.1", "version": "1.0.1", "node": "pve1"}
    assert_untouched(first_cluster, after)


def test_a_version_with_new_content_does_not_inherit_the_old_label(new_version_images: dict[str, Any]) -> None:
    assert new_version_images["templates"][IMAGE]["formerVersions"] == []
    assert select_template(new_version_images, IMAGE, version="1.0.0").vm_id == 9011


@pytest.fixture(scope="module")
def replica_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """1.1.0 on pve1 and pve2, each node with its own retained 1.0.0; 0.9.0 kept on pve1 only."""
    config = images_config(version="1.1.0", k3s_version="v1.36.5+k3s1", replicas=["pve2"])
    builds = {
        "pve1": Build(9012, NEW_VERSION, (retained(9007, "1.0.0", FIRST_BUILD), retained(9003, "0.9.0", "2026-09-01"))),
        "pve2": Build(9013, NEW_VERSION, (retained(9008, "1.0.0", FIRST_BUILD, node="pve2"),)),
    }
    lock = {"0.9.0": "9" * 64, "1.0.0": content_of(images_config()), "1.1.0": content_of(config)}
    return images_stack_outputs(tmp_path_factory.mktemp("replicas"), builds, config=config, lock=lock)


@pytest.mark.parametrize(
    ("node", "version", "vm_id"),
    [("pve1", "1.0.0", 9007), ("pve2", "1.0.0", 9008), ("pve1", None, 9012), ("pve2", None, 9013)],
)
def test_replicas_a_pin_on_each_node_resolves_to_a_template_on_that_node(
    replica_images: dict[str, Any], node: str, version: str | None, vm_id: int
) -> None:
    ref = select_template(replica_images, IMAGE, version=version, node=node)
    assert (ref.vm_id, ref.node) == (vm_id, node)
    run = run_cluster(images=replica_images, config=cluster_config(node=node, imageVersion=version, agentCount="0"))
    clone = run.named("k3s-server").inputs["clone"]
    assert (clone["vmId"], clone["nodeName"]) == (vm_id, node)


def test_replicas_export_each_nodes_retained_templates(replica_images: dict[str, Any]) -> None:
    nodes = replica_images["templates"][IMAGE]["nodes"]
    assert [(r["vmId"], r["node"]) for r in nodes["pve2"]["retained"]] == [(9008, "pve2")]
    assert {r["node"] for r in nodes["pve1"]["retained"]} == {"pve1"}


def test_replicas_a_version_missing_on_the_node_is_a_clear_error(replica_images: dict[str, Any]) -> None:
    with pytest.raises(NodeNotAvailableError, match=r"version '0\.9\.0'.*on node\(s\) pve1.*cloned on node 'pve2'"):
        select_template(replica_images, IMAGE, version="0.9.0", node="pve2")
