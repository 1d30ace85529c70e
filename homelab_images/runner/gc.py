"""Garbage collection: superseded templates and failed-build leftovers of this stack, and its qcow2 files.

The qemu target's files in artifactDir are collected first, on this machine,
with the same rules and no credential or network (homelab_images.runner.artifact_gc);
then the templates, on Proxmox.

Dry run by default. ``--apply`` deletes the candidates that are not in use; a
template with protection on or with linked clones stays and is reported.
Only VMs inside the stack's ``vmIdRange`` whose tags carry the stack's proof
(see ownership) are considered: another stack's templates, copies and clones
of ours, and hand-tagged VMs are never listed or touched. An unfinished build
counts as a leftover only once its lease has expired. Retention follows the
stack config, per image and node: the newest ``retainPrevious`` superseded
templates stay; an image no longer configured keeps none. A finished template
that is neither the newest of its image on its node nor superseded is known to
no Pulumi state (a build that failed after finishing): it is reported, never deleted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from homelab_images.contract.commands import ENDPOINT_VAR, TOKEN_VAR
from homelab_images.contract.gc_request import GcRequest
from homelab_images.contract.ownership import OWNER_KEY_VAR, OwnerKey, Ownership
from homelab_images.runner.artifact_gc import collect_artifacts
from homelab_images.runner.console import Console
from homelab_images.runner.env import TOKEN_FORMAT, read_owner_key, token_text
from homelab_images.runner.errors import EXIT_INVALID, RunnerError
from homelab_images.runner.inventory import Guest, detail, list_guests, newest_first
from homelab_images.runner.proxmox import Api, ApiError, Retrier, explain
from homelab_images.runner.retire import Outcome, TagCheck, remove_owned
from homelab_images.runner.session import open_session
from homelab_images.runner.vmids import Claims

WHERE = "homelab-images gc"
Part = Literal["templates", "artifacts"]
UNTRACKED = (
    "finished, but neither the newest of its image on its node nor superseded: no build result lists it "
    "(a build that failed after finishing, or a replacement still running); reported only"
)


@dataclass(frozen=True)
class Candidate:
    guest: Guest
    reason: str
    protected: bool


@dataclass(frozen=True)
class Findings:
    candidates: list[Candidate]
    untracked: list[Guest]


def ours_in_range(guests: list[Guest], request: GcRequest, key: OwnerKey) -> list[Guest]:
    ids = request.vm_id_range
    return [g for g in guests if ids.first <= g.vmid <= ids.last and g.proven(key)]


def find_candidates(api: Api, retry: Retrier, request: GcRequest, key: OwnerKey, claimed: set[int]) -> Findings:
    guests = list_guests(api, retry, "cluster resources")
    owned = ours_in_range(guests, request, key)
    retention = dict.fromkeys(request.images, request.retain_previous)
    now = time.time()
    candidates = []
    for guest in owned:
        o = guest.ownership
        if o.pending and guest.vmid not in claimed and not o.lease_live(now):
            protected = detail(api, retry, guest).protected
            candidates.append(Candidate(guest, leftover_reason(guest), protected))
    superseded: dict[tuple[str, str], list[Guest]] = {}
    current: dict[tuple[str, str], list[Guest]] = {}
    for guest in owned:
        if guest.template and not guest.ownership.pending:
            group = superseded if guest.ownership.superseded else current
            group.setdefault((guest.ownership.image or "", guest.node), []).append(guest)
    for (image, _node), old_ones in sorted(superseded.items()):
        keep = retention.get(image, 0)
        reason = (
            f"superseded, beyond retainPrevious={keep}"
            if image in retention
            else "superseded, image no longer configured"
        )
        for old in newest_first([detail(api, retry, g) for g in old_ones])[keep:]:
            candidates.append(Candidate(old.guest, reason, old.protected))
    untracked = [
        d.guest for group in current.values() for d in newest_first([detail(api, retry, g) for g in group])[1:]
    ]
    # Smoke-test clones first: their template cannot be deleted while a linked clone uses its disks.
    candidates.sort(key=lambda c: (not c.guest.ownership.smoke_clone, c.guest.vmid))
    return Findings(candidates, sorted(untracked, key=lambda g: g.vmid))


def leftover_reason(guest: Guest) -> str:
    if guest.ownership.smoke_clone:
        return "smoke-test clone left by a failed or interrupted build"
    if guest.ownership.smoke_failed:
        return "template that failed its smoke test, kept for inspection"
    return "leftover of a failed or interrupted build"


def is_candidate(candidate: Candidate) -> TagCheck:
    image = candidate.guest.ownership.image

    def check(o: Ownership) -> bool:
        return o.owned and o.image == image and ((o.pending and not o.lease_live(time.time())) or o.superseded)

    return check


def run_gc(
    request: GcRequest,
    apply: bool,
    out: TextIO,
    environ: Mapping[str, str] | None = None,
    only: Part | None = None,
) -> int:
    """Both parts, or ``only`` one; the files first: they need nothing but this machine."""
    environ = dict(os.environ if environ is None else environ)
    status = 0
    files = only != "templates" and (
        only == "artifacts" or bool(request.artifacts.images) or artifact_root(request).is_dir()
    )
    if files:
        status = collect_artifacts(request.artifacts, Path(request.project_dir), apply, out)
    if only == "artifacts":
        return status
    if not request.images and not token_text(environ):
        out.write(
            f"Proxmox templates: skipped: no image is built with the proxmox-iso target and {TOKEN_VAR} is not set\n"
        )
        return status
    return max(status, collect_templates(request, apply, out, environ, files_too=files))


def artifact_root(request: GcRequest) -> Path:
    return Path(request.project_dir) / request.artifacts.artifact_dir


def message(error: RunnerError) -> str:
    """gc's own refusals read as a command's (``homelab-images gc: <what>; <what to do>``); others as the runner's."""
    if error.where == WHERE:
        return f"{WHERE}: {error.what}; {error.todo}"
    return str(error)


def collect_templates(
    request: GcRequest, apply: bool, out: TextIO, environ: dict[str, str], files_too: bool = False
) -> int:
    """``files_too``: the qcow2 files were collected first, so ``--only artifacts`` is worth suggesting."""
    environ.setdefault(ENDPOINT_VAR, request.endpoint)
    console = Console()
    token = token_text(environ)
    if not token or not TOKEN_FORMAT.match(token.strip()):
        alone = " (or run with --only artifacts for the qcow2 files alone)" if files_too else ""
        raise RunnerError(
            f"{TOKEN_VAR} is not set" if not token else f"{TOKEN_VAR} is not of the form user@realm!tokenid=secret",
            WHERE,
            f"export {TOKEN_VAR}='user@realm!tokenid=secret' (the token of proxmoxve:apiToken) and run again{alone}",
            EXIT_INVALID,
        )
    key = read_owner_key(environ, WHERE)
    console.add_secret(environ.get(OWNER_KEY_VAR, "").strip())
    session = open_session(environ, request.ca_bundle, request.insecure, Path(request.project_dir), console)
    api, retry, creds = session.api, session.retry, session.creds
    ids = request.vm_id_range
    try:
        claimed = Claims(session.tuning.state_dir, creds.endpoint).live()
        findings = find_candidates(api, retry, request, key, claimed)
        candidates = findings.candidates
        out.write(f"Proxmox templates on {creds.endpoint} (VM IDs {ids.first}-{ids.last}):\n")
        for guest in findings.untracked:
            out.write(f"  VM {guest.vmid} {guest.name} on {guest.node}: {UNTRACKED}\n")
        if not candidates:
            out.write("  nothing to collect: no superseded templates beyond retention and no failed-build leftovers\n")
            return 0
        deleted = 0
        for candidate in candidates:
            guest = candidate.guest
            line = f"  VM {guest.vmid} {guest.name} on {guest.node}: {candidate.reason}"
            if candidate.protected:
                out.write(f"{line}: in use (protection is on), kept\n")
                continue
            if not apply:
                out.write(f"{line}: would delete\n")
                continue
            removal = remove_owned(api, retry, key, guest.node, guest.vmid, is_candidate(candidate))
            if removal.outcome is Outcome.DELETED:
                deleted += 1
                out.write(f"{line}: deleted\n")
            elif removal.outcome is Outcome.BLOCKED:
                out.write(f"{line}: in use ({removal.reason}), kept\n")
            elif removal.outcome is Outcome.GONE:
                out.write(f"{line}: already gone\n")
            else:
                out.write(f"{line}: its tags changed ({removal.reason}), left untouched\n")
        if not apply:
            out.write(
                "  dry run: nothing was deleted; run again with --apply to delete the VMs marked 'would delete'\n"
            )
        else:
            out.write(f"  deleted {deleted} of {len(candidates)} candidates\n")
        return 0
    except ApiError as error:
        raise explain(error, creds) from None
