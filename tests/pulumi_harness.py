"""Run the real ``__main__.py`` under Pulumi's mocks (``pulumi.runtime.set_mocks``).

The Pulumi CLI and engine are not involved: the mock monitor records every
resource registration and invoke, as the engine would receive them, including
which values were marked secret.
"""

from __future__ import annotations

import copy
import json
import runpy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings

from components import program
from homelab_images.contract.commands import QEMU_CREATE_COMMAND
from homelab_images.contract.ownership import OWNER_TAG, fingerprint_tag, image_tag, version_tag

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "__main__.py"
SHIPPED_STACK_FILE = ROOT / "Pulumi.homelab.yaml"
# A frozen copy of the shipped stack file, its lock and the kickstart/ it was locked
# with: tests of the code keep passing when a user edits their own stack file,
# kickstart or scripts (README, "Customizing safely"). Tests of the user's own
# files use ROOT. Refresh the copy when the shipped files change on purpose.
FIXTURES = ROOT / "tests" / "fixtures"
FIXTURE_STACK_FILE = FIXTURES / "Pulumi.homelab.yaml"
FIXTURE_KICKSTART_DIR = FIXTURES / "kickstart"
# How Pulumi's wire format marks a secret value: {SECRET_SIG: SECRET_MARKER, "value": ...}.
SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRET_MARKER = "1b47061264138c4ac30d75fd1eb44270"

BUILD_VM_ID = 9007
OWNER_KEY = "owner-key-of-the-test-stack-7f3a9c2e51d84b06"


@cache
def _parsed(text: str) -> Any:
    return yaml.safe_load(text)


def yaml_document(text: str) -> Any:
    """``yaml.safe_load(text)``, parsed once per distinct text in a test process (the same stack files are
    read hundreds of times); each caller gets its own copy to change."""
    return copy.deepcopy(_parsed(text))


def stack_config(path: Path) -> dict[str, Any]:
    """A stack file's ``config:`` mapping."""
    document = yaml_document(path.read_text(encoding="utf-8"))
    return dict(document["config"])


def shipped_config() -> dict[str, Any]:
    """The project's own Pulumi.homelab.yaml, as the user has it."""
    return stack_config(SHIPPED_STACK_FILE)


def fixture_config() -> dict[str, Any]:
    return stack_config(FIXTURE_STACK_FILE)


def as_runtime_config(config: Mapping[str, Any]) -> dict[str, str]:
    """Pulumi passes scalars as strings and structured values as JSON text."""

    def as_text(value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict | list):
            return json.dumps(value)
        return str(value)

    return {key: as_text(value) for key, value in config.items()}


@dataclass
class Registration:
    type: str
    name: str
    inputs: dict[str, Any]
    raw_inputs: dict[str, Any]
    parent: str
    provider: str
    dependencies: list[str]
    replace_on_changes: list[str]
    additional_secret_outputs: list[str]
    delete_before_replace: bool = False
    retain_on_delete: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)


def default_build_result(inputs: Mapping[str, Any], vm_id: int) -> dict[str, Any]:
    spec = json.loads(inputs["stdin"])
    return {
        "vmId": vm_id,
        "node": spec["node"],
        "name": spec["template_name"],
        "version": spec["version"],
        "fingerprint": spec["fingerprint"],
        "storage": spec["vm_storage"],
        "builtAt": "2026-11-25T10:00:00Z",
        "sourceCommit": None,
        "retained": [],
        "smoke": {"passed": True, "readySeconds": 41.7, "checkedAt": "2026-11-25T10:02:31Z"}
        if spec.get("smoke_test", True)
        else None,
    }


def artifact_result(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What the qemu build prints for its spec (homelab_images.runner.qemu)."""
    spec = json.loads(inputs["stdin"])
    directory = f"/srv/artifacts/{spec['image']}/{spec['template_name']}-{spec['fingerprint'][:12]}"
    return {
        "image": spec["image"],
        "version": spec["version"],
        "fingerprint": spec["fingerprint"],
        "path": f"{directory}/{spec['file_name']}",
        "file": spec["file_name"],
        "size": 1_234_567_890,
        "sha256": "c" * 64,
        "manifest": f"{directory}/manifest.json",
        "builtAt": "2026-11-25T10:30:00Z",
        "sourceCommit": None,
        "retained": [],
    }


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    """Answers like the providers would: the build prints its result line, Proxmox reports the template."""

    build_result: Callable[[Mapping[str, Any], int], dict[str, Any]] = default_build_result
    template_is_template: bool = True
    template_tags: Callable[[Mapping[str, Any]], list[str]] | None = None
    deleted_by_hand: set[int] = field(default_factory=set)
    """Templates someone deleted in Proxmox after they were built."""
    calls: list[pulumi.runtime.MockCallArgs] = field(default_factory=list)
    builds: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        outputs = dict(args.inputs)
        if args.typ == "command:local:Command" and args.inputs.get("create") == QEMU_CREATE_COMMAND:
            if pulumi_settings.is_dry_run():
                # A preview runs no command: stdout and stderr are unknown (tests/engine.py [preview]).
                return f"{args.name}-id", outputs
            result = artifact_result(args.inputs)
            self.artifacts[args.name] = {"inputs": args.inputs, "result": result}
            outputs["stdout"] = json.dumps(result)
            outputs["stderr"] = "[build 00:01] stage: packer init\n"
            return f"{args.name}-id", outputs
        if args.typ == "command:local:Command":
            if pulumi_settings.is_dry_run():
                # A preview runs no command: stdout and stderr are unknown (tests/engine.py [preview]).
                return f"{args.name}-id", outputs
            result = self.build_result(args.inputs, BUILD_VM_ID + len(self.builds))
            self.builds[args.name] = {"inputs": args.inputs, "result": result}
            outputs["stdout"] = "progress goes to stderr\n" + json.dumps(result)
            outputs["stderr"] = "[build 00:01] stage: packer init\n"
            return f"{args.name}-id", outputs
        if args.typ == "proxmoxve:download/file:File":
            return (
                f"{args.inputs['datastoreId']}:iso/{args.inputs['fileName']}",
                outputs,
            )
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        self.calls.append(args)
        if args.token == "proxmoxve:index/getVmsLegacy:getVmsLegacy":
            node = args.args["nodeName"]
            built = [b["result"] for b in self.builds.values() if b["result"]["node"] == node]
            return {"vms": [self._listed(result) for result in built if result["vmId"] not in self.deleted_by_hand]}
        return {}

    def _listed(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """One entry of the provider's VM list, as Proxmox reports the built template."""
        tags = (
            self.template_tags(result)
            if self.template_tags
            else [
                OWNER_TAG,
                image_tag(result["name"].rsplit("-v", 1)[0]),
                fingerprint_tag(result["fingerprint"]),
                version_tag(result["version"]),
            ]
        )
        return {
            "vmId": result["vmId"],
            "nodeName": result["node"],
            "name": result["name"],
            "tags": tags,
            "template": self.template_is_template,
            "status": "stopped",
        }


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Keeps each registration's wire form, where secrets are still wrapped."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            raw = json_format.MessageToDict(request.object)
            registered = self.resources[response.urn]
            self.registrations.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    inputs=dict(registered.state) if registered else {},
                    raw_inputs=raw,
                    parent=request.parent,
                    provider=request.provider,
                    dependencies=list(request.dependencies),
                    replace_on_changes=list(request.replaceOnChanges),
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    retain_on_delete=bool(request.retainOnDelete),
                    ignore_changes=list(request.ignoreChanges),
                    property_dependencies={key: list(deps.urns) for key, deps in request.propertyDependencies.items()},
                )
            )
        return response


@dataclass
class ProgramRun:
    registrations: list[Registration]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    mocks: RecordingMocks

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def one(self, type_: str) -> Registration:
        found = self.of_type(type_)
        assert len(found) == 1, f"expected one {type_}, got {[r.name for r in found]}"
        return found[0]

    def by_urn_suffix(self, name: str) -> Registration:
        return next(r for r in self.registrations if r.name == name)


def run_program(
    config: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    mocks: RecordingMocks | None = None,
    preview: bool = False,
    project_dir: Path = FIXTURES,
    owner_key: str | None = OWNER_KEY,
) -> ProgramRun:
    """Evaluate ``__main__.py`` with ``config`` and ``secrets``.

    ``project_dir`` holds the stack file (the default ``config``) and the lock file the
    version guard reads: the frozen fixture by default, ``ROOT`` for the user's own.
    """
    mocks = mocks or RecordingMocks()
    monitor = RecordingMonitor(mocks)
    program.PROJECT_DIR = project_dir
    all_config = as_runtime_config(config if config is not None else stack_config(project_dir / "Pulumi.homelab.yaml"))
    secrets = dict(secrets if secrets is not None else {"proxmoxve:apiToken": "images@pve!build=0000"})
    if owner_key is not None:
        secrets.setdefault("homelab-images:ownerKey", owner_key)
    all_config.update(secrets)
    pulumi_settings.reset_options()
    pulumi.runtime.set_mocks(
        mocks,
        project="homelab-images",
        stack="homelab",
        preview=preview,
        monitor=monitor,
    )
    pulumi.runtime.set_all_config(all_config, list(secrets))
    outputs: dict[str, Any] = {}
    secret_outputs: set[str] = set()

    @pulumi.runtime.test
    def evaluate() -> pulumi.Output[Any]:
        runpy.run_path(str(MAIN), run_name="__main__")
        stack = pulumi_settings.get_root_resource()
        exported: dict[str, pulumi.Output[Any]] = {
            name: pulumi.Output.from_input(value)
            for name, value in stack.outputs.items()  # type: ignore[union-attr]
        }

        def collect(name: str, output: pulumi.Output[Any]) -> pulumi.Output[None]:
            def record(values: list[Any]) -> None:
                value, is_secret = values
                outputs[name] = value
                if is_secret:
                    secret_outputs.add(name)

            return pulumi.Output.all(output, output.is_secret()).apply(record)

        return pulumi.Output.all(*(collect(name, output) for name, output in exported.items()))

    evaluate()
    return ProgramRun(monitor.registrations, outputs, secret_outputs, mocks)


def plain_strings(raw: Any, inside_secret: bool = False) -> list[str]:
    """Every string in a wire-form value that is not inside a secret wrapper."""
    if isinstance(raw, dict):
        secret = raw.get(SECRET_SIG) == SECRET_MARKER
        return [s for value in raw.values() for s in plain_strings(value, inside_secret or secret)]
    if isinstance(raw, list):
        return [s for value in raw for s in plain_strings(value, inside_secret)]
    if isinstance(raw, str) and not inside_secret:
        return [raw]
    return []


def unwrap_secrets(value: Any) -> Any:
    """Values as a policy pack sees them: secrets decrypted in place."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_MARKER:
            return unwrap_secrets(value["value"])
        return {key: unwrap_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(item) for item in value]
    return value
