"""The installer ISO's download.File as the program declares it, through a model of the provider
(tests/download_file.py) against fakepve: an ISO already on storage, re-runs, a new URL, destroy."""

from __future__ import annotations

from typing import Any

import pytest

from tests.download_file import DownloadFileStack, ProviderError
from tests.pulumi_harness import Registration, unwrap_secrets
from tests.runner.conftest import ISO_FILE, Runner
from tests.runner.test_program_lifecycle import program_run

DOWNLOAD = "proxmoxve:download/file:File"


def declared_download(runner: Runner) -> tuple[dict[str, Any], Registration]:
    registration = program_run(runner).one(DOWNLOAD)
    return unwrap_secrets(registration.raw_inputs), registration


def stack_for(root: Any, registration: Registration) -> DownloadFileStack:
    return DownloadFileStack(root, registration.delete_before_replace, registration.retain_on_delete)


def on_storage(pve: Any) -> set[str]:
    return set(pve.storages["local"]["files"])


def test_an_iso_already_on_storage_is_taken_over_with_one_download(runner: Runner, pve: Any, root: Any) -> None:
    inputs, registration = declared_download(runner)
    assert inputs["fileName"] == ISO_FILE and ISO_FILE in on_storage(pve), "put there by hand, not in state"
    stack = stack_for(root, registration)
    assert stack.up(inputs) == "create", "the first up succeeds"
    for _ in range(2):
        assert stack.up(inputs) == "same"
    assert stack.downloads == [inputs["url"]], "downloaded once, never again"
    assert ISO_FILE in on_storage(pve)


def test_the_model_fails_like_the_provider_without_overwrite_unmanaged(runner: Runner, root: Any) -> None:
    inputs, registration = declared_download(runner)
    with pytest.raises(ProviderError, match="File already exists in the datastore"):
        stack_for(root, registration).up({**inputs, "overwriteUnmanaged": False})


def test_a_new_url_for_the_same_file_name_leaves_the_new_file_in_place(runner: Runner, pve: Any, root: Any) -> None:
    inputs, registration = declared_download(runner)
    stack = stack_for(root, registration)
    stack.up(inputs)
    moved = {**inputs, "url": inputs["url"].replace("https://", "https://vault.")}
    assert stack.up(moved) == "replace"
    assert ISO_FILE in on_storage(pve), "the old resource's delete never removes the new download"
    assert stack.downloads == [inputs["url"], moved["url"]]


def test_destroy_keeps_the_iso_for_whatever_else_uses_it(runner: Runner, pve: Any, root: Any) -> None:
    inputs, registration = declared_download(runner)
    stack = stack_for(root, registration)
    stack.up(inputs)
    stack.destroy()
    assert ISO_FILE in on_storage(pve)
    assert stack.up(inputs) == "create" and len(stack.downloads) == 2, "the next up takes it over again"


def test_the_model_reproduces_the_collision_the_options_avoid(runner: Runner, pve: Any, root: Any) -> None:
    """Create-before-delete of the same file name: the old resource's delete removes the new file."""
    inputs, _ = declared_download(runner)
    stack = DownloadFileStack(root, delete_before_replace=False, retain_on_delete=False)
    stack.up(inputs)
    stack.up({**inputs, "url": inputs["url"].replace("https://", "https://vault.")})
    assert ISO_FILE not in on_storage(pve)
