"""Pulumi policy pack: ``pulumi preview --policy-pack policy``."""

import sys
from pathlib import Path

# The checks read templates with the project's own contract (standard library only).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from homelab_policies import build_triggers, guest_agent, no_plaintext_secrets, selinux_enforcing, uefi_firmware
from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)


def _policy(name: str, description: str, check) -> ResourceValidationPolicy:  # type: ignore[no-untyped-def]
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for violation in check(args.resource_type, args.props):
            report_violation(violation)

    return ResourceValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=EnforcementLevel.MANDATORY
    )


PolicyPack(
    name="homelab-images-guardrails",
    policies=[
        _policy(
            "no-plaintext-secrets",
            "Command inputs carry no credentials outside the secret environment.",
            no_plaintext_secrets,
        ),
        _policy("uefi-templates", "Templates are built with UEFI firmware (OVMF + EFI disk).", uefi_firmware),
        _policy("selinux-enforcing", "The kickstart keeps SELinux enforcing.", selinux_enforcing),
        _policy("guest-agent", "The template runs the QEMU guest agent.", guest_agent),
        _policy("build-triggers", "Image builds carry their fingerprint parts as triggers.", build_triggers),
    ],
)
