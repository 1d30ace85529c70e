"""The build command's result: the last line of its stdout, one JSON object."""

from __future__ import annotations

import json
from typing import Any

REQUIRED_KEYS = {
    "vmId": int,
    "node": str,
    "name": str,
    "version": str,
    "fingerprint": str,
}


class BuildResultInvalid(Exception):
    """The build command's stdout does not end with a valid result line."""


def parse_build_result(stdout: str) -> dict[str, Any]:
    """Parse the last non-empty stdout line; everything before it is ignored."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise BuildResultInvalid("the build command printed no result line")
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError:
        raise BuildResultInvalid("the last line of the build command's stdout is not JSON") from None
    if not isinstance(result, dict):
        raise BuildResultInvalid("the build result must be a JSON object")
    for key, kind in REQUIRED_KEYS.items():
        if not isinstance(result.get(key), kind) or isinstance(result.get(key), bool):
            raise BuildResultInvalid(f"the build result needs {key!r} of type {kind.__name__}")
    return result
