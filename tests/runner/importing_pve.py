"""fakepve taught PVE's import rules (PVE 8.4+), which fakepve 0.5.0 does not follow.

fakepve 0.5.0's schema allows content ``import`` and a drive's ``import-from``, but its
download-url never fetches the URL nor checks the checksum, and its create keeps
``import-from`` in the VM config instead of importing the disk. ``ImportingPve`` stands in
for what Proxmox does, read from its sources (no Proxmox can run here):

- pve-storage ``src/PVE/API2/Storage/Status.pm`` (tag 9.1.7, commit 0c56bad8b2a7d69e5ce2c243651fe830d6caa936),
  download_url: permission Datastore.AllocateTemplate on the storage and Sys.Audit + Sys.Modify on ``/`` or
  Sys.AccessNetwork on the node; "can't upload to storage type '...', not a file based storage!"; "storage '...'
  is not configured for content-type '...'"; an import file name must match SAFE_CHAR_CLASS_RE +
  UPLOAD_IMPORT_EXT_RE_1 (``src/PVE/Storage.pm``: ``.ova|.qcow2|.raw|.vmdk``), else "invalid filename or wrong
  extension"; "decompression not supported for import"; the worker fetches the URL and dies with "checksum
  mismatch: got '...' != expect '...'" when the sha256 differs; a file that exists is refused ("refusing to
  override existing file", as in tests/download_file.py).
- the same file, upload (``importFrom.path``): Datastore.AllocateTemplate on the storage; content ``import`` takes
  ``.qcow2`` since libpve-storage-perl 8.3.6 (commit 76f695f2); the file name is normalized
  (``normalize_content_filename``, src/PVE/Storage.pm) then must match SAFE_CHAR_CLASS_RE + UPLOAD_IMPORT_EXT_RE_1,
  else "invalid filename or wrong extension"; "can't upload to storage type '...'" without a path; "storage '...'
  does not support 'import' content"; the worker (task ``imgcopy``) checks the checksum ("checksum mismatch: got
  '...' != expect '...'") and reads the image as untrusted before copying it. PVE overwrites a file of the same
  name ("we simply overwrite the destination file"); the stand-in refuses instead, so a run that would clobber a
  file it found there fails here.
- pve-http-server ``src/PVE/APIServer/AnyEvent.pm`` (6.0.5, commit 5c9e4ea773364bdb7ae0e2faec5750fe58129a47), how
  pveproxy takes an upload: "upload without content length header not supported"; only ``multipart/form-data``;
  "'tmpfilename' query parameter is not allowed for file uploads"; file_upload_multipart reads the fields
  ``content``, ``checksum-algorithm``, ``checksum`` in this order (its non-greedy match would swallow a field sent
  out of order, so the stand-in refuses one), then the file part, "wrong field name '...' for file upload, expected
  'filename'", whose ``filename="..."`` becomes the ``filename`` parameter; a part that is not ``form-data`` is
  refused ("wrong Content-Disposition").
- qemu-server ``src/PVE/API2/Qemu.pm`` (tag 9.2.6, commit e6352be67f70042a7433a3a3c712b36d02f9f7cb):
  check_drive_param: "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>";
  the source "has wrong type '...' - needs to be 'images' or 'import'"; create_disks: ``delete
  $disk->{'import-from'}``, then the source is copied into a new volume of the VM on the target storage.

Stricter than PVE where that is cheap: an import-from source that is not on its storage, or a source
storage whose content list lacks its type, is refused before the task starts (PVE fails in the task).
The download reads the URL with the test's CA (the file server of the test) and keeps only its size.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import ssl
import urllib.request
from typing import Any

from fakepve.lxc import format_size
from fakepve.model import PveError, TaskError
from fakepve.qemu import join_drive, split_drive
from fakepve.routing import die, param_error, split_list
from fakepve.server import USER, FakePve, ok, params

# pve-storage src/PVE/Storage.pm: SAFE_CHAR_CLASS_RE and UPLOAD_IMPORT_EXT_RE_1.
IMPORT_FILE = re.compile(r"^[-_.a-zA-Z0-9]+\.(ova|qcow2|raw|vmdk)$")
# Status.pm upload matches the normalized name without a leading anchor: m!SAFE_CHAR_CLASS_RE+UPLOAD_IMPORT_EXT_RE_1$!
UPLOAD_IMPORT_FILE = re.compile(r"[a-zA-Z0-9\-.+=_]+\.(ova|qcow2|raw|vmdk)$")
QCOW2_MAGIC = b"QFI\xfb"
NEW_DISK_ZERO = re.compile(r"^([^/:\s]+):0$")
# pve-http-server AnyEvent.pm file_upload_multipart: the text fields it reads, in the order it reads them.
UPLOAD_FIELDS = ("content", "checksum-algorithm", "checksum")
DISPOSITION = re.compile(
    r'^Content-Disposition: (?P<kind>[^;]*); name="(?P<name>[^"]*)"(?:; filename="(?P<file>[^"]+)")?'
)


def normalize_content_filename(name: str) -> str:
    """pve-storage src/PVE/Storage.pm normalize_content_filename."""
    name = name.rstrip("\n")
    name = re.sub(r"^.*[/\\]", "", name)
    return re.sub(r"[^a-zA-Z0-9_.-]", "_", name)


def multipart_upload(content_type: str, length: str | None, body: bytes) -> dict[str, Any]:
    """The upload's parameters as pveproxy hands them on (``data`` is the file), or its refusal."""
    if not length:
        raise PveError(500, "upload without content length header not supported")
    kind, _, rest = content_type.partition(";")
    boundary = rest.strip().removeprefix("boundary=").strip('"')
    if kind.strip() != "multipart/form-data" or not rest.strip().startswith("boundary="):
        raise PveError(500, f"upload 'Content-Type '{content_type}' not implemented")
    fields: dict[str, Any] = {}
    expected = list(UPLOAD_FIELDS)
    for part in body.split(b"--" + boundary.encode())[1:-1]:
        head, _, data = part[2:-2].partition(b"\r\n\r\n")
        match = DISPOSITION.match(head.decode("utf-8", "replace").split("\r\n")[0])
        if match is None:
            raise PveError(500, "upload failed")
        if match["kind"] != "form-data":
            raise PveError(500, f"wrong Content-Disposition '{match['kind']}' in multipart, expected 'form-data'")
        if "data" in fields:
            raise PveError(500, "stand-in: a part after the file is never read by pveproxy")
        if match["file"] is not None:
            if match["name"] != "filename":
                raise PveError(500, f"wrong field name '{match['name']}' for file upload, expected 'filename'")
            fields["filename"], fields["data"] = match["file"].strip(), data
            continue
        if match["name"] not in expected:
            raise PveError(
                500, f"stand-in: pveproxy reads {', '.join(UPLOAD_FIELDS)} in this order; got {match['name']!r}"
            )
        del expected[: expected.index(match["name"]) + 1]
        fields[match["name"]] = data.decode().strip()
    if "data" not in fields:
        raise PveError(500, "upload failed")
    return fields


class ImportingPve(FakePve):  # type: ignore[misc]
    """A FakePve that downloads with content import and imports ``import-from`` disks as PVE does."""

    cafile: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.virtual_sizes: dict[str, int] = {}

    def _fetch(self, url: str) -> bytes:
        context = ssl.create_default_context(cafile=self.cafile)
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            data: bytes = response.read()
            return data

    async def _download_url(self, request: Any) -> Any:
        p = await params(request)
        if p.get("content") != "import":
            return await super()._download_url(request)
        name = request.match_info["storage"]
        node = request.match_info["node"]
        store = self._active_store(name, node)
        user = request[USER]
        self.require(user, "/storage/" + name, "Datastore.AllocateTemplate")
        if not (
            (self.allowed(user, "/", "Sys.Audit") and self.allowed(user, "/", "Sys.Modify"))
            or self.allowed(user, "/nodes/" + node, "Sys.AccessNetwork")
        ):
            raise PveError(403, "Permission check failed")
        p = self._verify(request, p)
        if not store.get("path") and store.get("type") not in ("dir", "nfs", "cifs", "btrfs", "cephfs"):
            raise die("can't upload to storage type '{}', not a file based storage!".format(store.get("type")))
        if "import" not in split_list(store.get("content")):
            raise die(f"storage '{name}' is not configured for content-type 'import'")
        filename = str(p["filename"])
        if not IMPORT_FILE.match(filename):
            raise PveError(400, "Parameter verification failed.", {"filename": "invalid filename or wrong extension"})
        if p.get("compression"):
            raise die("decompression not supported for import")
        if "import/" + filename in store.get("volumes", {}):
            raise die(f"refusing to override existing file '{filename}'")
        url, expected = str(p["url"]), p.get("checksum")

        async def body() -> None:
            data = await asyncio.to_thread(self._fetch, url)
            if expected is not None:
                got = hashlib.sha256(data).hexdigest()
                if got != str(expected).lower():
                    raise TaskError(f"checksum mismatch: got '{got}' != expect '{expected}'")
            self._store_import(name, filename, data)

        return ok(await self.task(node, "download", name, user, body, log=[f"downloading {url}"]))

    async def _upload(self, request: Any) -> Any:
        if "tmpfilename" in request.query:
            raise PveError(500, "'tmpfilename' query parameter is not allowed for file uploads")
        body = await request.read()
        fields = multipart_upload(request.headers.get("Content-Type", ""), request.headers.get("Content-Length"), body)
        if fields.get("content") != "import":
            return await super()._upload(request)
        data: bytes = fields.pop("data")
        name = request.match_info["storage"]
        node = request.match_info["node"]
        user = request[USER]
        self.require(user, "/storage/" + name, "Datastore.AllocateTemplate")
        fields = self._verify(request, fields)
        store = self._active_store(name, node)
        if not store.get("path") and store.get("type") not in ("dir", "nfs", "cifs", "btrfs", "cephfs"):
            raise die("can't upload to storage type '{}'".format(store.get("type")))
        filename = normalize_content_filename(str(fields["filename"]))
        if not UPLOAD_IMPORT_FILE.search(filename):
            raise PveError(400, "Parameter verification failed.", {"filename": "invalid filename or wrong extension"})
        if "import" not in split_list(store.get("content")):
            raise die(f"storage '{name}' does not support 'import' content")
        if "import/" + filename in store.get("volumes", {}):
            raise die(f"stand-in: refusing to overwrite existing file '{filename}' (PVE would overwrite it)")
        self.uploaded = {**fields, "size": len(data)}
        expected = fields.get("checksum")

        async def body_() -> None:
            if expected is not None:
                got = hashlib.new(str(fields["checksum-algorithm"]), data).hexdigest()
                if got != str(expected).lower():
                    raise TaskError(f"checksum mismatch: got '{got}' != expect '{expected}'")
            self._store_import(name, filename, data)

        return ok(await self.task(node, "imgcopy", "", user, body_, log=[f"target file: import/{filename}"]))

    def _store_import(self, storage: str, filename: str, data: bytes) -> None:
        if filename.endswith(".qcow2") and not data.startswith(QCOW2_MAGIC):
            # PVE reads an untrusted image with qemu-img (file_size_info, untrusted) and fails; this wording
            # is the stand-in's own.
            raise TaskError(f"file '{filename}' is not a qcow2 image")
        self.store_file(storage, filename, len(data), "import")
        # The disk made from it gets the image's virtual size: qcow2 header, bytes 24-31, big-endian.
        self.virtual_sizes[f"{storage}:import/{filename}"] = int.from_bytes(data[24:32], "big")

    def _import_source(self, key: str, source: str) -> tuple[str, str, dict[str, Any]]:
        """(storage, content type, volume) of an import-from source, or PVE's refusal."""
        sid, colon, volname = source.partition(":")
        if not colon:
            raise param_error(**{key: "import-from of a path needs root@pam; use a volume ID"})
        store = self._store(sid)
        vtype, _owner, _fmt = self._parse_volname(store, volname)
        if vtype not in ("images", "import"):
            raise param_error(**{key: f"{source} has wrong type '{vtype}' - needs to be 'images' or 'import'"})
        if vtype not in split_list(store.get("content")):
            raise die(f"storage '{sid}' does not support content type '{vtype}'")
        volume = self._volumes(sid).get(volname)
        if volume is None:
            raise die(f"volume '{source}' does not exist")
        return sid, vtype, dict(volume)

    def _qm_check_drive(self, user: str, vmid: int, pool: Any, key: str, value: str, default: Any) -> None:
        volume, props = split_drive(value)
        source = dict(props).get("import-from")
        if source is None:
            super()._qm_check_drive(user, vmid, pool, key, value, default)
            return
        target = NEW_DISK_ZERO.match(volume)
        if not target:
            raise param_error(
                **{key: "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>"}
            )
        self._qm_image_store(target.group(1), user)
        sid, vtype, _volume = self._import_source(key, source)
        self._check_access(user, sid, vtype, None, source)

    def _qm_new_drive(self, vmid: int, key: str, value: str, default: Any) -> tuple[str, list[str]]:
        volume, props = split_drive(value)
        props = dict(props)
        source = props.pop("import-from", None)
        if source is None:
            result: tuple[str, list[str]] = super()._qm_new_drive(vmid, key, value, default)
            return result
        stored = int(self._import_source(key, source)[2].get("size") or 0)
        size = self.virtual_sizes.get(source, stored)
        sid = NEW_DISK_ZERO.match(volume).group(1)  # type: ignore[union-attr]  # checked before the task
        volid, _fmt = self._qm_alloc(sid, vmid, props.pop("format", None), size)
        props["size"] = format_size(size)
        return join_drive(volid, props), [volid]
