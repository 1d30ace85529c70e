"""importFrom: a template imported from the qemu target's qcow2 on Proxmox, without Packer.

Runs the runner as pulumi-command does (tests/engine.py) against ``ImportingPve``: fakepve
with PVE's download-url, upload and import-from rules (tests/runner/importing_pve.py), and the
qcow2 served over https on 127.0.0.1 with the fake's certificate (url) or in a local file (path).
Where the command line adds nothing, the upload runs in-process against the same stand-in.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import requests
from fakepve.pytest_plugin import _Serving
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

from homelab_images.contract.build_spec import BuildSpec, ImportSource
from homelab_images.contract.ownership import (
    OWNER_TAG,
    PENDING_TAG,
    SUPERSEDED_TAG,
    OwnerKey,
    fingerprint_tag,
    image_tag,
)
from homelab_images.core.fingerprint import combine, import_parts
from homelab_images.core.plan import IMPORT_FILE_FIELDS
from homelab_images.runner.artifact_import import fetch_to_storage
from homelab_images.runner.artifact_upload import STREAMING_THRESHOLD, local_file
from homelab_images.runner.console import Console
from homelab_images.runner.errors import RunnerError
from homelab_images.runner.preflight import IMPORT_ISO_STORAGE_PRIVILEGES
from homelab_images.runner.proxmox import Retrier
from homelab_images.runner.runner import Context
from tests.runner.conftest import OWNER_KEY, REPO, SECRET, TOKEN_ID, Runner, shipped_spec, tags_of, vms
from tests.runner.importing_pve import QCOW2_MAGIC, ImportingPve

# A qcow2 header (version 3) of a 32 GiB disk: the stand-in reads the virtual size at bytes 24-31.
HEADER = QCOW2_MAGIC + (3).to_bytes(4, "big") + bytes(16) + (32 * 1024**3).to_bytes(8, "big")
QCOW2 = HEADER + bytes(4096)
OTHER_QCOW2 = HEADER + b"\x01" * 4096


@pytest.fixture
def fakepve(_fakepve_pki: tuple[str, str], fakepve_cafile: str) -> Iterator[ImportingPve]:
    """The plugin's fakepve fixture, serving ``ImportingPve`` instead of a plain FakePve."""
    pve = ImportingPve(user="root@pam", password="secret", host="127.0.0.1", port=0)
    pve.time_scale = 0
    pve.cafile = fakepve_cafile
    serving = _Serving(pve, *_fakepve_pki)
    try:
        yield pve
    finally:
        serving.stop()


class FileServer:
    """Serves files by path over https on 127.0.0.1, with the certificate fakepve uses."""

    def __init__(self, certfile: str, keyfile: str) -> None:
        self.files: dict[str, bytes] = {}
        files = self.files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        # shutdown() returns at serve_forever's next poll (default: half a second of each test's teardown).
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def serve(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return f"https://127.0.0.1:{self.server.server_port}{path}"


@pytest.fixture
def files(_fakepve_pki: tuple[str, str]) -> Iterator[FileServer]:
    server = FileServer(*_fakepve_pki)
    yield server
    server.server.shutdown()


def importing(spec: BuildSpec, url: str | None, sha256: str, path: str | None = None) -> BuildSpec:
    """The spec the planner makes for an image with importFrom (see tests/core for the planner's side)."""
    source = ImportSource(
        url=url,
        path=path,
        sha256=sha256,
        file_name=f"{spec.template_name}-{sha256[:12]}.qcow2",
        firmware="ovmf",
        machine="q35",
        cpu_type="x86-64-v2-AES",
        cores=2,
        memory_mib=4096,
        disk_bus="scsi",
        scsi_controller="virtio-scsi-single",
    )
    parts = import_parts(sha256, source.model_dump(exclude=IMPORT_FILE_FIELDS), spec.k3s_version)
    return spec.replace(fingerprint=combine(parts), fingerprint_parts=parts, import_from=source)


def allow_import(pve: Any, storage: str = "local") -> None:
    """Content import on the storage, and the privilege the documented role adds for importFrom."""
    pve.storages[storage]["content"] += ",import"
    pve.grant(TOKEN_ID, f"/storage/{storage}", *IMPORT_ISO_STORAGE_PRIVILEGES)


def import_files(pve: Any, storage: str = "local") -> list[str]:
    return sorted(name for name in pve.storages[storage].get("volumes", {}) if name.startswith("import/"))


def test_import_makes_a_verified_tagged_template_without_packer(
    runner: Runner, pve: Any, files: FileServer, root: Any
) -> None:
    allow_import(pve)
    url = files.serve("/images/alma9-k3s.qcow2", QCOW2)
    spec = importing(runner.spec, url, hashlib.sha256(QCOW2).hexdigest())
    step = runner.up(spec)
    run = step.run
    assert run.returncode == 0, run.stderr
    assert runner.packer_calls(with_version=True) == [], "an import runs no Packer"
    result = run.result
    assert (result["name"], result["fingerprint"], result["version"]) == (
        spec.template_name,
        spec.fingerprint,
        spec.version,
    )
    vm = vms(pve)[result["vmId"]]
    assert vm.template and vm.name == spec.template_name
    tags = tags_of(vm)
    assert {OWNER_TAG, image_tag(spec.image), fingerprint_tag(spec.fingerprint)} <= tags
    assert PENDING_TAG not in tags, "verified: no longer a build in progress"
    assert OwnerKey(OWNER_KEY.encode()).owns(result["vmId"], "pve1", tags), "owned by this stack's key, as built ones"
    assert f"fingerprint: {spec.fingerprint}" in vm.config["description"]
    disk = vm.config["scsi0"]
    assert "import-from" not in disk, "the disk was imported into a volume of its own"
    assert disk.startswith(f"local-lvm:base-{result['vmId']}-disk-"), disk
    assert "efidisk0" in vm.config and vm.config["bios"] == "ovmf"
    assert root.nodes("pve1").storage("local").content.get(content="import") == [], (
        "the file this run downloaded is removed once the template's disk is a copy of it"
    )
    assert f"removed local:import/{spec.import_from.file_name}" in run.stderr  # type: ignore[union-attr]
    assert result["smoke"]["passed"], "the imported template passes the same smoke test as a built one"


def test_imported_template_is_replaced_and_retired_like_a_built_one(
    runner: Runner, pve: Any, files: FileServer
) -> None:
    allow_import(pve)
    first_spec = importing(runner.spec, files.serve("/a.qcow2", QCOW2), hashlib.sha256(QCOW2).hexdigest())
    first = runner.up(first_spec).run
    assert first.returncode == 0, first.stderr
    assert runner.up(first_spec).operation == "same", "the same qcow2 is not imported again"

    new_sha = hashlib.sha256(OTHER_QCOW2).hexdigest()
    second_spec = importing(runner.spec, files.serve("/b.qcow2", OTHER_QCOW2), new_sha)
    replaced = runner.up(second_spec)
    assert replaced.operation == "replace", "a new qcow2 is a new template"
    second = replaced.run
    assert second.returncode == 0, second.stderr
    old_id, new_id = first.result["vmId"], second.result["vmId"]
    assert [r["vmId"] for r in second.result["retained"]] == [old_id]
    assert replaced.deleted is not None and replaced.deleted.returncode == 0, replaced.deleted.stderr
    assert SUPERSEDED_TAG in tags_of(vms(pve)[old_id]), "retainPrevious=1 keeps it for rollback"
    assert SUPERSEDED_TAG not in tags_of(vms(pve)[new_id])

    destroyed = runner.destroy()
    assert destroyed.ok
    assert new_id not in vms(pve), "destroy retires the imported template"


def test_wrong_sha256_fails_with_the_key_to_fix_and_leaves_nothing(runner: Runner, pve: Any, files: FileServer) -> None:
    allow_import(pve)
    spec = importing(runner.spec, files.serve("/a.qcow2", QCOW2), "0" * 64)
    run = runner.up(spec).run
    assert run.returncode != 0
    assert "does not match importFrom.sha256" in run.stderr
    assert "homelab-images:images[].importFrom.sha256" in run.stderr
    assert "checksum mismatch" in run.stderr
    assert "Traceback" not in run.stderr
    assert vms(pve) == {}
    assert "volumes" not in pve.storages["local"] or not any(
        name.startswith("import/") for name in pve.storages["local"]["volumes"]
    )


def test_storage_without_import_content_is_refused_before_downloading(
    runner: Runner, pve: Any, files: FileServer
) -> None:
    pve.grant(TOKEN_ID, "/storage/local", *IMPORT_ISO_STORAGE_PRIVILEGES)
    spec = importing(runner.spec, files.serve("/a.qcow2", QCOW2), hashlib.sha256(QCOW2).hexdigest())
    run = runner.up(spec).run
    assert run.returncode != 0
    assert "storage local does not hold content type 'import'" in run.stderr
    assert "homelab-images:proxmox.isoStorage" in run.stderr
    assert "Traceback" not in run.stderr
    assert vms(pve) == {}


def test_stand_in_refuses_what_pve_refuses(pve: Any, root: Any, files: FileServer) -> None:
    node = root.nodes("pve1")
    url = files.serve("/a.qcow2", QCOW2)
    with pytest.raises(ResourceException, match="not configured for content-type 'import'"):
        node.storage("local")("download-url").post(content="import", filename="a.qcow2", url=url)
    with pytest.raises(ResourceException, match="does not support content type 'import'"):
        node.qemu.post(vmid=199, scsi0="local-lvm:0,import-from=local:import/a.qcow2")
    allow_import(pve)
    with pytest.raises(ResourceException, match="invalid filename or wrong extension"):
        node.storage("local")("download-url").post(content="import", filename="a.qcow2.gz", url=url)
    with pytest.raises(ResourceException, match="does not exist"):
        node.qemu.post(vmid=200, scsi0="local-lvm:0,import-from=local:import/missing.qcow2")
    with pytest.raises(ResourceException, match="requires special syntax"):
        node.qemu.post(vmid=201, scsi0="local-lvm:8,import-from=local:import/missing.qcow2")
    with pytest.raises(ResourceException, match="wrong type 'iso'"):
        node.qemu.post(vmid=202, scsi0="local-lvm:0,import-from=local:iso/AlmaLinux-9.7-x86_64-boot.iso")


# ---------------------------------------------------------------- importFrom.path: the runner uploads the file


def test_local_path_import_uploads_verifies_and_removes_its_upload(runner: Runner, pve: Any, tmp_path: Path) -> None:
    allow_import(pve)
    artifact = tmp_path / "artifacts" / "alma9-k3s" / "v1-abc" / "alma9-k3s-node-amd64-v1.0.0.qcow2"
    artifact.parent.mkdir(parents=True)
    artifact.write_bytes(QCOW2)
    # Relative to the project directory, where pulumi-command runs the runner.
    relative = os.path.relpath(artifact, REPO)
    spec = importing(runner.spec, None, hashlib.sha256(QCOW2).hexdigest(), path=relative)
    source = spec.import_from
    assert source is not None
    run = runner.up(spec).run
    assert run.returncode == 0, run.stderr
    assert runner.packer_calls(with_version=True) == []
    vm = vms(pve)[run.result["vmId"]]
    assert vm.template and vm.name == spec.template_name
    assert {OWNER_TAG, image_tag(spec.image), fingerprint_tag(spec.fingerprint)} <= tags_of(vm)
    assert OwnerKey(OWNER_KEY.encode()).owns(run.result["vmId"], "pve1", tags_of(vm))
    assert vm.config["scsi0"].startswith(f"local-lvm:base-{run.result['vmId']}-disk-")
    uploaded = pve.uploaded
    assert (uploaded["content"], uploaded["filename"], uploaded["size"]) == ("import", source.file_name, len(QCOW2))
    assert (uploaded["checksum-algorithm"], uploaded["checksum"]) == ("sha256", source.sha256), (
        "Proxmox checks the sha256 again on its side"
    )
    assert f"upload of {artifact}" in run.stderr
    assert import_files(pve) == [], "the upload is removed once the template's disk is a copy of it"
    assert SECRET not in run.stderr + run.stdout


def test_wrong_local_sha256_fails_before_any_upload_and_leaves_nothing(
    runner: Runner, pve: Any, tmp_path: Path
) -> None:
    allow_import(pve)
    artifact = tmp_path / "a.qcow2"
    artifact.write_bytes(QCOW2)
    wrong = "0" * 64
    run = runner.up(importing(runner.spec, None, wrong, path=str(artifact))).run
    assert run.returncode != 0
    (error,) = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert "homelab-images:images[].importFrom.sha256" in error
    assert str(artifact) in error and wrong in error and hashlib.sha256(QCOW2).hexdigest() in error
    assert "nothing was uploaded" in error
    assert "Traceback" not in run.stderr
    assert pve.uploaded is None, "nothing reached Proxmox"
    assert vms(pve) == {} and import_files(pve) == []


def test_a_file_already_on_storage_is_reused_and_left_there(runner: Runner, pve: Any, tmp_path: Path) -> None:
    """Its name carries the sha256 Proxmox checked when it was put there: no upload, and the local file
    is not even needed. A file the run found is never removed."""
    allow_import(pve)
    sha = hashlib.sha256(QCOW2).hexdigest()
    spec = importing(runner.spec, None, sha, path=str(tmp_path / "gone.qcow2"))
    assert spec.import_from is not None
    pve._store_import("local", spec.import_from.file_name, QCOW2)
    run = runner.up(spec).run
    assert run.returncode == 0, run.stderr
    assert "already on storage" in run.stderr
    assert pve.uploaded is None
    assert import_files(pve) == [f"import/{spec.import_from.file_name}"]


# In-process: the upload's own behaviour, where spawning the runner adds nothing.


def upload_context(pve: Any, cafile: str, spec: BuildSpec, cwd: Path) -> tuple[Context, io.StringIO]:
    stream = io.StringIO()
    console = Console(stream)
    api = ProxmoxAPI(
        "127.0.0.1",
        port=pve.port,
        user=TOKEN_ID.split("!")[0],
        token_name="build",
        token_value=SECRET,
        verify_ssl=cafile,
    )
    context = SimpleNamespace(spec=spec, console=console, api=api, retry=Retrier(console, base_seconds=0.01), cwd=cwd)
    return cast(Context, context), stream


def test_a_large_file_is_streamed_with_progress_lines(
    pve: Any, fakepve_cafile: str, runner: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over proxmoxer's 10 MiB threshold the file goes through requests-toolbelt's encoder, read in chunks."""
    import requests_toolbelt

    encoders: list[Any] = []

    class CountingEncoder(requests_toolbelt.MultipartEncoder):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            encoders.append(self)

    monkeypatch.setattr(requests_toolbelt, "MultipartEncoder", CountingEncoder)
    allow_import(pve)
    data = HEADER + bytes(STREAMING_THRESHOLD + 1024)
    (tmp_path / "big.qcow2").write_bytes(data)
    spec = importing(runner.spec, None, hashlib.sha256(data).hexdigest(), path="big.qcow2")
    ctx, stream = upload_context(pve, fakepve_cafile, spec, tmp_path)
    assert spec.import_from is not None
    assert fetch_to_storage(ctx, spec.import_from, 30) is True, "this run put it there"
    assert len(encoders) == 1, "streamed by requests-toolbelt, not read into memory by requests"
    progress = [line for line in stream.getvalue().splitlines() if "still: upload" in line]
    assert progress and progress[-1].endswith("MiB/s)") and "upload 100%" in progress[-1], stream.getvalue()
    assert pve.uploaded["size"] == len(data)
    assert import_files(pve) == [f"import/{spec.import_from.file_name}"]


def test_pve_refusing_the_upload_names_the_key_to_fix(
    pve: Any, fakepve_cafile: str, runner: Runner, tmp_path: Path
) -> None:
    """A storage without content import (preflight stops that earlier; here Proxmox itself refuses)."""
    pve.grant(TOKEN_ID, "/storage/local", *IMPORT_ISO_STORAGE_PRIVILEGES)
    (tmp_path / "a.qcow2").write_bytes(QCOW2)
    spec = importing(runner.spec, None, hashlib.sha256(QCOW2).hexdigest(), path="a.qcow2")
    ctx, _ = upload_context(pve, fakepve_cafile, spec, tmp_path)
    assert spec.import_from is not None
    with pytest.raises(RunnerError) as raised:
        fetch_to_storage(ctx, spec.import_from, 30)
    assert raised.value.where == "homelab-images:proxmox.isoStorage"
    assert "does not support 'import' content" in raised.value.what


def test_a_missing_local_file_names_the_key_and_what_to_do(tmp_path: Path) -> None:
    source = importing(shipped_spec(), None, "a" * 64, path="artifacts/x/y/missing.qcow2").import_from
    assert source is not None
    with pytest.raises(RunnerError) as raised:
        local_file(tmp_path, source)
    error = raised.value
    assert error.where == "homelab-images:images[].importFrom.path"
    assert "artifacts/x/y/missing.qcow2 does not exist" in error.what and str(tmp_path) in error.what
    assert "qemu target" in error.todo


def test_stand_in_refuses_uploads_pve_refuses(pve: Any, root: Any, fakepve_cafile: str) -> None:
    storage = root.nodes("pve1").storage("local")
    sha = hashlib.sha256(QCOW2).hexdigest()

    def upload(name: str = "a.qcow2", data: bytes = QCOW2, checksum: str = sha) -> Any:
        handle = io.BytesIO(data)
        handle.name = name
        return storage.upload.post(
            content="import", **{"checksum-algorithm": "sha256"}, checksum=checksum, filename=handle
        )

    with pytest.raises(ResourceException, match="does not support 'import' content"):
        upload()
    allow_import(pve)
    with pytest.raises(ResourceException, match="invalid filename or wrong extension"):
        upload("a.qcow2.gz")
    failed = upload(checksum="0" * 64)
    status = root.nodes("pve1").tasks(failed).status.get()
    assert status["exitstatus"].startswith(f"checksum mismatch: got '{sha}' != expect '{'0' * 64}'")
    upload()
    with pytest.raises(ResourceException, match="refusing to overwrite"):
        upload()
    # pveproxy's multipart parser: fields in its order, the file part named filename, no tmpfilename.
    url = f"https://127.0.0.1:{pve.port}/api2/json/nodes/pve1/storage/local/upload"
    headers = {"Authorization": f"PVEAPIToken={TOKEN_ID}={SECRET}"}
    out_of_order = {"checksum": sha, "checksum-algorithm": "sha256", "content": "import"}
    for data, files, params, says in (
        (out_of_order, {"filename": ("b.qcow2", QCOW2)}, None, "in this order"),
        ({"content": "import"}, {"file": ("c.qcow2", QCOW2)}, None, "expected 'filename'"),
        ({"content": "import"}, {"filename": ("d.qcow2", QCOW2)}, {"tmpfilename": "/var/tmp/pveupload-0"}, "allowed"),
    ):
        answer = requests.post(url, data=data, files=files, params=params, headers=headers, verify=fakepve_cafile)
        assert answer.status_code == 500 and says in answer.reason, answer.reason
    token_without_template = "images@pve!narrow"
    pve.apitokens[token_without_template] = "narrow-secret"
    narrow = ProxmoxAPI(
        "127.0.0.1",
        port=pve.port,
        user="images@pve",
        token_name="narrow",
        token_value="narrow-secret",
        verify_ssl=fakepve_cafile,
    )
    with pytest.raises(ResourceException, match="Permission check failed"):
        handle = io.BytesIO(QCOW2)
        handle.name = "e.qcow2"
        narrow.nodes("pve1").storage("local").upload.post(content="import", filename=handle)
