"""``importFrom.path``: the runner uploads the qcow2 from this machine to the storage's ``import`` directory.

What Proxmox does with the upload, read from its sources (docs/verified-against.md):

- pve-storage ``src/PVE/API2/Storage/Status.pm`` (tag 9.1.7, commit 0c56bad8), ``upload``: POST
  ``/nodes/{node}/storage/{storage}/upload`` needs Datastore.AllocateTemplate on the storage; content ``import``
  takes ``.qcow2`` since libpve-storage-perl 8.3.6 (commit 76f695f2, PVE 8.4). Its worker checks ``checksum`` with
  ``checksum-algorithm`` ("checksum mismatch: got '…' != expect '…'"), reads the image as untrusted, then copies
  it to the storage, overwriting a file of the same name: hence the on-storage check first.
- pve-http-server ``src/PVE/APIServer/AnyEvent.pm`` (6.0.5, commit 5c9e4ea7), ``file_upload_multipart``: pveproxy
  needs a Content-Length and ``multipart/form-data``; it reads the fields ``content``, ``checksum-algorithm`` and
  ``checksum`` in that order, then the file part, which must be named ``filename`` and whose ``filename="…"`` is the
  name on the storage; it writes the file to ``/var/tmp/pveupload-<hex>`` and passes that as ``tmpfilename``,
  a parameter a client may not send.
- proxmoxer 2.3.0 ``proxmoxer/backends/https.py``: a file object among the parameters goes as a multipart part
  named after the parameter, with ``requests.utils.guess_filename`` (its ``name``) as the file name; over
  10 MiB it is streamed with requests-toolbelt's MultipartEncoder if that is installed, otherwise requests reads
  the whole file into memory (and proxmoxer refuses it over 2 GiB). requests-toolbelt is a requirement, and the
  upload refuses to start without it rather than read gigabytes into memory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from homelab_images.contract.build_spec import ImportSource
from homelab_images.runner import tasks
from homelab_images.runner.console import Console
from homelab_images.runner.errors import RunnerError
from homelab_images.runner.proxmox import ApiError, Kind
from homelab_images.runner.runner import Context

IMPORT_CONTENT = "import"
PATH_KEY = "homelab-images:images[].importFrom.path"
SHA256_KEY = "homelab-images:images[].importFrom.sha256"
ISO_STORAGE_KEY = "homelab-images:proxmox.isoStorage"
# proxmoxer 2.3.0 backends/https.py STREAMING_SIZE_THRESHOLD: above it a file is streamed only with requests-toolbelt.
STREAMING_THRESHOLD = 10 * 1024 * 1024
GIB = 1024**3
MIB = 1024**2
# A progress line per tenth of the file, and never more often than this (a fast link would flood the output).
PROGRESS_STEPS = 10
PROGRESS_MIN_SECONDS = 2.0


def _size(size: int) -> str:
    return f"{size / GIB:.2f} GiB" if size >= GIB else f"{size / MIB:.1f} MiB"


class Progress:
    """Reports how much of the file has been read for sending, a line per tenth of it."""

    def __init__(self, console: Console, total: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.total = total
        self.clock = clock
        self.started = clock()
        self.last_step = 0
        self.last_time = self.started

    def __call__(self, done: int) -> None:
        if self.total <= 0:
            return
        step = min(done * PROGRESS_STEPS // self.total, PROGRESS_STEPS)
        now = self.clock()
        if step <= self.last_step or (step < PROGRESS_STEPS and now - self.last_time < PROGRESS_MIN_SECONDS):
            return
        self.last_step, self.last_time = step, now
        rate = done / max(now - self.started, 1e-6) / MIB
        self.console.still(
            f"upload {step * 100 // PROGRESS_STEPS}% ({_size(done)} of {_size(self.total)}, {rate:.0f} MiB/s)"
        )


class UploadFile(io.FileIO):
    """The local qcow2 as proxmoxer sends it: named as on the storage, reporting each read.

    proxmoxer takes the multipart file name from ``name`` (guess_filename), and PVE stores the upload
    under that name; the local file keeps its own.
    """

    def __init__(self, path: Path, stored_name: str, progress: Callable[[int], None]) -> None:
        super().__init__(path, "rb")
        self.name = stored_name
        self._progress = progress

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if data:
            self._progress(self.tell())
        return data or b""


def local_file(cwd: Path, source: ImportSource) -> Path:
    """importFrom.path as configured: relative to the project directory, the runner's working directory."""
    path = (cwd / str(source.path)).resolve()
    if not path.is_file():
        raise RunnerError(
            f"the qcow2 {source.path} does not exist ({path} is {'a directory' if path.is_dir() else 'missing'})",
            PATH_KEY,
            "build it with the qemu target first (it leaves build.artifactDir/<image>/<dir>/<file>.qcow2), "
            "copy it to this machine, or point importFrom.path at it (relative to the project directory)",
        )
    return path


def check_sha256(path: Path, expected: str, console: Console) -> None:
    console.stage(f"checking the sha256 of {path} ({_size(path.stat().st_size)}) before uploading it")
    with path.open("rb") as handle:
        got = hashlib.file_digest(handle, "sha256").hexdigest()
    if got != expected:
        raise RunnerError(
            f"{path} has sha256 {got} but importFrom.sha256 is {expected}; nothing was uploaded",
            SHA256_KEY,
            "set importFrom.sha256 to this file's sha256 if it is the qcow2 you mean (the qemu build records it: "
            "artifacts.<image>.qemu.sha256, and <file>.sha256 next to the file), or point importFrom.path at "
            "the file that sha256 belongs to",
        )


def _require_streaming(size: int) -> None:
    if size > STREAMING_THRESHOLD and importlib.util.find_spec("requests_toolbelt") is None:
        raise RunnerError(
            f"uploading a {_size(size)} file needs requests-toolbelt, which is not installed "
            "(without it proxmoxer reads the whole file into memory)",
            "the runner's Python environment",
            "install the project's requirements (`make render` or pip install -r requirements.txt)",
        )


def upload_to_storage(ctx: Context, source: ImportSource, volume: str, timeout: float) -> None:
    """Check the local file against importFrom.sha256, then upload it; Proxmox checks the sha256 again."""
    spec, console = ctx.spec, ctx.console
    path = local_file(ctx.cwd, source)
    check_sha256(path, source.sha256, console)
    size = path.stat().st_size
    _require_streaming(size)
    console.stage(f"upload of {path} ({_size(size)}) to {volume}, checked against its sha256 by Proxmox")
    storage = ctx.api.nodes(spec.node).storage(spec.iso_storage)

    def start() -> Any:
        # A new handle per attempt: a retried upload starts again at the first byte.
        with UploadFile(path, source.file_name, Progress(console, size)) as handle:
            # pveproxy reads content, checksum-algorithm, checksum in this order, then the file (see above).
            return storage.upload.post(
                content=IMPORT_CONTENT,
                **{"checksum-algorithm": "sha256"},
                checksum=source.sha256,
                filename=handle,
            )

    where = f"upload of {path} to storage {spec.iso_storage} on {spec.node}"
    try:
        ctx.retry(lambda: tasks.run(ctx.api, spec.node, start, timeout), where)
    except ApiError as error:
        raise _explained(error, path) from None


def _explained(error: ApiError, path: Path) -> RunnerError | ApiError:
    message = error.message.strip()
    if error.kind is not Kind.OTHER:
        return error
    if "checksum mismatch" in message:
        return RunnerError(
            f"Proxmox computed another sha256 for the uploaded {path} than importFrom.sha256 ({message}); "
            "the file changed during the upload or was damaged on the way",
            SHA256_KEY,
            "check that nothing rewrites the file and run again; the upload is checked again from the start",
        )
    if "does not support 'import' content" in message:
        return RunnerError(
            f"Proxmox refused the upload ({message})",
            ISO_STORAGE_KEY,
            "add 'import' to the storage's content types (pvesm set <storage> --content iso,import,...)",
        )
    if "invalid filename or wrong extension" in message or "not allowed" in message:
        return RunnerError(
            f"Proxmox refused the upload of a qcow2 for import ({message})",
            PATH_KEY,
            "importing a .qcow2 needs Proxmox VE 8.4 or later (libpve-storage-perl 8.3.6): upgrade the node",
        )
    return RunnerError(
        f"Proxmox refused the upload ({message})",
        PATH_KEY,
        "check that the file is a qcow2 image (qemu-img info) and that the storage has room, then run again",
    )
