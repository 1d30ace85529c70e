"""The two programs bench_preview.py times, each run in a fresh interpreter.

``program``: the real ``__main__.py`` under Pulumi mocks, with a stack config of N images.
``baseline``: the same resources, invokes and exports, with inputs precomputed
by the program beforehand and read from a file, so that it does no validation,
rendering or fingerprinting of its own; it imports the same provider SDKs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

START = time.perf_counter()

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def stack_config(images: int) -> dict[str, Any]:
    from tests.pulumi_harness import fixture_config

    config = fixture_config()
    template = config["homelab-images:images"][0]
    config["homelab-images:images"] = [{**template, "name": f"alma9-k3s-bench-{index:02d}"} for index in range(images)]
    config["homelab-images:proxmox"]["vmIdRange"] = {"first": 9000, "last": 9000 + images * 4}
    config["homelab-images:build"]["strictVersioning"] = False
    return config


def run_program(images: int) -> None:
    from tests.pulumi_harness import run_program as evaluate

    evaluate(config=stack_config(images), secrets={"proxmoxve:apiToken": "bench@pve!b=x"})


def record_inputs(images: int, path: Path) -> None:
    """Capture what the program registers, for the baseline to replay."""
    from tests.pulumi_harness import run_program as evaluate

    run = evaluate(config=stack_config(images), secrets={"proxmoxve:apiToken": "bench@pve!b=x"})
    commands = {r.name: {k: r.inputs[k] for k in ("stdin", "triggers")} for r in run.of_type("command:local:Command")}
    downloads = [r.inputs for r in run.of_type("proxmoxve:download/file:File")]
    path.write_text(json.dumps({"commands": commands, "downloads": downloads}), encoding="utf-8")


def run_baseline(path: Path) -> None:
    import pulumi
    import pulumi_command as command
    import pulumi_proxmoxve as proxmoxve

    from tests.pulumi_harness import RecordingMocks, RecordingMonitor

    recorded = json.loads(path.read_text(encoding="utf-8"))
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="homelab-images", stack="homelab", monitor=RecordingMonitor(mocks))
    token = pulumi.Output.secret("bench@pve!b=x")

    class Component(pulumi.ComponentResource):
        def __init__(self, kind: str, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
            super().__init__(f"homelab:images:{kind}", name, None, opts)
            self.register_outputs({})

    @pulumi.runtime.test
    def program() -> Any:
        provider = proxmoxve.Provider("proxmoxve", endpoint="https://pve1:8006/", api_token=token)
        iso = Component("IsoFile", "iso")
        download = recorded["downloads"][0]
        proxmoxve.download.File(
            "iso-download",
            content_type="iso",
            datastore_id=download["datastoreId"],
            node_name=download["nodeName"],
            url=download["url"],
            file_name=download["fileName"],
            checksum=download["checksum"],
            checksum_algorithm="sha256",
            overwrite=False,
            upload_timeout=3600,
            opts=pulumi.ResourceOptions(parent=iso, provider=provider),
        )
        templates = {}
        for name, inputs in recorded["commands"].items():
            image_name = name.removesuffix("-build-packer")
            image = Component("GoldenImage", image_name)
            build = Component("PackerBuild", f"{image_name}-build", pulumi.ResourceOptions(parent=image))
            cmd = command.local.Command(
                name,
                create="c",
                update="u",
                delete="d",
                stdin=inputs["stdin"],
                triggers=inputs["triggers"],
                environment={"PROXMOX_VE_API_TOKEN": token},
                opts=pulumi.ResourceOptions(parent=build),
            )
            result = cmd.stdout.apply(lambda out: json.loads(out.splitlines()[-1]))
            template = Component("ProxmoxTemplate", f"{image_name}-template", pulumi.ResourceOptions(parent=image))
            vm = proxmoxve.get_vm_output(
                id=result.apply(lambda r: r["vmId"]),
                node_name=result.apply(lambda r: r["node"]),
                opts=pulumi.InvokeOutputOptions(parent=template, provider=provider, depends_on=[cmd]),
            )
            templates[image_name] = vm.apply(lambda v: {"vmId": v.id, "name": v.name})
        pulumi.export("templates", templates)
        return pulumi.Output.all(*templates.values())

    program()


if __name__ == "__main__":
    mode, argument = sys.argv[1], sys.argv[2]
    if mode == "program":
        run_program(int(argument))
    elif mode == "record":
        record_inputs(int(argument.split(":")[0]), Path(argument.split(":")[1]))
    else:
        run_baseline(Path(argument))
    print(f"{time.perf_counter() - START:.4f}")
