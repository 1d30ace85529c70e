"""Every config value that reaches a kickstart line or a script refuses hostile text with one clear line.

The corpus is what an injection needs: a newline that starts a new kickstart section,
an option smuggled after a space, quotes, shell substitution and non-ASCII look-alikes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homelab_images.cli.main import main as cli_main
from homelab_images.core.config import ConfigError, load_config
from tests.stack_files import mutated_config, set_key, write_stack_file

IMG = "homelab-images:images/0"
MIRROR = "https://repo.almalinux.org/almalinux/9.8"
ISO = "https://repo.almalinux.org/almalinux/9.8/isos/x86_64/AlmaLinux-9.8-x86_64-boot.iso"

# Appended to a valid value, except OPTION_ALONE, which replaces it (appended it is one harmless token).
OPTION_ALONE = "--noverifyssl"
HOSTILE = {
    "option-alone": OPTION_ALONE,
    "newline-post": "\n%post\nreboot\n%end\n",
    "option": " --noverifyssl --proxy=http://evil.lan",
    "double-quote": '"',
    "single-quote": "'",
    "command-substitution": "$(reboot)",
    "backticks": "`reboot`",
    "unicode": "\u202e\u00e9",
}

# key as the error names it, where to set it, and a valid value the hostile text is appended to.
KEYS = {
    "images[0].installMirror": (f"{IMG}.installMirror", MIRROR),
    "images[0].iso.url": (f"{IMG}.iso.url", ISO),
    "images[0].name": (f"{IMG}.name", "alma9"),
    "images[0].version": (f"{IMG}.version", "1.0.0"),
    "images[0].lang": (f"{IMG}.lang", "en_US.UTF-8"),
    "images[0].keyboard": (f"{IMG}.keyboard", "us"),
    "images[0].timezone": (f"{IMG}.timezone", "UTC"),
    "images[0].k3s.version": (f"{IMG}.k3s.version", "v1.36.4+k3s1"),
    "images[0].packages.extra": (f"{IMG}.packages.extra", "nfs-utils"),
    "images[0].packages.exclude": (f"{IMG}.packages.exclude", "cockpit"),
    "proxmoxve:endpoint": ("proxmoxve:endpoint", "https://pve1.home.arpa:8006/"),
}


def hostile_config(key: str, hostile: str) -> dict[str, Any]:
    path, valid = KEYS[key]
    value: Any = valid + hostile
    if key.endswith("endpoint"):
        value = valid.rstrip("/") + hostile + "/"
    if hostile == OPTION_ALONE:
        value = hostile
    if key.startswith("images[0].packages"):
        value = [value]
    return mutated_config(set_key(path, value))


@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("key", KEYS)
def test_hostile_value_is_refused_naming_its_key(key: str, hostile: str) -> None:
    raw = hostile_config(key, hostile)
    raw["proxmoxve:apiToken"] = {"secure": "v1:c2VudGluZWw="}
    with pytest.raises(ConfigError) as error:
        load_config(raw)
    assert any(key in problem.split(": ", 1)[0] for problem in error.value.problems), error.value.problems


@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
def test_validate_prints_one_error_line_and_no_traceback(tmp_path: Path, capsys: Any, hostile: str) -> None:
    path = write_stack_file(tmp_path, hostile_config("images[0].installMirror", hostile))
    assert cli_main(["validate", "--stack-file", str(path)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), err
    assert "Traceback" not in err and "%post" not in err.replace("\\n%post", "")
