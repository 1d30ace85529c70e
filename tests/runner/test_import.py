"""importFrom: a template imported from the qemu target's qcow2 on Proxmox, without Packer.

Runs the runner as pulumi-command does (tests/engine.py) against ``ImportingPve``: fakepve
with PVE's download-url and import-from rules (tests/runner/importing_pve.py), and the qcow2
served over https on 127.0.0.1 with the fake's certificate.
"""

from __future__ import annotations

import hashlib
import http.server
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fakepve.pytest_plugin import _Serving
from proxmoxer.core import ResourceException

from homelab_images.contract.build_spec import BuildSpec, ImportSource
from homelab_images.contract.fingerprint_parts import ARTIFACT_PART
from homelab_images.contract.ownership import (
    OWNER_TAG,
    PENDING_TAG,
    SUPERSEDED_TAG,
    OwnerKey,
    fingerprint_tag,
    image_tag,
)
from tests.runner.conftest import OWNER_KEY, Runner, tags_of, vms
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
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return f"https://127.0.0.1:{self.server.server_port}{path}"


@pytest.fixture
def files(_fakepve_pki: tuple[str, str]) -> Iterator[FileServer]:
    server = FileServer(*_fakepve_pki)
    yield server
    server.server.shutdown()


def importing(spec: BuildSpec, url: str, sha256: str) -> BuildSpec:
    """The spec the planner makes for an image with importFrom (see tests/core for the planner's side)."""
    return spec.replace(
        fingerprint=hashlib.sha256((spec.fingerprint + sha256).encode()).hexdigest(),
        fingerprint_parts={**spec.fingerprint_parts, ARTIFACT_PART: sha256},
        import_from=ImportSource(
            url=url,
            sha256=sha256,
            file_name=f"{spec.template_name}-{sha256[:12]}.qcow2",
            firmware="ovmf",
            machine="q35",
            cpu_type="x86-64-v2-AES",
            cores=2,
            memory_mib=4096,
            disk_bus="scsi",
            scsi_controller="virtio-scsi-single",
        ),
    )


def allow_import(pve: Any, storage: str = "local") -> None:
    pve.storages[storage]["content"] += ",import"


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
    stored = root.nodes("pve1").storage("local").content.get(content="import")
    assert [item["volid"] for item in stored] == [f"local:import/{spec.import_from.file_name}"]  # type: ignore[union-attr]
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
