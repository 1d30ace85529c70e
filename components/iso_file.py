"""IsoFile: the installer ISO, downloaded once by Proxmox onto ISO storage.

How pulumi-proxmoxve's ``download.File`` behaves (bpg/terraform-provider-proxmox,
fwprovider/nodes/resource_download_file.go, which pulumi-proxmoxve 8.6.0 bridges):
Proxmox's download-url refuses a file that exists ("refusing to override existing
file"); with ``overwrite_unmanaged`` the provider deletes it and downloads again,
without it the first ``pulumi up`` fails when the ISO was put there by hand. Its
``overwrite`` replaces the file when its size on storage changed; ``Delete``
deletes the file by volume ID.

So: an ISO already on storage is replaced once by a verified download (the
checksum is checked by Proxmox) and is managed from then on; a replacement
(a new URL for the same file name) deletes before it creates, so the old
resource's delete can never remove the new file; and ``pulumi destroy`` keeps
the file, which other VMs or stacks may still use.
"""

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
            overwrite_unmanaged=True,
            upload_timeout=DOWNLOAD_TIMEOUT_SECONDS,
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True, retain_on_delete=True),
        )
        self.download = download
        self.volume_id = download.id
        self.register_outputs({"volumeId": self.volume_id})
