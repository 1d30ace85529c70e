"""Pure functions, no Pulumi and no network: everything about an image knowable offline."""
