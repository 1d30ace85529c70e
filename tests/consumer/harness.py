"""Run the example consumer (examples/k3s-cluster) under Pulumi's mocks.

The images stack is a mocked ``StackReference`` whose outputs the test chooses,
in the shape docs/outputs-contract.md documents.
"""

from __future__ import annotations

import copy
import itertools
import runpy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import yaml
from pulumi.runtime import settings as pulumi_settings

from homelab_images_consumer import TemplateRef, resolve_template
from tests.pulumi_harness import ROOT, RecordingMonitor, Registration, as_runtime_config, unwrap_secrets

EXAMPLE = ROOT / "examples" / "k3s-cluster"
PROGRAM = EXAMPLE / "__main__.py"
EXAMPLE_STACK_FILE = EXAMPLE / "Pulumi.dev.yaml"

STACK_REFERENCE = "pulumi:pulumi:StackReference"
VM = "proxmoxve:index/vmLegacy:VmLegacy"
SNIPPET = "proxmoxve:index/fileLegacy:FileLegacy"

K3S_TOKEN = "K10sentinel-k3s-token::server:7f3a9c"
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
    """Answers like the engine and Proxmox: the stack reference's outputs, IDs of files and VMs."""

    images: Mapping[str, Any]
    stack_references: list[dict[str, Any]] = field(default_factory=list)
    _next_vm_id: itertools.count[int] = field(default_factory=lambda: itertools.count(100))

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        outputs = dict(args.inputs)
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


def _start(
    mocks: pulumi.runtime.Mocks,
    project: str,
    stack: str,
    config: Mapping[str, Any],
    secrets: Mapping[str, str],
    preview: bool,
) -> RecordingMonitor:
    monitor = RecordingMonitor(mocks)
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
) -> ClusterRun:
    """Evaluate the example's program with ``config`` (default: its Pulumi.dev.yaml)."""
    mocks = ClusterMocks(images=images if images is not None else images_outputs())
    secrets = dict(
        secrets if secrets is not None else {"proxmoxve:apiToken": API_TOKEN, "k3s-cluster:k3sToken": K3S_TOKEN}
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
    mocks = ClusterMocks(images=images)
    _start(mocks, "consumer", "test", {}, {}, preview=False)
    resolved: list[TemplateRef] = []

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def evaluate() -> pulumi.Output[None]:
        reference = pulumi.StackReference("images", stack_name="organization/homelab-images/homelab")
        return resolve_template(reference, image, version, node).apply(resolved.append)

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
