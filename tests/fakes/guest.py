"""A stand-in for the operating system inside the smoke test's clone, for tests. It is NOT a VM.

fakepve runs nothing in a guest: its agent records ``agent/exec`` and answers
``agent/exec-status`` with ``vm.agent["exec"][" ".join(argv)]`` merged over
"exited, exit 0, no output" (fakepve/agent.py, ``result``), and answers nothing
at all while ``vm.agent`` is None ("QEMU guest agent is not running",
fakepve/server.py ``_agent_call``, as qemu-server's ``assert_agent_available``).

``Guest`` plays a healthy first boot of the image: for each smoke check's
command it answers what the real tools print (their formats are cited in
homelab_images/runner/smoke_checks.py), computed when asked from the clone as
Proxmox has it: its SMBIOS UUID, and its disk size plus every resize the runner
requested (read from fakepve's request log, so a runner that skipped the resize
sees the old size). A test replaces one answer in ``Guest.answers`` to break one
check, or sets ``silent`` for an agent that never answers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from homelab_images.runner import smoke_checks as checks

GIB = 1024**3
MIB = 1024**2
SIZE_UNITS = {"K": 1024, "M": MIB, "G": GIB, "T": 1024 * GIB}
Answer = dict[str, Any]
AnswerOf = Callable[[Any], Answer]


def done(out: str, exitcode: int = 0, err: str = "") -> Answer:
    return {"exited": True, "exitcode": exitcode, "out-data": out, "err-data": err}


def machine_uuid(vm: Any) -> str:
    match = re.search(r"uuid=([0-9a-f-]{36})", str(vm.config.get("smbios1", "")))
    assert match, f"VM {vm.vmid} has no SMBIOS UUID: {vm.config.get('smbios1')!r}"
    return match[1].replace("-", "")


@dataclass
class Disk:
    """The system disk as the guest sees it: partitions of the image's layout, root grown to fill it."""

    size: int
    efi: int = 600 * MIB
    boot: int = GIB
    root_grown: bool = True
    filesystem_grown: bool = True

    def lsblk(self, template_size: int) -> str:
        pv = self.size - self.efi - self.boot - 2 * MIB
        lv = pv - 4 * MIB if self.root_grown else template_size - self.efi - self.boot - 6 * MIB
        fs = lv - 64 * MIB if self.filesystem_grown else template_size - self.efi - self.boot - 70 * MIB
        return "\n".join(
            [
                f"rootfs {fs}",
                f"chain vg_system-lv_root lvm {lv}",
                f"chain sda3 part {pv}",
                f"chain sda disk {self.size}",
                f"disk sda disk {self.size}",
                f"disk sda1 part {self.efi}",
                f"disk sda2 part {self.boot}",
                f"disk sda3 part {pv}",
                f"disk vg_system-lv_root lvm {lv}",
            ]
        )


@dataclass
class Guest:
    pve: Any
    k3s_version: str
    # silent: no agent runs in the VM; hangs: the agent runs but never answers (QMP "got timeout").
    silent: bool = False
    hangs: bool = False
    answers: dict[str, Answer | AnswerOf] = field(default_factory=dict)
    root_grown: bool = True
    filesystem_grown: bool = True
    hostname: str = "smoke"
    booted: list[Any] = field(default_factory=list)
    created_at: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.answers = {**self.healthy(), **self.answers}

    def healthy(self) -> dict[str, Answer | AnswerOf]:
        booted = int(time.time()) - 40
        version = self.k3s_version
        return {
            checks.CLOUD_INIT.name: done(
                "\nstatus: done\nextended_status: done\nboot_status_code: enabled-by-generator\n"
                "detail: DataSourceNoCloud [seed=/dev/sr0]\nerrors: []\nrecoverable_errors: {}\n"
            ),
            checks.SELINUX.name: done("Enforcing\n"),
            checks.MACHINE_ID.name: lambda vm: done(machine_uuid(vm) + "\n"),
            checks.HOST_KEYS.name: done(
                f"boot {booted}\n"
                + "".join(f"key {booted + 12} /etc/ssh/ssh_host_{kind}_key\n" for kind in ("ecdsa", "ed25519", "rsa"))
                + "checked\n"
            ),
            checks.ROOT_GROWTH.name: self.root_growth,
            checks.K3S_VERSION.name: done(f"k3s version {version} (3c2a5b1e)\ngo version go1.24.9\n"),
            checks.K3S_UNITS_CHECK.name: done(
                "unit k3s.service disabled inactive\nunit k3s-agent.service disabled inactive\n"
            ),
            checks.NO_TOKEN.name: done("".join(f"absent {path}\n" for path in checks.TOKEN_FILES) + "checked\n"),
            checks.K3S_START.name: done("checked\n"),
            checks.NODE_READY.name: done(f"{self.hostname} Ready control-plane,master 9s {version}\n"),
        }

    def root_growth(self, vm: Any) -> Answer:
        template_size = disk_size(vm)
        disk = Disk(
            size=template_size + self.resized(vm),
            root_grown=self.root_grown,
            filesystem_grown=self.filesystem_grown,
        )
        return done(disk.lsblk(template_size) + "\n")

    def resized(self, vm: Any) -> int:
        """Bytes added by the runner's resize requests for this VM since it was made (fakepve records them
        but does not apply them)."""
        added = 0
        for method, path, body in list(self.pve.requests)[self.created_at[id(vm)] :]:
            if method != "PUT" or not path.endswith(f"/qemu/{vm.vmid}/resize"):
                continue
            size = parse_qs(body.decode()).get("size", [""])[0]
            match = re.fullmatch(r"\+(\d+)([KMGT])", size)
            assert match, f"the stand-in guest understands only +<n><unit> resizes, got {size!r}"
            added += int(match[1]) * SIZE_UNITS[match[2]]
        return added

    def answer(self, vm: Any, argv: str) -> Answer | None:
        for check in checks.CHECKS:
            if " ".join(check.argv) == argv:
                found = self.answers[check.name]
                return found(vm) if callable(found) else found
        return None

    def boot(self, vm: Any) -> None:
        """Give a new VM this guest's agent (fakepve lets it answer once the VM runs)."""
        self.booted.append(vm)
        # Requests before this VM existed were about an earlier VM with the same ID.
        self.created_at[id(vm)] = len(self.pve.requests)
        if not self.silent:
            vm.agent = {"exec": _Answers(self, vm)}
            vm.agent_hangs = self.hangs

    def executed(self, vmid: int) -> list[list[str]]:
        """The commands the runner started in the latest VM ``vmid``, in order."""
        vm = next(vm for vm in reversed(self.booted) if vm.vmid == vmid)
        return [list(asked["command"]) for command, asked in vm.agent_requests if command == "exec"]


class _Answers:
    """The mapping fakepve's agent reads exec results from, answered when asked."""

    def __init__(self, guest: Guest, vm: Any) -> None:
        self._guest = guest
        self._vm = vm

    def __bool__(self) -> bool:
        return True

    def get(self, argv: str, default: Answer) -> Answer:
        found = self._guest.answer(self._vm, argv)
        return default if found is None else found


def disk_size(vm: Any) -> int:
    """The system disk's size= in the VM's config, in bytes."""
    match = re.search(r"size=(\d+)([KMGT])", str(vm.config.get("scsi0", "")))
    assert match, f"VM {vm.vmid} has no scsi0 size: {vm.config.get('scsi0')!r}"
    return int(match[1]) * SIZE_UNITS[match[2]]


class _WatchedVms(list[Any]):
    def __init__(self, vms: list[Any], on_add: Callable[[Any], None]) -> None:
        super().__init__(vms)
        self._on_add = on_add

    def append(self, vm: Any) -> None:
        super().append(vm)
        self._on_add(vm)


def install(pve: Any, guest: Guest) -> Guest:
    """Every VM fakepve creates from now on (build VMs and clones) gets ``guest``'s agent."""
    pve.vms = _WatchedVms(pve.vms, guest.boot)
    return guest
