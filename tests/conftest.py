"""Shared test setup."""

import logging

# Tests that expect a Pulumi program to fail leave failed Output futures behind;
# asyncio reports each one at garbage collection, which is noise here.
logging.getLogger("asyncio").setLevel(logging.CRITICAL)
