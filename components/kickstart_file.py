"""KickstartFile: the rendered, validated kickstart of one image."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi

from homelab_images.core.kickstart import validate_kickstart


@dataclass(frozen=True)
class KickstartFileArgs:
    text: str
    """Kickstart rendered from kickstart/*.ks.j2 (the build key still a placeholder)."""


class KickstartFile(pulumi.ComponentResource):
    text: pulumi.Output[str]
    sha256: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: KickstartFileArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("homelab:images:KickstartFile", name, None, opts)
        validate_kickstart(args.text)
        self.text = pulumi.Output.from_input(args.text)
        self.sha256 = pulumi.Output.from_input(hashlib.sha256(args.text.encode("utf-8")).hexdigest())
        self.register_outputs({"text": self.text, "sha256": self.sha256})
