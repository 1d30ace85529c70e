"""The Makefile's set-up: a clear line for a Python that is too old, and no reuse of a venv it made."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pulumi_harness import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

OLD_PYTHON = """#!/bin/sh
# Stands for a Python 3.10: answers -V, fails the Makefile's version check.
if [ "$1" = -V ]; then echo "Python 3.10.12"; exit 0; fi
exit 1
"""


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60)


def old_python(directory: Path) -> Path:
    path = directory / "python3.10"
    path.write_text(OLD_PYTHON)
    path.chmod(0o755)
    return path


def test_a_too_old_python_is_one_line_before_anything_is_installed(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    done = make(f"PYTHON={old_python(tmp_path)}", f"VENV={venv}", "render")
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, done.stderr
    assert "needs Python 3.11 or newer" in errors[0] and "Python 3.10.12" in errors[0]
    assert not venv.exists()


def _venv_with(tmp_path: Path, python: Path) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(python)
    (venv / ".installed").touch()
    # Newer than every prerequisite of the marker in the Makefile, whichever was edited last.
    later = (
        max((ROOT / name).stat().st_mtime for name in ("requirements.txt", "requirements-dev.txt", "pyproject.toml"))
        + 60
    )
    os.utime(venv / ".installed", (later, later))
    return venv


def test_a_venv_made_by_a_too_old_python_is_rebuilt(tmp_path: Path) -> None:
    venv = _venv_with(tmp_path, old_python(tmp_path))
    plan = make("-n", f"PYTHON={sys.executable}", f"VENV={venv}", "render")
    assert plan.returncode == 0, plan.stderr
    assert f"-m venv {venv}" in plan.stdout


def test_a_good_venv_is_reused(tmp_path: Path) -> None:
    venv = _venv_with(tmp_path, Path(sys.executable))
    plan = make("-n", f"PYTHON={sys.executable}", f"VENV={venv}", "render")
    assert plan.returncode == 0, plan.stderr
    assert "-m venv" not in plan.stdout
