"""A model of pulumi-proxmoxve's ``download.File`` as the engine drives it, against fakepve: a test double.

The provider cannot run here. The rules, read from bpg/terraform-provider-proxmox
``fwprovider/nodes/resource_download_file.go`` (the resource pulumi-proxmoxve 8.6.0 bridges):

[create]   POST ``download-url``. Proxmox refuses a file that exists ("refusing to override existing
           file", pve-storage ``PVE/API2/Storage/Status.pm`` download_url); fakepve does not, so the
           model checks the storage first. With ``overwrite_unmanaged`` the provider deletes the file
           and downloads again; without it the create fails with "File already exists in the
           datastore, it was created outside of Terraform or is managed by another resource."
[replace]  ``url``, ``file_name``, ``checksum``, ``node_name``, ``datastore_id``, ``content_type`` are
           RequiresReplace; ``overwrite`` replaces when the size on storage changed.
[delete]   DELETE of the volume ID (a missing file is fine).
[engine]   Pulumi's ``deleteBeforeReplace`` deletes the old resource before creating the new one,
           otherwise after; ``retainOnDelete`` skips the provider's Delete (pulumi/pulumi
           step_generator.go / step.go DeleteStep).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TASK_SECONDS = 10
REPLACE_ON = ("url", "fileName", "checksum", "checksumAlgorithm", "nodeName", "datastoreId", "contentType")


class ProviderError(Exception):
    pass


@dataclass
class DownloadFileStack:
    """One ``download.File`` in a stack: its recorded inputs and the downloads it caused."""

    api: Any
    delete_before_replace: bool
    retain_on_delete: bool
    state: dict[str, Any] | None = None
    downloads: list[str] = field(default_factory=list)

    @staticmethod
    def volume(inputs: Mapping[str, Any]) -> str:
        return f"{inputs['datastoreId']}:{inputs['contentType']}/{inputs['fileName']}"

    def _storage(self, inputs: Mapping[str, Any]) -> Any:
        return self.api.nodes(inputs["nodeName"]).storage(inputs["datastoreId"])

    def _wait(self, inputs: Mapping[str, Any], upid: Any) -> None:
        """The provider waits for each Proxmox task it starts (DownloadFileByURL, DeleteDatastoreFile)."""
        if not (isinstance(upid, str) and upid.startswith("UPID:")):
            return
        tasks = self.api.nodes(inputs["nodeName"]).tasks
        deadline = time.monotonic() + TASK_SECONDS
        while (status := tasks(upid).status.get())["status"] != "stopped":
            assert time.monotonic() < deadline, f"task {upid} never finished"
            time.sleep(0.05)
        if status.get("exitstatus") != "OK":
            raise ProviderError(f"task {upid} failed: {status.get('exitstatus')}")

    def _exists(self, inputs: Mapping[str, Any]) -> bool:
        listed = self._storage(inputs).content.get(content=inputs["contentType"])
        return any(item["volid"] == self.volume(inputs) for item in listed)

    def _create(self, inputs: Mapping[str, Any]) -> None:
        if self._exists(inputs):
            if not inputs.get("overwriteUnmanaged", False):
                raise ProviderError(
                    "File already exists in the datastore, it was created outside of Terraform "
                    "or is managed by another resource."
                )
            self._wait(inputs, self._storage(inputs).content(self.volume(inputs)).delete())
        upid = self._storage(inputs).post(
            "download-url", content=inputs["contentType"], filename=inputs["fileName"], url=inputs["url"]
        )
        self._wait(inputs, upid)
        self.downloads.append(inputs["url"])
        self.state = dict(inputs)

    def _delete(self, old: Mapping[str, Any]) -> None:
        if not self.retain_on_delete and self._exists(old):
            self._wait(old, self._storage(old).content(self.volume(old)).delete())

    def up(self, inputs: Mapping[str, Any]) -> str:
        if self.state is None or not self._exists(self.state):
            self._create(inputs)
            return "create"
        if all(self.state.get(key) == inputs.get(key) for key in REPLACE_ON):
            self.state = dict(inputs)
            return "same"
        old = self.state
        if self.delete_before_replace:
            self._delete(old)
            self._create(inputs)
        else:
            self._create(inputs)
            self._delete(old)
        return "replace"

    def destroy(self) -> None:
        if self.state is not None:
            self._delete(self.state)
            self.state = None
