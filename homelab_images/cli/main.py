"""homelab-images: the offline commands (no Pulumi CLI, no credentials, no network), gc and pins.

homelab-images render      --stack homelab --out DIR
homelab-images validate    --stack homelab
homelab-images fingerprint --stack homelab [--explain] [--image NAME]
homelab-images lock        --stack homelab (--check | --update)
homelab-images spec        --stack homelab --image NAME   (the runner's stdin)

pins reads the AlmaLinux mirror and k3s' release sites (no credentials):

homelab-images pins        --stack homelab (--check | --update)

gc collects the qemu target's files on this machine, then the templates on
Proxmox, reading its endpoint and token from PROXMOX_VE_ENDPOINT /
PROXMOX_VE_API_TOKEN (see docs/build-runner.md):

homelab-images gc          --stack homelab [--apply] [--only templates|artifacts]

``python -m homelab_images`` runs the same commands.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from homelab_images.cli import pins
from homelab_images.contract.build_spec import IdRange
from homelab_images.contract.gc_request import ArtifactGc, ArtifactImage, GcRequest
from homelab_images.contract.packer_files import KICKSTART_FILE, QEMU_TEMPLATE_FILE, SCRIPTS_DIR, TEMPLATE_FILE
from homelab_images.core.config import ConfigError, StackConfig
from homelab_images.core.kickstart import BUILD_KEY_PLACEHOLDER, KickstartInvalid
from homelab_images.core.local_files import artifact_dir_problem, ca_bundle_problem, missing_import_files
from homelab_images.core.packer_template import PackerTemplateInvalid, validate_packer_template
from homelab_images.core.paths import kickstart_dir_for, stack_file_path
from homelab_images.core.plan import ImagePlan, packer_variables, plan_stack
from homelab_images.core.qemu_template import QemuTemplateInvalid, validate_qemu_template
from homelab_images.core.stackfile import load_stack_file
from homelab_images.core.stackfile_edit import StackFileEditError
from homelab_images.core.versioning import (
    LockFinding,
    content_fingerprint,
    image_content,
    lock_findings,
    lock_path,
    read_lock,
    updated_lock,
    write_lock,
)
from homelab_images.runner.errors import EXIT_FAILED, EXIT_INVALID


class CommandFailed(Exception):
    """A problem the user must fix; the message says which and how."""


def _stack_file(args: argparse.Namespace) -> Path:
    return Path(args.stack_file) if args.stack_file else stack_file_path(args.stack)


def _plans(config: StackConfig, stack_file: Path) -> list[ImagePlan]:
    plans = plan_stack(config, datetime.now(UTC), kickstart_dir_for(stack_file))
    for plan in plans:
        if plan.build_spec is not None:
            try:
                validate_packer_template(plan.packer_template, plan.kickstart, packer_variables(plan.build_spec))
            except PackerTemplateInvalid as error:
                raise CommandFailed(f"image {plan.name}: Packer template: {error}") from None
        if plan.qemu is not None:
            try:
                validate_qemu_template(plan.qemu.template, plan.kickstart)
            except QemuTemplateInvalid as error:
                raise CommandFailed(f"image {plan.name}: qemu template: {error}") from None
    return plans


def _load(args: argparse.Namespace) -> tuple[Path, StackConfig, list[ImagePlan]]:
    path = _stack_file(args)
    config = load_stack_file(path)
    return path, config, _plans(config, path)


def cmd_render(args: argparse.Namespace) -> int:
    _, _, plans = _load(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandFailed(f"--out {out}: is a file; expected a directory (it is created if missing)")
    try:
        _write_plans(plans, out)
    except OSError as error:
        raise CommandFailed(f"--out {out}: cannot write {error.filename} ({error.strerror})") from None
    print(f"note: {KICKSTART_FILE} carries {BUILD_KEY_PLACEHOLDER}; the runner puts a per-build key there")
    return 0


def _write_plans(plans: Sequence[ImagePlan], out: Path) -> None:
    for plan in plans:
        directory = out / plan.name
        (directory / SCRIPTS_DIR).mkdir(parents=True, exist_ok=True)
        (directory / KICKSTART_FILE).write_text(plan.kickstart, encoding="utf-8")
        written = [KICKSTART_FILE]
        # A template of a target the image no longer has would pass for one it builds.
        # An imported template runs no Packer: a build.pkr.json would pass for what made it.
        templates = {
            TEMPLATE_FILE: plan.packer_template if plan.installs_on_proxmox else None,
            QEMU_TEMPLATE_FILE: plan.qemu.template if plan.qemu is not None else None,
        }
        for file_name, template in templates.items():
            if template is None:
                (directory / file_name).unlink(missing_ok=True)
                continue
            (directory / file_name).write_text(json.dumps(template, indent=2) + "\n", encoding="utf-8")
            written.append(file_name)
        for name, text in plan.scripts.items():
            (directory / SCRIPTS_DIR / name).write_text(text, encoding="utf-8")
        print(f"{plan.name}: wrote {directory}/{', '.join(written)}, {SCRIPTS_DIR}/")


def cmd_validate(args: argparse.Namespace) -> int:
    path, config, plans = _load(args)
    for plan in plans:
        print(f"{plan.name} v{plan.image.version}: {_validated(plan)}")
    project_dir = path.resolve().parent
    # Warnings only: validate may run where the stack is not deployed from (CI); the program refuses them.
    problems = missing_import_files(config, project_dir)
    problems += filter(None, [artifact_dir_problem(config, project_dir)])
    if any(plan.build_spec is not None for plan in plans):
        problems += filter(None, [ca_bundle_problem(config, project_dir)])
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    findings = lock_findings(read_lock(lock_path(path)), plans)
    for finding in findings:
        print(f"warning: {finding}", file=sys.stderr)
    if findings:
        print(f"note: {_lock_hint(args, path, findings)}", file=sys.stderr)
    if findings and config.build.strict_versioning:
        raise CommandFailed("strictVersioning is on and the lock file disagrees (see above)")
    return 0


def _validated(plan: ImagePlan) -> str:
    if plan.image.import_from is not None:
        source = plan.image.import_from
        return f"imported from {source.file_name} (sha256 {source.sha256[:12]}…)"
    templates = "Packer templates" if len(plan.targets) > 1 else "Packer template"
    return f"kickstart and {templates} valid ({', '.join(plan.targets)})"


def _named_plan(plans: Sequence[ImagePlan], image: str) -> ImagePlan:
    for plan in plans:
        if plan.name == image:
            return plan
    raise CommandFailed(f"no image {image!r} in the stack; images: {', '.join(plan.name for plan in plans)}")


def cmd_fingerprint(args: argparse.Namespace) -> int:
    _, _, plans = _load(args)
    if args.image is not None:
        plans = [_named_plan(plans, args.image)]
    result: dict[str, dict[str, object]] = {}
    for plan in plans:
        targets: dict[str, dict[str, object]] = {}
        for target, (fingerprint, parts) in plan.targets.items():
            # What the lock file records for the version: the fingerprint without its freshness part.
            targets[target] = {"fingerprint": fingerprint, "lockDigest": content_fingerprint(parts)}
            if args.explain:
                targets[target]["parts"] = plan.own_fingerprint_parts(target)
        # At the top, the first target's: the template's (proxmox-iso), or the qcow2's for an image built for qemu only.
        fingerprint, parts = next(iter(plan.targets.values()))
        entry: dict[str, object] = {
            "version": plan.image.version,
            "fingerprint": fingerprint,
            "lockDigest": content_fingerprint(parts),
            "targets": targets,
        }
        if args.explain:
            entry["shared"] = plan.shared_fingerprint_parts
        result[plan.name] = entry
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    _, _, plans = _load(args)
    plan = _named_plan(plans, args.image)
    if plan.build_spec is None:
        raise CommandFailed(
            f"image {args.image} is built for qemu only (targets: [qemu]): it has no Proxmox template, "
            "so no proxmox-iso build spec"
        )
    if plan.image.import_from is not None:
        print(
            f"note: image {plan.name} is imported from {plan.image.import_from.file_name}: the runner runs no "
            "Packer for it; it imports import_from with the hardware given there, and reads packer_template only "
            "for the system disk's bus and the cloud-init drive's storage",
            file=sys.stderr,
        )
    print(plan.build_spec.to_json())
    return 0


def _stack_argument(args: argparse.Namespace) -> str:
    """How the user named the stack, to echo in a command to run next."""
    return f"--stack {args.stack}" if args.stack else f"--stack-file {args.stack_file}"


def _lock_hint(args: argparse.Namespace, stack_file: Path, findings: Sequence[LockFinding]) -> str:
    """What to run for these findings: a new version first when one is needed, else just record them."""
    update = f"venv/bin/homelab-images lock --update {_stack_argument(args)}"
    # Next to the stack file as the user gave it; with --stack, in the project directory.
    lock = lock_path(stack_file) if args.stack_file else lock_path(stack_file).name
    if any(finding.kind != "unrecorded" for finding in findings):
        return f"lock file {lock}: after changing the versions as said above, run {update}"
    return f"lock file {lock}: to record them, run {update}"


def cmd_lock(args: argparse.Namespace) -> int:
    path, _, plans = _load(args)
    lock_file = lock_path(path)
    if args.update:
        current = {plan.name: (plan.image.version, image_content(plan)) for plan in plans}
        try:
            write_lock(lock_file, updated_lock(read_lock(lock_file), current))
        except ValueError as error:
            raise CommandFailed(str(error)) from None
        print(f"updated {lock_file.name}")
        return 0
    findings = lock_findings(read_lock(lock_path(path)), plans)
    if findings:
        raise CommandFailed("\n".join([*map(str, findings), _lock_hint(args, path, findings)]))
    print(f"{lock_file.name}: every image's version matches its content")
    return 0


def cmd_pins(args: argparse.Namespace) -> int:
    try:
        return pins.run_pins(args, _stack_file(args), _stack_argument(args), sys.stdout)
    except (pins.PinsFailed, StackFileEditError) as error:
        raise CommandFailed(str(error)) from None


# --- gc: the only command that talks to Proxmox; the work is in homelab_images.runner.gc.


def _qemu_fingerprints(config: StackConfig, stack_file: Path) -> dict[str, str | None]:
    """Per image built with the qemu target, its planned qemu fingerprint; None for all when planning fails
    (gc then takes the newest file as the current one: a broken kickstart must not stop a cleanup)."""
    names = [image.name for image in config.images if "qemu" in image.targets]
    if not names:
        return {}
    try:
        plans = plan_stack(config, datetime.now(UTC), kickstart_dir_for(stack_file))
    except (KickstartInvalid, OSError) as error:
        reason = (str(error).splitlines() or ["?"])[0]
        print(
            f"note: cannot plan the images ({reason}); gc takes each image's newest file as its current one",
            file=sys.stderr,
        )
        return dict.fromkeys(names)
    return {plan.name: plan.qemu.fingerprint for plan in plans if plan.qemu is not None}


def gc_request(config: StackConfig, stack_file: Path) -> GcRequest:
    fingerprints = _qemu_fingerprints(config, stack_file)
    return GcRequest(
        endpoint=config.endpoint,
        ca_bundle=config.proxmox.ca_bundle,
        insecure=config.insecure,
        project_dir=str(stack_file.resolve().parent),
        images=[image.name for image in config.images if image.has_template],
        retain_previous=config.build.retain_previous,
        vm_id_range=IdRange(first=config.proxmox.vm_id_range.first, last=config.proxmox.vm_id_range.last),
        artifacts=ArtifactGc(
            artifact_dir=config.build.artifact_dir,
            images=[ArtifactImage(name=name, fingerprint=fp) for name, fp in fingerprints.items()],
            retain_previous=config.build.retain_previous,
        ),
    )


def cmd_gc(args: argparse.Namespace) -> int:
    from homelab_images.runner.errors import RunnerError
    from homelab_images.runner.gc import message, run_gc

    path = _stack_file(args)
    request = gc_request(load_stack_file(path), path)
    try:
        return run_gc(request, args.apply, sys.stdout, only=args.only)
    except RunnerError as error:
        raise CommandFailed(message(error)) from None


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line like every other error; ``--help`` shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INVALID, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="homelab-images", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        where = sub.add_mutually_exclusive_group(required=True)
        where.add_argument("--stack", help="stack name: reads Pulumi.<stack>.yaml of this project")
        where.add_argument("--stack-file", help="path of any stack file")
        return sub

    render = command("render", "write ks.cfg, the Packer template and scripts per image")
    render.add_argument("--out", required=True, help="output directory")
    render.set_defaults(run=cmd_render)
    command("validate", "validate the config and every generated artifact").set_defaults(run=cmd_validate)
    fingerprint = command("fingerprint", "print each image's version and fingerprint as JSON")
    fingerprint.add_argument(
        "--explain", action="store_true", help="include the parts shared by every target and each target's own"
    )
    fingerprint.add_argument("--image", help="only this image (default: every image)")
    fingerprint.set_defaults(run=cmd_fingerprint)
    spec = command("spec", "print an image's build spec: the stdin of `python -m homelab_images.runner`")
    spec.add_argument("--image", required=True, help="image name")
    spec.set_defaults(run=cmd_spec)
    lock = command("lock", "check or update the version lock file")
    mode = lock.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--check",
        action="store_true",
        help="fail if an image changed without a version bump",
    )
    mode.add_argument(
        "--update",
        action="store_true",
        help="record the current versions and fingerprints",
    )
    lock.set_defaults(run=cmd_lock)
    pins_command = command("pins", "check or update each image's AlmaLinux and k3s pins against upstream releases")
    pins.add_arguments(pins_command)
    pins_command.set_defaults(run=cmd_pins)
    gc = command(
        "gc",
        "list (or --apply: delete) superseded templates and qcow2 files, and failed-build leftovers, of this stack",
    )
    gc.add_argument("--apply", action="store_true", help="delete the unused ones (default: dry run)")
    gc.add_argument(
        "--only",
        choices=("templates", "artifacts"),
        help="templates: only on Proxmox; artifacts: only the qemu target's files here (needs no credential)",
    )
    gc.set_defaults(run=cmd_gc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_INVALID
    except (KickstartInvalid, CommandFailed) as error:
        for line in str(error).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (`| head`): nothing left to say, and nowhere to say it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as error:
        # Whatever file the command could not read or write (the lock file, a kickstart script ...).
        print(f"error: {error.filename or 'a file'}: {error.strerror or error}", file=sys.stderr)
        return EXIT_FAILED
