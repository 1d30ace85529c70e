"""Garbage collection: superseded templates and failed-build leftovers this program owns.

Dry run by default. ``--apply`` deletes the candidates that are not in use; a
template with protection on or with linked clones stays and is reported.
Retention follows the stack config: the newest ``retainPrevious`` superseded
templates of each configured image stay; an image no longer configured keeps none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from homelab_images.contract.commands import ENDPOINT_VAR, TOKEN_VAR
from homelab_images.contract.gc_request import GcRequest
from homelab_images.contract.ownership import Ownership
from homelab_images.runner.console import Console
from homelab_images.runner.env import TOKEN_FORMAT, token_text
from homelab_images.runner.errors import EXIT_INVALID, RunnerError
from homelab_images.runner.inventory import Guest, detail, list_guests, newest_first
from homelab_images.runner.proxmox import Api, ApiError, Retrier, explain
from homelab_images.runner.retire import Outcome, TagCheck, remove_owned
from homelab_images.runner.session import open_session
from homelab_images.runner.vmids import Claims


@dataclass(frozen=True)
class Candidate:
    guest: Guest
    reason: str
    protected: bool


def find_candidates(api: Api, retry: Retrier, request: GcRequest, claimed: set[int]) -> list[Candidate]:
    guests = list_guests(api, retry, "cluster resources")
    owned = [g for g in guests if g.kind == "qemu" and g.ownership.owned]
    retention = dict.fromkeys(request.images, request.retain_previous)
    candidates = []
    for guest in owned:
        if guest.ownership.pending and guest.vmid not in claimed:
            protected = detail(api, retry, guest).protected
            candidates.append(Candidate(guest, leftover_reason(guest), protected))
    by_image: dict[str, list[Guest]] = {}
    for guest in owned:
        if guest.template and guest.ownership.superseded and not guest.ownership.pending:
            by_image.setdefault(guest.ownership.image or "", []).append(guest)
    for image, superseded in sorted(by_image.items()):
        keep = retention.get(image, 0)
        reason = (
            f"superseded, beyond retainPrevious={keep}"
            if image in retention
            else "superseded, image no longer configured"
        )
        for old in newest_first([detail(api, retry, g) for g in superseded])[keep:]:
            candidates.append(Candidate(old.guest, reason, old.protected))
    # Smoke-test clones first: their template cannot be deleted while a linked clone uses its disks.
    return sorted(candidates, key=lambda c: (not c.guest.ownership.smoke_clone, c.guest.vmid))


def leftover_reason(guest: Guest) -> str:
    if guest.ownership.smoke_clone:
        return "smoke-test clone left by a failed or interrupted build"
    if guest.ownership.smoke_failed:
        return "template that failed its smoke test, kept for inspection"
    return "leftover of a failed or interrupted build"


def is_candidate(candidate: Candidate) -> TagCheck:
    image = candidate.guest.ownership.image

    def check(o: Ownership) -> bool:
        return o.owned and o.image == image and (o.pending or o.superseded)

    return check


def run_gc(request: GcRequest, apply: bool, out: TextIO, environ: Mapping[str, str] | None = None) -> int:
    environ = dict(os.environ if environ is None else environ)
    environ.setdefault(ENDPOINT_VAR, request.endpoint)
    console = Console()
    token = token_text(environ)
    if not token or not TOKEN_FORMAT.match(token.strip()):
        raise RunnerError(
            f"{TOKEN_VAR} is not set" if not token else f"{TOKEN_VAR} is not of the form user@realm!tokenid=secret",
            "homelab-images gc",
            f"export {TOKEN_VAR}='user@realm!tokenid=secret' (the token of proxmoxve:apiToken) and run again",
            EXIT_INVALID,
        )
    session = open_session(environ, request.ca_bundle, request.insecure, Path(request.project_dir), console)
    api, retry, creds = session.api, session.retry, session.creds
    try:
        claimed = Claims(session.tuning.state_dir, creds.endpoint).live()
        candidates = find_candidates(api, retry, request, claimed)
        if not candidates:
            out.write("nothing to collect: no superseded templates beyond retention and no failed-build leftovers\n")
            return 0
        deleted = 0
        for candidate in candidates:
            guest = candidate.guest
            line = f"VM {guest.vmid} {guest.name} on {guest.node}: {candidate.reason}"
            if candidate.protected:
                out.write(f"{line}: in use (protection is on), kept\n")
                continue
            if not apply:
                out.write(f"{line}: would delete\n")
                continue
            removal = remove_owned(api, retry, guest.node, guest.vmid, is_candidate(candidate))
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
            out.write("dry run: nothing was deleted; run again with --apply to delete the VMs marked 'would delete'\n")
        else:
            out.write(f"deleted {deleted} of {len(candidates)} candidates\n")
        return 0
    except ApiError as error:
        raise explain(error, creds) from None
