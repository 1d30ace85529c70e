"""What the smoke test runs inside the clone, and how it judges the answers.

Each check is a short shell script run through the guest agent, and a pure
function that reads its output. A check passes only on positive evidence: the
output must say what was expected. Empty output, a missing command or a script
that stopped half-way is a failure, never a pass. Scripts print names and
sizes, never file contents, so nothing secret can reach the build's output.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from homelab_images.runner.guest_agent import Execution

GIB = 1024**3
# The clone's system disk is enlarged by this much before it boots, so growing the root filesystem shows.
GROWTH = "+4G"
GROWTH_BYTES = 4 * GIB
# Key files may look up to this much older than the boot when the guest's clock was stepped after boot.
CLOCK_SLACK_SECONDS = 60
# guest-exec runs without a login environment: name the paths and the language.
PRELUDE = "export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; "
# Commands run by qemu-ga stay in its confined SELinux domain (virt_qemu_ga_t), where most of these
# checks are denied; the image's trampoline carries the label that moves them out of it (see the
# kickstart's %post), so every check runs through it.
TRAMPOLINE = "/usr/libexec/homelab-images/guest-exec"
DONE_MARK = "checked"


@dataclass(frozen=True)
class Expectations:
    """What only this build knows: the pinned k3s and the clone's own identity and disk."""

    k3s_version: str
    vm_uuid: str
    disk_bytes: int


@dataclass(frozen=True)
class Verdict:
    passed: bool
    found: str
    warning: str | None = None


def passed(found: str, warning: str | None = None) -> Verdict:
    return Verdict(True, found, warning)


def failed(found: str) -> Verdict:
    return Verdict(False, found)


Judge = Callable[[Execution, Expectations], Verdict]


@dataclass(frozen=True)
class Check:
    name: str
    script: str
    judge: Judge
    timeout_seconds: float
    # For state that settles after boot (disk growth, node Ready): run again until it passes or times out.
    repeat_until_passed: bool = False

    @property
    def argv(self) -> list[str]:
        return [TRAMPOLINE, "/bin/sh", "-c", PRELUDE + self.script]


def _missing_command(execution: Execution) -> str | None:
    if execution.exitcode == 127 or re.search(r"(command )?not found", execution.err, re.I):
        return f"a command is missing (exit {execution.exitcode}): {execution.err.strip() or 'no message'}"
    return None


def _fields(out: str, tag: str) -> list[list[str]]:
    return [line.split()[1:] for line in out.splitlines() if line.split()[:1] == [tag]]


def judge_cloud_init(execution: Execution, _: Expectations) -> Verdict:
    # Exit codes of `cloud-init status --wait`: 0 done, 1 error, 2 done with recoverable errors
    # (canonical/cloud-init cloudinit/cmd/status.py, handle_status_args).
    missing = _missing_command(execution)
    if missing:
        return failed(missing)
    status = re.search(r"^status: (\S+)", execution.out, re.M)
    if status is None:
        return failed("cloud-init printed no status")
    if status[1] != "done" or execution.exitcode not in (0, 2):
        return failed(f"cloud-init status is {status[1]!r} (exit {execution.exitcode})")
    if execution.exitcode == 2:
        return passed(
            "status: done, with recoverable errors",
            "cloud-init finished with recoverable errors (warnings or deprecations); see its output",
        )
    return passed("status: done")


def judge_selinux(execution: Execution, _: Expectations) -> Verdict:
    mode = execution.out.strip()
    if execution.exitcode == 0 and mode == "Enforcing":
        return passed("Enforcing")
    return failed(_missing_command(execution) or f"getenforce says {_quoted(mode)}")


def judge_machine_id(execution: Execution, expected: Expectations) -> Verdict:
    # On a first boot with an empty /etc/machine-id, systemd takes the VM's SMBIOS UUID as the
    # machine ID under KVM/QEMU (systemd/systemd src/shared/machine-id-setup.c, generate_machine_id;
    # AlmaLinux 9 ships systemd 252, which logs "Initializing machine ID from VM UUID"). Proxmox gives
    # every clone a new UUID, so a match proves the ID was made on this boot and is not the template's.
    machine_id = execution.out.strip()
    uuid = expected.vm_uuid.replace("-", "").lower()
    if not re.fullmatch(r"[0-9a-f]{32}", machine_id):
        return failed(_missing_command(execution) or f"/etc/machine-id holds {_quoted(machine_id)}")
    if machine_id != uuid:
        return failed(
            f"machine-id {machine_id} is not the one systemd makes on this clone's first boot ({uuid}, its "
            "SMBIOS UUID): the template carries a machine-id (/etc/machine-id or /var/lib/dbus/machine-id)"
        )
    return passed(f"{machine_id}, made from this clone's UUID")


def judge_host_keys(execution: Execution, _: Expectations) -> Verdict:
    boot = [int(f[0]) for f in _fields(execution.out, "boot") if f and f[0].isdigit()]
    keys = [(int(f[0]), f[1]) for f in _fields(execution.out, "key") if len(f) == 2 and f[0].isdigit()]
    if DONE_MARK not in execution.out.split() or not boot:
        return failed(_missing_command(execution) or "the check did not finish")
    if not keys:
        return failed("no SSH host key in /etc/ssh")
    stale = [path for mtime, path in keys if mtime < boot[0] - CLOCK_SLACK_SECONDS]
    if stale:
        return failed(f"made before this boot (baked into the template): {', '.join(sorted(stale))}")
    return passed(f"{len(keys)} keys made on this boot")


def judge_root_growth(execution: Execution, expected: Expectations) -> Verdict:
    # The disk is checked in two steps, so the message says which one did not grow: the root device
    # (partition, PV and LV) against the disk, then the XFS filesystem against its device.
    rootfs = [int(f[0]) for f in _fields(execution.out, "rootfs") if f and f[0].isdigit()]
    chain = [(f[0], int(f[2])) for f in _fields(execution.out, "chain") if len(f) == 3 and f[2].isdigit()]
    devices = [(f[0], f[1], int(f[2])) for f in _fields(execution.out, "disk") if len(f) == 3 and f[2].isdigit()]
    disks = [size for _, kind, size in devices if kind == "disk"]
    if not rootfs or not chain or not disks:
        return failed(_missing_command(execution) or "no root filesystem or disk sizes in the output")
    disk, (root_device, device_size) = disks[0], chain[0]
    if disk != expected.disk_bytes:
        return failed(f"the guest sees a {_gib(disk)} disk, Proxmox enlarged it to {_gib(expected.disk_bytes)}")
    below_root = {name for name, _ in chain}
    others = sum(size for name, kind, size in devices if kind in ("part", "lvm") and name not in below_root)
    if disk - others - device_size >= GROWTH_BYTES // 2:
        return failed(
            f"the root device {root_device} ({_gib(device_size)}) leaves {_gib(disk - others - device_size)} of the "
            f"{_gib(disk)} disk unused: the partition, physical volume or root volume did not grow on first boot"
        )
    if device_size - rootfs[0] >= GROWTH_BYTES // 2:
        return failed(
            f"the root filesystem ({_gib(rootfs[0])}) did not grow to its {_gib(device_size)} device {root_device}"
        )
    return passed(f"root filesystem {_gib(rootfs[0])} fills the {_gib(disk)} disk")


def judge_k3s_version(execution: Execution, expected: Expectations) -> Verdict:
    # `k3s --version` prints "k3s version <version> (<commit>)" (k3s-io/k3s pkg/cli/cmds/root.go, VersionPrinter).
    version = re.search(r"^k3s version (\S+)", execution.out, re.M)
    if execution.exitcode != 0 or version is None:
        return failed(_missing_command(execution) or f"no k3s version in {_quoted(execution.out.strip())}")
    if version[1] != expected.k3s_version:
        return failed(f"k3s {version[1]} is installed, {expected.k3s_version} is pinned")
    return passed(version[1])


K3S_UNITS = ("k3s.service", "k3s-agent.service")


def judge_k3s_units(execution: Execution, _: Expectations) -> Verdict:
    states = {f[0]: f[1:] for f in _fields(execution.out, "unit") if f}
    problems = []
    for unit in K3S_UNITS:
        state = states.get(unit)
        if state is None or len(state) != 2:
            problems.append(f"{unit} is not installed")
        elif state != ["disabled", "inactive"]:
            problems.append(f"{unit} is {state[0]} and {state[1]}")
    if problems:
        return failed(_missing_command(execution) or "; ".join(problems) + " (expected: disabled and inactive)")
    return passed("k3s.service and k3s-agent.service installed, disabled and inactive")


# Where k3s keeps a token or node password once it ran or was installed with one.
TOKEN_FILES = (
    "/var/lib/rancher/k3s/server/token",
    "/var/lib/rancher/k3s/server/node-token",
    "/var/lib/rancher/k3s/server/agent-token",
    "/etc/rancher/node/password",
)
# Files that could carry K3S_* variables or a token setting; only the names found are printed.
TOKEN_SETTINGS = (
    "/etc/systemd/system/k3s.service.env",
    "/etc/systemd/system/k3s-agent.service.env",
    "/etc/rancher/k3s/config.yaml",
)


def judge_no_token(execution: Execution, _: Expectations) -> Verdict:
    absent = {f[0] for f in _fields(execution.out, "absent") if f}
    present = sorted(f[0] for f in _fields(execution.out, "present") if f)
    settings = sorted(f"{f[0]} sets {', '.join(f[1:])}" for f in _fields(execution.out, "sets") if len(f) > 1)
    if DONE_MARK not in execution.out.split() or not absent | set(present):
        return failed(_missing_command(execution) or "the check did not finish")
    if present or settings:
        return failed("; ".join([*(f"{path} exists" for path in present), *settings]))
    unchecked = sorted(set(TOKEN_FILES) - absent)
    if unchecked:
        return failed(f"not checked: {', '.join(unchecked)}")
    return passed("no token, node password or K3S_* variable")


def judge_k3s_start(execution: Execution, _: Expectations) -> Verdict:
    if execution.exitcode == 0 and DONE_MARK in execution.out.split():
        return passed("k3s.service started")
    return failed(_missing_command(execution) or f"systemctl start k3s.service failed (exit {execution.exitcode})")


def judge_node_ready(execution: Execution, expected: Expectations) -> Verdict:
    # `kubectl get nodes --no-headers`: NAME STATUS ROLES AGE VERSION.
    nodes = [line.split() for line in execution.out.splitlines() if len(line.split()) == 5]
    ready = [node for node in nodes if node[1] == "Ready"]
    if execution.exitcode != 0 or not ready:
        shown = ", ".join(f"{node[0]} {node[1]}" for node in nodes) or execution.out.strip() or "no nodes listed"
        return failed(_missing_command(execution) or f"not Ready: {shown}")
    name, _, _, _, version = ready[0]
    if version != expected.k3s_version:
        return failed(f"node {name} is Ready but runs {version}, {expected.k3s_version} is pinned")
    return passed(f"node {name} Ready ({version})")


def _quoted(text: str) -> str:
    return repr(text) if text else "nothing"


def _gib(size: int) -> str:
    return f"{size / GIB:.1f} GiB"


CLOUD_INIT = Check("cloud-init finished", "cloud-init status --wait --long", judge_cloud_init, 600)
SELINUX = Check("SELinux enforcing", "getenforce", judge_selinux, 30)
MACHINE_ID = Check("machine-id made on this boot", "cat /etc/machine-id", judge_machine_id, 30)
HOST_KEYS = Check(
    "SSH host keys made on this boot",
    'echo "boot $(awk \'$1 == "btime" {print $2}\' /proc/stat)"; '
    'for key in /etc/ssh/ssh_host_*_key; do if [ -e "$key" ]; then echo "key $(stat -c %Y "$key") $key"; fi; done; '
    f"echo {DONE_MARK}",
    judge_host_keys,
    30,
)
ROOT_GROWTH = Check(
    "root filesystem fills the enlarged disk",
    "src=$(findmnt -nvo SOURCE /); "
    'echo "rootfs $(findmnt -bnvo SIZE /)"; '
    'lsblk -bnlso NAME,TYPE,SIZE "$src" | sed "s/^/chain /"; '
    'disk=$(lsblk -nlso NAME,TYPE "$src" | awk \'$2 == "disk" {print $1; exit}\'); '
    'lsblk -bnlo NAME,TYPE,SIZE "/dev/$disk" | sed "s/^/disk /"',
    judge_root_growth,
    180,
    repeat_until_passed=True,
)
K3S_VERSION = Check("k3s at the pinned version", "k3s --version", judge_k3s_version, 30)
K3S_UNITS_CHECK = Check(
    "k3s units neither enabled nor started",
    f"for unit in {' '.join(K3S_UNITS)}; do "
    'echo "unit $unit $(systemctl is-enabled "$unit" 2>/dev/null) $(systemctl is-active "$unit" 2>/dev/null)"; done',
    judge_k3s_units,
    30,
)
NO_TOKEN = Check(
    "no k3s token in the image",
    f"for path in {' '.join(TOKEN_FILES)}; do "
    'if [ -e "$path" ]; then echo "present $path"; else echo "absent $path"; fi; done; '
    f"for path in {' '.join(TOKEN_SETTINGS)}; do "
    'if [ -e "$path" ]; then '
    "names=$(grep -oE '^[[:space:]]*(export[[:space:]]+)?(K3S_[A-Z_]+|(agent-)?token(-file)?)\\b' "
    '"$path" | sed -E "s/^[[:space:]]*(export[[:space:]]+)?//" | sort -u | tr "\\n" " "); '
    'if [ -n "$names" ]; then echo "sets $path $names"; fi; fi; done; '
    f"echo {DONE_MARK}",
    judge_no_token,
    30,
)
K3S_START = Check(
    "k3s server starts",
    f"if systemctl start k3s.service; then echo {DONE_MARK}; "
    "else status=$?; journalctl -u k3s.service --no-pager -n 20; exit $status; fi",
    judge_k3s_start,
    240,
)
NODE_READY = Check(
    "k3s node Ready", "k3s kubectl get nodes --no-headers", judge_node_ready, 240, repeat_until_passed=True
)

# In order: the k3s state and token are checked before the smoke test starts k3s itself.
CHECKS: tuple[Check, ...] = (
    CLOUD_INIT,
    SELINUX,
    MACHINE_ID,
    HOST_KEYS,
    ROOT_GROWTH,
    K3S_VERSION,
    K3S_UNITS_CHECK,
    NO_TOKEN,
    K3S_START,
    NODE_READY,
)
