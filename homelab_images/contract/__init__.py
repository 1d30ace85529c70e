"""What the Pulumi program and the runner share: the build spec and result, ownership tags,
the Command strings and environment names, Packer file names and fingerprint part names.

Standard library and pydantic only (checked by import-linter): the runner starts once
per build step and must not load the core, Pulumi or the renderer; pydantic checks
its JSON documents (see records.py for its cost). Modules without pydantic also serve
the policy pack, which has only pulumi-policy.
"""
