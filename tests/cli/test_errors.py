"""Every CLI failure is one ``error:`` line, whatever the input; never a traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from homelab_images.core.config import load_config
from homelab_images.core.kickstart import TEMPLATE_NAME, KickstartInvalid, render_kickstart
from tests.pulumi_harness import FIXTURE_STACK_FILE, ROOT
from tests.stack_files import fixture_document


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "homelab_images", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def non_utf8_stack_file(tmp: Path) -> list[str]:
    path = tmp / "Pulumi.latin1.yaml"
    path.write_bytes(FIXTURE_STACK_FILE.read_bytes().replace(b"# EDIT", "# ÉDIT".encode("latin-1"), 1))
    return ["validate", "--stack-file", str(path)]


def out_is_a_file(tmp: Path) -> list[str]:
    (tmp / "out").write_text("not a directory")
    return ["render", "--stack-file", str(FIXTURE_STACK_FILE), "--out", str(tmp / "out")]


def out_below_a_file(tmp: Path) -> list[str]:
    (tmp / "file").write_text("not a directory")
    return ["render", "--stack-file", str(FIXTURE_STACK_FILE), "--out", str(tmp / "file" / "out")]


def stack_file_is_a_directory(tmp: Path) -> list[str]:
    return ["fingerprint", "--stack-file", str(tmp)]


def missing_stack(tmp: Path) -> list[str]:
    return ["lock", "--check", "--stack-file", str(tmp / "Pulumi.missing.yaml")]


def unknown_image(tmp: Path) -> list[str]:
    return ["spec", "--stack-file", str(FIXTURE_STACK_FILE), "--image", "no-such-image"]


def out_missing(tmp: Path) -> list[str]:
    return ["render", "--stack-file", str(FIXTURE_STACK_FILE)]


@pytest.mark.parametrize(
    ("make_args", "says"),
    [
        (out_missing, "the following arguments are required: --out"),
        (non_utf8_stack_file, "not UTF-8 text"),
        (out_is_a_file, "is a file; expected a directory"),
        (out_below_a_file, "Not a directory"),
        (stack_file_is_a_directory, "cannot read the stack file"),
        (missing_stack, "cannot read the stack file"),
        (unknown_image, "no image 'no-such-image'"),
    ],
)
def test_a_bad_input_is_one_error_line(make_args: Callable[[Path], list[str]], says: str, tmp_path: Path) -> None:
    done = cli(*make_args(tmp_path))
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and says in lines[0]


def test_out_whose_parent_is_missing_is_created(tmp_path: Path) -> None:
    out = tmp_path / "missing" / "parent" / "out"
    done = cli("render", "--stack-file", str(FIXTURE_STACK_FILE), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "alma9-k3s-node-amd64" / "ks.cfg").is_file()


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda text: text.encode("utf-8") + "# café\n".encode("latin-1"), "not UTF-8 text"),
        (lambda text: (text + "{% if %}\n").encode("utf-8"), "line"),
        (lambda text: (text + "{{ image.no_such_setting }}\n").encode("utf-8"), "no_such_setting"),
    ],
)
def test_a_broken_kickstart_edit_is_one_line_naming_the_file(
    edit: Callable[[str], bytes], says: str, tmp_path: Path
) -> None:
    template_dir = tmp_path / "kickstart"
    shutil.copytree(ROOT / "kickstart", template_dir)
    template = template_dir / TEMPLATE_NAME
    template.write_bytes(edit(template.read_text(encoding="utf-8")))
    image = load_config(fixture_document()["config"]).images[0]
    with pytest.raises(KickstartInvalid) as caught:
        render_kickstart(image, template_dir=template_dir)
    message = str(caught.value)
    assert "\n" not in message and str(template) in message and says in message
