"""Every `venv/bin/homelab-images ...` command the README shows runs as written.

Offline ones must succeed. Two touch the outside world and are run up to that point:
``gc`` (its templates part needs a Proxmox token: without one it must say so in one line;
``--only artifacts`` needs none) and
``pins`` (it reads AlmaLinux's and k3s' release sites: skipped, no network here).
Commands that write (``--update``, ``--out``) run on a copy of your stack file and
lock, or into a temporary directory, so the test never changes your files; ``spec``
asks for your first image if you renamed the shipped one.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from homelab_images.core.stackfile import load_stack_file
from tests.pulumi_harness import ROOT, SHIPPED_STACK_FILE

README = ROOT / "README.md"
COMMAND = ROOT / "venv" / "bin" / "homelab-images"
_MENTION = re.compile(r"venv/bin/homelab-images( [^`#\n\\]+)")


def readme_commands() -> list[str]:
    found = {"venv/bin/homelab-images" + match.group(1).rstrip() for match in _MENTION.finditer(README.read_text())}
    return sorted(found)


def test_the_readme_shows_every_offline_command() -> None:
    shown = {shlex.split(command)[1] for command in readme_commands()}
    assert {"render", "validate", "fingerprint", "lock", "spec", "gc"} <= shown


@pytest.mark.skipif(not COMMAND.exists(), reason="`make` installs the homelab-images command into ./venv")
@pytest.mark.parametrize("command", readme_commands())
def test_a_readme_command_runs_as_written(command: str, tmp_path: Path) -> None:
    argv = shlex.split(command)
    if argv[1] == "pins":
        pytest.skip("pins reads AlmaLinux's and k3s' release sites; there is no network here")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROXMOX_VE_")}
    if "--update" in argv:
        # Your stack file, lock and kickstart, copied: the command rewrites the lock.
        for name in (SHIPPED_STACK_FILE.name, SHIPPED_STACK_FILE.name.replace(".yaml", ".lock.json")):
            if (ROOT / name).exists():
                shutil.copy(ROOT / name, tmp_path / name)
        shutil.copytree(ROOT / "kickstart", tmp_path / "kickstart")
        at = argv.index("--stack")
        argv[at : at + 2] = ["--stack-file", str(tmp_path / SHIPPED_STACK_FILE.name)]
    if "--image" in argv:
        # The README names the shipped image; yours may have another name.
        names = [image.name for image in load_stack_file(SHIPPED_STACK_FILE).images]
        at = argv.index("--image") + 1
        argv[at] = argv[at] if argv[at] in names else names[0]
    if "--out" in argv:
        argv[argv.index("--out") + 1] = str(tmp_path / "out")
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    if argv[1] == "gc" and "artifacts" not in argv:
        assert done.returncode != 0
        assert done.stderr.splitlines() == [
            "error: homelab-images gc: PROXMOX_VE_API_TOKEN is not set; export "
            "PROXMOX_VE_API_TOKEN='user@realm!tokenid=secret' (the token of proxmoxve:apiToken) and run again"
        ]
        return
    assert done.returncode == 0, f"{command}\n{done.stderr}"
    assert "Traceback" not in done.stderr
