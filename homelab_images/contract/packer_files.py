"""Names shared by the Packer template and the runner that runs it.

Kept free of imports so that the runner does not load the renderer.
"""

TEMPLATE_FILE = "build.pkr.json"
QEMU_TEMPLATE_FILE = "qemu.pkr.json"
MANIFEST_FILE = "manifest.json"
KICKSTART_FILE = "ks.cfg"
SCRIPTS_DIR = "scripts"

# Variables the runner provides through PKR_VAR_<name>.
VAR_VM_ID = "vm_id"
VAR_PUBLIC_KEY = "build_ssh_public_key"
VAR_PRIVATE_KEY_FILE = "build_ssh_private_key_file"
VAR_DESCRIPTION = "template_description"
VAR_TAGS = "tags"
VAR_OUTPUT_DIRECTORY = "output_directory"
