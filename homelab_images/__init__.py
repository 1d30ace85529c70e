"""homelab-images without Pulumi: one sub-package per role.

core/      pure functions: config model, plan, kickstart, Packer template, fingerprint, lock file
contract/  what the Pulumi program and the runner share (standard library and pydantic only)
runner/    the runner pulumi-command starts (imports neither core/ nor Pulumi)
cli/       the homelab-images command

The Pulumi layer is the top-level ``components`` package; import rules: pyproject.toml.
"""
