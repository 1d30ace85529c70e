"""Every user data the helper writes passes cloud-init's own `cloud-init schema` (Debian's cloud-init).

`.ci/run` installs the package; on a machine without it these tests skip,
except in CI, where a missing cloud-init is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from homelab_images_consumer import render_k3s_user_data
from tests.consumer.harness import SNIPPET, example_config, run_cluster
from tests.pulumi_harness import unwrap_secrets

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKhtN9bqtYxq6bGr3pH3h0h9nK3nU0jL1K6m2Yp4d8Qe ops@laptop"
TOKEN = "K10" + "c3e1" * 16 + "::server:s3cr#t:'quoted'\"x\""
AGENT_TOKEN = "agent-" + "9f2b7d41" * 5
SERVER = "https://192.168.1.50:6443"

CLOUD_INIT = shutil.which("cloud-init")
pytestmark = pytest.mark.skipif(
    CLOUD_INIT is None and not os.environ.get("CI"),
    reason="cloud-init is not installed (`.ci/run` installs Debian's cloud-init package; CI requires it)",
)

# Every shape of user data: each role, first and joining server, with and without
# the optional parts (domain, extra k3s config, agent token, secure-form token).
VARIANTS: dict[str, dict[str, Any]] = {
    "first-server": {"role": "server", "hostname": "k3s-server", "cluster_init": True, "agent_token": AGENT_TOKEN},
    "first-server-full": {
        "role": "server",
        "hostname": "k3s-server",
        "cluster_init": True,
        "agent_token": AGENT_TOKEN,
        "domain": "home.arpa",
        "extra_config": {"tls-san": ["k3s.home.arpa"], "disable": ["traefik"], "node-label": ["tier=a"]},
    },
    "joining-server": {"role": "server", "hostname": "k3s-server-2", "server_url": SERVER, "domain": "home.arpa"},
    "agent": {"role": "agent", "hostname": "k3s-agent-1", "server_url": SERVER, "token": AGENT_TOKEN},
    "agent-secure-token": {"role": "agent", "hostname": "k3s-agent-2", "server_url": SERVER},
}


def assert_valid_cloud_config(text: str, path: Path) -> None:
    assert CLOUD_INIT is not None, "CI must install cloud-init (.ci/run)"
    path.write_text(text, encoding="utf-8")
    done = subprocess.run([CLOUD_INIT, "schema", "--config-file", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, f"cloud-init schema rejects {path.name}:\n{done.stdout}{done.stderr}\n{text}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helper_user_data_passes_cloud_init_schema(variant: str, tmp_path: Path) -> None:
    arguments = {"ssh_authorized_keys": [KEY], "token": TOKEN, **VARIANTS[variant]}
    assert_valid_cloud_config(render_k3s_user_data(**arguments), tmp_path / f"{variant}.yaml")


def test_example_cluster_user_data_passes_cloud_init_schema(tmp_path: Path) -> None:
    config = example_config()
    config["k3s-cluster:agentCount"] = "1"
    run = run_cluster(config=config)
    for snippet in run.of_type(SNIPPET):
        text = unwrap_secrets(snippet.inputs["sourceRaw"])["data"]
        assert_valid_cloud_config(text, tmp_path / f"{snippet.name}.yaml")


def test_the_schema_check_rejects_what_cloud_init_would_reject(tmp_path: Path) -> None:
    """The check is live: a mode given as a number is refused."""
    text = render_k3s_user_data("agent", "k3s-agent-1", [KEY], AGENT_TOKEN, SERVER).replace("'0600'", "600")
    with pytest.raises(AssertionError, match="cloud-init schema rejects"):
        assert_valid_cloud_config(text, tmp_path / "broken.yaml")
