"""IsoFile: the installer ISO, downloaded once by Proxmox onto ISO storage."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmoxve

DOWNLOAD_TIMEOUT_SECONDS = 3600


@dataclass(frozen=True)
class IsoFileArgs:
    node: str
    storage: str
    url: str
    sha256: str
    file_name: str


class IsoFile(pulumi.ComponentResource):
    volume_id: pulumi.Output[str]

    def __init__(self, name: str, args: IsoFileArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("homelab:images:IsoFile", name, None, opts)
        download = proxmoxve.download.File(
            f"{name}-download",
            content_type="iso",
            datastore_id=args.storage,
            node_name=args.node,
            url=args.url,
            file_name=args.file_name,
            checksum=args.sha256,
            checksum_algorithm="sha256",
            # Never replace the ISO because the mirror's file size changed: the
            # checksum pins the content, and a re-download would only cost time.
            overwrite=False,
            upload_timeout=DOWNLOAD_TIMEOUT_SECONDS,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.download = download
        self.volume_id = download.id
        self.register_outputs({"volumeId": self.volume_id})
