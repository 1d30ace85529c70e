"""The smoke test: boot a linked clone of the new template and prove it works, before the template is promoted.

The clone gets an ID from ``vmIdRange`` (claimed like a build's), this build's
tags plus ``smoke-test``, a disk enlarged by ``GROWTH``, and cloud-init with
DHCP and no package upgrade; nothing else, and nothing secret. The checks run
through the QEMU guest agent (smoke_checks.py). The clone is removed however
the phase ends; a leftover one (a killed runner) carries ``build-pending`` and
is removed by the next build or by gc.

Proxmox API as used here (qemu-server src/PVE/API2/Qemu.pm at e6352be6, 9.2.6):
``POST .../clone`` with ``full=0`` makes a linked clone, which needs the
source to be a template ("Linked clone feature is not supported" otherwise);
``PUT .../resize`` with ``size=+4G`` adds to the disk's size; ``ciupgrade=0``
keeps Proxmox's generated user-data from asking for ``package_upgrade: true``
(src/PVE/QemuServer/Cloudinit.pm, cloudinit_userdata), which would make the
first boot wait for a full ``dnf upgrade``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import NoReturn

from homelab_images.contract.ownership import (
    SMOKE_FAILED_TAG,
    SMOKE_TAG,
    Ownership,
    build_tags,
    join_tags,
    lease_tag,
    parse_tags,
    without_lease,
)
from homelab_images.contract.packer_files import proxmox_source
from homelab_images.contract.result import SmokeResult
from homelab_images.runner import preflight, provenance, tasks
from homelab_images.runner.errors import RunnerError
from homelab_images.runner.guest_agent import AgentSilent, Clock, Execution, GuestAgent
from homelab_images.runner.inventory import list_guests, read_config
from homelab_images.runner.lease import kept_alive
from homelab_images.runner.proxmox import ApiError, Kind, explain
from homelab_images.runner.retire import Outcome, TagCheck, remove_owned
from homelab_images.runner.runner import Context
from homelab_images.runner.smoke_checks import (
    CHECKS,
    GROWTH,
    GROWTH_BYTES,
    NODE_READY,
    TRAMPOLINE,
    Check,
    Expectations,
    Verdict,
)
from homelab_images.runner.vmids import Claims, allocate

READY_GOAL_SECONDS = 60.0
DESCRIPTION_PREFIX = "smoke test: "
SIZE_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
GC_HINT = "`python -m homelab_images gc --stack <stack> --apply` removes it"


class SmokeTestFailed(RunnerError):
    """The new template did not prove itself; the build stops before promoting it."""

    def __init__(self, what: str, where: str, keep: bool, template: int) -> None:
        if keep:
            todo = (
                f"template {template} is kept for inspection, tagged {SMOKE_FAILED_TAG} and never used "
                f"(clone it by hand to look); {GC_HINT}"
            )
        else:
            todo = (
                "the template was removed; fix the cause and run pulumi up again "
                "(homelab-images:build.keepFailedTemplates: true keeps a failing template for inspection)"
            )
        super().__init__(f"the smoke test failed: {what}", where, todo)


@dataclass(frozen=True)
class Smoke:
    result: SmokeResult
    seconds: float
    waited_on_guest: float


def timeout_seconds(ctx: Context) -> float:
    override = ctx.tuning.smoke_timeout_override_seconds
    return override if override is not None else ctx.spec.smoke_timeout_minutes * 60.0


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds >= 60 else f"{seconds:g} seconds"


def _one_line(text: str, limit: int = 400) -> str:
    flat = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    return flat if len(flat) <= limit else "..." + flat[-limit:]


def size_bytes(drive: str) -> int | None:
    """The ``size=`` of a Proxmox drive string in bytes (PVE writes 32G, 512M, ...)."""
    match = re.search(r"(?:^|,)size=(\d+(?:\.\d+)?)([KMGT]?)(?:,|$)", drive)
    if match is None:
        return None
    return int(float(match[1]) * SIZE_UNITS.get(match[2], 1))


def smbios_uuid(value: str | None) -> str | None:
    match = re.search(r"(?:^|,)uuid=([0-9a-fA-F-]{36})(?:,|$)", value or "")
    return match[1].lower() if match else None


def agent_enabled(value: object) -> bool:
    """``agent: 1`` or ``agent: enabled=1,...`` (qemu-server src/PVE/QemuServer/Agent.pm, parse_guest_agent)."""
    first = str(value or "0").split(",", 1)[0]
    return first.split("=", 1)[-1] == "1" and first.split("=", 1)[0] in ("1", "enabled")


def system_disk(ctx: Context) -> str:
    disks = proxmox_source(ctx.spec.packer_template).get("disks") or [{}]
    return f"{disks[0].get('type', 'scsi')}0"


def clone_is_ours(ctx: Context, build_id: str) -> TagCheck:
    spec = ctx.spec

    def check(o: Ownership) -> bool:
        return o.build_id == build_id and o.belongs_to(spec.image) and o.matches(spec.fingerprint) and o.pending

    return check


class SmokeRun:
    """One smoke test of template ``template``; ``run`` returns the result or raises SmokeTestFailed."""

    def __init__(
        self, ctx: Context, template: int, build_id: str, claims: Claims, major: int, clock: Clock | None = None
    ) -> None:
        self.ctx = ctx
        self.template = template
        self.build_id = build_id
        self.claims = claims
        self.major = major
        self.clock = clock or Clock()
        self.clone = 0
        self.where = f"template {template} on {ctx.spec.node}"

    def fail(self, what: str) -> SmokeTestFailed:
        return SmokeTestFailed(what, self.where, self.ctx.spec.keep_failed_templates, self.template)

    def run(self) -> Smoke:
        ctx, clock = self.ctx, self.clock
        started = clock.now()
        deadline = started + timeout_seconds(ctx)
        guests = list_guests(ctx.api, ctx.retry, "cluster resources")
        owner = {"image": ctx.spec.image, "fingerprint": ctx.spec.fingerprint, "role": SMOKE_TAG}
        claim = allocate(ctx.api, ctx.retry, ctx.owner, self.claims, ctx.spec.vm_id_range, guests, owner, set())
        self.clone = claim.vmid
        self.where = f"smoke-test VM {self.clone} (linked clone of template {self.template}) on {ctx.spec.node}"
        try:
            lease = ctx.tuning.lease_seconds
            with kept_alive(ctx.api, ctx.owner, ctx.spec.node, self.clone, self.build_id, lease):
                result = self._boot_and_check(deadline)
        finally:
            self._remove_clone()
            claim.release()
        return Smoke(result, clock.now() - started, clock.waited)

    def _boot_and_check(self, deadline: float) -> SmokeResult:
        ctx, clock = self.ctx, self.clock
        if self.clone != ctx.spec.vm_id_range.first:
            privileges = preflight.vm_privileges(self.major, smoke_test=True)
            preflight.check_privileges(ctx.api, ctx.retry, ctx.creds, {f"/vms/{self.clone}": privileges})
        expectations = self._prepare()
        vm = ctx.api.nodes(ctx.spec.node).qemu(self.clone)
        booted = clock.now()
        try:
            ctx.retry(lambda: tasks.run(ctx.api, ctx.spec.node, lambda: vm.status.start.post()), self.where)
        except ApiError as error:
            raise self.fail(f"the clone did not start: {explain(error, ctx.creds).what}") from None
        ctx.console.stage(f"smoke test: VM {self.clone} started; waiting for its QEMU guest agent")
        agent = GuestAgent(ctx.api, ctx.retry, ctx.spec.node, self.clone, clock)
        try:
            agent.wait_until_answering(deadline)
        except AgentSilent:
            raise self.fail(
                f"the clone's QEMU guest agent never answered within the smoke test's timeout of "
                f"{_duration(timeout_seconds(ctx))} (homelab-images:build.smokeTimeoutMinutes)"
            ) from None
        ctx.console.stage(f"smoke test: guest agent answered {clock.now() - booted:.1f}s after start")
        ready_seconds: float | None = None
        for check in CHECKS:
            self._run_check(agent, check, expectations, deadline)
            if check is NODE_READY:
                ready_seconds = round(clock.now() - booted, 1)
        assert ready_seconds is not None
        if ready_seconds > READY_GOAL_SECONDS:
            ctx.console.warn(
                f"k3s became Ready {ready_seconds:g}s after the clone started; the goal is {READY_GOAL_SECONDS:g}s"
            )
        return SmokeResult(passed=True, ready_seconds=ready_seconds, checked_at=provenance.utc_now())

    def _prepare(self) -> Expectations:
        """Clone, tag, configure cloud-init and enlarge the disk; what the checks expect of this clone."""
        ctx = self.ctx
        spec, api, retry = ctx.spec, ctx.api, ctx.retry
        node = spec.node
        ctx.console.stage(f"smoke test: linked clone of template {self.template} as VM {self.clone}")
        template = api.nodes(node).qemu(self.template)
        description = (
            f"Smoke test of {spec.template_name} (template {self.template}) by homelab-images; "
            "removed when the build ends"
        )
        try:
            retry(
                lambda: tasks.run(
                    api,
                    node,
                    lambda: template.clone.post(
                        newid=self.clone, name=f"{spec.template_name}-smoke", full=0, description=description
                    ),
                ),
                self.where,
            )
        except ApiError as error:
            problem = explain(error, ctx.creds)
            detail = problem.what if error.kind is Kind.OTHER else f"{problem.what} ({problem.todo})"
            raise self.fail(f"could not create the linked clone: {detail}") from None
        clone = api.nodes(node).qemu(self.clone)
        # The clone's own proof and lease: the template's, copied by the clone, do not hold for its VM ID.
        tags = join_tags(
            [
                *build_tags(spec.image, spec.version, spec.fingerprint),
                *ctx.owner.identity_tags(self.clone, node, self.build_id, spec.image, spec.fingerprint),
                lease_tag(time.time() + ctx.tuning.lease_seconds),
                SMOKE_TAG,
            ]
        )
        retry(lambda: clone.config.put(tags=tags, ipconfig0="ip=dhcp", ciupgrade=0), self.where)
        config = read_config(api, retry, node, self.clone)
        if not agent_enabled(config.get("agent")):
            raise self.fail(f"the template has the QEMU guest agent disabled (agent: {config.get('agent', 'unset')})")
        disk = system_disk(ctx)
        size = size_bytes(str(config.get(disk, "")))
        uuid = smbios_uuid(config.get("smbios1"))
        if size is None or uuid is None:
            raise self.fail(f"the clone has no {disk} size or SMBIOS UUID ({disk}: {config.get(disk)!r})")
        retry(
            lambda: tasks.run(api, node, lambda: clone.resize.put(disk=disk, size=GROWTH)),
            self.where,
        )
        return Expectations(k3s_version=spec.k3s_version, vm_uuid=uuid, disk_bytes=size + GROWTH_BYTES)

    def _run_check(self, agent: GuestAgent, check: Check, expectations: Expectations, deadline: float) -> None:
        clock, console = self.clock, self.ctx.console
        repeat = self.ctx.tuning.smoke_repeat_seconds
        started = clock.now()
        own_deadline = started + check.timeout_seconds
        check_deadline = min(own_deadline, deadline)
        while True:
            try:
                execution = agent.run(check.argv, check_deadline)
            except ApiError as error:
                raise self.fail(f"{check.name}: {refusal(error.message)}") from None
            if not execution.finished:
                cut = "the smoke test's timeout ran out" if check_deadline < own_deadline else "timed out"
                self._report_failure(
                    check, Verdict(False, f"{cut} after {clock.now() - started:.0f}s without an answer"), execution
                )
            verdict = check.judge(execution, expectations)
            if verdict.passed:
                break
            if not check.repeat_until_passed or clock.now() + repeat >= check_deadline:
                self._report_failure(check, verdict, execution)
            clock.sleep(repeat)
        console.stage(f"smoke test: {check.name}: {verdict.found} ({clock.now() - started:.1f}s)")
        if verdict.warning:
            console.warn(f"smoke test: {check.name}: {verdict.warning}: {_one_line(execution.output)}")

    def _report_failure(self, check: Check, verdict: Verdict, execution: Execution) -> NoReturn:
        console = self.ctx.console
        console.stage(f"smoke test: {check.name}: FAILED: {verdict.found}")
        status = f"exit {execution.exitcode}" if execution.finished else "still running"
        console.raw(f"  output of `{check.script}` ({status}):")
        for line in (execution.output or "(no output)").splitlines():
            console.raw(f"    {line}")
        output = _one_line(execution.output) or "no output"
        raise self.fail(f"{check.name}: {verdict.found} (output: {output})")

    def _remove_clone(self) -> None:
        ctx = self.ctx
        try:
            removal = remove_owned(
                ctx.api, ctx.retry, ctx.owner, ctx.spec.node, self.clone, clone_is_ours(ctx, self.build_id)
            )
        except (ApiError, RunnerError) as error:
            ctx.console.warn(f"could not remove smoke-test VM {self.clone} ({error}); the next build or {GC_HINT}")
            return
        if removal.outcome is Outcome.DELETED:
            ctx.console.stage(f"smoke test: removed VM {self.clone}")
        elif removal.outcome is Outcome.BLOCKED:
            ctx.console.warn(f"could not remove smoke-test VM {self.clone}: {removal.reason}; {GC_HINT}")


def refusal(message: str) -> str:
    """Why the guest agent would not run a check, and what in the image to look at."""
    if re.search(r"has been disabled", message, re.I):
        return (
            f"the guest agent refuses to run commands ({message.strip()}): the image must allow guest-exec and "
            "guest-exec-status in /etc/sysconfig/qemu-ga (FILTER_RPC_ARGS)"
        )
    if re.search(r"Failed to execute child process", message, re.I):
        return (
            f"the guest agent could not start {TRAMPOLINE} ({message.strip()}): the image must carry it, "
            "labelled virt_qemu_ga_unconfined_exec_t, with virt_qemu_ga_run_unconfined on"
        )
    return f"the guest agent did not run the command ({message.strip()})"


def describe_result(description: str, line: str) -> str:
    """The description with its smoke-test line replaced by ``line``."""
    kept = [row for row in description.splitlines() if not row.startswith(DESCRIPTION_PREFIX)]
    return "\n".join([*kept, DESCRIPTION_PREFIX + line])


def passed_line(result: SmokeResult) -> str:
    return f"passed at {result.checked_at}, k3s Ready {result.ready_seconds:g}s after the clone started"


def record_passed(ctx: Context, template: int, result: SmokeResult) -> None:
    """The template's description says it passed, and when (provenance for whoever clones it)."""
    config = read_config(ctx.api, ctx.retry, ctx.spec.node, template)
    description = describe_result(str(config.get("description", "")), passed_line(result))
    ctx.retry(
        lambda: ctx.api.nodes(ctx.spec.node).qemu(template).config.put(description=description),
        f"VM {template} on node {ctx.spec.node}",
    )


def keep_for_inspection(ctx: Context, template: int, failure: SmokeTestFailed) -> None:
    """Tag the failed template ``smoke-failed`` (it stays ``build-pending``: never promoted) and say why.

    Its lease goes: no build is working on it any more, so gc may collect it."""
    node = ctx.spec.node
    config = read_config(ctx.api, ctx.retry, node, template)
    tags = join_tags([*without_lease(parse_tags(config.get("tags"))), SMOKE_FAILED_TAG])
    line = f"FAILED at {provenance.utc_now()}: {failure.what.removeprefix('the smoke test failed: ')}"
    description = describe_result(str(config.get("description", "")), line)[:8192]
    ctx.retry(
        lambda: ctx.api.nodes(node).qemu(template).config.put(tags=tags, description=description),
        f"VM {template} on node {node}",
    )
    ctx.console.stage(f"kept template {template} for inspection, tagged {SMOKE_FAILED_TAG}")
