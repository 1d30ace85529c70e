"""Change scalar values in a stack file's text and leave every other byte as it was.

A round-trip YAML dump (ruamel.yaml) re-indents and re-spaces lines it did not change
whenever a file's layout differs from the dumper's settings, and the user's stack file
is theirs. So the values are found with the parser the loader uses (their exact
character spans in the text) and only those spans are rewritten, in the quoting style
the file already had.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import yaml

KeyPath = tuple[str | int, ...]


class StackFileEditError(Exception):
    """A value to change is not where, or not what, the edit expects."""


def _child(node: yaml.Node, key: str | int, path: KeyPath) -> yaml.Node:
    if isinstance(key, int) and isinstance(node, yaml.SequenceNode) and 0 <= key < len(node.value):
        child: yaml.Node = node.value[key]
        return child
    if isinstance(key, str) and isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                found: yaml.Node = value_node
                return found
    raise StackFileEditError(f"{_dotted(path)}: not found in the stack file")


def _dotted(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _plain_is_safe(value: str) -> bool:
    """A plain scalar reads back as the same string (not a number, bool, or broken syntax)."""
    try:
        return bool(yaml.safe_load(f"key: {value}") == {"key": value})
    except yaml.YAMLError:
        return False


def _render(value: str, style: str | None) -> str:
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style is None and _plain_is_safe(value):
        return value
    return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar


def replace_scalars(text: str, values: Mapping[KeyPath, str]) -> str:
    """``text`` with the scalar at each key path (from the document root) set to its new value."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        raise StackFileEditError("the stack file is not valid YAML") from None
    if root is None:
        raise StackFileEditError("the stack file is empty")
    spans: list[tuple[int, int, str]] = []
    for path, value in values.items():
        node = root
        for depth, key in enumerate(path):
            node = _child(node, key, path[: depth + 1])
        if not isinstance(node, yaml.ScalarNode) or node.style in ("|", ">"):
            raise StackFileEditError(f"{_dotted(path)}: expected a one-line value")
        spans.append((node.start_mark.index, node.end_mark.index, _render(value, node.style)))
    for start, end, rendered in sorted(spans, reverse=True):
        text = text[:start] + rendered + text[end:]
    return text
