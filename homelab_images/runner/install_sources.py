"""Can the installer's package repositories be read? Checked in seconds, before a build that would wait 45 minutes.

Anaconda on the build VM fetches ``repodata/repomd.xml`` of each repository first; when a
mirror no longer serves the release (AlmaLinux moves 9.N to vault.almalinux.org/9.N once
9.N+1 ships), the installer stops at its source screen and Packer waits out ssh_timeout.
The runner's machine fetches the same file. An HTTP error is an answer about the mirror and
fails the build; a network error only says this machine cannot reach it (the build VM may
have its own route), so it is a warning.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable

from homelab_images.contract.build_spec import BuildSpec
from homelab_images.runner.errors import RunnerError

REPOMD = "repodata/repomd.xml"
TIMEOUT_SECONDS = 10.0
FIX = (
    "AlmaLinux moves a minor release to https://vault.almalinux.org/9.N (no almalinux/ segment) when the next one "
    "ships: point iso.url and installMirror at the current minor (`homelab-images pins --update` does it), or "
    "installMirror at the vault; a mirror of your own must serve BaseOS and AppStream under x86_64/os/"
)


def check_install_sources(spec: BuildSpec, warn: Callable[[str], None], timeout: float = TIMEOUT_SECONDS) -> None:
    for repository in spec.install_repositories:
        url = repository.rstrip("/") + "/" + REPOMD
        request = urllib.request.Request(url, method="GET", headers={"User-Agent": "homelab-images preflight"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                answer.read(1)
        except urllib.error.HTTPError as error:
            raise RunnerError(
                f"the install source {url} answered {error.code} {error.reason}",
                f"homelab-images:images ({spec.image}).installMirror",
                FIX,
            ) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            warn(
                f"could not read {url} from this machine ({reason}); the build VM must reach it, "
                "or the installer waits until sshTimeoutMinutes runs out"
            )
