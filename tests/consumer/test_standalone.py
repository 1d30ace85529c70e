"""The helper works copied into another repository: it needs pulumi, nothing of this program."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.pulumi_harness import ROOT

CHECK = """
import sys
import homelab_images_consumer as helper
text = helper.render_k3s_user_data(
    "agent", "k3s-agent-1", ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKhtN9bqtYxq6bGr3pH3h0h9nK3nU0jL1K6m2Yp4d8Qe a@b"],
    "agent-token-0123456789abcdef0123456789", "https://10.0.0.1:6443",
)
assert text.startswith("#cloud-config")
ours = ("components", "homelab_images", "pydantic", "jinja2", "tests")
program_modules = sorted(m for m in sys.modules if m.split(".")[0] in ours)
assert not program_modules, program_modules
"""


def test_helper_imports_without_the_rest_of_the_repository(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "homelab_images_consumer", tmp_path / "homelab_images_consumer")
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=tmp_path, env=environment, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
