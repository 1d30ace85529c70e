"""Read ``Pulumi.<stack>.yaml`` without the Pulumi CLI, for the offline commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from homelab_images.contract.stack_keys import SET_TOKEN, TOKEN_KEY
from homelab_images.core.config import ConfigError, StackConfig, load_config


class _DuplicateKey(Exception):
    def __init__(self, key: object, line: int) -> None:
        super().__init__(f"key {key!r} appears twice (second time at line {line})")


class _StrictLoader(yaml.SafeLoader):
    """YAML keeps the last of two equal keys; in a stack file that silently drops settings."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_stack_config(path: Path) -> dict[str, Any]:
    """The raw ``config:`` mapping of a stack file; ConfigError if it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([f"{path}: cannot read the stack file ({error.strerror})"]) from None
    except UnicodeDecodeError as error:
        raise ConfigError([f"{path}: not UTF-8 text (byte {error.start}); save the stack file as UTF-8"]) from None
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
    except _DuplicateKey as error:
        raise ConfigError([f"{path}: {error}"]) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError([f"{path}: not valid YAML{where}"]) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError([f"{path}: expected a mapping with a 'config:' key"])
    if "config" not in document:
        found = f" (it has {', '.join(repr(key) for key in document)})" if document else ""
        raise ConfigError([f"{path}: no 'config:' key{found}; the settings go under 'config:'"])
    config = document["config"]
    if not isinstance(config, dict):
        raise ConfigError([f"{path}: 'config' must be a mapping of keys to values"])
    if isinstance(config.get(TOKEN_KEY), str):
        raise ConfigError(
            [
                f"{TOKEN_KEY}: is stored in plain text in {path.name}; remove it from the file and set it with "
                f"{SET_TOKEN}"
            ]
        )
    return config


def load_stack_file(path: Path) -> StackConfig:
    return load_config(read_stack_config(path))
