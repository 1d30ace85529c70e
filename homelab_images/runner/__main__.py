"""python -m homelab_images.runner create|update|delete — run by pulumi-command; see docs/build-runner.md.

stdin: the BuildSpec JSON. Environment: PROXMOX_VE_ENDPOINT, PROXMOX_VE_API_TOKEN
(HOMELAB_IMAGES_API_TOKEN first, when the shell sets it; and PULUMI_COMMAND_STDOUT on
update/delete). stdout: one JSON line (create/update); everything else goes to stderr, bounded.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from homelab_images.contract.build_spec import BuildSpec
from homelab_images.contract.commands import CURRENT_TOKEN_VAR, TOKEN_VAR
from homelab_images.contract.ownership import OWNER_KEY_VAR
from homelab_images.contract.records import RecordError
from homelab_images.runner import runner
from homelab_images.runner.console import Console
from homelab_images.runner.env import read_owner_key
from homelab_images.runner.errors import EXIT_INVALID, Interrupted, RunnerError
from homelab_images.runner.proxmox import ApiError, explain
from homelab_images.runner.session import open_session
from homelab_images.runner.signals import SignalHub


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m homelab_images.runner", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("create", "update", "delete"))
    return parser


def read_spec(text: str) -> BuildSpec:
    if not text.strip():
        raise RunnerError(
            "no build spec on stdin",
            "stdin of the runner",
            "pulumi-command passes it; to run by hand, pipe the spec JSON into the command",
            EXIT_INVALID,
        )
    try:
        return BuildSpec.from_json(text)
    except RecordError as error:
        raise RunnerError(
            f"the build spec on stdin is invalid ({error})",
            "stdin of the runner",
            "the Pulumi component writes it: make sure the component and the runner come from the same commit",
            EXIT_INVALID,
        ) from None


def _secrets_of(environ: dict[str, str]) -> list[str]:
    raws = [environ.get(name, "") for name in (CURRENT_TOKEN_VAR, TOKEN_VAR)]
    owner_key = environ.get(OWNER_KEY_VAR, "").strip()
    tokens = [secret for raw in raws if raw for secret in (raw.strip(), raw.rpartition("=")[2].strip())]
    return tokens + ([owner_key] if owner_key else [])


def run(action: str, console: Console, hub: SignalHub) -> int:
    environ = dict(os.environ)
    creds = None
    spec: BuildSpec | None = None
    try:
        spec = read_spec(sys.stdin.read())
        session = open_session(environ, spec.ca_bundle, spec.insecure, Path.cwd(), console)
        creds = session.creds
        owner = read_owner_key(environ)
        ctx = runner.Context(
            spec,
            creds,
            owner,
            session.tuning,
            console,
            hub,
            session.api,
            session.retry,
            environ,
            Path.cwd(),
            session.ca_bundle,
        )
        if action == "create":
            # Only create needs Packer's side (and the template renderer it imports).
            from homelab_images.runner.create import create

            print(create(ctx).to_json(), flush=True)
        elif action == "update":
            print(runner.update(ctx).to_json(), flush=True)
        else:
            runner.delete(ctx)
        return 0
    except RunnerError as error:
        console.error(str(error))
        return error.exit_code
    except ApiError as error:
        if creds is None:
            console.error(f"Proxmox call failed, {error.where}: {error.message}")
            return 1
        console.error(str(explain(error, creds)))
        return 1
    except Interrupted as error:
        name = signal.Signals(error.signum).name
        console.error(
            f"the {action} was interrupted by {name}, {f'build of {spec.image}' if spec else 'runner'}: "
            "the runner removed any unfinished build VM; run pulumi up again"
        )
        return 128 + error.signum


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(secrets=_secrets_of(dict(os.environ)))
    hub = SignalHub()
    hub.install()
    return run(args.action, console, hub)


if __name__ == "__main__":
    sys.exit(main())
