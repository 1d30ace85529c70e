"""An image built for qemu only: its plan, and what render, validate and spec make of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from homelab_images.cli.main import main as cli_main
from homelab_images.contract.packer_files import QEMU_TEMPLATE_FILE, TEMPLATE_FILE
from homelab_images.core import plan as plan_module
from homelab_images.core.plan import NoTemplateTarget
from homelab_images.core.qemu_template import qemu_embedded_kickstart
from tests.rendering import plan_for
from tests.stack_files import image, mutated_config, write_stack_file

IMAGE = "alma9-k3s-node-amd64"


def _qemu_only(config: dict[str, Any]) -> None:
    image(config)["targets"] = ["qemu"]
    config["homelab-images:build"]["strictVersioning"] = False


def test_the_plan_has_the_qcow2_build_and_no_template_build() -> None:
    plan = plan_for(_qemu_only)
    both = plan_for(lambda config: image(config).__setitem__("targets", ["proxmox-iso", "qemu"]))
    assert plan.build_spec is None and plan.qemu is not None and both.qemu is not None
    assert plan.qemu.spec == both.qemu.spec, "the qcow2 is the same whether or not a template is built too"
    assert list(plan.targets) == ["qemu"]
    assert plan.shared_fingerprint_parts == both.shared_fingerprint_parts
    assert qemu_embedded_kickstart(plan.qemu.template) == qemu_embedded_kickstart(both.qemu.template)
    with pytest.raises(NoTemplateTarget, match=f"image {IMAGE} is built for qemu only"):
        _ = plan.fingerprint


def test_render_writes_the_qemu_template_only(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "out"
    with_template = write_stack_file(tmp_path, mutated_config(lambda _: None), name="Pulumi.template.yaml")
    assert cli_main(["render", "--stack-file", str(with_template), "--out", str(out)]) == 0
    assert (out / IMAGE / TEMPLATE_FILE).exists()

    stack_file = write_stack_file(tmp_path, mutated_config(_qemu_only))
    assert cli_main(["render", "--stack-file", str(stack_file), "--out", str(out)]) == 0
    assert f"wrote {out / IMAGE}/ks.cfg, {QEMU_TEMPLATE_FILE}, scripts/" in capsys.readouterr().out
    directory = out / IMAGE
    assert sorted(path.name for path in directory.iterdir()) == ["ks.cfg", QEMU_TEMPLATE_FILE, "scripts"]
    assert sorted(path.name for path in (directory / "scripts").iterdir()) == ["install-k3s.sh", "seal.sh"]
    assert json.loads((directory / QEMU_TEMPLATE_FILE).read_text(encoding="utf-8"))["source"]["qemu"][IMAGE]


def test_validate_checks_the_qemu_template(tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stack_file = write_stack_file(tmp_path, mutated_config(_qemu_only))
    assert cli_main(["validate", "--stack-file", str(stack_file)]) == 0
    assert f"{IMAGE} v1.0.0: kickstart and Packer template valid (qemu)" in capsys.readouterr().out

    render = plan_module.render_qemu_template

    def with_unknown_option(*args: Any) -> dict[str, Any]:
        template = render(*args)
        template["source"]["qemu"][IMAGE]["vm_id"] = 9000
        return template

    monkeypatch.setattr(plan_module, "render_qemu_template", with_unknown_option)
    assert cli_main(["validate", "--stack-file", str(stack_file)]) == 1
    assert f"error: image {IMAGE}: qemu template: " in capsys.readouterr().err


def test_spec_of_a_qemu_only_image_says_it_has_no_template(tmp_path: Path, capsys: Any) -> None:
    stack_file = write_stack_file(tmp_path, mutated_config(_qemu_only))
    assert cli_main(["spec", "--stack-file", str(stack_file), "--image", IMAGE]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"error: image {IMAGE} is built for qemu only (targets: [qemu]): it has no Proxmox template, "
        "so no proxmox-iso build spec"
    )
