"""Stack config keys that messages of the program, the CLI and the runner name.

Standard library only, so the runner can name them without importing the config model.
"""

PROJECT = "homelab-images"
PROVIDER = "proxmoxve"
TOKEN_NAME = "apiToken"
TOKEN_KEY = f"{PROVIDER}:{TOKEN_NAME}"
ENDPOINT_KEY = f"{PROVIDER}:endpoint"
INSECURE_KEY = f"{PROVIDER}:insecure"
SET_TOKEN = f"pulumi config set --secret {TOKEN_KEY} 'user@realm!tokenid=secret'"
OWNER_KEY = f"{PROJECT}:ownerKey"
SET_OWNER_KEY = f'pulumi config set --secret {OWNER_KEY} "$(openssl rand -hex 32)"'
