"""update and delete of the build resource, and what create shares with them; create is in create.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from homelab_images.contract.build_spec import BuildSpec
from homelab_images.contract.ownership import VERSION_PREFIX, OwnerKey, join_tags, parse_tags, version_tag
from homelab_images.contract.result import BuildResult, parse_result
from homelab_images.runner import preflight
from homelab_images.runner.console import Console
from homelab_images.runner.env import PREVIOUS_STDOUT_VAR, Credentials, Tuning
from homelab_images.runner.errors import RunnerError
from homelab_images.runner.inventory import list_guests
from homelab_images.runner.proxmox import Api, Retrier
from homelab_images.runner.retire import NotProvablyOurs, proven_config, retained_templates, retire
from homelab_images.runner.signals import SignalHub


@dataclass
class Context:
    spec: BuildSpec
    creds: Credentials
    owner: OwnerKey
    tuning: Tuning
    console: Console
    hub: SignalHub
    api: Api
    retry: Retrier
    environ: Mapping[str, str]
    cwd: Path
    # caBundle resolved and checked by the session (None: the system's CAs).
    ca_bundle: Path | None


def previous_result(ctx: Context) -> BuildResult | None:
    return parse_result(ctx.environ.get(PREVIOUS_STDOUT_VAR))


def update(ctx: Context) -> BuildResult:
    spec = ctx.spec
    previous = previous_result(ctx)
    replace = "run `pulumi up --replace <URN of the build resource>` to build it again"
    if previous is None:
        raise RunnerError(
            f"no previous build result in {PREVIOUS_STDOUT_VAR}", f"update of the build of {spec.image}", replace
        )
    preflight.check_reachable(ctx.api, ctx.retry, ctx.creds)
    where = f"VM {previous.vm_id} ({previous.name}) on {previous.node}"
    guests = list_guests(ctx.api, ctx.retry, "cluster resources")
    guest = next((g for g in guests if g.vmid == previous.vm_id and g.kind == "qemu"), None)
    if guest is None:
        raise RunnerError("the template built earlier no longer exists", where, replace)
    owner = guest.ownership
    if not (guest.proven(ctx.owner) and owner.belongs_to(spec.image) and owner.matches(previous.fingerprint)):
        raise RunnerError(
            f"VM {previous.vm_id} is no longer this build's template (it is {guest.name!r} with tags "
            f"{';'.join(guest.tags) or '(none)'}, which do not prove this stack built it there)",
            where,
            replace,
        )
    if not guest.template or owner.pending:
        raise RunnerError("the VM built earlier is not a finished template", where, replace)
    retained = retained_templates(ctx.api, ctx.retry, ctx.owner, spec, guests, previous.vm_id)
    ctx.console.stage(f"template {previous.name} (VM {previous.vm_id}) verified; nothing to rebuild")
    if previous.version != spec.version or previous.name != spec.template_name:
        relabel(ctx, previous)
        return previous.replace(retained=retained, version=spec.version, name=spec.template_name)
    return previous.replace(retained=retained)


def relabel(ctx: Context, previous: BuildResult) -> None:
    """A version bump without a content change: rename the template instead of rebuilding it."""
    spec = ctx.spec
    node, vmid = previous.node, previous.vm_id
    where = f"VM {vmid} on node {node}"
    try:
        config = proven_config(ctx.api, ctx.retry, ctx.owner, node, vmid)
    except NotProvablyOurs:
        raise RunnerError(
            "the template changed owner before it could be renamed", where, "run `pulumi up` again"
        ) from None
    tags = [tag for tag in parse_tags(config.get("tags")) if not tag.startswith(VERSION_PREFIX)]
    relabelled = {
        "Golden image ": f"Golden image {spec.image} v{spec.version}",
        "version: ": f"version: {spec.version}",
    }
    description = "\n".join(
        next((new for prefix, new in relabelled.items() if line.startswith(prefix)), line)
        for line in str(config.get("description", "")).splitlines()
    )
    ctx.retry(
        lambda: (
            ctx.api.nodes(node)
            .qemu(vmid)
            .config.put(
                name=spec.template_name, tags=join_tags([*tags, version_tag(spec.version)]), description=description
            )
        ),
        where,
    )
    ctx.console.stage(f"renamed {previous.name} to {spec.template_name}: same content, new version")


def delete(ctx: Context) -> None:
    previous = previous_result(ctx)
    if previous is None:
        ctx.console.warn(
            f"no build result in {PREVIOUS_STDOUT_VAR}: nothing known to delete; "
            "`venv/bin/homelab-images gc --stack <stack>` lists templates left behind"
        )
        return
    preflight.check_reachable(ctx.api, ctx.retry, ctx.creds)
    preflight.check_quorum(ctx.api, ctx.retry, ctx.creds)
    ctx.console.stage(f"retiring template {previous.name} (VM {previous.vm_id})")
    retire(ctx.api, ctx.retry, ctx.owner, ctx.console, ctx.spec, previous)
