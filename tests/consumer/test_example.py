"""The example consumer (examples/k3s-cluster) under mocks, with a mocked images stack."""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pytest

from tests.consumer.harness import (
    EXAMPLE,
    GUEST_ADDRESS,
    IMAGE,
    K3S_AGENT_TOKEN,
    K3S_TOKEN,
    SNIPPET,
    VM,
    ClusterRun,
    example_config,
    images_outputs,
    k3s_config,
    run_cluster,
    user_data,
)
from tests.pulumi_harness import SECRET_MARKER, SECRET_SIG, plain_strings

AGENTS = ("k3s-agent-1", "k3s-agent-2")


@pytest.fixture(scope="module")
def run() -> ClusterRun:
    return run_cluster()


def config(**changes: Any) -> dict[str, Any]:
    settings = example_config()
    for key, value in changes.items():
        full_key = f"k3s-cluster:{key}"
        if value is None:
            settings.pop(full_key, None)
        else:
            settings[full_key] = value
    return settings


def test_reads_the_configured_images_stack(run: ClusterRun) -> None:
    assert [ref["name"] for ref in run.mocks.stack_references] == [example_config()["k3s-cluster:imagesStack"]]


def test_one_server_and_the_configured_agents_clone_the_template(run: ClusterRun) -> None:
    vms = {vm.name: vm.inputs for vm in run.of_type(VM)}
    assert set(vms) == {"k3s-server", *AGENTS}
    for name, vm in vms.items():
        assert vm["clone"]["vmId"] == 9007 and vm["clone"]["nodeName"] == "pve1", name
        assert vm["clone"]["full"] is True
        assert vm["nodeName"] == "pve1"
        assert (vm["bios"], vm["machine"]) == ("ovmf", "q35"), "a clone must keep the template's firmware"
        assert vm["agent"]["enabled"] is True
        assert vm["networkDevices"] == [{"bridge": "vmbr0", "model": "virtio"}]
        assert vm["initialization"]["datastoreId"] == "local-lvm"
    assert vms["k3s-server"]["vmId"] == 300
    assert sorted(vms[a]["vmId"] for a in AGENTS) == [301, 302]


def test_each_vm_boots_from_its_own_snippet(run: ClusterRun) -> None:
    for vm in run.of_type(VM):
        snippet = run.named(f"{vm.name}-user-data")
        assert snippet.inputs["contentType"] == "snippets"
        assert (snippet.inputs["datastoreId"], snippet.inputs["nodeName"]) == ("snippets", vm.inputs["nodeName"])
        assert vm.inputs["initialization"]["userDataFileId"] == f"snippets:snippets/{vm.name}-user-data.yaml"


def test_snippets_are_root_only_and_replaced_delete_first(run: ClusterRun) -> None:
    for snippet in run.of_type(SNIPPET):
        assert snippet.inputs["fileMode"] == "0600", "the snippet carries the k3s token"
        # One fixed file name per VM: created-before-deleted, the old resource's delete removes the new file.
        assert snippet.delete_before_replace, snippet.name


def test_a_new_snippet_does_not_replace_its_vm(run: ClusterRun) -> None:
    """user_data_file_id is ForceNew; the engine replaces a dependent of a delete-before-replace
    resource when one of its inputs has a property dependency on it (pulumi v3.259.0,
    step_generator.go, calculateDependentReplacements). A depends_on edge alone does not."""
    for vm in run.of_type(VM):
        snippet_urns = [dep for dep in vm.dependencies if dep.endswith(f"::{vm.name}-user-data")]
        assert snippet_urns, "the VM must wait for its snippet's upload"
        for key, dependencies in vm.property_dependencies.items():
            assert not set(dependencies) & set(snippet_urns), f"{vm.name}.{key} depends on the snippet's outputs"
        assert vm.delete_before_replace, "a replacement reuses VM ID, hostname and address"


def test_user_data_makes_one_initialising_server_and_joining_agents(run: ClusterRun) -> None:
    server = user_data(run, "k3s-server")
    server_config = k3s_config(server)
    assert server_config["cluster-init"] is True and "server" not in server_config
    assert server_config["tls-san"] == ["k3s.home.arpa"]
    assert server["runcmd"] == ["systemctl enable --now k3s.service"]
    node_names = {server_config["node-name"]}
    for agent in AGENTS:
        document = user_data(run, agent)
        agent_config = k3s_config(document)
        assert agent_config["server"] == "https://192.168.1.50:6443"
        assert agent_config["token"] == server_config["agent-token"] == K3S_AGENT_TOKEN
        assert server_config["token"] == K3S_TOKEN
        assert K3S_TOKEN not in str(document), "the server token is cluster-admin: never on an agent"
        assert "cluster-init" not in agent_config and "tls-san" not in agent_config
        assert document["runcmd"] == ["systemctl enable --now k3s-agent.service"]
        assert document["hostname"] == agent_config["node-name"] == agent
        node_names.add(agent_config["node-name"])
    assert len(node_names) == 3, "k3s refuses a second node with the same name"


def test_server_gets_the_static_address_the_agents_join(run: ClusterRun) -> None:
    (ip_config,) = run.named("k3s-server").inputs["initialization"]["ipConfigs"]
    assert ip_config["ipv4"] == {"address": "192.168.1.50/24", "gateway": "192.168.1.1"}
    assert run.outputs["serverUrl"] == "https://192.168.1.50:6443"


def test_k3s_token_is_secret_on_the_wire(run: ClusterRun) -> None:
    for registration in run.registrations:
        for text in plain_strings(registration.raw_inputs):
            for token in (K3S_TOKEN, K3S_AGENT_TOKEN):
                assert token not in text, f"k3s token in plain text in {registration.type} {registration.name}"
    for snippet in run.of_type(SNIPPET):
        data = snippet.raw_inputs["sourceRaw"]["data"]
        assert data[SECRET_SIG] == SECRET_MARKER and K3S_AGENT_TOKEN in data["value"]
        assert "sourceRaw" in snippet.additional_secret_outputs
    assert K3S_TOKEN not in repr(run.outputs) and K3S_AGENT_TOKEN not in repr(run.outputs)


def test_exports_each_vm_and_the_template_it_was_cloned_from(run: ClusterRun) -> None:
    template = {"name": f"{IMAGE}-v1.0.0", "version": "1.0.0", "vmId": 9007, "node": "pve1"}
    assert run.outputs["template"] == template
    assert run.outputs["server"] == {"name": "k3s-server", "vmId": 300, "clonedFrom": template, "pendingTemplate": None}
    assert [(a["name"], a["vmId"], a["clonedFrom"]) for a in run.outputs["agents"]] == [
        ("k3s-agent-1", 301, template),
        ("k3s-agent-2", 302, template),
    ]


def test_pinning_a_retained_version_clones_that_template() -> None:
    run = run_cluster(config=config(imageVersion="0.9.0"))
    assert {vm.inputs["clone"]["vmId"] for vm in run.of_type(VM)} == {9003}


def test_dhcp_server_is_joined_at_the_address_its_guest_agent_reports() -> None:
    run = run_cluster(config=config(serverIp=None, gateway=None, agentCount="1", vmIdStart=None))
    server = run.named("k3s-server").inputs
    (ip_config,) = server["initialization"]["ipConfigs"]
    assert ip_config["ipv4"] == {"address": "dhcp"}
    # Otherwise the provider returns at the first IPv6 address on a dual-stack network.
    assert server["agent"]["waitForIp"] == {"ipv4": True}
    assert k3s_config(user_data(run, "k3s-agent-1"))["server"] == f"https://{GUEST_ADDRESS}:6443"


def test_per_node_template_is_cloned_on_its_own_node() -> None:
    images = images_outputs(nodes={"pve2": {"vmId": 9107, "name": f"{IMAGE}-v1.0.0", "storage": "local-zfs"}})
    run = run_cluster(images=images, config=config(node="pve2", agentCount="0"))
    vm = run.named("k3s-server").inputs
    assert (vm["nodeName"], vm["clone"]["nodeName"], vm["clone"]["vmId"]) == ("pve2", "pve2", 9107)
    assert vm["initialization"]["datastoreId"] == "local-zfs"
    assert run.named("k3s-server-user-data").inputs["nodeName"] == "pve2"


def test_shared_template_is_cloned_from_its_node_onto_another() -> None:
    run = run_cluster(images=images_outputs(shared=True, storage="ceph"), config=config(node="pve2", agentCount="0"))
    vm = run.named("k3s-server").inputs
    assert (vm["nodeName"], vm["clone"]["nodeName"], vm["clone"]["vmId"]) == ("pve2", "pve1", 9007)


@pytest.mark.parametrize(
    ("images", "changes", "message"),
    [
        (images_outputs(), {"image": "debian-12"}, f"no image 'debian-12'; images it exports: {IMAGE}"),
        (images_outputs(), {"imageVersion": "3.0.0"}, "no template of version '3.0.0'"),
        ({**images_outputs(), "schemaVersion": 2}, {}, "exports schemaVersion 2"),
        (images_outputs(), {"node": "pve9"}, "cannot be cloned on node 'pve9'"),
    ],
)
def test_unresolvable_template_fails_with_a_clear_error(
    images: dict[str, Any], changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(Exception, match=message) as error:
        run_cluster(images=images, config=config(**changes))
    assert "organization/homelab-images/homelab" in str(error.value), "the error names the stack it read"


def test_static_server_address_needs_a_gateway() -> None:
    with pytest.raises(pulumi.RunError, match="k3s-cluster:gateway is required with serverIp"):
        run_cluster(config=config(gateway=None))


def _readme_token_privileges() -> dict[str, set[str]]:
    """ACL path -> privileges the example README's pveum commands give the token."""
    text = (EXAMPLE / "README.md").read_text(encoding="utf-8")
    roles = {name: set(privs.split()) for name, privs in re.findall(r'pveum role add (\w+) --privs "([^"]+)"', text)}
    granted: dict[str, set[str]] = {}
    for path, role in re.findall(r"pveum acl modify (\S+)\s+\$who --roles (\w+)", text):
        granted.setdefault(path, set()).update(roles.get(role, {role}))
    return granted


def test_readme_role_lets_a_fresh_up_upload_snippets_and_nothing_more() -> None:
    """The provider reads the storage (GET /storage/{id}: Datastore.Allocate, pve-storage
    src/PVE/API2/Storage/Config.pm), lists and deletes snippet volumes (check_volume_access:
    Datastore.Allocate for snippets, src/PVE/Storage.pm) and lists content (Datastore.Audit
    or AllocateSpace, src/PVE/API2/Storage/Content.pm); pve-storage commit 0c56bad8."""
    granted = _readme_token_privileges()
    storage = example_config()["k3s-cluster:snippetStorage"]
    assert {"Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.Audit"} <= granted[f"/storage/{storage}"]
    allocate_elsewhere = [
        path for path, privs in granted.items() if "Datastore.Allocate" in privs and path != f"/storage/{storage}"
    ]
    assert allocate_elsewhere == [], "Datastore.Allocate can delete any volume: snippets storage only"
    assert "Datastore.AllocateSpace" in granted["/storage/local-lvm"], "clones and cloud-init drives"
