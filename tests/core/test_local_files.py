"""caBundle is checked where it is used: the program refuses a bundle that cannot verify anything before it
declares a resource (the runner would stop on it only after the ISO download); validate warns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest

from homelab_images.cli.main import main as cli_main
from homelab_images.core.config import load_config
from homelab_images.core.local_files import ca_bundle_problem
from tests.pulumi_harness import RecordingMocks, run_program
from tests.stack_files import fixture_document, mutated_config, set_key, write_stack_file

KEY = "homelab-images:proxmox.caBundle"
CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def with_ca_bundle(value: str) -> dict[str, Any]:
    return mutated_config(set_key("homelab-images:proxmox/caBundle", value))


def config_with(value: str) -> Any:
    document = fixture_document()
    document["config"]["homelab-images:proxmox"]["caBundle"] = value
    return load_config(document["config"])


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: None, "cannot read {path} (No such file or directory)"),
        (lambda d: (d / "ca.pem").mkdir(), "{path} is a directory"),
        (lambda d: (d / "ca.pem").write_text("not a certificate\n"), "{path} holds no PEM certificate"),
    ],
    ids=["missing", "directory", "not-pem"],
)
def test_a_bundle_that_cannot_verify_anything_is_named_with_its_resolved_path(
    tmp_path: Path, make: Any, expected: str
) -> None:
    make(tmp_path)
    problem = ca_bundle_problem(config_with("ca.pem"), tmp_path)
    assert problem is not None
    assert problem.startswith(f"{KEY}: " + expected.format(path=tmp_path / "ca.pem"))
    assert problem.endswith("point it at the PEM file of the CA that signed the Proxmox certificate")


def test_a_pem_bundle_relative_to_the_project_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text(CERTIFICATE)
    assert ca_bundle_problem(config_with("certs/ca.pem"), tmp_path) is None
    assert ca_bundle_problem(config_with(str(tmp_path / "certs" / "ca.pem")), Path("/")) is None


def test_the_program_refuses_a_missing_bundle_before_declaring_anything() -> None:
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError, match=rf"{KEY}: cannot read .*/no-such-ca\.pem") as error:
        run_program(config=with_ca_bundle("no-such-ca.pem"), mocks=mocks)
    assert "Traceback" not in str(error.value)
    assert mocks.builds == {}


def test_validate_warns_about_a_missing_bundle(tmp_path: Path, capsys: Any) -> None:
    """validate may run where the stack is not deployed from (CI), so it warns; the program refuses."""
    path = write_stack_file(tmp_path, with_ca_bundle("ca.pem"))
    cli_main(["validate", "--stack-file", str(path)])
    warned = [line for line in capsys.readouterr().err.splitlines() if KEY in line]
    assert warned == [
        f"warning: {KEY}: cannot read {tmp_path.resolve() / 'ca.pem'} (No such file or directory); "
        "point it at the PEM file of the CA that signed the Proxmox certificate"
    ]
    (tmp_path / "ca.pem").write_text(CERTIFICATE)
    cli_main(["validate", "--stack-file", str(path)])
    assert KEY not in capsys.readouterr().err


def _qemu_with_artifact_dir(value: str) -> dict[str, Any]:
    def edit(config: dict[str, Any]) -> None:
        config["homelab-images:images"][0]["targets"] = ["proxmox-iso", "qemu"]
        config["homelab-images:build"]["artifactDir"] = value
        config["homelab-images:build"]["strictVersioning"] = False  # adding a target changes the fingerprint

    return mutated_config(edit)


@pytest.mark.parametrize("value", ["artifacts", "artifacts/qcow2"], ids=["the-directory", "a-directory-above"])
def test_validate_warns_about_a_file_where_the_artifact_dir_should_be(tmp_path: Path, capsys: Any, value: str) -> None:
    """The qemu build makes the directory; a file in its way is a condition of this machine, so a warning."""
    path = write_stack_file(tmp_path, _qemu_with_artifact_dir(value))
    (tmp_path / "artifacts").write_text("someone's notes\n")
    assert cli_main(["validate", "--stack-file", str(path)]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "artifactDir" in line]
    assert warned == [
        f"warning: homelab-images:build.artifactDir: {tmp_path.resolve() / 'artifacts'} is a file, not a directory; "
        f"the qemu build cannot put its files in {tmp_path.resolve() / value} (move the file away or choose "
        "another directory)"
    ]
    (tmp_path / "artifacts").unlink()
    cli_main(["validate", "--stack-file", str(path)])
    assert "artifactDir" not in capsys.readouterr().err, "a directory not made yet is fine: the build makes it"
