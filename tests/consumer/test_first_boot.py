"""The first-boot contract: user data that turns a clone of the template into a k3s node."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from homelab_images_consumer import UserDataError, render_k3s_user_data
from tests.consumer.harness import k3s_config
from tests.pulumi_harness import ROOT

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKhtN9bqtYxq6bGr3pH3h0h9nK3nU0jL1K6m2Yp4d8Qe ops@laptop"
# Characters YAML must quote: the token has to survive the round trip unchanged.
TOKEN = "K10" + "c3e1" * 16 + "::server:s3cr#t:'quoted'\"x\"&*!"
AGENT_TOKEN = "agent-" + "9f2b7d41" * 5
SERVER = "https://192.168.1.50:6443"


def parsed(**arguments: Any) -> dict[str, Any]:
    text = render_k3s_user_data(**{"ssh_authorized_keys": [KEY], "token": TOKEN, **arguments})
    assert text.startswith("#cloud-config\n")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def test_first_server_initialises_the_cluster() -> None:
    document = parsed(role="server", hostname="k3s-server", cluster_init=True, domain="home.arpa")
    assert (document["hostname"], document["fqdn"]) == ("k3s-server", "k3s-server.home.arpa")
    assert document["ssh_authorized_keys"] == [KEY]
    assert k3s_config(document) == {"token": TOKEN, "cluster-init": True, "node-name": "k3s-server"}
    assert document["runcmd"] == ["systemctl enable --now k3s.service"]


def test_agent_joins_the_server() -> None:
    document = parsed(role="agent", hostname="k3s-agent-1", server_url=SERVER)
    assert k3s_config(document) == {"token": TOKEN, "server": SERVER, "node-name": "k3s-agent-1"}
    assert document["runcmd"] == ["systemctl enable --now k3s-agent.service"]
    assert document["fqdn"] == "k3s-agent-1"


def test_joining_server_has_a_server_url_and_no_cluster_init() -> None:
    document = parsed(role="server", hostname="k3s-server-2", server_url=SERVER)
    assert k3s_config(document) == {"token": TOKEN, "server": SERVER, "node-name": "k3s-server-2"}
    assert document["runcmd"] == ["systemctl enable --now k3s.service"]


def test_servers_set_the_agent_token_that_agents_join_with() -> None:
    server = k3s_config(parsed(role="server", hostname="k3s-server", cluster_init=True, agent_token=AGENT_TOKEN))
    assert (server["token"], server["agent-token"]) == (TOKEN, AGENT_TOKEN)
    agent = k3s_config(parsed(role="agent", hostname="k3s-agent-1", server_url=SERVER, token=AGENT_TOKEN))
    assert agent["token"] == AGENT_TOKEN and "agent-token" not in agent


def test_extra_config_is_added_but_cannot_replace_the_contract_keys() -> None:
    document = parsed(role="server", hostname="k3s-server", extra_config={"tls-san": ["k3s.home.arpa"]})
    assert k3s_config(document)["tls-san"] == ["k3s.home.arpa"]
    with pytest.raises(UserDataError, match="may not set node-name, token"):
        parsed(role="server", hostname="k3s-server", extra_config={"token": "other", "node-name": "x"})


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"role": "master", "hostname": "k3s"}, "role must be 'server' or 'agent'"),
        ({"role": "agent", "hostname": "k3s-agent-1"}, "an agent needs server_url"),
        ({"role": "agent", "hostname": "a", "server_url": "http://10.0.0.1:6443"}, "must look like https://"),
        ({"role": "agent", "hostname": "a", "server_url": "https://10.0.0.1:6443/api"}, "must look like https://"),
        ({"role": "agent", "hostname": "a", "server_url": "https://:6443"}, "must look like https://"),
        ({"role": "server", "hostname": "K3s_Server"}, "is not a DNS label"),
        ({"role": "server", "hostname": "k" * 64}, "is not a DNS label"),
        ({"role": "server", "hostname": "k3s", "ssh_authorized_keys": []}, "at least one SSH public key"),
        ({"role": "server", "hostname": "k3s", "ssh_authorized_keys": KEY}, "as a list"),
        ({"role": "server", "hostname": "k3s", "ssh_authorized_keys": ["hunter2"]}, "not an SSH public key"),
        ({"role": "agent", "hostname": "a", "server_url": SERVER, "cluster_init": True}, "only for the first server"),
        ({"role": "server", "hostname": "s", "server_url": SERVER, "cluster_init": True}, "only for the first server"),
        ({"role": "server", "hostname": "k3s", "token": " "}, "token is empty"),
        ({"role": "server", "hostname": "k3s", "token": "hunter2"}, "token is too short"),
        ({"role": "server", "hostname": "k3s", "token": "K10abc::server:x"}, "not a secure token"),
        ({"role": "server", "hostname": "k3s", "agent_token": "short"}, "agent_token is too short"),
        ({"role": "server", "hostname": "k3s", "agent_token": TOKEN}, "agent_token equals token"),
        (
            {"role": "agent", "hostname": "a", "server_url": SERVER, "agent_token": AGENT_TOKEN},
            "agent_token is for servers",
        ),
        ({"role": "server", "hostname": "k3s", "domain": "Home_Lab"}, "domain"),
    ],
)
def test_invalid_arguments_are_refused(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(UserDataError, match=re.escape(message)):
        parsed(**arguments)


def test_the_image_leaves_both_units_for_first_boot_to_enable() -> None:
    """The user data relies on how the image installs k3s and reads cloud-init."""
    install = (ROOT / "kickstart" / "scripts" / "install-k3s.sh").read_text(encoding="utf-8")
    assert "for role in server agent" in install, "both k3s.service and k3s-agent.service must be installed"
    assert "INSTALL_K3S_SKIP_ENABLE=true" in install and "INSTALL_K3S_SKIP_START=true" in install
    kickstart = (ROOT / "kickstart" / "alma9-k3s.ks.j2").read_text(encoding="utf-8")
    assert re.search(r"datasource_list: \[NoCloud", kickstart), "Proxmox delivers user data on a NoCloud drive"


def test_documented_example_is_what_the_helper_writes() -> None:
    doc = (ROOT / "docs" / "first-boot.md").read_text(encoding="utf-8")
    server_example, agent_example = re.findall(r"```yaml\n(#cloud-config\n.*?)```", doc, re.DOTALL)
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKhtN9bqtYxq6bGr3pH3h0h9nK3nU0jL1K6m2Yp4d8Qe ops@laptop"
    server_token, agent_token = "3b9d0c5e7a1f4d6b8c2e0a9f7d5b3c1e", "a8e6b5c3d1f9e7a2b4c6d8e0f1a3b5c7"
    assert server_example == render_k3s_user_data(
        "server",
        "k3s-server",
        [key],
        server_token,
        None,
        True,
        {"tls-san": ["k3s.home.arpa"]},
        "home.arpa",
        agent_token,
    )
    assert agent_example == render_k3s_user_data(
        "agent", "k3s-agent-1", [key], agent_token, "https://192.168.1.50:6443", domain="home.arpa"
    )
