"""Run the example consumer (examples/k3s-cluster) under Pulumi's mocks.

The images stack is a mocked ``StackReference`` whose outputs the test chooses,
in the shape docs/outputs-contract.md documents.
"""

from __future__ import annotations

import copy
import itertools
import json
import runpy
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pulumi
import yaml
from pulumi.runtime import settings as pulumi_settings

from homelab_images.core.config import TEMPLATE_TARGET, load_config
from homelab_images.core.plan import plan_stack
from homelab_images.core.versioning import content_fingerprint, write_lock
from homelab_images_consumer import TemplateRef, resolve_template
from tests.pulumi_harness import (
    FIXTURE_STACK_FILE,
    ROOT,
    RecordingMocks,
    RecordingMonitor,
    Registration,
    as_runtime_config,
    default_build_result,
    fixture_config,
    run_program,
    unwrap_secrets,
)

T = TypeVar("T")

EXAMPLE = ROOT / "examples" / "k3s-cluster"
PROGRAM = EXAMPLE / "__main__.py"
EXAMPLE_STACK_FILE = EXAMPLE / "Pulumi.dev.yaml"

STACK_REFERENCE = "pulumi:pulumi:StackReference"
VM = "proxmoxve:index/vmLegacy:VmLegacy"
SNIPPET = "proxmoxve:index/fileLegacy:FileLegacy"

K3S_TOKEN = "sentinel-k3s-server-token-7f3a9c0b5e2d4a61"
K3S_AGENT_TOKEN = "sentinel-k3s-agent-token-0c4b9e1f3a5d7e22"
API_TOKEN = "k3s@pve!cluster=0b5e-sentinel-api-token"
IMAGE = "alma9-k3s-node-amd64"
GUEST_ADDRESS = "192.168.1.77"


def template_entry(**changes: Any) -> dict[str, Any]:
    """One ``templates`` entry as the images stack exports it (schema 1)."""
    entry: dict[str, Any] = {
        "vmId": 9007,
        "node": "pve1",
        "name": f"{IMAGE}-v1.0.0",
        "version": "1.0.0",
        "fingerprint": "a" * 64,
        "storage": "local-lvm",
        "firmware": "ovmf",
        "machine": "q35",
        "diskBus": "scsi",
        "cloudInit": True,
        "k3sVersion": "v1.36.4+k3s1",
        "builtAt": "2026-11-25T10:00:00Z",
        # Two builds of 0.9.0 (a periodic rebuild), not listed newest first.
        "retained": [
            {
                "vmId": 9001,
                "name": f"{IMAGE}-v0.9.0",
                "version": "0.9.0",
                "fingerprint": "b" * 64,
                "builtAt": "2026-09-01T10:00:00Z",
            },
            {
                "vmId": 9003,
                "name": f"{IMAGE}-v0.9.0",
                "version": "0.9.0",
                "fingerprint": "c" * 64,
                "builtAt": "2026-10-01T10:00:00Z",
            },
        ],
    }
    entry.update(changes)
    return entry


def images_outputs(**entry_changes: Any) -> dict[str, Any]:
    return {"schemaVersion": 1, "templates": {IMAGE: template_entry(**entry_changes)}}


def example_config() -> dict[str, Any]:
    """The shipped Pulumi.dev.yaml's config."""
    document = yaml.safe_load(EXAMPLE_STACK_FILE.read_text(encoding="utf-8"))
    return dict(document["config"])


@dataclass
class ClusterMocks(pulumi.runtime.Mocks):
    """Answers like the engine and Proxmox: the stack reference's outputs, IDs of files and VMs.

    With ``prior`` (the previous run's registrations) a resource's state keeps the
    old value of every input its ``ignore_changes`` names, as the engine does.
    """

    images: Mapping[str, Any]
    prior: Mapping[str, Registration] = field(default_factory=dict)
    ignore_changes: dict[str, list[str]] = field(default_factory=dict)
    stack_references: list[dict[str, Any]] = field(default_factory=list)
    _next_vm_id: itertools.count[int] = field(default_factory=lambda: itertools.count(100))

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        outputs = dict(args.inputs)
        if args.name in self.prior:
            for path in self.ignore_changes.get(args.name, []):
                _reset(outputs, self.prior[args.name].inputs, path)
        if args.typ == STACK_REFERENCE:
            self.stack_references.append(dict(args.inputs))
            return args.inputs["name"], {"name": args.inputs["name"], "outputs": copy.deepcopy(dict(self.images))}
        if args.typ == SNIPPET:
            file_name = unwrap_secrets(args.inputs["sourceRaw"])["fileName"]
            return f"{args.inputs['datastoreId']}:snippets/{file_name}", outputs
        if args.typ == VM:
            outputs.setdefault("vmId", next(self._next_vm_id))
            outputs["ipv4Addresses"] = [["127.0.0.1"], [GUEST_ADDRESS]]
            return str(outputs["vmId"]), outputs
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


@dataclass
class ClusterRun:
    registrations: list[Registration]
    outputs: dict[str, Any]
    mocks: ClusterMocks

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def named(self, name: str) -> Registration:
        return next(r for r in self.registrations if r.name == name)


class _EngineMonitor(RecordingMonitor):
    """Hands each registration's ignore_changes to the mocks, which the engine would apply."""

    def __init__(self, mocks: ClusterMocks) -> None:
        super().__init__(mocks)
        self.cluster_mocks = mocks

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        self.cluster_mocks.ignore_changes[request.name] = list(request.ignoreChanges)
        return super().RegisterResource(request)


def _start(
    mocks: ClusterMocks,
    project: str,
    stack: str,
    config: Mapping[str, Any],
    secrets: Mapping[str, str],
    preview: bool,
) -> RecordingMonitor:
    monitor = _EngineMonitor(mocks)
    all_config = as_runtime_config(config)
    all_config.update(secrets)
    pulumi_settings.reset_options()
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=monitor)
    pulumi.runtime.set_all_config(all_config, list(secrets))
    return monitor


def run_cluster(
    images: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    preview: bool = False,
    prior: ClusterRun | None = None,
) -> ClusterRun:
    """Evaluate the example's program with ``config`` (default: its Pulumi.dev.yaml).

    ``prior`` is the run before, whose resources now exist: a second `pulumi up`.
    """
    mocks = ClusterMocks(
        images=images if images is not None else images_outputs(),
        prior={r.name: r for r in prior.registrations} if prior else {},
    )
    secrets = dict(
        secrets
        if secrets is not None
        else {
            "proxmoxve:apiToken": API_TOKEN,
            "k3s-cluster:k3sToken": K3S_TOKEN,
            "k3s-cluster:k3sAgentToken": K3S_AGENT_TOKEN,
        }
    )
    monitor = _start(mocks, "k3s-cluster", "dev", config if config is not None else example_config(), secrets, preview)
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def evaluate() -> pulumi.Output[Any]:
        runpy.run_path(str(PROGRAM), run_name="__main__")
        stack = pulumi_settings.get_root_resource()
        exported = stack.outputs.items()  # type: ignore[union-attr]

        def record(name: str) -> Any:
            return lambda value: outputs.__setitem__(name, value)

        return pulumi.Output.all(*(pulumi.Output.from_input(value).apply(record(name)) for name, value in exported))

    evaluate()
    return ClusterRun(monitor.registrations, outputs, mocks)


def resolve_through_stack_reference(
    images: Mapping[str, Any], image: str, version: str | None = None, node: str | None = None
) -> TemplateRef:
    """``resolve_template`` against a mocked StackReference whose outputs are ``images``."""
    return through_stack_reference(images, lambda reference: resolve_template(reference, image, version, node))


def through_stack_reference(
    images: Mapping[str, Any], resolve: Callable[[pulumi.StackReference], pulumi.Output[T]]
) -> T:
    """What ``resolve`` gives for a mocked StackReference whose outputs are ``images``."""
    mocks = ClusterMocks(images=images)
    _start(mocks, "consumer", "test", {}, {}, preview=False)
    resolved: list[T] = []

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def evaluate() -> pulumi.Output[None]:
        reference = pulumi.StackReference("images", stack_name="organization/homelab-images/homelab")
        return resolve(reference).apply(resolved.append)

    evaluate()
    return resolved[0]


def user_data(run: ClusterRun, hostname: str) -> dict[str, Any]:
    """The cloud-config uploaded for ``hostname``, parsed."""
    snippet = run.named(f"{hostname}-user-data")
    text: str = unwrap_secrets(snippet.inputs["sourceRaw"])["data"]
    assert text.startswith("#cloud-config\n"), "cloud-init ignores user data without the #cloud-config header"
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def k3s_config(document: Mapping[str, Any]) -> dict[str, Any]:
    (written,) = [f for f in document["write_files"] if f["path"] == "/etc/rancher/k3s/config.yaml"]
    assert written["permissions"] == "0600", "config.yaml holds the cluster token: root only"
    config: dict[str, Any] = yaml.safe_load(written["content"])
    return config


# The images stack, run for real under mocks, across its life.


@dataclass(frozen=True)
class Build:
    """What the runner reports on one node: the template and the older ones it kept.

    Stands in for the runner's result line (homelab_images/contract/result.py),
    which needs Packer and Proxmox; the images program around it runs for real.
    """

    vm_id: int
    built_at: str
    retained: tuple[dict[str, Any], ...] = ()


def retained(vm_id: int, version: str, built_at: str, node: str = "pve1") -> dict[str, Any]:
    """A retained entry as the runner writes it."""
    return {
        "vmId": vm_id,
        "name": f"{IMAGE}-v{version}",
        "version": version,
        "fingerprint": f"{vm_id:064x}",
        "builtAt": built_at,
        "node": node,
    }


def images_config(
    version: str = "1.0.0", k3s_version: str | None = None, replicas: Sequence[str] = ()
) -> dict[str, Any]:
    """The images stack's frozen fixture config with an image version, k3s release or replica nodes changed."""
    config = copy.deepcopy(fixture_config())
    image = config["homelab-images:images"][0]
    image["version"] = version
    if k3s_version is not None:
        image["k3s"]["version"] = k3s_version
    if replicas:
        config["homelab-images:proxmox"]["replicaNodes"] = list(replicas)
    return config


def content_of(config: Mapping[str, Any]) -> str:
    """The image's content fingerprint, the one the version lock records."""
    (plan,) = plan_stack(load_config(dict(config)), datetime(2026, 11, 26, tzinfo=UTC))
    return content_fingerprint(plan.fingerprint_parts)


def images_stack_outputs(
    project_dir: Path,
    builds: Mapping[str, Build],
    config: Mapping[str, Any] | None = None,
    lock: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``schemaVersion`` and ``templates`` as the real images program exports them for ``builds`` (per node).

    ``lock`` is the image's version lock (version -> content); by default the
    config's own version is recorded with its content, so the version guard passes.
    """
    config = dict(config if config is not None else images_config())
    image = config["homelab-images:images"][0]
    versions = dict(lock) if lock is not None else {image["version"]: content_of(config)}
    project_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURE_STACK_FILE, project_dir / "Pulumi.homelab.yaml")
    template_records = {version: {TEMPLATE_TARGET: content} for version, content in versions.items()}
    write_lock(project_dir / "Pulumi.homelab.lock.json", {IMAGE: template_records})

    def result(inputs: Mapping[str, Any], _: int) -> dict[str, Any]:
        node = json.loads(inputs["stdin"])["node"]
        build = builds[node]
        reported = default_build_result(inputs, build.vm_id)
        return {**reported, "builtAt": build.built_at, "retained": [dict(r) for r in build.retained]}

    run = run_program(config=config, mocks=RecordingMocks(build_result=result), project_dir=project_dir)
    return {key: run.outputs[key] for key in ("schemaVersion", "templates")}


# What the engine does with a VM between two `pulumi up`s.

# VmLegacy inputs that are ForceNew in bpg/terraform-provider-proxmox v0.111.1
# (proxmoxtf/resource/vm/vm.go: every field of the clone block, vm_id, amd_sev, and
# initialization's type and *_file_id): a change replaces the VM.
VM_FORCE_NEW = (
    "clone",
    "vmId",
    "amdSev",
    "initialization.type",
    "initialization.userDataFileId",
    "initialization.vendorDataFileId",
    "initialization.networkDataFileId",
    "initialization.metaDataFileId",
)


def _reset(inputs: dict[str, Any], old: Mapping[str, Any], path: str) -> None:
    """Set ``path`` (dotted) in ``inputs`` to its value in ``old``, as processIgnoreChanges does."""
    head, _, rest = path.partition(".")
    if not rest:
        if head in old:
            inputs[head] = copy.deepcopy(old[head])
        else:
            inputs.pop(head, None)
        return
    if isinstance(inputs.get(head), dict) and isinstance(old.get(head), Mapping):
        inputs[head] = dict(inputs[head])
        _reset(inputs[head], old[head], rest)


def changed_inputs(before: Registration, after: Registration) -> set[str]:
    """Top-level inputs (and watched nested ones) the engine would diff as changed, after ``ignore_changes``.

    Models pulumi/pulumi v3.259.0 pkg/resource/deploy/step_generator.go: ignored
    paths are reset to the old inputs before the provider's diff. Stricter than
    the provider: any changed input counts, not only those it would act on.
    """
    inputs = copy.deepcopy(after.inputs)
    for path in after.ignore_changes:
        _reset(inputs, before.inputs, path)
    changed = {key for key in set(inputs) | set(before.inputs) if inputs.get(key) != before.inputs.get(key)}
    nested = {path for path in VM_FORCE_NEW if "." in path and _get(inputs, path) != _get(before.inputs, path)}
    return changed | nested


def _get(value: Mapping[str, Any], path: str) -> Any:
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)  # type: ignore[assignment]
    return value


def replaced_vms(before: ClusterRun, after: ClusterRun) -> dict[str, set[str]]:
    """VM name -> the ForceNew inputs that changed: the VMs the next `pulumi up` would replace."""
    old = {vm.name: vm for vm in before.of_type(VM)}
    found = {}
    for vm in after.of_type(VM):
        changed = changed_inputs(old[vm.name], vm)
        force_new = {path for path in changed if path in VM_FORCE_NEW or path.split(".")[0] in VM_FORCE_NEW}
        if force_new:
            found[vm.name] = force_new
    return found
