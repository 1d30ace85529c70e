"""The stand-in packer's qemu builder, for tests. It is NOT Packer or QEMU: no VM ever runs.

It enforces what Packer's qemu builder (github.com/hashicorp/qemu, the version
in homelab_images.contract.qemu_plugin, read from hashicorp/packer-plugin-qemu
v1.1.4, commit 7db0aae19166404c9ba02771c1d0572d98159203) checks, in the order
it does, and leaves what it leaves, so the runner's qemu path is tested end to end:

* every option's name and type, and Config.Prepare's rules (source_problems,
  from builder/qemu/config.hcl2spec.go and config.go);
* output_directory must not exist (config.go Prepare, without -force);
* qemu_binary (default qemu-system-x86_64) must be on PATH (driver lookup);
  accelerator kvm needs /dev/kvm (QEMU fails to start the VM without it);
* the UEFI files must exist: step_prepare_efivars.go copies efi_firmware_vars to
  <output>/efivars.fd, and QEMU reads efi_firmware_code as pflash;
* the kickstart the VM would load carries the build's public key and the private
  key file matches it (what "Connected to SSH!" proves on a real build);
* provisioning scripts exist; shutdown; the disk is a real image made with
  qemu-img (Debian's qemu-utils): created at disk_size (step_create_disk.go),
  written to, then ``qemu-img convert [-c] -O <format>`` (step_convert_disk.go);
* the manifest post-processor lists every file of the output directory, minus
  efivars.fd with efi_drop_efivars (builder.go), builder_type "qemu";
* on failure or cancel, "Deleting output directory..." removes it
  (step_prepare_output_dir.go Cleanup).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from homelab_images.contract.qemu_plugin import PLUGIN_SOURCE, PLUGIN_VERSION
from homelab_images.core.qemu_plugin_check import source_problems

Say = Callable[[str], None]


class QemuBuildError(Exception):
    pass


def required_plugin_problem(template: dict[str, Any]) -> str | None:
    plugin = template.get("packer", {}).get("required_plugins", {}).get("qemu", {})
    if plugin.get("source") != PLUGIN_SOURCE:
        return f"the template does not require {PLUGIN_SOURCE}"
    if plugin.get("version") != f"= {PLUGIN_VERSION}":
        return f"this stand-in knows {PLUGIN_SOURCE} {PLUGIN_VERSION} only, the template pins {plugin.get('version')}"
    return None


def _run(*argv: str) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise QemuBuildError(f"{argv[0]} {argv[1]} failed: {done.stderr.strip()}")


def _kickstart(source: dict[str, Any]) -> str:
    return "".join(str(text) for text in {**source.get("http_content", {}), **source.get("cd_content", {})}.values())


def _manifest(directory: Path, post: dict[str, Any], name: str, output: Path, drop_efivars: bool) -> None:
    path = directory / str(post.get("output", "packer-manifest.json"))
    document: dict[str, Any] = {"builds": [], "last_run_uuid": ""}
    if path.exists():
        document = json.loads(path.read_text(encoding="utf-8"))
    files = [
        {"name": file.name if post.get("strip_path") else str(file), "size": file.stat().st_size}
        for file in sorted(output.iterdir())
        if not (drop_efivars and file.name == "efivars.fd")
    ]
    run_uuid = str(uuid.uuid4())
    document["builds"].append(
        {
            "name": name,
            "builder_type": "qemu",
            "build_time": int(time.time()),
            "files": files,
            "artifact_id": "VM",
            "packer_run_uuid": run_uuid,
            "custom_data": post.get("custom_data"),
        }
    )
    document["last_run_uuid"] = run_uuid
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")


def build(
    template_path: Path,
    template: dict[str, Any],
    source: dict[str, Any],
    name: str,
    force: bool,
    say: Say,
    check_ssh_key: Callable[[str, dict[str, Any]], None],
    cancelled: type[Exception],
) -> int:
    """``packer build`` of one resolved qemu source; returns the exit code."""
    build_name = f"qemu.{name}"

    def ui(text: str) -> None:
        say(f"==> {build_name}: {text}")

    problems = source_problems(source)
    output = Path(str(source.get("output_directory") or f"output-{name}"))
    if output.exists() and not force:
        problems.append(f"Output directory '{output}' already exists. It must not exist.")
    if problems:
        say(f"Error: {len(problems)} error(s) occurred:\n")
        for problem in problems:
            say(f"* {problem}")
        return 1
    created = False
    fail_at = os.environ.get("FAKE_PACKER_FAIL_AT")
    started = time.monotonic()
    try:
        binary = str(source.get("qemu_binary", "qemu-system-x86_64"))
        if shutil.which(binary) is None:
            raise QemuBuildError(f'Failed creating Qemu driver: exec: "{binary}": executable file not found in $PATH')
        ui("Retrieving ISO")
        ui(f"Using cached ISO for {source['iso_url']} ({source['iso_checksum']})")
        output.mkdir(parents=True)
        created = True
        ui("Creating required virtual machine disks")
        disk = output / str(source.get("vm_name", f"packer-{name}"))
        _run("qemu-img", "create", "-f", str(source.get("format", "qcow2")), str(disk), str(source["disk_size"]))
        if source.get("efi_boot") or source.get("efi_firmware_code") or source.get("efi_firmware_vars"):
            code = Path(str(source.get("efi_firmware_code", "/usr/share/OVMF/OVMF_CODE.fd")))
            variables = Path(str(source.get("efi_firmware_vars", "/usr/share/OVMF/OVMF_VARS.fd")))
            if not variables.is_file():
                raise QemuBuildError(f"failed to read from efivars file at {variables}")
            shutil.copyfile(variables, output / "efivars.fd")
            if not code.is_file():
                raise QemuBuildError(f"qemu: could not load PC BIOS '{code}'")
        if source.get("accelerator") == "kvm" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
            raise QemuBuildError("Error launching VM: Could not access KVM kernel module: No such file or directory")
        ui("Starting VM, booting from CD-ROM")
        ui(f"Waiting {source.get('boot_wait', '10s')} for boot...")
        ui("Typing the boot commands over VNC...")
        ui("Waiting for SSH to become available...")
        if os.environ.get("FAKE_PACKER_HANG") == "1":
            while True:
                time.sleep(0.05)
        check_ssh_key(_kickstart(source), source)
        ui("Connected to SSH!")
        # What the installer wrote: a real image holds data, not only zeroes.
        _run("qemu-io", "-f", str(source.get("format", "qcow2")), "-c", "write -P 0x5a 0 4M", str(disk))
        for provisioner in template.get("build", {}).get("provisioner", []):
            for kind, body in provisioner.items():
                for script in body.get("scripts", []):
                    ui(f"Provisioning with shell script: {script}")
                    if not (template_path.parent / script).is_file():
                        raise QemuBuildError(f"{kind}: script {script} does not exist")
                    if fail_at == "provision":
                        raise QemuBuildError("Script exited with non-zero exit status: 1. Allowed exit codes are: [0]")
        ui(
            "Gracefully halting virtual machine..."
            if source.get("shutdown_command")
            else "Halting the virtual machine..."
        )
        if not source.get("skip_compaction") or source.get("disk_compression"):
            ui("Converting hard drive...")
            converted = disk.with_name(disk.name + ".convert")
            flags = ["-c"] if source.get("disk_compression") else []
            _run("qemu-img", "convert", *flags, "-O", str(source.get("format", "qcow2")), str(disk), str(converted))
            converted.replace(disk)
        if fail_at == "convert":
            raise QemuBuildError("Error converting hard drive: injected failure")
        for post in template.get("build", {}).get("post-processor", []):
            for kind, body in post.items():
                say(f"==> {build_name}: Running post-processor:  (type {kind})")
                if kind == "manifest" and os.environ.get("FAKE_PACKER_NO_MANIFEST") != "1":
                    _manifest(template_path.parent, body, name, output, bool(source.get("efi_drop_efivars")))
    except Exception as error:
        message = "build was cancelled" if isinstance(error, cancelled) else str(error)
        if created:
            ui("Deleting output directory...")
            shutil.rmtree(output, ignore_errors=True)
        say(f"Build '{build_name}' errored after {time.monotonic() - started:.3f} seconds: {message}")
        say("==> Some builds didn't complete successfully and had errors:")
        say(f"--> {build_name}: {message}")
        return 1
    say(f"Build '{build_name}' finished after {time.monotonic() - started:.3f} seconds.")
    say("==> Builds finished. The artifacts of successful builds are:")
    say(f"--> {build_name}: VM files in directory: {output}")
    return 0
