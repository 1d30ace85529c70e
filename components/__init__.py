"""The Pulumi layer only: ComponentResources and the glue that reads Pulumi config."""
