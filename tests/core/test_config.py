"""The config model: the shipped stack file is valid, and bad input gets one clear line per problem."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pulumi
import pytest

from homelab_images.cli.main import main as cli_main
from homelab_images.core.config import ConfigError, load_config
from homelab_images.core.plan import plan_stack
from homelab_images.core.stackfile import load_stack_file
from tests.pulumi_harness import FIXTURE_STACK_FILE, ROOT, SHIPPED_STACK_FILE, RecordingMocks, run_program
from tests.stack_files import DELETE, fixture_document, image, mutated_config, set_key, write_stack_file

SENTINEL_TOKEN = "images@pve!build=sentinel-0b5e-secret"


def test_the_projects_own_stack_file_validates(capsys: Any) -> None:
    """Pulumi.homelab.yaml as the user has it: valid, renders, and its lock file agrees."""
    config = load_stack_file(SHIPPED_STACK_FILE)
    assert config.images
    assert cli_main(["validate", "--stack-file", str(SHIPPED_STACK_FILE)]) == 0, capsys.readouterr().err
    assert cli_main(["lock", "--check", "--stack-file", str(SHIPPED_STACK_FILE)]) == 0, capsys.readouterr().err


def test_the_frozen_fixture_is_the_shipped_example() -> None:
    fixture = load_stack_file(FIXTURE_STACK_FILE)
    (alma,) = fixture.images
    assert alma.template_name == "alma9-k3s-node-amd64-v1.0.0"
    assert fixture.proxmox.vm_id_range.first == 9000


IMG = "homelab-images:images/0"


def _dup_image(config: dict[str, Any]) -> None:
    config["homelab-images:images"].append(copy.deepcopy(image(config)))


def _second_image_other_iso_same_file(config: dict[str, Any]) -> None:
    other = copy.deepcopy(image(config))
    other["name"] = "alma9-k3s-other"
    other["iso"]["sha256"] = "f" * 64
    config["homelab-images:images"].append(other)


# (case id, mutation, dotted key expected in the message, words expected)
BAD_INPUTS: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("missing-endpoint", set_key("proxmoxve:endpoint", DELETE), "proxmoxve:endpoint", "required"),
    ("http-endpoint", set_key("proxmoxve:endpoint", "http://pve1:8006/"), "proxmoxve:endpoint", "https://"),
    ("endpoint-not-url", set_key("proxmoxve:endpoint", "pve1:8006"), "proxmoxve:endpoint", "https://"),
    ("insecure-not-bool", set_key("proxmoxve:insecure", "maybe"), "proxmoxve:insecure", "true or false"),
    ("unknown-provider-key", set_key("proxmoxve:username", "root@pam"), "proxmoxve:username", "is not used"),
    ("missing-proxmox", set_key("homelab-images:proxmox", DELETE), "homelab-images:proxmox", "required"),
    ("missing-node", set_key("homelab-images:proxmox/node", DELETE), "homelab-images:proxmox.node", "required"),
    (
        "typo-key",
        set_key("homelab-images:proxmox/vmStorge", "local-lvm"),
        "homelab-images:proxmox.vmStorge",
        "not a known",
    ),
    ("unknown-namespace-key", set_key("homelab-images:imgs", []), "homelab-images:imgs", "not a known setting"),
    ("bad-bridge", set_key("homelab-images:proxmox/bridge", "vmbr 0"), "homelab-images:proxmox.bridge", "bridge name"),
    (
        "vmid-too-low",
        set_key("homelab-images:proxmox/vmIdRange.first", 50),
        "vmIdRange.first",
        "expected at least 100, got 50",
    ),
    (
        "vmid-too-high",
        set_key("homelab-images:proxmox/vmIdRange.last", 1_000_000_000),
        "vmIdRange.last",
        "expected at most 999999999, got 1000000000",
    ),
    ("vmid-inverted", set_key("homelab-images:proxmox/vmIdRange.last", 8000), "vmIdRange", "must not be below first"),
    (
        "vmid-string",
        set_key("homelab-images:proxmox/vmIdRange.first", "9000"),
        "vmIdRange.first",
        "expected a whole number, got the text '9000'",
    ),
    ("node-empty", set_key("homelab-images:proxmox/node", None), "homelab-images:proxmox.node", "got an empty value"),
    (
        "range-too-small",
        set_key("homelab-images:proxmox/vmIdRange.last", 9001),
        "homelab-images:proxmox.vmIdRange",
        "need at least",
    ),
    (
        "empty-images",
        set_key("homelab-images:images", []),
        "homelab-images:images",
        "expected at least 1 item(s), got none",
    ),
    ("images-not-list", set_key("homelab-images:images", {"name": "x"}), "homelab-images:images", "expected a list"),
    ("duplicate-names", _dup_image, "homelab-images:images[1].name", "used twice"),
    ("bad-name-upper", set_key(f"{IMG}.name", "Alma9"), "images[0].name", "lowercase"),
    ("bad-name-underscore", set_key(f"{IMG}.name", "alma_9"), "images[0].name", "lowercase"),
    ("name-too-long", set_key(f"{IMG}.name", "a" * 45), "images[0].name", "1-40 characters"),
    ("semver-invalid", set_key(f"{IMG}.version", "1.0"), "images[0].version", "semantic version"),
    ("semver-float", set_key(f"{IMG}.version", 1.1), "images[0].version", "quote"),
    ("semver-leading-v", set_key(f"{IMG}.version", "v1.0.0"), "images[0].version", "semantic version"),
    ("sha-short", set_key(f"{IMG}.iso.sha256", "abc123"), "images[0].iso.sha256", "64 hex"),
    ("sha-not-hex", set_key(f"{IMG}.iso.sha256", "G" * 64), "images[0].iso.sha256", "64 hex"),
    ("sha-number", set_key(f"{IMG}.iso.sha256", 1234), "images[0].iso.sha256", "quote"),
    ("iso-http", set_key(f"{IMG}.iso.url", "http://repo.almalinux.org/x.iso"), "images[0].iso.url", "https://"),
    ("iso-not-iso", set_key(f"{IMG}.iso.url", "https://repo.almalinux.org/x.qcow2"), "images[0].iso", ".iso file"),
    ("iso-conflict", _second_image_other_iso_same_file, "homelab-images:images[1].iso", "same ISO file"),
    ("k3s-no-suffix", set_key(f"{IMG}.k3s.version", "v1.36.4"), "images[0].k3s.version", "k3s release tag"),
    ("k3s-no-v", set_key(f"{IMG}.k3s.version", "1.36.4+k3s1"), "images[0].k3s.version", "k3s release tag"),
    ("k3s-sha-missing", set_key(f"{IMG}.k3s.binarySha256", DELETE), "images[0].k3s.binarySha256", "required"),
    (
        "firmware-unknown",
        set_key(f"{IMG}.hardware.firmware", "uefi"),
        "images[0].hardware.firmware",
        "expected 'ovmf' or 'seabios', got the text 'uefi'",
    ),
    ("bus-unknown", set_key(f"{IMG}.hardware.diskBus", "nvme"), "images[0].hardware.diskBus", "'scsi'"),
    ("cpu-kvm64", set_key(f"{IMG}.hardware.cpuType", "kvm64"), "images[0].hardware.cpuType", "x86-64-v2-AES"),
    (
        "memory-too-small",
        set_key(f"{IMG}.hardware.memoryMiB", 512),
        "images[0].hardware.memoryMiB",
        "expected at least 2048, got 512",
    ),
    ("disk-too-small", set_key(f"{IMG}.partitioning.rootMinGiB", 40), "images[0]", "too small for the partitions"),
    ("efi-too-small", set_key(f"{IMG}.partitioning.efiMiB", 50), "images[0].partitioning.efiMiB", "at least 200"),
    ("bad-package", set_key(f"{IMG}.packages.extra", ["nfs utils"]), "images[0].packages.extra[0]", "RPM package"),
    ("bad-period", set_key(f"{IMG}.rebuildEvery", "monthly"), "images[0].rebuildEvery", "period"),
    ("zero-period", set_key(f"{IMG}.rebuildEvery", "0d"), "images[0].rebuildEvery", "period"),
    (
        "bad-delivery",
        set_key("homelab-images:build/kickstartDelivery", "floppy"),
        "homelab-images:build.kickstartDelivery",
        "'http'",
    ),
    ("bad-firewall", set_key(f"{IMG}.firewall", "on"), "images[0].firewall", "'enabled'"),
    ("unknown-image-key", set_key(f"{IMG}.k3sVersion", "v1.36.4+k3s1"), "images[0].k3sVersion", "not a known setting"),
    ("bad-timezone", set_key(f"{IMG}.timezone", "utc+1"), "images[0].timezone", "time zone"),
    ("missing-k3s", set_key(f"{IMG}.k3s", DELETE), "images[0].k3s", "required"),
    (
        "snake-case-key",
        set_key("homelab-images:proxmox/vm_storage", "local-lvm"),
        "proxmox.vm_storage",
        "did you mean 'homelab-images:proxmox.vmStorage'?",
    ),
    ("namespace-typo", set_key("homelab-image:build", {"timeoutMinutes": 60}), "homelab-image:build", "did you mean"),
    ("provider-key-unused", set_key("proxmoxve:minTls", "1.3"), "proxmoxve:minTls", "is not used"),
    ("targets-twice", set_key(f"{IMG}.targets", ["proxmox-iso", "qemu", "qemu"]), "images[0].targets", "twice"),
    ("targets-unknown", set_key(f"{IMG}.targets", ["proxmox-iso", "libvirt"]), "images[0].targets[1]", "'qemu'"),
    ("targets-empty", set_key(f"{IMG}.targets", []), "images[0].targets", "at least 1"),
    ("targets-not-list", set_key(f"{IMG}.targets", "qemu"), "images[0].targets", "expected a list"),
    (
        "ovmf-relative",
        set_key("homelab-images:build/qemu", {"ovmfCode": "OVMF_CODE_4M.fd"}),
        "homelab-images:build.qemu.ovmfCode",
        "absolute path",
    ),
    (
        "qemu-accelerator",
        set_key("homelab-images:build/qemu", {"accelerator": "hvf"}),
        "homelab-images:build.qemu.accelerator",
        "'kvm'",
    ),
    (
        "qemu-plugin-version",
        set_key("homelab-images:build/qemu", {"pluginVersion": "1.1.0"}),
        "homelab-images:build.qemu.pluginVersion",
        "not a known setting",
    ),
    (
        "smoke-timeout-too-short",
        set_key("homelab-images:build/smokeTimeoutMinutes", 1),
        "build.smokeTimeoutMinutes",
        "2",
    ),
    (
        "artifact-dir-blank",
        set_key("homelab-images:build/artifactDir", " "),
        "homelab-images:build.artifactDir",
        "path",
    ),
    *[
        (
            f"artifact-dir-{case}",
            set_key("homelab-images:build/artifactDir", value),
            "homelab-images:build.artifactDir",
            words,
        )
        for case, value, words in [
            ("root", "/", "not the filesystem root"),
            ("root-dotted", "//./", "not the filesystem root"),
            ("dot", ".", "not the project directory itself"),
            ("dot-slash", "./", "not the project directory itself"),
            ("empty", "", "not the project directory itself"),
            ("parent", "..", "without '..' components"),
            ("parent-inside", "artifacts/../kickstart", "without '..' components"),
            ("parent-absolute", "/srv/images/../../etc", "without '..' components"),
            ("tilde", "~/artifacts", "~ and $VARIABLES are not expanded: write the full path"),
            ("variable", "$HOME/a", "~ and $VARIABLES are not expanded: write the full path"),
            ("braced-variable", "/srv/${STACK}/a", "~ and $VARIABLES are not expanded"),
        ]
    ],
    (
        "import-from-path-tilde",
        set_key(f"{IMG}.importFrom", {"path": "~/images/a.qcow2", "sha256": "ab" * 32}),
        "images[0].importFrom.path",
        "~ and $VARIABLES are not expanded: write the full path",
    ),
    (
        "import-from-path-variable",
        set_key(f"{IMG}.importFrom", {"path": "$HOME/images/a.qcow2", "sha256": "ab" * 32}),
        "images[0].importFrom.path",
        "~ and $VARIABLES are not expanded: write the full path",
    ),
    (
        "ca-bundle-tilde",
        set_key("homelab-images:proxmox/caBundle", "~/pve-ca.pem"),
        "homelab-images:proxmox.caBundle",
        "~ and $VARIABLES are not expanded: write the full path",
    ),
    (
        "ca-bundle-variable",
        set_key("homelab-images:proxmox/caBundle", "${HOME}/pve-ca.pem"),
        "homelab-images:proxmox.caBundle",
        "~ and $VARIABLES are not expanded",
    ),
    (
        "flat-nested-key",
        set_key("homelab-images:build.artifactDir", "/tmp/x"),
        "homelab-images:build.artifactDir",
        "is a flat key; Pulumi stores nested settings with --path: "
        "pulumi config set --path 'homelab-images:build.artifactDir' <value>",
    ),
    (
        "flat-deeply-nested-key",
        set_key("homelab-images:build.qemu.accelerator", "tcg"),
        "homelab-images:build.qemu.accelerator",
        "pulumi config set --path 'homelab-images:build.qemu.accelerator' <value>",
    ),
    (
        "flat-image-key",
        set_key("homelab-images:images[0].version", "1.0.1"),
        "homelab-images:images[0].version",
        "is a flat key",
    ),
    (
        "near-miss-image-key",
        set_key(f"{IMG}.importfrom", {"path": "a.qcow2", "sha256": "ab" * 32}),
        "images[0].importfrom",
        "is not a known setting; did you mean 'homelab-images:images[0].importFrom'?",
    ),
    (
        "near-miss-targets",
        set_key(f"{IMG}.target", ["qemu"]),
        "images[0].target",
        "did you mean 'homelab-images:images[0].targets'?",
    ),
    (
        "near-miss-top-level",
        set_key("homelab-images:bulid", {"timeoutMinutes": 60}),
        "homelab-images:bulid",
        "did you mean 'homelab-images:build'?",
    ),
    (
        "nested-key-at-top-level",
        set_key("homelab-images:artifactDir", "/srv/images"),
        "homelab-images:artifactDir",
        "did you mean 'homelab-images:build.artifactDir'? (a nested setting: set it with pulumi config set --path)",
    ),
    (
        "misspelt-flat-key",
        set_key("homelab-images:build.artifactdir", "/srv/images"),
        "homelab-images:build.artifactdir",
        "did you mean 'homelab-images:build.artifactDir'? (a nested setting",
    ),
    (
        "mirror-with-a-newline",
        set_key(f"{IMG}.installMirror", "https://repo.almalinux.org/almalinux/9.8\n%post\nreboot\n%end\n#"),
        "images[0].installMirror",
        "without spaces, quotes or control characters",
    ),
    (
        "mirror-with-a-space",
        set_key(f"{IMG}.installMirror", "https://repo.almalinux.org/almalinux/9.8 --noverifyssl"),
        "images[0].installMirror",
        "without spaces",
    ),
    (
        "iso-url-with-a-quote",
        set_key(f"{IMG}.iso.url", 'https://repo.almalinux.org/almalinux/9.8/isos/x86_64/a"b.iso'),
        "images[0].iso.url",
        "quotes",
    ),
    (
        "mirror-with-credentials",
        set_key(f"{IMG}.installMirror", "https://mirror-user:sentinel-pw@mirror.lan/almalinux/9.8"),
        "images[0].installMirror",
        "without user:password@",
    ),
    (
        "endpoint-with-credentials",
        set_key("proxmoxve:endpoint", "https://root:sentinel@pve1:8006/"),
        "proxmoxve:endpoint",
        "user:password@",
    ),
    (
        "import-from-not-a-qcow2",
        set_key(f"{IMG}.importFrom", {"url": "https://files.example.org/a.qcow2.gz", "sha256": "ab" * 32}),
        "images[0].importFrom",
        ".qcow2 file",
    ),
    (
        "import-from-plain-http",
        set_key(f"{IMG}.importFrom", {"url": "http://files.example.org/a.qcow2", "sha256": "ab" * 32}),
        "images[0].importFrom.url",
        "https://",
    ),
    (
        "import-from-short-sha256",
        set_key(f"{IMG}.importFrom", {"url": "https://files.example.org/a.qcow2", "sha256": "abc"}),
        "images[0].importFrom.sha256",
        "64 hex",
    ),
    (
        "import-from-url-and-path",
        set_key(f"{IMG}.importFrom", {"url": "https://f.example.org/a.qcow2", "path": "a.qcow2", "sha256": "ab" * 32}),
        "images[0].importFrom",
        "exactly one of url",
    ),
    (
        "import-from-neither-url-nor-path",
        set_key(f"{IMG}.importFrom", {"sha256": "ab" * 32}),
        "images[0].importFrom",
        "exactly one of url",
    ),
    (
        "import-from-path-not-a-qcow2",
        set_key(f"{IMG}.importFrom", {"path": "artifacts/a/b/image.qcow2.gz", "sha256": "ab" * 32}),
        "images[0].importFrom.path",
        "the path of a .qcow2 file",
    ),
    (
        "import-from-and-qemu-target",
        lambda c: (
            set_key(f"{IMG}.importFrom", {"url": "https://files.example.org/a.qcow2", "sha256": "ab" * 32})(c),
            set_key(f"{IMG}.targets", ["proxmox-iso", "qemu"])(c),
        ),
        "images[0].targets",
        "expected [proxmox-iso] with importFrom",
    ),
    (
        "import-from-and-qemu-only",
        lambda c: (
            set_key(f"{IMG}.importFrom", {"url": "https://files.example.org/a.qcow2", "sha256": "ab" * 32})(c),
            set_key(f"{IMG}.targets", ["qemu"])(c),
        ),
        "images[0].targets",
        "makes the Proxmox template from a qcow2 built elsewhere; got [qemu]",
    ),
    (
        "endpoint-trailing-newline",
        set_key("proxmoxve:endpoint", "https://pve1:8006/\n"),
        "proxmoxve:endpoint",
        "control",
    ),
    (
        "mirror-is-a-repo",
        set_key(f"{IMG}.installMirror", "https://repo.almalinux.org/almalinux/9.7/BaseOS/x86_64/os/"),
        "images[0].installMirror",
        "release directory",
    ),
]


@pytest.mark.parametrize(
    ("mutation", "key", "words"), [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_is_one_clear_line_naming_the_key(mutation: Any, key: str, words: str) -> None:
    raw = mutated_config(mutation)
    raw["proxmoxve:apiToken"] = {"secure": "v1:c2VudGluZWw="}
    with pytest.raises(ConfigError) as error:
        load_config(raw)
    matching = [problem for problem in error.value.problems if key in problem.split(": ", 1)[0]]
    assert matching, f"no problem names {key}: {error.value.problems}"
    assert any(words in problem for problem in matching), error.value.problems
    assert all("Traceback" not in problem and "sentinel" not in problem for problem in error.value.problems)


@pytest.mark.parametrize(("mutation", "key"), [(c[1], c[2]) for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_validate_command_reports_bad_input(tmp_path: Path, capsys: Any, mutation: Any, key: str) -> None:
    path = write_stack_file(tmp_path, mutated_config(mutation))
    assert cli_main(["validate", "--stack-file", str(path)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines)
    assert any(key in line for line in lines)


@pytest.mark.parametrize(("mutation", "key"), [(c[1], c[2]) for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_program_fails_the_same_way_before_declaring_anything(mutation: Any, key: str) -> None:
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as error:
        run_program(config=mutated_config(mutation), secrets={"proxmoxve:apiToken": SENTINEL_TOKEN}, mocks=mocks)
    assert key in str(error.value)
    assert "sentinel" not in str(error.value)
    assert mocks.builds == {}


def test_validate_warns_about_a_missing_import_file_and_reads_relative_paths_from_the_project(
    tmp_path: Path, capsys: Any
) -> None:
    """The file is needed only when the template is (re)made, so it is a warning, naming the key."""
    config = mutated_config(set_key(f"{IMG}.importFrom", {"path": "artifacts/a/v1/a.qcow2", "sha256": "ab" * 32}))
    path = write_stack_file(tmp_path, config)
    cli_main(["validate", "--stack-file", str(path)])
    warned = [line for line in capsys.readouterr().err.splitlines() if "importFrom.path" in line]
    assert warned == [
        f"warning: homelab-images:images[0].importFrom.path: no file at {tmp_path.resolve()}/artifacts/a/v1/a.qcow2; "
        "pulumi up needs it to make the template (build it with the qemu target, copy it here, or fix the path)"
    ]
    (tmp_path / "artifacts/a/v1").mkdir(parents=True)
    (tmp_path / "artifacts/a/v1/a.qcow2").write_bytes(b"QFI\xfb")
    cli_main(["validate", "--stack-file", str(path)])
    assert "importFrom.path" not in capsys.readouterr().err


def test_validate_as_a_process_prints_no_traceback(tmp_path: Path) -> None:
    config = mutated_config(set_key(f"{IMG}.version", 1.1))
    config["proxmoxve:apiToken"] = {"secure": "v1:AAAAsentinel"}
    path = write_stack_file(tmp_path, config)
    done = subprocess.run(
        [sys.executable, "-m", "homelab_images", "validate", "--stack-file", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: homelab-images:images[0].version: expected a string (quote the value in YAML), got the number 1.1"
    )
    assert "Traceback" not in done.stderr and "sentinel" not in done.stdout + done.stderr


def test_unreadable_and_malformed_stack_files(tmp_path: Path, capsys: Any) -> None:
    assert cli_main(["validate", "--stack-file", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read the stack file" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("config:\n  proxmoxve:endpoint: [unclosed\n", encoding="utf-8")
    assert cli_main(["validate", "--stack-file", str(broken)]) == 2
    assert "not valid YAML at line" in capsys.readouterr().err
    misspelt = tmp_path / "misspelt.yaml"
    misspelt.write_text("confg:\n  proxmoxve:endpoint: https://pve1:8006/\n", encoding="utf-8")
    assert cli_main(["validate", "--stack-file", str(misspelt)]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {misspelt}: no 'config:' key (it has 'confg'); the settings go under 'config:'\n"
    )
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    assert cli_main(["validate", "--stack-file", str(empty)]) == 2
    assert capsys.readouterr().err == f"error: {empty}: no 'config:' key; the settings go under 'config:'\n"


def test_insecure_accepts_the_string_pulumi_config_set_writes() -> None:
    raw = fixture_document()["config"]
    raw["proxmoxve:insecure"] = "true"
    assert load_config(raw).insecure is True


def test_other_namespaces_are_ignored() -> None:
    raw = fixture_document()["config"]
    raw["otherproject:setting"] = 1
    assert load_config(raw).images


def test_plain_text_token_in_the_stack_file_is_refused_without_echo(tmp_path: Path, capsys: Any) -> None:
    config = fixture_document()["config"]
    config["proxmoxve:apiToken"] = "images@pve!build=plain-sentinel-1234"
    path = write_stack_file(tmp_path, config)
    assert cli_main(["validate", "--stack-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert "proxmoxve:apiToken: is stored in plain text" in err
    # The hint runs the prompting form: a token typed as an argument lands in shell history and `ps`.
    assert "`pulumi config set --secret proxmoxve:apiToken` (it asks for user@realm!tokenid=secret)" in err
    assert "plain-sentinel" not in err


def test_a_corrupt_lock_file_is_a_clear_error(tmp_path: Path, capsys: Any) -> None:
    path = write_stack_file(tmp_path, fixture_document()["config"], name="Pulumi.homelab.yaml")
    (tmp_path / "Pulumi.homelab.lock.json").write_text("<<<<<<< HEAD\n{}\n", encoding="utf-8")
    assert cli_main(["lock", "--check", "--stack-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not a valid lock file (a merge conflict?)" in err and "Traceback" not in err


def test_a_key_given_twice_is_an_error_not_a_silent_override(tmp_path: Path, capsys: Any) -> None:
    text = FIXTURE_STACK_FILE.read_text(encoding="utf-8") + "  homelab-images:build:\n    timeoutMinutes: 30\n"
    path = tmp_path / "Pulumi.dup.yaml"
    path.write_text(text, encoding="utf-8")
    assert cli_main(["validate", "--stack-file", str(path)]) == 2
    assert "key 'homelab-images:build' appears twice" in capsys.readouterr().err


def test_smoke_settings_reach_the_build_spec_and_the_id_budget() -> None:
    raw = mutated_config(set_key("homelab-images:build/keepFailedTemplates", True))
    spec = plan_stack(load_config(raw), datetime.now(UTC))[0].build_spec
    assert (spec.smoke_test, spec.smoke_timeout_minutes, spec.keep_failed_templates) == (True, 15, True)

    # retainPrevious=1: current + retained + next build (+ its smoke-test clone) per image.
    tight = set_key("homelab-images:proxmox/vmIdRange.last", 9002)
    with pytest.raises(ConfigError, match=r"need at least 4 .*its smoke-test clone"):
        load_config(mutated_config(tight))
    without_smoke = mutated_config(tight)
    without_smoke["homelab-images:build"]["smokeTest"] = False
    assert load_config(without_smoke).build.smoke_test is False


def _second_image(targets: list[str]) -> Any:
    """A second image with ``targets``, in a VM ID range that holds exactly one image's templates."""

    def edit(config: dict[str, Any]) -> None:
        second = copy.deepcopy(image(config))
        second["name"] = "alma9-k3s-file"
        second["targets"] = targets
        config["homelab-images:images"].append(second)
        config["homelab-images:proxmox"]["vmIdRange"] = {"first": 9000, "last": 9003}

    return edit


def test_an_image_built_for_qemu_only_is_valid_and_takes_no_vm_ids() -> None:
    config = load_config(mutated_config(_second_image(["qemu"])))
    assert [image.has_template for image in config.images] == [True, False]
    with pytest.raises(ConfigError, match=r"vmIdRange: holds 4 IDs; 2 image\(s\) with a template .* at least 8"):
        load_config(mutated_config(_second_image(["proxmox-iso", "qemu"])))


def _mirror_and_iso(mirror: str, iso: str) -> Any:
    def edit(config: dict[str, Any]) -> None:
        image = config["homelab-images:images"][0]
        image["installMirror"] = mirror
        image["iso"]["url"] = iso

    return edit


def test_a_minor_that_moved_to_the_vault_is_accepted() -> None:
    config = load_config(
        mutated_config(
            _mirror_and_iso(
                "https://vault.almalinux.org/9.6",
                "https://vault.almalinux.org/9.6/isos/x86_64/AlmaLinux-9.6-x86_64-boot.iso",
            )
        )
    )
    assert config.images[0].install_repositories == {
        "BaseOS": "https://vault.almalinux.org/9.6/BaseOS/x86_64/os/",
        "AppStream": "https://vault.almalinux.org/9.6/AppStream/x86_64/os/",
    }


@pytest.mark.parametrize(
    ("mirror", "iso", "problem"),
    [
        (
            "https://vault.almalinux.org/almalinux/9.6",
            "https://vault.almalinux.org/9.6/isos/x86_64/AlmaLinux-9.6-x86_64-boot.iso",
            "installMirror: the AlmaLinux vault has no almalinux/ segment: use 'https://vault.almalinux.org/9.6'",
        ),
        (
            "https://repo.almalinux.org/9.8",
            "https://repo.almalinux.org/almalinux/9.8/isos/x86_64/AlmaLinux-9.8-x86_64-boot.iso",
            "installMirror: repo.almalinux.org serves releases under /almalinux/",
        ),
        (
            "https://repo.almalinux.org/almalinux/9.7",
            "https://repo.almalinux.org/almalinux/9.8/isos/x86_64/AlmaLinux-9.8-x86_64-boot.iso",
            "installMirror is AlmaLinux 9.7 but iso.url is 9.8",
        ),
    ],
    ids=["vault-with-segment", "repo-without-segment", "minor-mismatch"],
)
def test_almalinux_urls_that_would_404_or_mismatch_are_refused(mirror: str, iso: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(mutated_config(_mirror_and_iso(mirror, iso)))
    (line,) = raised.value.problems
    assert line.startswith("homelab-images:images[0]") and problem in line


def test_import_from_path_reaches_the_spec_and_where_the_file_lies_changes_no_fingerprint() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    sha = "ab" * 32

    def planned(source: dict[str, str]) -> Any:
        raw = mutated_config(set_key(f"{IMG}.importFrom", {**source, "sha256": sha}))
        raw["proxmoxve:apiToken"] = {"secure": "v1:c2VudGluZWw="}
        return plan_stack(load_config(raw), now)[0].build_spec

    by_path = planned({"path": "artifacts/alma/v1/alma9-k3s-node-amd64-v1.0.0.qcow2"})
    assert by_path.import_from is not None and by_path.import_from.url is None
    assert by_path.import_from.path == "artifacts/alma/v1/alma9-k3s-node-amd64-v1.0.0.qcow2"
    assert by_path.import_from.file_name == f"{by_path.template_name}-{sha[:12]}.qcow2"
    elsewhere = planned({"path": "/srv/images/other-name.qcow2"})
    by_url = planned({"url": "https://files.example.org/alma9-k3s.qcow2"})
    assert by_path.fingerprint == elsewhere.fingerprint == by_url.fingerprint, "the qcow2's sha256 is what counts"


def test_a_stack_of_qemu_only_images_needs_no_room_in_the_vm_id_range() -> None:
    """An image built for qemu only takes no VM ID, so a one-ID range does not stop such a stack."""

    def qemu_only_one_id(config: dict[str, Any]) -> None:
        image(config)["targets"] = ["qemu"]
        config["homelab-images:proxmox"]["vmIdRange"] = {"first": 9000, "last": 9000}

    config = load_config(mutated_config(qemu_only_one_id))
    assert [image.has_template for image in config.images] == [False]
    with pytest.raises(ConfigError, match=r"vmIdRange: holds 1 IDs; 1 image\(s\) with a template .* at least 4"):
        load_config(mutated_config(set_key("homelab-images:proxmox/vmIdRange.last", 9000)))


def test_an_empty_import_from_names_both_missing_parts_in_one_run() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(mutated_config(set_key(f"{IMG}.importFrom", {})))
    assert raised.value.problems == [
        "homelab-images:images[0].importFrom.sha256: is required but missing",
        "homelab-images:images[0].importFrom: expected exactly one of url (Proxmox downloads the qcow2) and path "
        "(this machine uploads it)",
    ]


def test_absolute_and_relative_artifact_dirs_are_kept_as_written() -> None:
    for value in ("/srv/images", "artifacts", "./out/qcow2", "builds/..2026"):
        config = load_config(mutated_config(set_key("homelab-images:build/artifactDir", value)))
        assert config.build.artifact_dir == value


def test_uppercase_sha256_values_are_accepted_as_lowercase_and_change_no_fingerprint(
    tmp_path: Path, capsys: Any
) -> None:
    """Windows' Get-FileHash prints uppercase: the config reads the same digests, so the lock still agrees."""
    config = fixture_document()["config"]
    shas = image(config)["iso"], image(config)["k3s"]
    lowercase = [dict(section) for section in shas]
    for section in shas:
        for key, value in section.items():
            if key.lower().endswith("sha256"):
                section[key] = value.upper()
    image(config)["importFrom"] = {"url": "https://files.example.org/a.qcow2", "sha256": "AB" * 32}
    stack_file = write_stack_file(tmp_path, config, name="Pulumi.homelab.yaml")
    (tmp_path / "Pulumi.homelab.lock.json").write_bytes(
        (FIXTURE_STACK_FILE.parent / "Pulumi.homelab.lock.json").read_bytes()
    )
    loaded = load_stack_file(stack_file)
    (alma,) = loaded.images
    assert alma.iso.sha256 == lowercase[0]["sha256"] and alma.iso.sha256.islower()
    assert alma.k3s.binary_sha256 == lowercase[1]["binarySha256"]
    assert alma.import_from is not None and alma.import_from.sha256 == "ab" * 32
    spec = plan_stack(loaded, datetime(2026, 1, 1, tzinfo=UTC))[0].build_spec
    assert spec is not None and spec.iso_sha256 == lowercase[0]["sha256"], "the runner sees lowercase"
    assert spec.import_from is not None and spec.import_from.sha256 == "ab" * 32

    del image(config)["importFrom"]
    write_stack_file(tmp_path, config, name="Pulumi.homelab.yaml")
    assert cli_main(["lock", "--check", "--stack-file", str(stack_file)]) == 0, capsys.readouterr().err
