"""python -m homelab_images.runner.qemu create|update|delete — the qemu target's build, run by pulumi-command.

stdin: the ArtifactSpec JSON. No Proxmox credential is needed or read: Packer's
qemu builder installs the image on this machine. stdout: one JSON line (create,
update); Packer's output and progress go to stderr. See docs/build-runner.md.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from homelab_images.contract.artifact import (
    ARTIFACT_MANIFEST_FILE,
    SUPERSEDED_MARKER,
    ArtifactResult,
    ArtifactSpec,
)
from homelab_images.contract.packer_files import (
    MANIFEST_FILE,
    QEMU_TEMPLATE_FILE,
    VAR_OUTPUT_DIRECTORY,
    VAR_PRIVATE_KEY_FILE,
    VAR_PUBLIC_KEY,
)
from homelab_images.contract.records import RecordError
from homelab_images.runner import provenance
from homelab_images.runner.artifacts import (
    WORK_PREFIX,
    StoredArtifact,
    build_manifest,
    checksum_line,
    prune_superseded,
    read_manifest,
    remove_stale_work,
    sha256_of,
    stored_artifacts,
    write_manifest,
)
from homelab_images.runner.build_log import debug_log_requested
from homelab_images.runner.console import Console
from homelab_images.runner.env import PREVIOUS_STDOUT_VAR, Tuning, read_tuning
from homelab_images.runner.errors import EXIT_INVALID, Interrupted, RunnerError
from homelab_images.runner.packer_run import (
    PASSED_TO_PACKER,
    BuildDirectory,
    BuildFiles,
    PackerRun,
    build_directory,
    check_packer_version,
    find_packer,
    packer_error,
    packer_init_environment,
    run_packer,
    write_packer_files,
)
from homelab_images.runner.qemu_host import check_host, inspect_image
from homelab_images.runner.signals import SignalHub

INIT_ARGS = ("init", QEMU_TEMPLATE_FILE)
BUILD_ARGS = ("build", "-color=false", "-on-error=cleanup", "-timestamp-ui", QEMU_TEMPLATE_FILE)
OUTPUT_DIR = "output"
FAILURE_TAIL_LINES = 30
ARTIFACT_DIR_KEY = "homelab-images:build.artifactDir"


@dataclass
class QemuContext:
    spec: ArtifactSpec
    tuning: Tuning
    console: Console
    hub: SignalHub
    environ: Mapping[str, str]
    cwd: Path

    @property
    def image_dir(self) -> Path:
        return (self.cwd / self.spec.artifact_dir / self.spec.image).resolve()


def read_spec(text: str) -> ArtifactSpec:
    where = "stdin of the qemu build"
    if not text.strip():
        raise RunnerError(
            "no build spec on stdin", where, "pulumi-command passes it; pipe the spec JSON in", EXIT_INVALID
        )
    try:
        return ArtifactSpec.from_json(text)
    except RecordError as error:
        raise RunnerError(
            f"the build spec on stdin is invalid ({error})",
            where,
            "the Pulumi component writes it: make sure the component and the runner come from the same commit",
            EXIT_INVALID,
        ) from None


def previous_result(environ: Mapping[str, str]) -> ArtifactResult | None:
    # Imported here: its module builds the proxmox-iso result's models at import, which this runner never uses.
    from homelab_images.contract.result import last_json_line

    value = last_json_line(environ.get(PREVIOUS_STDOUT_VAR))
    if value is None:
        return None
    try:
        return ArtifactResult.from_mapping(value)
    except RecordError:
        return None


def packer_environment(environ: Mapping[str, str], files: BuildFiles, output_dir: Path) -> dict[str, str]:
    """Packer's whole environment: the allowed part of the runner's and the build's variables."""
    env = {key: value for key, value in environ.items() if key in PASSED_TO_PACKER}
    env.update(
        {
            "CHECKPOINT_DISABLE": "1",
            "PACKER_NO_COLOR": "1",
            f"PKR_VAR_{VAR_OUTPUT_DIRECTORY}": str(output_dir),
            f"PKR_VAR_{VAR_PUBLIC_KEY}": files.public_key,
            f"PKR_VAR_{VAR_PRIVATE_KEY_FILE}": str(files.private_key),
        }
    )
    return env


def _timeout_seconds(ctx: QemuContext) -> float:
    override = ctx.tuning.timeout_override_seconds
    return override if override is not None else ctx.spec.timeout_minutes * 60.0


def _packer(
    ctx: QemuContext, args: tuple[str, ...], build: BuildDirectory, env: Mapping[str, str], deadline: float
) -> PackerRun:
    packer = find_packer(ctx.environ)
    grace = ctx.tuning.kill_grace_seconds
    return run_packer(packer, args, build.path, env, ctx.console, ctx.hub, deadline, grace, build.log, build.guardian)


def _show_tail(console: Console, run: PackerRun) -> None:
    """Packer's last lines on stderr, bounded (stderr is passed back to the next update)."""
    lines = list(run.tail)[-FAILURE_TAIL_LINES:]
    if lines:
        console.note(f"Packer's last {len(lines)} lines:")
        for line in lines:
            console.raw(f"  | {line}")


def _failed(run: PackerRun, ctx: QemuContext, what: str) -> RunnerError:
    _show_tail(ctx.console, run)
    if run.timed_out:
        return RunnerError(
            f"the qemu build exceeded its timeout of {_timeout_seconds(ctx) / 60:g} minutes",
            f"build of {ctx.spec.file_name}",
            "see the last stage above, or raise homelab-images:build.timeoutMinutes",
        )
    return RunnerError(
        f"{what} failed (exit {run.exit_code}): {packer_error(run)}",
        f"build of {ctx.spec.file_name}",
        "see Packer's output above; nothing was kept, run pulumi up again once fixed",
    )


def built_file(directory: Path, file_name: str) -> str:
    """The disk Packer's manifest post-processor lists for this build."""

    where = f"Packer manifest {MANIFEST_FILE}"
    todo = "the qemu template must keep its manifest post-processor; this is a bug if it does"
    try:
        document = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise RunnerError("Packer reported success but wrote no readable manifest", where, todo) from None
    builds = document.get("builds") if isinstance(document, dict) else None
    if not isinstance(builds, list) or not builds:
        raise RunnerError("Packer's manifest lists no build", where, todo)
    run = document.get("last_run_uuid")
    build = ([b for b in builds if isinstance(b, dict) and b.get("packer_run_uuid") == run] or builds[-1:])[-1]
    names = [str(f.get("name")) for f in build.get("files") or [] if isinstance(f, dict)]
    if build.get("builder_type") != "qemu" or file_name not in [Path(name).name for name in names]:
        raise RunnerError(
            f"Packer's manifest names no qemu disk {file_name} (builder {build.get('builder_type')!r}, files {names})",
            where,
            todo,
        )
    return file_name


def _finish(ctx: QemuContext, work: Path, qemu_img: str, built_at: str, commit: str | None) -> StoredArtifact:
    """Check the disk Packer left, checksum it, write its manifest and put it in place."""
    spec = ctx.spec
    disk = work / spec.file_name
    (work / OUTPUT_DIR / spec.file_name).replace(disk)
    shutil.rmtree(work / OUTPUT_DIR)
    ctx.console.stage(f"verifying {spec.file_name} with qemu-img")
    image = inspect_image(qemu_img, disk)
    expected_size = spec.hardware.disk_gib * 1024**3
    if image.format != "qcow2" or image.virtual_size != expected_size:
        raise RunnerError(
            f"the image is {image.format} of {image.virtual_size} bytes, expected qcow2 of {expected_size}",
            f"image file {disk}",
            "the qemu template must keep format qcow2 and disk_size from hardware.diskGiB",
        )
    ctx.console.stage(f"computing the sha256 of {spec.file_name}")
    sha256 = sha256_of(disk)
    (work / f"{spec.file_name}.sha256").write_text(checksum_line(sha256, spec.file_name), encoding="utf-8")
    manifest = build_manifest(spec, disk.stat().st_size, image.virtual_size, sha256, built_at, commit)
    write_manifest(work, manifest)
    final = ctx.image_dir / spec.directory_name
    work.chmod(0o755)
    work.replace(final)
    return StoredArtifact(final, manifest)


def _result(ctx: QemuContext, artifact: StoredArtifact) -> ArtifactResult:
    retained = [
        str(other.file)
        for other in stored_artifacts(ctx.image_dir, ctx.spec.image)
        if other.directory != artifact.directory
    ][: ctx.spec.retain_previous]
    manifest = artifact.manifest
    return ArtifactResult(
        image=manifest.image,
        version=manifest.version,
        fingerprint=manifest.fingerprint,
        path=str(artifact.file),
        file=manifest.file,
        size=manifest.size,
        sha256=manifest.sha256,
        manifest=str(artifact.directory / ARTIFACT_MANIFEST_FILE),
        built_at=manifest.built_at,
        source_commit=manifest.source_commit,
        retained=retained,
    )


def verify_stored(artifact: StoredArtifact, sha256: str | None = None) -> str | None:
    """Why a stored file cannot be used, or None when its size and checksum still match its manifest."""
    if not artifact.file.is_file():
        return f"{artifact.file} is missing"
    if artifact.file.stat().st_size != artifact.manifest.size:
        return f"{artifact.file} changed size since it was built"
    if sha256_of(artifact.file) != (sha256 or artifact.manifest.sha256):
        return f"{artifact.file} no longer matches its sha256"
    return None


def _build_in(ctx: QemuContext, build: BuildDirectory, work: Path, deadline: float) -> None:
    spec, console = ctx.spec, ctx.console
    files = write_packer_files(build.path, QEMU_TEMPLATE_FILE, spec.packer_template, spec.scripts)
    env = packer_environment(ctx.environ, files, work / OUTPUT_DIR)
    console.stage("packer init")
    init = _packer(ctx, INIT_ARGS, build, packer_init_environment(ctx.environ, env), deadline)
    if init.signum is not None:
        raise Interrupted(init.signum)
    if not init.ok:
        raise _failed(init, ctx, "packer init (it installs github.com/hashicorp/qemu)")
    console.stage(f"packer build: {spec.file_name} with {spec.accelerator}")
    run = _packer(ctx, BUILD_ARGS, build, env, deadline)
    if run.signum is not None:
        raise Interrupted(run.signum)
    if not run.ok:
        raise _failed(run, ctx, "packer build")
    built_file(build.path, spec.file_name)


def make_image_dir(image_dir: Path) -> None:
    try:
        image_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        in_the_way = next((path for path in (image_dir, *image_dir.parents) if path.is_file()), None)
        if in_the_way is not None:
            raise RunnerError(
                f"cannot create {image_dir}: {in_the_way} is a file, not a directory",
                ARTIFACT_DIR_KEY,
                "move the file away or point build.artifactDir at a directory",
            ) from None
        raise RunnerError(
            f"cannot create {image_dir} ({error.strerror})", ARTIFACT_DIR_KEY, "fix the path or its permissions"
        ) from None


def create(ctx: QemuContext) -> ArtifactResult:
    spec, console = ctx.spec, ctx.console
    console.stage(f"preflight: qemu build of {spec.file_name} in {ctx.image_dir}")
    make_image_dir(ctx.image_dir)
    qemu_img = check_host(spec, ctx.environ, ctx.image_dir, console)
    console.stage(f"Packer {check_packer_version(find_packer(ctx.environ), ctx.environ)}")
    remove_stale_work(ctx.image_dir, console)
    final = ctx.image_dir / spec.directory_name
    if final.exists():
        manifest = read_manifest(final)
        existing = StoredArtifact(final, manifest) if manifest else None
        if existing and manifest and manifest.fingerprint == spec.fingerprint and verify_stored(existing) is None:
            # A rollback to a file kept for it: current again, so neither kept as "previous" nor pruned.
            (final / SUPERSEDED_MARKER).unlink(missing_ok=True)
            console.stage(f"{existing.file} was already built from this fingerprint and verifies; keeping it")
            return _result(ctx, existing)
        raise RunnerError(
            f"{final} exists but does not hold a verified build of this fingerprint",
            ARTIFACT_DIR_KEY,
            "move or remove that directory, then run pulumi up again",
        )
    built_at = provenance.utc_now()
    commit = provenance.source_commit(ctx.cwd)
    deadline = time.monotonic() + _timeout_seconds(ctx)
    work = ctx.image_dir / f"{WORK_PREFIX}{spec.fingerprint[:12]}-{os.getpid()}"
    work.mkdir(mode=0o700)
    try:
        # The guardian stops Packer (which then deletes its output) if this process is killed.
        with build_directory(ctx.tuning.log_dir, spec.image, 0, console.scrub, ctx.tuning.kill_grace_seconds) as build:
            try:
                _build_in(ctx, build, work, deadline)
            except BaseException:
                console.note(f"Packer's full log: {build.log.keep(console.scrub)}", always=True)
                raise
            if debug_log_requested(ctx.environ):
                console.note(f"Packer's full log with its debug output: {build.log.keep(console.scrub)}", always=True)
        artifact = _finish(ctx, work, qemu_img, built_at, commit)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = _result(ctx, artifact)
    console.stage(
        f"done: {artifact.file} ({artifact.manifest.size / 1024**2:.0f} MiB, sha256 {artifact.manifest.sha256})"
    )
    return result


def _previous_artifact(ctx: QemuContext, previous: ArtifactResult) -> StoredArtifact | None:
    directory = Path(previous.path).parent
    manifest = read_manifest(directory)
    if manifest is None or manifest.image != ctx.spec.image or manifest.fingerprint != previous.fingerprint:
        return None
    return StoredArtifact(directory, manifest)


def update(ctx: QemuContext) -> ArtifactResult:
    """Nothing that shapes the image changed: check the file is still there and intact; rename on a version bump."""
    spec = ctx.spec
    rebuild = "run `pulumi up --replace <URN of the qemu build resource>` to build it again"
    previous = previous_result(ctx.environ)
    if previous is None:
        raise RunnerError(f"no previous build result in {PREVIOUS_STDOUT_VAR}", f"update of {spec.file_name}", rebuild)
    artifact = _previous_artifact(ctx, previous)
    problem = verify_stored(artifact, previous.sha256) if artifact else f"{previous.path} has no matching manifest"
    if artifact is None or problem is not None:
        raise RunnerError(f"the image file built earlier cannot be used: {problem}", ARTIFACT_DIR_KEY, rebuild)
    ctx.console.stage(f"{artifact.file} verified (sha256 {previous.sha256}); nothing to rebuild")
    if artifact.directory.parent != ctx.image_dir:
        artifact = move_to_image_dir(ctx, artifact)
    if artifact.manifest.version != spec.version:
        artifact = relabel(ctx, artifact)
    return _result(ctx, artifact)


def move_to_image_dir(ctx: QemuContext, artifact: StoredArtifact) -> StoredArtifact:
    """build.artifactDir changed: move the file's directory there rather than build the same image again.

    Across filesystems the copy goes to a work directory first, so an interrupted move never leaves a
    directory that looks finished; the old one is removed only once the copy is in place.
    """
    console, spec = ctx.console, ctx.spec
    final = ctx.image_dir / artifact.directory.name
    if final.exists():
        raise RunnerError(
            f"cannot move {artifact.directory} to {final}: something is already there",
            ARTIFACT_DIR_KEY,
            "move or remove that directory, then run pulumi up again",
        )
    make_image_dir(ctx.image_dir)
    console.stage(f"build.artifactDir changed: moving {artifact.directory} to {ctx.image_dir}")
    try:
        artifact.directory.rename(final)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        work = ctx.image_dir / f"{WORK_PREFIX}{spec.fingerprint[:12]}-{os.getpid()}"
        shutil.copytree(artifact.directory, work)
        work.rename(final)
        shutil.rmtree(artifact.directory)
    left = [old.directory for old in stored_artifacts(artifact.directory.parent, spec.image) if old.superseded]
    if left:
        console.note(
            f"files kept for rollback stay in {artifact.directory.parent} (gc looks only in the new "
            f"build.artifactDir): {', '.join(str(path) for path in left)}"
        )
    return StoredArtifact(final, artifact.manifest)


def relabel(ctx: QemuContext, artifact: StoredArtifact) -> StoredArtifact:
    """A version bump without a content change: rename the file instead of rebuilding it."""
    spec = ctx.spec
    old_file = artifact.file
    artifact.file.replace(artifact.directory / spec.file_name)
    (artifact.directory / f"{artifact.manifest.file}.sha256").unlink(missing_ok=True)
    (artifact.directory / f"{spec.file_name}.sha256").write_text(
        checksum_line(artifact.manifest.sha256, spec.file_name), encoding="utf-8"
    )
    manifest = artifact.manifest.replace(version=spec.version, file=spec.file_name)
    write_manifest(artifact.directory, manifest)
    final = ctx.image_dir / spec.directory_name
    artifact.directory.replace(final)
    ctx.console.stage(f"renamed {old_file.name} to {spec.file_name}: same content, new version")
    return StoredArtifact(final, manifest)


def delete(ctx: QemuContext) -> None:
    """Retire the file a replaced (or destroyed) build made, keeping ``retainPrevious`` for rollback."""
    spec, console = ctx.spec, ctx.console
    previous = previous_result(ctx.environ)
    if previous is None:
        console.warn(f"no build result in {PREVIOUS_STDOUT_VAR}: nothing known to delete")
        return
    artifact = _previous_artifact(ctx, previous)
    if artifact is None:
        console.note(f"{previous.path} is already gone or no longer this build's file; left untouched")
    else:
        newer = [
            other
            for other in stored_artifacts(ctx.image_dir, spec.image)
            if other.directory != artifact.directory and not other.superseded
        ]
        if newer and spec.retain_previous > 0:
            (artifact.directory / SUPERSEDED_MARKER).write_text(
                f"superseded by {newer[0].manifest.file} ({newer[0].manifest.fingerprint})\n", encoding="utf-8"
            )
            console.note(
                f"kept {artifact.file} for rollback, marked {SUPERSEDED_MARKER} (retainPrevious={spec.retain_previous})"
            )
        else:
            shutil.rmtree(artifact.directory)
            console.note(f"deleted {artifact.file}")
    prune_superseded(ctx.image_dir, spec.image, spec.retain_previous, console)


def run(action: str, console: Console, hub: SignalHub) -> int:
    environ = dict(os.environ)
    try:
        spec = read_spec(sys.stdin.read())
        ctx = QemuContext(spec, read_tuning(environ), console, hub, environ, Path.cwd())
        if action == "create":
            print(create(ctx).to_json(), flush=True)
        elif action == "update":
            print(update(ctx).to_json(), flush=True)
        else:
            delete(ctx)
        return 0
    except RunnerError as error:
        console.error(str(error))
        return error.exit_code
    except OSError as error:
        where = error.filename or "the artifact directory"
        console.error(f"{error.strerror or error}, {where}: check the path and its permissions")
        return 1
    except Interrupted as error:
        name = signal.Signals(error.signum).name
        console.error(f"the qemu {action} was interrupted by {name}: nothing unfinished was kept; run pulumi up again")
        return 128 + error.signum


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m homelab_images.runner.qemu", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("create", "update", "delete"))
    args = parser.parse_args(argv)
    hub = SignalHub()
    hub.install()
    return run(args.action, Console(), hub)


if __name__ == "__main__":
    sys.exit(main())
