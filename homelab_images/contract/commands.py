"""The command strings the Pulumi component gives pulumi-command's ``local.Command``.

They run through ``/bin/sh -c`` with the project root as working directory;
``HOMELAB_IMAGES_PYTHON`` picks the interpreter (default: the project's venv).
"""

# Stable from now on: every stack that built an image keeps these in its state and runs the
# stored delete when the build is replaced (docs/build-runner.md).
RUNNER_MODULE = "homelab_images.runner"
CREATE_COMMAND = f'"${{HOMELAB_IMAGES_PYTHON:-venv/bin/python}}" -m {RUNNER_MODULE} create'
UPDATE_COMMAND = f'"${{HOMELAB_IMAGES_PYTHON:-venv/bin/python}}" -m {RUNNER_MODULE} update'
DELETE_COMMAND = f'"${{HOMELAB_IMAGES_PYTHON:-venv/bin/python}}" -m {RUNNER_MODULE} delete'

# The runner's environment: the names the Proxmox Terraform/Pulumi provider reads.
ENDPOINT_VAR = "PROXMOX_VE_ENDPOINT"
TOKEN_VAR = "PROXMOX_VE_API_TOKEN"
