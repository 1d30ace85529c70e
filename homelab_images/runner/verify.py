"""After Packer: check on Proxmox what Packer says it built, then mark it finished."""

from __future__ import annotations

from typing import Any

from homelab_images.contract.build_spec import BuildSpec
from homelab_images.contract.ownership import PENDING_TAG, OwnerKey, join_tags, parse_tags, without_lease
from homelab_images.runner import provenance
from homelab_images.runner.errors import RunnerError
from homelab_images.runner.inventory import read_config
from homelab_images.runner.proxmox import Api, ApiError, Kind, Retrier

_TODO = "the runner removed the build VM; Packer's full log is kept (see the note above); run pulumi up again"
CHECKED_TASKS = ("qmcreate", "qmtemplate")


def _lower(tags: list[str]) -> set[str]:
    return {tag.lower() for tag in tags}


def failed_tasks(api: Api, retry: Retrier, node: str, vmid: int) -> list[str]:
    """The latest create and template-conversion tasks of the VM that did not end OK."""
    listed = retry(lambda: api.nodes(node).tasks.get(vmid=vmid, limit=100), f"tasks of VM {vmid} on {node}")
    latest: dict[str, dict[str, Any]] = {}
    for task in sorted(listed, key=lambda t: (t.get("starttime", 0), t.get("pid", 0))):
        if task.get("type") in CHECKED_TASKS:
            latest[str(task["type"])] = task
    return [
        f"{kind} ended with {task.get('status')!r}"
        for kind, task in latest.items()
        if str(task.get("status")) not in ("OK", "running")
    ]


def verify_template(
    api: Api, retry: Retrier, key: OwnerKey, spec: BuildSpec, vmid: int, expected_tags: list[str]
) -> dict[str, Any]:
    where = f"VM {vmid} on node {spec.node}"
    try:
        config = read_config(api, retry, spec.node, vmid)
    except ApiError as error:
        if error.kind is Kind.GONE:
            raise RunnerError(f"Packer reported template {vmid} but it does not exist", where, _TODO) from None
        raise
    problems = []
    if str(config.get("template", 0)) != "1":
        problems.append("it is not a template")
    if config.get("name") != spec.template_name:
        problems.append(f"its name is {config.get('name')!r}, expected {spec.template_name!r}")
    tags = parse_tags(config.get("tags"))
    missing = sorted(_lower(expected_tags) - _lower(tags))
    if missing:
        problems.append(f"tags missing: {', '.join(missing)}")
    elif not key.owns(vmid, spec.node, tags):
        problems.append("its tags do not prove that this stack built it")
    if provenance.parse(config.get("description")).fingerprint != spec.fingerprint:
        problems.append("its description does not carry this build's fingerprint")
    problems.extend(failed_tasks(api, retry, spec.node, vmid))
    if problems:
        raise RunnerError(f"template {vmid} failed verification: {'; '.join(problems)}", where, _TODO)
    return config


def mark_finished(api: Api, retry: Retrier, spec: BuildSpec, vmid: int, config: dict[str, Any]) -> list[str]:
    """Drop ``build-pending`` and the lease: from now on the template is a finished build, never a leftover."""
    where = f"VM {vmid} on node {spec.node}"
    tags = [tag for tag in without_lease(parse_tags(config.get("tags"))) if tag != PENDING_TAG]
    retry(lambda: api.nodes(spec.node).qemu(vmid).config.put(tags=join_tags(tags)), where)
    after = parse_tags(read_config(api, retry, spec.node, vmid).get("tags"))
    if PENDING_TAG in after:
        raise RunnerError("the build-pending tag could not be removed", where, "check the VM's tags and run again")
    return after
