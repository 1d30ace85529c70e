"""The set-up every runner entry point shares: credentials, tuning, retries and a TLS-checked client.

Build steps (``python -m homelab_images.runner``) and gc open the same session, so
they read the environment, resolve caBundle and warn about insecure alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from homelab_images.runner.console import Console
from homelab_images.runner.env import Credentials, Tuning, read_credentials, read_tuning
from homelab_images.runner.errors import RunnerError
from homelab_images.runner.proxmox import Api, Retrier, connect

CA_BUNDLE_KEY = "homelab-images:proxmox.caBundle"


@dataclass(frozen=True)
class Session:
    creds: Credentials
    tuning: Tuning
    retry: Retrier
    api: Api
    ca_bundle: Path | None


def resolve_ca_bundle(ca_bundle: str | None, base: Path) -> Path | None:
    """caBundle as configured (relative to the project directory ``base``); an error if the file is missing."""
    if not ca_bundle:
        return None
    path = (base / ca_bundle).resolve()
    if not path.is_file():
        raise RunnerError(
            f"CA bundle {ca_bundle} does not exist",
            CA_BUNDLE_KEY,
            "point it at the PEM file of the CA that signed the Proxmox certificate (relative to the project)",
        )
    return path


def open_session(
    environ: Mapping[str, str], ca_bundle: str | None, insecure: bool, base: Path, console: Console
) -> Session:
    creds = read_credentials(environ)
    console.add_secret(creds.secret)
    tuning = read_tuning(environ)
    retry = Retrier(console, base_seconds=tuning.retry_base_seconds)
    bundle = resolve_ca_bundle(ca_bundle, base)
    api = connect(creds, str(bundle) if bundle else None, insecure, console)
    return Session(creds, tuning, retry, api, bundle)
