"""create: preflight, leftovers, VM ID, Packer (or the import of a qcow2), verification, result — in that order.

Kept apart from update and delete: it pulls in Packer's side (the template
renderer's constants, key generation), which they never need.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from homelab_images.contract.build_spec import ImportSource
from homelab_images.contract.ownership import Ownership, build_tags, lease_tag, new_build_id
from homelab_images.contract.proxmox_plugin import CD_CLEANUP_PRIVILEGE
from homelab_images.contract.result import BuildResult
from homelab_images.runner import preflight, provenance
from homelab_images.runner.artifact_import import fetch_to_storage, import_once, remove_from_storage
from homelab_images.runner.build_log import debug_log_requested
from homelab_images.runner.console import Console
from homelab_images.runner.env import Credentials
from homelab_images.runner.errors import Interrupted, RunnerError
from homelab_images.runner.guardian import stale_build_directories
from homelab_images.runner.install_sources import check_install_sources
from homelab_images.runner.inventory import Guest, list_guests, owned_by_image
from homelab_images.runner.lease import kept_alive
from homelab_images.runner.packer_run import (
    BUILD_ARGS,
    INIT_ARGS,
    BuildDirectory,
    PackerRun,
    build_directory,
    check_packer_version,
    find_packer,
    packer_environment,
    packer_error,
    packer_init_environment,
    read_manifest,
    write_build_files,
)
from homelab_images.runner.packer_run import run_packer as run_packer_command
from homelab_images.runner.proxmox import ApiError, Kind, explain, kind_of_message
from homelab_images.runner.retire import Outcome, remove_owned, retained_templates
from homelab_images.runner.runner import Context
from homelab_images.runner.smoke import Smoke, SmokeRun, SmokeTestFailed, keep_for_inspection, record_passed
from homelab_images.runner.verify import mark_finished, verify_template
from homelab_images.runner.vmids import Claims, IdTaken, allocate, id_free_on_cluster

# A VM ID lost to a racing build is retried with the next free one, this many times in all.
ID_ATTEMPTS = 3
FAILURE_TAIL_LINES = 30
ID_TAKEN = re.compile(r"VM \d+ already exists|already exists on node", re.I)


class LeftForInspection(RunnerError):
    """A failure whose VMs stay as they are: removing one would destroy the evidence of what went wrong."""


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds >= 60 else f"{seconds:g} seconds"


def timeout_seconds(ctx: Context) -> float:
    override = ctx.tuning.timeout_override_seconds
    return override if override is not None else ctx.spec.timeout_minutes * 60.0


def is_leftover(image: str) -> Callable[[Ownership], bool]:
    """An unfinished build of ``image`` whose lease has expired: its runner is gone, wherever it ran."""

    def check(o: Ownership) -> bool:
        return o.belongs_to(image) and o.pending and not o.lease_live(time.time())

    return check


def remove_leftovers(ctx: Context, guests: list[Guest], claims: Claims) -> bool:
    """Remove this image's unfinished builds whose lease expired (the local claims only spare a lookup).

    Smoke-test clones go first: a template with a linked clone cannot be deleted. A template kept
    after failing its smoke test (keepFailedTemplates) stays for inspection; gc removes it.
    """
    live = claims.live()
    removed = False
    leftover = is_leftover(ctx.spec.image)
    pending = [g for g in owned_by_image(guests, ctx.spec.image, ctx.owner) if g.ownership.pending]
    for guest in sorted(pending, key=lambda g: (not g.ownership.smoke_clone, g.vmid)):
        if guest.ownership.smoke_failed:
            ctx.console.note(f"{guest.where} failed its smoke test and is kept for inspection; gc --apply removes it")
            continue
        if guest.vmid in live or not leftover(guest.ownership):
            ctx.console.note(f"{guest.where} is a build in progress (its lease is live); left alone")
            continue
        ctx.console.stage(f"removing the leftover of an earlier failed or interrupted build: {guest.where}")
        removal = remove_owned(
            ctx.api, ctx.retry, ctx.owner, guest.node, guest.vmid, lambda o: leftover(o) and not o.smoke_failed
        )
        if removal.outcome is Outcome.BLOCKED:
            ctx.console.warn(f"could not remove leftover {guest.where}: {removal.reason}")
        removed = removed or removal.outcome is Outcome.DELETED
    return removed


def check_name_free(ctx: Context, guests: list[Guest]) -> None:
    spec = ctx.spec
    foreign = [g for g in guests if g.name == spec.template_name and not g.proven(ctx.owner)]
    if foreign:
        raise RunnerError(
            f"the template name {spec.template_name} is taken by {foreign[0].where}, which this program did not build",
            "homelab-images:images",
            "rename or remove that VM, or bump the image's version so the template gets a new name",
        )


def diagnose(run: PackerRun, where: str, creds: Credentials) -> RunnerError:
    """The message for a failed ``packer build``, from what Packer printed last."""
    text = "\n".join(run.tail)
    if run.exit_code is not None and run.exit_code < 0:
        return RunnerError(
            f"Packer was killed (signal {-run.exit_code})",
            where,
            "the runner removed the build VM; check the machine's memory and processes, then run pulumi up again",
        )
    kind = kind_of_message(text)
    if kind in (Kind.FORBIDDEN, Kind.QUORUM, Kind.OFFLINE, Kind.FULL, Kind.AUTH):
        line = next((ln for ln in reversed(run.tail) if kind_of_message(ln) is kind), text)
        problem = explain(ApiError(kind, line.strip(), where), creds)
        return RunnerError(f"Packer build failed: {problem.what}", where, problem.todo)
    if re.search(r"Timeout waiting for SSH", text, re.I):
        return RunnerError(
            "Packer build failed: the installed VM never answered on SSH",
            where,
            "check DHCP on the bridge, that the VM can reach Packer's HTTP server (or use kickstartDelivery: cd), "
            "and the boot command; the runner removed the build VM",
        )
    return RunnerError(
        f"Packer build failed (exit {run.exit_code}): {packer_error(run)}",
        where,
        "see Packer's last lines above and its full log; the runner removed the build VM, "
        "run pulumi up again once fixed",
    )


def _packer(
    ctx: Context, args: tuple[str, ...], build: BuildDirectory, env: Mapping[str, str], deadline: float
) -> PackerRun:
    return run_packer_command(
        find_packer(ctx.environ),
        args,
        build.path,
        env,
        ctx.console,
        ctx.hub,
        deadline,
        ctx.tuning.kill_grace_seconds,
        build.log,
        build.guardian,
    )


def show_tail(ctx: Context, run: PackerRun) -> None:
    """Packer's last lines on stderr, bounded (stderr is passed back to the next update as one variable)."""
    lines = list(run.tail)[-FAILURE_TAIL_LINES:]
    if lines:
        ctx.console.note(f"Packer's last {len(lines)} lines:")
        for line in lines:
            ctx.console.raw(f"  | {line}")


def build_once(
    ctx: Context, vmid: int, build_id: str, description: str, tags: list[str], deadline: float
) -> tuple[int, float]:
    """One ``packer init`` + ``packer build`` as VM ``vmid``; returns (template VM ID, Packer seconds).

    ``tags`` are the build VM's tags without its lease, which is set when ``packer build`` starts.
    Packer's full log is kept (scrubbed) when the build fails, or when ``PACKER_LOG`` asked for it."""
    console = ctx.console
    with build_directory(
        ctx.tuning.log_dir, ctx.spec.image, vmid, console.scrub, ctx.tuning.kill_grace_seconds
    ) as build:
        try:
            result = _build_in(ctx, build, vmid, build_id, description, tags, deadline)
        except BaseException:
            kept = build.log.keep(console.scrub)
            console.note(f"Packer's full log (secrets removed): {kept}", always=True)
            raise
        if debug_log_requested(ctx.environ):
            kept = build.log.keep(console.scrub)
            console.note(f"Packer's full log with its debug output (secrets removed): {kept}", always=True)
        return result


def _build_in(
    ctx: Context, build: BuildDirectory, vmid: int, build_id: str, description: str, tags: list[str], deadline: float
) -> tuple[int, float]:
    spec, console = ctx.spec, ctx.console
    where = f"VM {vmid} on node {spec.node}"
    directory = build.path
    files = write_build_files(spec, directory)
    env = packer_environment(ctx.environ, ctx.creds, ctx.ca_bundle, vmid, files, description, tags)
    console.stage("packer init")
    init = _packer(ctx, INIT_ARGS, build, packer_init_environment(ctx.environ, env), deadline)
    if init.signum is not None:
        raise Interrupted(init.signum)
    if not init.ok:
        show_tail(ctx, init)
        raise RunnerError(
            f"packer init failed (exit {init.exit_code})" + (" after the timeout" if init.timed_out else ""),
            "the machine running pulumi up",
            "it installs github.com/hashicorp/proxmox: check access to GitHub releases and Packer's last lines above",
        )
    # Re-checked as late as possible: another machine may have taken the ID since allocation.
    if not id_free_on_cluster(ctx.api, ctx.retry, vmid):
        raise IdTaken()
    console.stage(f"packer build: {spec.template_name} as VM {vmid} on {spec.node}")
    lease_seconds = ctx.tuning.lease_seconds
    leased = [*tags, lease_tag(time.time() + lease_seconds)]
    env = packer_environment(ctx.environ, ctx.creds, ctx.ca_bundle, vmid, files, description, leased)
    with kept_alive(ctx.api, ctx.owner, spec.node, vmid, build_id, lease_seconds):
        run = _packer(ctx, BUILD_ARGS, build, env, deadline)
    if run.signum is not None:
        raise Interrupted(run.signum)
    if run.timed_out:
        show_tail(ctx, run)
        raise RunnerError(
            f"the build exceeded its timeout of {_duration(timeout_seconds(ctx))}",
            where,
            "the runner removed the build VM; see the last stage above, or raise homelab-images:build.timeoutMinutes",
        )
    if run.exit_code != 0:
        if any(ID_TAKEN.search(line) for line in run.tail):
            raise IdTaken()
        if finished_despite_packer(ctx, run, vmid, tags):
            return vmid, init.seconds + run.seconds
        show_tail(ctx, run)
        raise diagnose(run, where, ctx.creds)
    artifact = read_manifest(directory)
    if artifact != vmid:
        raise LeftForInspection(
            f"Packer reported template {artifact}, but it was asked to build VM {vmid}",
            where,
            f"check that the template passes vm_id from var.vm_id; VM {artifact} and VM {vmid} (if it exists) "
            "are left for inspection",
        )
    return artifact, init.seconds + run.seconds


def finished_despite_packer(ctx: Context, run: PackerRun, vmid: int, tags: list[str]) -> bool:
    """Packer failed, but the template is finished and verifies: the failure came after it was made.

    The plugin's cleanups run after the template is finished and a failing one fails the build
    (e.g. deleting the OEMDRV ISO without Datastore.Allocate). Deleting a verified template for
    that would throw a good build away and leave the ISO behind anyway.
    """
    spec = ctx.spec
    try:
        verify_template(ctx.api, ctx.retry, ctx.owner, spec, vmid, tags)
    except (ApiError, RunnerError):
        return False
    leftover = ""
    if spec.kickstart_delivery == "cd":
        leftover = (
            f"; the OEMDRV ISO Packer uploaded may remain on storage {spec.iso_storage} (packer*.iso): "
            f"delete it and grant the token {CD_CLEANUP_PRIVILEGE} on /storage/{spec.iso_storage}"
        )
    ctx.console.warn(f"Packer failed after template {vmid} was finished ({packer_error(run)}); keeping it{leftover}")
    return True


def cleanup_failed(ctx: Context, vmid: int, build_id: str) -> None:
    """Remove what Packer did not: the VM at ``vmid``, only if this very build made it.

    Finished or not: a template this run verified but never reported is known to
    no Pulumi state, so it goes too. A racing build that won the ID has another
    build ID and is never touched.
    """
    spec = ctx.spec

    def this_build(o: Ownership) -> bool:
        return o.build_id == build_id and o.belongs_to(spec.image) and o.matches(spec.fingerprint)

    try:
        removal = remove_owned(ctx.api, ctx.retry, ctx.owner, spec.node, vmid, this_build)
    except (ApiError, RunnerError, Interrupted) as error:
        ctx.console.warn(
            f"could not remove the unfinished build VM {vmid} on {spec.node} ({error}); "
            "the next build removes it if unfinished; `venv/bin/homelab-images gc --stack <stack>` reports it"
        )
        return
    if removal.outcome is Outcome.DELETED:
        ctx.console.stage(f"removed the build VM {vmid} that this failed build left behind")
    elif removal.outcome is Outcome.BLOCKED:
        ctx.console.warn(f"could not remove the unfinished build VM {vmid}: {removal.reason}")


def smoke_test(ctx: Context, template: int, build_id: str, claims: Claims, major: int) -> Smoke | None:
    """Boot a clone of the verified template and check it; record a pass in its description."""
    if not ctx.spec.smoke_test:
        return None
    tested = SmokeRun(ctx, template, build_id, claims, major).run()
    record_passed(ctx, template, tested.result)
    ctx.console.stage(
        f"smoke test passed: k3s Ready {tested.result.ready_seconds:g}s after the clone started "
        f"(phase {tested.seconds:.2f}s, of which waiting on the guest {tested.waited_on_guest:.2f}s)"
    )
    return tested


def keep_failed(ctx: Context, vmid: int, build_id: str, failure: SmokeTestFailed) -> None:
    """keepFailedTemplates: mark the template for inspection; if that fails, remove it as usual."""
    try:
        keep_for_inspection(ctx, vmid, failure)
    except (ApiError, RunnerError, Interrupted) as error:
        ctx.console.warn(f"could not mark template {vmid} for inspection ({error}); removing it")
        cleanup_failed(ctx, vmid, build_id)


def remove_stale_build_directories(console: Console) -> None:
    """What a build killed together with its guardian left: its private key above all."""
    for directory in stale_build_directories(Path(tempfile.gettempdir())):
        shutil.rmtree(directory, ignore_errors=True)
        console.note(f"removed {directory}, left by a build that was killed with its guardian")


def create(ctx: Context) -> BuildResult:
    placed: list[ImportSource] = []
    try:
        return _create(ctx, placed)
    finally:
        # The import file this run put on the storage is spent either way: the template's disk is a copy,
        # and after a failure the next run puts it there again rather than find a file it cannot tell is its own.
        for source in placed:
            remove_from_storage(ctx, source, timeout_seconds(ctx))


def _create(ctx: Context, placed: list[ImportSource]) -> BuildResult:
    spec, console, api, retry = ctx.spec, ctx.console, ctx.api, ctx.retry
    started = time.monotonic()
    remove_stale_build_directories(console)
    console.stage(f"preflight: {ctx.creds.endpoint} as {ctx.creds.token_id}, node {spec.node}")
    major = preflight.preflight(api, retry, spec, ctx.creds)
    if spec.import_from is None:
        check_install_sources(spec, console.warn)
    claims = Claims(ctx.tuning.state_dir, ctx.creds.endpoint)
    guests = list_guests(api, retry, "cluster resources")
    check_name_free(ctx, guests)
    if remove_leftovers(ctx, guests, claims):
        guests = list_guests(api, retry, "cluster resources")
    built_at = provenance.utc_now()
    commit = provenance.source_commit(ctx.cwd)
    description = provenance.describe(spec, built_at, commit)
    deadline = time.monotonic() + timeout_seconds(ctx)
    if spec.import_from is None:
        console.stage(f"Packer {check_packer_version(find_packer(ctx.environ), ctx.environ)}")
    else:
        if fetch_to_storage(ctx, spec.import_from, timeout_seconds(ctx)):
            placed.append(spec.import_from)
    skip: set[int] = set()
    packer_seconds = 0.0
    owner = {"image": spec.image, "fingerprint": spec.fingerprint}
    for _ in range(ID_ATTEMPTS):
        claim = allocate(api, retry, ctx.owner, claims, spec.vm_id_range, guests, owner, skip)
        vmid = claim.vmid
        build_id = new_build_id()
        tags = [
            *build_tags(spec.image, spec.version, spec.fingerprint),
            *ctx.owner.identity_tags(vmid, spec.node, build_id, spec.image, spec.fingerprint),
        ]
        try:
            if vmid != spec.vm_id_range.first:
                preflight.check_privileges(
                    api, retry, ctx.creds, {f"/vms/{vmid}": preflight.vm_privileges(major, spec.smoke_test)}
                )
            console.stage(f"allocated VM ID {vmid} (preflight and allocation took {time.monotonic() - started:.1f}s)")
            try:
                if spec.import_from is None:
                    artifact, seconds = build_once(ctx, vmid, build_id, description, tags, deadline)
                else:
                    artifact, seconds = import_once(ctx, spec.import_from, vmid, build_id, description, tags, deadline)
            except IdTaken:
                console.note(f"VM ID {vmid} was taken by another VM first; trying the next free ID")
                skip.add(vmid)
                cleanup_failed(ctx, vmid, build_id)
                continue
            packer_seconds += seconds
            verify_started = time.monotonic()
            console.stage(f"verifying template {artifact} on {spec.node}")
            with kept_alive(api, ctx.owner, spec.node, artifact, build_id, ctx.tuning.lease_seconds):
                config = verify_template(api, retry, ctx.owner, spec, artifact, tags)
                verified = time.monotonic() - verify_started
                tested = smoke_test(ctx, artifact, build_id, claims, major)
            mark_finished(api, retry, spec, artifact, config)
            guests = list_guests(api, retry, "cluster resources")
            retained = retained_templates(api, retry, ctx.owner, spec, guests, artifact)
            overhead = time.monotonic() - started - packer_seconds - (tested.waited_on_guest if tested else 0.0)
            console.stage(
                f"done: template {spec.template_name} is VM {artifact} "
                f"(verification {verified:.1f}s, runner overhead {overhead:.1f}s)"
            )
            return BuildResult(
                vm_id=artifact,
                node=spec.node,
                name=spec.template_name,
                version=spec.version,
                fingerprint=spec.fingerprint,
                storage=spec.vm_storage,
                built_at=built_at,
                source_commit=commit,
                retained=retained,
                smoke=tested.result if tested else None,
            )
        except LeftForInspection:
            raise
        except SmokeTestFailed as failure:
            if spec.keep_failed_templates:
                keep_failed(ctx, vmid, build_id, failure)
            else:
                cleanup_failed(ctx, vmid, build_id)
            raise
        except BaseException:
            cleanup_failed(ctx, vmid, build_id)
            raise
        finally:
            claim.release()
    raise RunnerError(
        f"every VM ID tried was taken by another VM first ({', '.join(map(str, sorted(skip)))})",
        "homelab-images:proxmox.vmIdRange",
        "another tool creates VMs in this range: move it elsewhere or give this program its own range",
    )
