"""Stack config keys that messages of the program, the CLI and the runner name.

Standard library only, so the runner can name them without importing the config model.
"""

PROJECT = "homelab-images"
PROVIDER = "proxmoxve"
TOKEN_NAME = "apiToken"
TOKEN_KEY = f"{PROVIDER}:{TOKEN_NAME}"
ENDPOINT_KEY = f"{PROVIDER}:endpoint"
INSECURE_KEY = f"{PROVIDER}:insecure"
# Without a value on its command line, `pulumi config set --secret` prompts for it without echo, or reads
# a pipe (pulumi/pulumi pkg/cmd/pulumi/config: ReadConsoleNoEcho, io.ReadAll(stdin)): secrets stay out of
# shell history and `ps`.
SET_TOKEN = f"`pulumi config set --secret {TOKEN_KEY}` (it asks for user@realm!tokenid=secret)"
OWNER_KEY = f"{PROJECT}:ownerKey"
SET_OWNER_KEY = f"openssl rand -hex 32 | pulumi config set --secret {OWNER_KEY}"
