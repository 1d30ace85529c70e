"""Overhead of the runner besides Packer, against fakepve with instant tasks.

Runs N replacement cycles the way pulumi-command runs them (create of a new
build, then delete of the previous one), with the stand-in Packer from
tests/fakes. The runner's overhead per build is the create's wall time minus the
time the stand-in Packer spent (it records it); retire time is the delete's
wall time. Both include starting the Python interpreter. Target: <= 5 s.
The smoke phase's own overhead (its wall time minus the time spent waiting on
the guest, from its stage line; the stand-in guest answers at once) has the
same target.

It also prints the runner's start-up time (imports only) and the share of it
that pydantic and the document models cost, against the interpreter alone: the
figure behind using pydantic for the spec and the result (see
homelab_images/contract/records.py).

    venv/bin/python bench/bench_runner.py [-n 5] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fakepve import FakePve  # noqa: E402
from fakepve.certs import make_cert  # noqa: E402

from homelab_images.contract.build_spec import BuildSpec  # noqa: E402
from homelab_images.contract.commands import CREATE_COMMAND, DELETE_COMMAND  # noqa: E402
from homelab_images.contract.packer_files import proxmox_source  # noqa: E402
from homelab_images.core.plan import plan_stack  # noqa: E402
from homelab_images.core.stackfile import load_stack_file  # noqa: E402
from tests.fakes.guest import Guest  # noqa: E402
from tests.fakes.guest import install as install_guest  # noqa: E402
from tests.runner.conftest import grant_build_role  # noqa: E402

TARGET_SECONDS = 5.0
# The smoke phase's own time: its wall time minus the time spent waiting on the guest (both from its stage line).
SMOKE_TARGET_SECONDS = 5.0
SMOKE_LINE = re.compile(
    r"smoke test passed: .*\(phase (?P<phase>[\d.]+)s, of which waiting on the guest (?P<waited>[\d.]+)s\)"
)
# A typical build of the shipped image (install, k3s, seal); start-up is compared against it.
TYPICAL_BUILD_SECONDS = 15 * 60
STARTUP_RUNS = 7
TOKEN_ID = "images@pve!build"
SECRET = "bench-secret-0123456789"


class ServedFake:
    """fakepve on its own event loop in a thread, with every task finishing instantly."""

    def __init__(self, directory: Path) -> None:
        self.cafile, keyfile, _ = make_cert(str(directory), hosts=("127.0.0.1",))
        self.pve = FakePve(host="127.0.0.1", port=0)
        self.pve.time_scale = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.pve.start(self.cafile, keyfile), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.pve.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


def prepare(pve: Any) -> None:
    pve.apitokens[TOKEN_ID] = SECRET
    grant_build_role(pve)
    pve.store_file("local", "AlmaLinux-9.7-x86_64-boot.iso", 64 * 1024**2)


def spec_for(base: BuildSpec, build: int, cafile: str) -> BuildSpec:
    version = f"1.{build}.0"
    name = f"{base.image}-v{version}"
    template = copy.deepcopy(base.packer_template)
    source = proxmox_source(template)
    source["vm_name"] = source["template_name"] = name
    fingerprint = f"{build:064x}"
    # No install repositories: the benchmark times the runner against fakepve, not a package mirror.
    return base.replace(
        version=version,
        template_name=name,
        fingerprint=fingerprint,
        packer_template=template,
        ca_bundle=cafile,
        install_repositories=[],
    )


def run(command: str, spec: BuildSpec, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        ["/bin/sh", "-c", command], input=spec.to_json(), env=env, cwd=REPO,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return done, time.monotonic() - started


def packer_seconds(record: Path) -> float:
    if not record.exists():
        return 0.0
    seconds = sum(float(json.loads(line)["seconds"]) for line in record.read_text().splitlines())
    record.unlink()
    return seconds


def import_seconds(statement: str) -> float:
    """Median wall time of a fresh interpreter that runs ``statement`` (no site customisation skipped)."""
    times = []
    for _ in range(STARTUP_RUNS):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", statement], cwd=REPO, check=True)
        times.append(time.monotonic() - started)
    return statistics.median(times)


def report_startup() -> None:
    interpreter = import_seconds("pass")
    runner = import_seconds("import homelab_images.runner.__main__, homelab_images.runner.create")
    documents = import_seconds("import homelab_images.contract.build_spec, homelab_images.contract.result")
    pydantic_ms = (documents - interpreter) * 1000
    without_ms = (runner - interpreter) * 1000 - pydantic_ms
    print(
        f"runner start-up: {runner * 1000:.0f} ms (interpreter alone {interpreter * 1000:.0f} ms); "
        f"pydantic and the document models: {pydantic_ms:.0f} ms, so {without_ms:.0f} ms without them; "
        f"that is {pydantic_ms / 10 / TYPICAL_BUILD_SECONDS:.3f}% of a "
        f"{TYPICAL_BUILD_SECONDS // 60}-minute build"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="builds to run")
    parser.add_argument("--check", action="store_true", help=f"exit 1 if a build's overhead exceeds {TARGET_SECONDS}s")
    args = parser.parse_args()
    report_startup()
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as scratch:
        root = Path(scratch)
        fake = ServedFake(root)
        fixtures = REPO / "tests" / "fixtures"
        base = plan_stack(load_stack_file(fixtures / "Pulumi.homelab.yaml"), datetime.now(UTC), fixtures / "kickstart")[
            0
        ].build_spec
        prepare(fake.pve)
        # The smoke test's clone boots into a healthy stand-in guest that answers at once.
        install_guest(fake.pve, Guest(fake.pve, base.k3s_version))
        bin_dir = root / "bin"
        bin_dir.mkdir()
        wrapper = bin_dir / "packer"
        record = root / "packer.jsonl"
        # Packer gets an allowlisted environment only: the stand-in's settings go in its wrapper.
        wrapper.write_text(
            f'#!/bin/sh\nexport FAKE_PACKER_RECORD="{record}"\n'
            f'exec "{sys.executable}" "{REPO / "tests" / "fakes" / "packer"}" "$@"\n'
        )
        wrapper.chmod(0o755)
        env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(root),
            "HOMELAB_IMAGES_PYTHON": sys.executable,
            "HOMELAB_IMAGES_STATE_DIR": str(root / "state"),
            "PROXMOX_VE_ENDPOINT": f"https://127.0.0.1:{fake.pve.port}/",
            "PROXMOX_VE_API_TOKEN": f"{TOKEN_ID}={SECRET}",
            "HOMELAB_IMAGES_OWNER_KEY": "owner-key-of-the-benchmark-stack-0123456789",
        }
        overheads: list[float] = []
        retires: list[float] = []
        previous: tuple[BuildSpec, str] | None = None
        smokes: list[float] = []
        print(f"{'build':>5} {'create s':>9} {'packer s':>9} {'overhead s':>11} {'smoke s':>8} {'retire s':>9}  vmId")
        try:
            for build in range(1, args.n + 1):
                spec = spec_for(base, build, fake.cafile)
                created, wall = run(CREATE_COMMAND, spec, env)
                if created.returncode != 0:
                    print(created.stderr, file=sys.stderr)
                    return 1
                packer = packer_seconds(record)
                overheads.append(wall - packer)
                smoke = SMOKE_LINE.search(created.stderr)
                if smoke is None:
                    print(created.stderr, file=sys.stderr)
                    return 1
                smokes.append(float(smoke["phase"]) - float(smoke["waited"]))
                retire = 0.0
                if previous is not None:
                    old_spec, old_stdout = previous
                    deleted, retire = run(DELETE_COMMAND, old_spec, {**env, "PULUMI_COMMAND_STDOUT": old_stdout})
                    if deleted.returncode != 0:
                        print(deleted.stderr, file=sys.stderr)
                        return 1
                    retires.append(retire)
                previous = (spec, created.stdout)
                vmid = json.loads(created.stdout.splitlines()[-1])["vmId"]
                print(
                    f"{build:>5} {wall:>9.2f} {packer:>9.2f} {wall - packer:>11.2f} {smokes[-1]:>8.2f} "
                    f"{retire:>9.2f}  {vmid}"
                )
        finally:
            fake.stop()
    worst = max(overheads)
    print(
        f"runner overhead per build: mean {statistics.mean(overheads):.2f}s, max {worst:.2f}s "
        f"(target <= {TARGET_SECONDS:.0f}s); retire mean {statistics.mean(retires or [0.0]):.2f}s"
    )
    print(
        f"smoke phase outside waiting on the guest: mean {statistics.mean(smokes):.2f}s, max {max(smokes):.2f}s "
        f"(target <= {SMOKE_TARGET_SECONDS:.0f}s)"
    )
    return 1 if args.check and (worst > TARGET_SECONDS or max(smokes) > SMOKE_TARGET_SECONDS) else 0


if __name__ == "__main__":
    sys.exit(main())
