"""Shared test setup."""

import logging
import os
import tempfile

# Tests that expect a Pulumi program to fail leave failed Output futures behind;
# asyncio reports each one at garbage collection, which is noise here.
logging.getLogger("asyncio").setLevel(logging.CRITICAL)

# Kickstart checks are remembered on disk; tests start from an empty cache of
# their own instead of the user's (child processes inherit it).
os.environ["HOMELAB_IMAGES_CACHE_DIR"] = tempfile.mkdtemp(prefix="homelab-images-cache-")
