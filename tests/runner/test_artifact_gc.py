"""gc of the qemu target's files: superseded beyond retention, images no longer built, interrupted builds.

In-process and without Proxmox: build directories are made as the qemu build
leaves them (homelab_images.runner.qemu._finish: the file, its manifest and, when
superseded, the SUPERSEDED marker) with a small plain file standing in for the
qcow2; gc reads nothing but the layout and the manifest. That the qemu build's
own directories pass gc's ownership check is shown in tests/runner/test_qemu_build.py.
"""

from __future__ import annotations

import io
import os
import subprocess
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from homelab_images.cli.main import main
from homelab_images.contract.artifact import SUPERSEDED_MARKER, ArtifactSpec
from homelab_images.contract.build_spec import IdRange
from homelab_images.contract.gc_request import ArtifactGc, ArtifactImage, GcRequest
from homelab_images.core.config import load_config
from homelab_images.core.paths import kickstart_dir_for
from homelab_images.core.plan import plan_stack
from homelab_images.core.stackfile import load_stack_file
from homelab_images.runner import artifact_gc
from homelab_images.runner.artifact_gc import (
    Removal,
    collect_artifacts,
    disk_usage,
    find_artifacts,
    human_size,
    remove,
)
from homelab_images.runner.errors import EXIT_FAILED, RunnerError
from homelab_images.runner.gc import message, run_gc
from tests.runner.artifact_builds import write_build
from tests.stack_files import image, mutated_config, write_stack_file

PAYLOAD = 96 * 1024
OTHER = "retired-image"


def _with_qemu(config: dict[str, Any]) -> None:
    image(config)["targets"] = ["proxmox-iso", "qemu"]


@cache
def shipped_spec() -> ArtifactSpec:
    (plan,) = plan_stack(load_config(mutated_config(_with_qemu)), datetime.now(UTC))
    assert plan.qemu is not None
    return plan.qemu.spec


def variant(char: str, version: str | None = None, image_name: str | None = None) -> ArtifactSpec:
    """The image after a content change (another fingerprint), a version bump, or another image altogether."""
    spec = shipped_spec().replace(fingerprint=char * 64)
    name = image_name or spec.image
    version = version or spec.version
    return spec.replace(
        image=name, version=version, template_name=f"{name}-v{version}", file_name=f"{name}-v{version}.qcow2"
    )


def build(artifact_dir: Path, spec: ArtifactSpec, built_at: str, superseded: bool = False) -> Path:
    """A finished build directory as the qemu build leaves it."""
    return write_build(artifact_dir, spec, built_at, os.urandom(PAYLOAD), superseded)


def work_dir(artifact_dir: Path, spec: ArtifactSpec, pid: int) -> Path:
    """A build in progress (or killed): Packer's output directory inside the build's work directory."""
    directory = artifact_dir / spec.image / f".building-{spec.fingerprint[:12]}-{pid}"
    (directory / "output").mkdir(parents=True)
    (directory / "output" / spec.file_name).write_bytes(os.urandom(PAYLOAD))
    return directory


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def request(artifact_dir: Path, retain: int = 1, **fingerprints: str | None) -> ArtifactGc:
    images = fingerprints or {shipped_spec().image: shipped_spec().fingerprint}
    return ArtifactGc(
        artifact_dir=str(artifact_dir),
        images=[ArtifactImage(name=name, fingerprint=fp) for name, fp in images.items()],
        retain_previous=retain,
    )


def gc(req: ArtifactGc, apply: bool = False, project_dir: Path = Path("/")) -> tuple[int, list[str]]:
    out = io.StringIO()
    status = collect_artifacts(req, project_dir, apply, out)
    return status, out.getvalue().splitlines()


def size(directory: Path) -> str:
    return human_size(disk_usage(directory))


def remaining(artifact_dir: Path) -> set[str]:
    return {f"{d.parent.name}/{d.name}" for d in artifact_dir.glob("*/*")} | {
        f"{d.parent.name}/{d.name}" for d in artifact_dir.glob("*/.*")
    }


@pytest.fixture
def garbage(tmp_path: Path) -> dict[str, Path]:
    """A configured image with a current file, a rollback file, one beyond retention, an untracked file, a
    live and a dead build; an image no longer built; and what is not this program's."""
    root = tmp_path / "artifacts"
    current = shipped_spec()
    layout = {
        "current": build(root, current, "2026-03-01T00:00:00Z"),
        "rollback": build(root, variant("b"), "2026-02-01T00:00:00Z", superseded=True),
        "oldest": build(root, variant("a", "0.9.0"), "2026-01-01T00:00:00Z", superseded=True),
        "untracked": build(root, variant("c"), "2026-03-02T00:00:00Z"),
        "building": work_dir(root, variant("d"), os.getpid()),
        "killed": work_dir(root, variant("e"), dead_pid()),
        "retired": build(root, variant("f", image_name=OTHER), "2026-01-15T00:00:00Z", superseded=True),
        "retired-current": build(root, variant("9", image_name=OTHER), "2026-01-20T00:00:00Z"),
    }
    # Not this program's: no manifest, a broken one, another image's, renamed, a symlink, odd work names.
    notes = root / current.image / "someone-elses-notes"
    notes.mkdir()
    (notes / "big.qcow2").write_bytes(os.urandom(PAYLOAD))
    broken = build(root, variant("7"), "2025-01-01T00:00:00Z", superseded=True)
    (broken / "manifest.json").write_text('{"schema": 1, "builtBy": "homelab-images", "image": ')
    moved = build(root, variant("8"), "2025-02-01T00:00:00Z", superseded=True)
    (moved / "manifest.json").write_text(
        (moved / "manifest.json").read_text().replace(f'"{current.image}"', '"another-image"')
    )
    elsewhere = build(tmp_path / "other-project", variant("5"), "2025-02-01T00:00:00Z", superseded=True)
    (root / current.image / "linked-by-hand").symlink_to(elsewhere)
    renamed = build(root, variant("6"), "2025-03-01T00:00:00Z", superseded=True)
    renamed.rename(renamed.with_name("keep-me"))
    (root / current.image / ".building-notours-1").mkdir()
    (root / current.image / ".building-0123456789ab-notapid").mkdir()
    (root / current.image / "README").write_text("files for the lab\n")
    layout.update(broken=broken, moved=moved, renamed=renamed.with_name("keep-me"), notes=notes, elsewhere=elsewhere)
    return layout


def test_dry_run_lists_each_directory_why_and_its_size_and_deletes_nothing(garbage: dict[str, Path]) -> None:
    root = garbage["current"].parents[1]
    before = remaining(root)
    status, lines = gc(request(root))
    assert status == 0

    def rel(name: str) -> str:
        return f"{garbage[name].parent.name}/{garbage[name].name}"

    live_pid, dead = (garbage[name].name.rsplit("-", 1)[1] for name in ("building", "killed"))
    foreign = (
        "its manifest.json does not prove it is a build of this image (unreadable, another image's, or renamed); "
        "left alone"
    )
    assert lines == [
        f"qcow2 files in {root} (homelab-images:build.artifactDir):",
        *sorted(
            [
                f"  {rel('building')} ({size(garbage['building'])}): "
                f"build in progress (process {live_pid} is running); left alone",
                f"  {rel('killed')} ({size(garbage['killed'])}): work directory of an interrupted build "
                f"(process {dead} is gone): would delete",
                f"  {rel('oldest')} ({size(garbage['oldest'])}): superseded, beyond retainPrevious=1: would delete",
                f"  {rel('untracked')} ({size(garbage['untracked'])}): {artifact_gc.UNTRACKED}",
                f"  {rel('broken')}: {foreign}",
                f"  {rel('moved')}: {foreign}",
                f"  {rel('renamed')}: {foreign}",
                f"  {rel('retired')} ({size(garbage['retired'])}): superseded, image no longer built with the qemu "
                "target: would delete",
                f"  {rel('retired-current')} ({size(garbage['retired-current'])}): {artifact_gc.STILL_LISTED}",
            ]
        ),
        "  dry run: nothing was deleted; --apply deletes the 3 marked 'would delete', freeing "
        + human_size(sum(disk_usage(garbage[name]) for name in ("killed", "oldest", "retired"))),
    ]
    assert remaining(root) == before
    assert rel("current") not in "\n".join(lines), "the current file is not garbage"
    assert rel("rollback") not in "\n".join(lines), "retainPrevious=1 keeps the newest superseded file"


def test_apply_deletes_exactly_the_candidates_and_says_how_much_it_freed(garbage: dict[str, Path]) -> None:
    root = garbage["current"].parents[1]
    gone = {name: garbage[name] for name in ("killed", "oldest", "retired")}
    freed = human_size(sum(disk_usage(path) for path in gone.values()))
    before = remaining(root)

    status, lines = gc(request(root), apply=True)

    assert status == 0
    assert remaining(root) == before - {f"{p.parent.name}/{p.name}" for p in gone.values()}
    assert lines[-1] == f"  deleted 3 of 3 candidates, freed {freed}"
    assert sum(line.endswith(": deleted") for line in lines) == 3
    for kept in ("current", "rollback", "untracked", "building", "retired-current", "broken", "moved", "renamed"):
        assert garbage[kept].is_dir(), kept
    assert (garbage["notes"] / "big.qcow2").is_file()
    assert garbage["elsewhere"].is_dir(), "a symlink is never followed"
    assert (root / shipped_spec().image / "linked-by-hand").is_symlink()

    again = gc(request(root), apply=True)
    assert again[0] == 0 and again[1][-1].startswith("  nothing to collect")


def test_retention_is_per_image_and_counts_superseded_files_newest_first(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    second = "second-image"
    # Directory names sort in the other order than build times: retention must go by build time.
    first = [
        build(root, variant(c), f"2026-0{m}-01T00:00:00Z", superseded=True) for c, m in zip("fed", "123", strict=True)
    ]
    other = [build(root, variant(c, image_name=second), "2026-01-01T00:00:00Z", superseded=True) for c in "a"]
    fingerprints = {shipped_spec().image: shipped_spec().fingerprint, second: "1" * 64}

    for retain, deleted in ((2, first[:1]), (1, first[:2]), (0, [*first, *other])):
        _, lines = gc(request(root, retain, **fingerprints))
        marked = {line.split(" ")[2] for line in lines if line.endswith("would delete")}
        assert marked == {f"{d.parent.name}/{d.name}" for d in deleted}, f"retainPrevious={retain}"
        assert all(f"beyond retainPrevious={retain}" in line for line in lines if line.endswith("would delete"))


def test_an_image_no_longer_built_with_qemu_keeps_no_superseded_file_and_its_current_one_is_reported(
    tmp_path: Path,
) -> None:
    root = tmp_path / "artifacts"
    superseded = [
        build(root, variant(c), f"2026-0{m}-01T00:00:00Z", superseded=True) for c, m in zip("ab", "12", strict=True)
    ]
    current = build(root, variant("c"), "2026-03-01T00:00:00Z")

    status, lines = gc(request(root, 5, **{"some-other-image": "1" * 64}), apply=True)

    assert status == 0
    assert [d.exists() for d in superseded] == [False, False], "retainPrevious does not apply: it is not built"
    assert current.is_dir(), "pulumi up deletes the file its state lists, not gc"
    assert any(artifact_gc.STILL_LISTED in line for line in lines)


def test_the_current_file_is_the_newest_of_the_planned_fingerprint_else_the_newest(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    planned = build(root, variant("a"), "2026-01-01T00:00:00Z")
    newer = build(root, variant("b"), "2026-02-01T00:00:00Z")
    image_name = shipped_spec().image

    _, lines = gc(request(root, **{image_name: "a" * 64}))
    assert [line for line in lines if artifact_gc.UNTRACKED in line] == [
        f"  {image_name}/{newer.name} ({size(newer)}): {artifact_gc.UNTRACKED}"
    ]
    # A change not yet applied (or a kickstart gc could not plan): the newest is what the state most likely lists.
    for fingerprint in ("c" * 64, None):
        _, lines = gc(request(root, **{image_name: fingerprint}))
        assert [line for line in lines if artifact_gc.UNTRACKED in line] == [
            f"  {image_name}/{planned.name} ({size(planned)}): {artifact_gc.UNTRACKED}"
        ]
    gc(request(root, 0, **{image_name: None}), apply=True)
    assert planned.is_dir() and newer.is_dir(), "a file that is not superseded is never deleted"


def test_a_superseded_file_of_the_planned_fingerprint_is_never_deleted(tmp_path: Path) -> None:
    """A reverted change not yet applied: the qemu build's create reuses that file rather than build it again."""
    root = tmp_path / "artifacts"
    image_name = shipped_spec().image
    planned = build(root, variant("a"), "2026-01-01T00:00:00Z", superseded=True)
    other = build(root, variant("b"), "2026-02-01T00:00:00Z", superseded=True)
    listed = build(root, variant("c"), "2026-03-01T00:00:00Z")

    status, lines = gc(request(root, 0, **{image_name: "a" * 64}), apply=True)

    assert status == 0
    assert [planned.is_dir(), other.exists(), listed.is_dir()] == [True, False, True]
    assert f"  {image_name}/{planned.name} ({size(planned)}): {artifact_gc.PLANNED}" in lines
    assert "the file the stack config plans now" in artifact_gc.PLANNED
    assert not any(listed.name in line for line in lines), "the newest live file is what the state lists: current"
    assert lines[-1].startswith("  deleted 1 of 1 candidates")


def test_a_symlinked_image_directory_is_reported_and_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    elsewhere = tmp_path / "big-disk"
    old = build(elsewhere, variant("a"), "2026-01-01T00:00:00Z", superseded=True)
    killed = work_dir(elsewhere, variant("b"), dead_pid())
    root.mkdir()
    (root / shipped_spec().image).symlink_to(elsewhere / shipped_spec().image)

    status, lines = gc(request(root, 0), apply=True)

    assert status == 0
    assert old.is_dir() and killed.is_dir(), "nothing behind a link inside artifactDir is deleted"
    assert lines[1:] == [f"  {shipped_spec().image}: {artifact_gc.LINKED}", f"  {artifact_gc.NOTHING}"]


def test_artifact_dir_itself_may_be_a_symbolic_link_to_another_disk(tmp_path: Path) -> None:
    disk = tmp_path / "big-disk"
    old = build(disk, variant("a"), "2026-01-01T00:00:00Z", superseded=True)
    (tmp_path / "artifacts").symlink_to(disk)

    status, lines = gc(request(Path("artifacts"), 0), apply=True, project_dir=tmp_path)

    assert status == 0 and not old.exists()
    assert lines[0] == f"qcow2 files in {disk} (homelab-images:build.artifactDir):"


def test_a_live_build_is_never_touched_and_a_killed_one_is_removed(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    live = work_dir(root, variant("a"), os.getpid())
    killed = work_dir(root, variant("b"), dead_pid())

    status, lines = gc(request(root), apply=True)

    assert status == 0
    assert (live / "output" / shipped_spec().file_name).is_file(), "the qcow2 a running build writes stays"
    assert not killed.exists()
    assert any(line.endswith("left alone") and live.name in line for line in lines)
    assert lines[-1].startswith("  deleted 1 of 1 candidates, freed ")


def test_a_candidate_that_changed_since_it_was_listed_is_left_untouched(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    old = build(root, variant("a"), "2026-01-01T00:00:00Z", superseded=True)
    killed = work_dir(root, variant("b"), dead_pid())
    entries = {entry.directory: entry for entry in find_artifacts(request(root, 0), Path("/")).candidates}
    assert set(entries) == {old, killed}

    (old / SUPERSEDED_MARKER).unlink()  # a rollback made it current again
    killed.rename(killed.with_name(f".building-{'b' * 12}-{os.getpid()}"))

    assert remove(entries[old]) == (Removal.CHANGED, "it changed since it was listed")
    assert remove(entries[killed]) == (Removal.GONE, "")
    assert old.is_dir()


def test_a_failed_deletion_is_reported_and_fails_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "artifacts"
    old = build(root, variant("a"), "2026-01-01T00:00:00Z", superseded=True)

    def refuse(path: Path) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(artifact_gc.shutil, "rmtree", refuse)
    status, lines = gc(request(root, 0), apply=True)

    assert status == EXIT_FAILED
    assert f"could not delete (Permission denied: {old})" in lines[1]
    assert lines[-1] == "  deleted 0 of 1 candidates, freed 0 B"


def test_space_is_what_the_files_take_on_disk() -> None:
    assert human_size(0) == "0 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(int(3.5 * 1024**3)) == "3.5 GiB"


def test_a_sparse_qcow2_counts_the_blocks_it_uses_not_its_length(tmp_path: Path) -> None:
    sparse = tmp_path / "build"
    sparse.mkdir()
    with (sparse / "disk.qcow2").open("wb") as handle:
        handle.truncate(8 * 1024**3)
        handle.write(os.urandom(PAYLOAD))
    assert PAYLOAD <= disk_usage(sparse) < 1024**2


# --- The command: `homelab-images gc --stack-file FILE [--apply] [--only artifacts]`, in-process.


def qemu_stack(tmp_path: Path) -> tuple[Path, ArtifactSpec]:
    """A stack file with the qemu target and the default artifactDir (relative: the project directory)."""
    stack_file = write_stack_file(tmp_path, mutated_config(_with_qemu))
    config = load_stack_file(stack_file)
    (plan,) = plan_stack(config, datetime.now(UTC), kickstart_dir_for(stack_file))
    assert plan.qemu is not None and config.build.artifact_dir == "artifacts"
    return stack_file, plan.qemu.spec


def run_cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["gc", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_gc_only_artifacts_needs_no_credential_and_resolves_artifact_dir_at_the_project(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack_file, spec = qemu_stack(tmp_path)
    for name in ("PROXMOX_VE_API_TOKEN", "HOMELAB_IMAGES_API_TOKEN", "PROXMOX_VE_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    root = tmp_path / "artifacts"
    current = build(root, spec, "2026-03-01T00:00:00Z")
    old = build(root, variant("a"), "2026-01-01T00:00:00Z", superseded=True)
    older = build(root, variant("b"), "2026-01-02T00:00:00Z", superseded=True)

    code, out, err = run_cli("--stack-file", str(stack_file), "--only", "artifacts", capsys=capsys)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"qcow2 files in {root} (homelab-images:build.artifactDir):",
        f"  {spec.image}/{old.name} ({size(old)}): superseded, beyond retainPrevious=1: would delete",
        f"  dry run: nothing was deleted; --apply deletes the 1 marked 'would delete', freeing {size(old)}",
    ]
    code, out, err = run_cli("--stack-file", str(stack_file), "--only", "artifacts", "--apply", capsys=capsys)
    assert (code, err) == (0, "")
    assert [current.is_dir(), older.is_dir(), old.exists()] == [True, True, False]
    assert out.splitlines()[-1] == f"  deleted 1 of 1 candidates, freed {size(older)}"


def test_gc_without_a_token_collects_the_files_then_says_the_templates_need_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack_file, spec = qemu_stack(tmp_path)
    for name in ("PROXMOX_VE_API_TOKEN", "HOMELAB_IMAGES_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    build(tmp_path / "artifacts", spec, "2026-03-01T00:00:00Z")

    code, out, err = run_cli("--stack-file", str(stack_file), capsys=capsys)

    assert code == EXIT_FAILED
    assert out.splitlines()[1].startswith("  nothing to collect")
    assert err.splitlines() == [
        "error: homelab-images gc: PROXMOX_VE_API_TOKEN is not set; export "
        "PROXMOX_VE_API_TOKEN='user@realm!tokenid=secret' (the token of proxmoxve:apiToken) and run again "
        "(or run with --only artifacts for the qcow2 files alone)"
    ]


def test_gc_plans_no_image_it_cannot_and_still_collects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kickstart that does not render must not stop a cleanup: the newest file counts as current."""
    stack_file, spec = qemu_stack(tmp_path)
    template = next((tmp_path / "kickstart").glob("*.ks.j2"))
    template.write_text(template.read_text() + "\n{{ no_such_variable }}\n")
    root = tmp_path / "artifacts"
    current = build(root, spec, "2026-01-01T00:00:00Z")
    newest = build(root, variant("a"), "2026-03-01T00:00:00Z")

    code, out, err = run_cli("--stack-file", str(stack_file), "--only", "artifacts", capsys=capsys)

    assert code == 0
    assert err.startswith("note: cannot plan the images (") and "newest file" in err
    assert f"{current.name} ({size(current)}): {artifact_gc.UNTRACKED}" in out
    assert newest.name not in out


def test_a_stack_without_proxmox_images_or_token_skips_the_templates_and_says_why(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    old = build(root, variant("a"), "2026-01-01T00:00:00Z", superseded=True)
    gc_request = GcRequest(
        endpoint="https://pve.invalid:8006/",
        ca_bundle=None,
        insecure=False,
        project_dir=str(tmp_path),
        images=[],
        retain_previous=0,
        vm_id_range=IdRange(first=9000, last=9049),
        artifacts=request(Path("artifacts"), 0),
    )
    out = io.StringIO()

    status = run_gc(gc_request, True, out, environ={})

    assert status == 0 and not old.exists()
    assert out.getvalue().splitlines()[-1] == (
        "Proxmox templates: skipped: no image is built with the proxmox-iso target and PROXMOX_VE_API_TOKEN is not set"
    )


def test_an_artifact_dir_that_is_a_file_is_named_as_not_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack_file, _ = qemu_stack(tmp_path)
    (tmp_path / "artifacts").write_text("not a directory\n")

    code, out, err = run_cli("--stack-file", str(stack_file), "--only", "artifacts", capsys=capsys)

    assert (code, err) == (EXIT_FAILED, "")
    assert out.splitlines() == [
        f"qcow2 files in {tmp_path / 'artifacts'} (homelab-images:build.artifactDir):",
        "  nothing to collect: it is not a directory; homelab-images:build.artifactDir must name one",
    ]


def template_stack_request(project_dir: Path) -> GcRequest:
    """A stack whose images are built with proxmox-iso only: no qemu image, whatever lies in artifactDir."""
    return GcRequest(
        endpoint="https://pve.invalid:8006/",
        ca_bundle=None,
        insecure=False,
        project_dir=str(project_dir),
        images=[shipped_spec().image],
        retain_previous=1,
        vm_id_range=IdRange(first=9000, last=9049),
        artifacts=ArtifactGc(artifact_dir="artifacts", images=[], retain_previous=1),
    )


def test_without_a_token_the_hint_to_collect_files_alone_follows_whether_files_were_collected(
    tmp_path: Path,
) -> None:
    """Files left by a qemu target the stack no longer has are collected, so --only artifacts is worth naming;
    with --only templates it is not."""
    gc_request = template_stack_request(tmp_path)
    with pytest.raises(RunnerError) as without_files:
        run_gc(gc_request, False, io.StringIO(), environ={})
    assert "--only artifacts" not in message(without_files.value)

    build(tmp_path / "artifacts", variant("a"), "2026-01-01T00:00:00Z", superseded=True)
    out = io.StringIO()
    with pytest.raises(RunnerError) as with_files:
        run_gc(gc_request, False, out, environ={})
    assert "superseded, image no longer built with the qemu target: would delete" in out.getvalue()
    assert message(with_files.value) == (
        "homelab-images gc: PROXMOX_VE_API_TOKEN is not set; export PROXMOX_VE_API_TOKEN='user@realm!tokenid=secret' "
        "(the token of proxmoxve:apiToken) and run again (or run with --only artifacts for the qcow2 files alone)"
    )

    out = io.StringIO()
    with pytest.raises(RunnerError) as templates_only:
        run_gc(gc_request, False, out, environ={"PROXMOX_VE_API_TOKEN": "not-a-token"}, only="templates")
    assert out.getvalue() == ""
    assert message(templates_only.value) == (
        "homelab-images gc: PROXMOX_VE_API_TOKEN is not of the form user@realm!tokenid=secret; "
        "export PROXMOX_VE_API_TOKEN='user@realm!tokenid=secret' (the token of proxmoxve:apiToken) and run again"
    )
