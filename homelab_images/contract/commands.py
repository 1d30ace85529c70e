"""The command strings the Pulumi component gives pulumi-command's ``local.Command``.

They run through ``/bin/sh -c`` with the project root as working directory;
``HOMELAB_IMAGES_PYTHON`` picks the interpreter (default: the project's venv).
"""

CREATE_COMMAND = '"${HOMELAB_IMAGES_PYTHON:-venv/bin/python}" -m homelab_images.runner create'
UPDATE_COMMAND = '"${HOMELAB_IMAGES_PYTHON:-venv/bin/python}" -m homelab_images.runner update'
DELETE_COMMAND = '"${HOMELAB_IMAGES_PYTHON:-venv/bin/python}" -m homelab_images.runner delete'
