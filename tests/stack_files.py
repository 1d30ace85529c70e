"""Variations of the shipped stack file, for tests that need a bad or changed config."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.pulumi_harness import FIXTURE_KICKSTART_DIR, FIXTURE_STACK_FILE, yaml_document

Mutation = Callable[[dict[str, Any]], None]


DELETE = object()
"""Pass as the value to ``set_key`` to remove the key instead."""


def set_key(path: str, value: Any) -> Mutation:
    """A mutation that sets ``key/dotted.path`` inside the config; a number indexes a list, e.g.
    ``homelab-images:images/0.k3s.version``."""

    def mutate(config: dict[str, Any]) -> None:
        key, _, rest = path.partition("/")
        target: Any = config
        parts = [key, *rest.split(".")] if rest else [key]
        for part in parts[:-1]:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        last = parts[-1]
        if value is DELETE:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return mutate


def fixture_document() -> dict[str, Any]:
    """The frozen copy of the shipped stack file (tests/fixtures)."""
    return dict(yaml_document(FIXTURE_STACK_FILE.read_text(encoding="utf-8")))


def mutated_config(mutate: Mutation) -> dict[str, Any]:
    document = fixture_document()
    mutate(document["config"])
    return dict(document["config"])


def write_stack_file(directory: Path, config: dict[str, Any], name: str = "Pulumi.test.yaml") -> Path:
    """A stack file with the frozen kickstart/ beside it, which the CLI and the program then use."""
    if not (directory / "kickstart").exists():
        shutil.copytree(FIXTURE_KICKSTART_DIR, directory / "kickstart")
    path = directory / name
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False), encoding="utf-8")
    return path


def image(config: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = config["homelab-images:images"][0]
    return first
