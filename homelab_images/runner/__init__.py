"""The runner: runs Packer against Proxmox safely and reports a verified template.

pulumi-command runs it (``python -m homelab_images.runner create|update|delete``) with
the ``BuildSpec`` on stdin and the Proxmox endpoint and token in the environment;
see ``homelab_images/contract/commands.py`` and docs/build-runner.md.
"""
