"""What an unknown config key most likely is: a nested setting written flat, or a near-miss of a known one.

``pulumi config set homelab-images:build.artifactDir x`` (without ``--path``) stores the flat key
``homelab-images:build.artifactDir``, which Pulumi never nests under ``homelab-images:build``. The README
spells settings in that dotted form, so "check the spelling" would send the user hunting for a typo.
"""

from __future__ import annotations

import difflib
import re
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

# Ratio of difflib.SequenceMatcher (lowercased) at or above which a known key is offered as "did you mean".
CLOSE_ENOUGH = 0.75
# Nested paths offered as suggestions reach this deep below the key's parent (k3sVersion -> k3s.version).
SUGGESTION_DEPTH = 3
FLAT_PATH = re.compile(r"[^.\[\]]+(?:\.[^.\[\]]+|\[\d+\])*")
PATH_PART = re.compile(r"[^.\[\]]+|\[(\d+)\]")

Loc = tuple[int | str, ...]


def _key(name: str, model: type[BaseModel]) -> str:
    field = model.model_fields[name]
    return field.validation_alias if isinstance(field.validation_alias, str) else field.alias or name


def _unwrapped(annotation: Any) -> Any:
    """The type under ``Annotated[...]`` and ``X | None``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            others = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(others) != 1:
                return annotation
            annotation = others[0]
        else:
            return annotation


def _as_model(annotation: Any) -> type[BaseModel] | None:
    annotation = _unwrapped(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    """The model's config keys and their types."""
    return {_key(name, model): field.annotation for name, field in model.model_fields.items()}


def _resolve(root: type[BaseModel], loc: Loc) -> Any:
    """The type at ``loc`` below ``root``, or None when ``loc`` names nothing."""
    current: Any = root
    for part in loc:
        current = _unwrapped(current)
        if isinstance(part, int):
            if get_origin(current) is not list:
                return None
            current = get_args(current)[0]
            continue
        model = _as_model(current)
        if model is None or part not in _fields(model):
            return None
        current = _fields(model)[part]
    return current


def _paths(model: type[BaseModel], depth: int) -> list[str]:
    """Known keys of ``model`` as dotted paths, through nested models (not lists) up to ``depth`` levels."""
    paths = []
    for key, annotation in _fields(model).items():
        paths.append(key)
        nested = _as_model(annotation)
        if nested is not None and depth > 1:
            paths += [f"{key}.{below}" for below in _paths(nested, depth - 1)]
    return paths


def _closest(word: str, candidates: list[str]) -> str | None:
    """The known path ``word`` most likely means: the one nested setting of that name, or a near-miss."""
    named = [candidate for candidate in candidates if candidate.rsplit(".", 1)[-1].lower() == word.lower()]
    if len(named) == 1:
        return named[0]
    by_lower = {candidate.lower(): candidate for candidate in candidates}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=CLOSE_ENOUGH)
    return by_lower[close[0]] if close else None


def _flat_loc(key: str) -> Loc | None:
    """``ns:build.qemu.accelerator`` -> (``ns:build``, ``qemu``, ``accelerator``); None for a key without a path."""
    namespace, _, path = key.partition(":")
    if not FLAT_PATH.fullmatch(path) or not re.search(r"[.\[]", path):
        return None
    parts: list[int | str] = []
    for match in PATH_PART.finditer(path):
        parts.append(int(match.group(1)) if match.group(1) is not None else match.group(0))
    if not isinstance(parts[0], str):
        return None
    return (f"{namespace}:{parts[0]}", *parts[1:])


def unknown_key_problem(root: type[BaseModel], loc: Loc, path: str) -> str:
    """The one line for an unknown key at ``loc`` (shown as ``path``) of a config validated by ``root``."""
    name = loc[-1]
    if len(loc) == 1 and isinstance(name, str):
        flat = _flat_loc(name)
        if flat is not None and _resolve(root, flat) is not None:
            return (
                f"{path}: is a flat key; Pulumi stores nested settings with --path: "
                f"pulumi config set --path '{name}' <value> (then remove this one: pulumi config rm '{name}')"
            )
        namespace, _, word = name.partition(":")
        known = [key.partition(":")[2] for key in _paths(root, SUGGESTION_DEPTH + 1) if key.startswith(f"{namespace}:")]
        close = _closest(word, known)
        if close is not None:
            hint = " (a nested setting: set it with pulumi config set --path)" if "." in close else ""
            return f"{path}: is not a known setting; did you mean '{namespace}:{close}'?{hint}"
        return f"{path}: is not a known setting (check the spelling)"
    parent = _as_model(_resolve(root, loc[:-1]))
    if isinstance(name, str) and parent is not None:
        close = _closest(name, _paths(parent, SUGGESTION_DEPTH))
        if close is not None:
            where = path.removesuffix(name)
            return f"{path}: is not a known setting; did you mean '{where}{close}'?"
    return f"{path}: is not a known setting (check the spelling)"
