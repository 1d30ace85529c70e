"""Use homelab-images templates from another Pulumi stack.

Depends on nothing but ``pulumi`` (and PyYAML, which pulumi itself requires):
copy or vendor this package into any VM-provisioning program.
"""

from homelab_images_consumer.contract import (
    SUPPORTED_SCHEMA_VERSIONS,
    ArtifactRef,
    ImageNotFoundError,
    NoArtifactError,
    NodeNotAvailableError,
    NoTemplateError,
    TemplateRef,
    TemplateResolutionError,
    UnsupportedSchemaError,
    VersionNotFoundError,
    select_artifact,
    select_template,
    template_with_vm_id,
)
from homelab_images_consumer.first_boot import (
    K3S_CONFIG_PATH,
    UNITS,
    Role,
    UserDataError,
    k3s_user_data,
    render_k3s_user_data,
)
from homelab_images_consumer.stack import resolve_artifact, resolve_template, resolve_template_by_vm_id

__all__ = [
    "K3S_CONFIG_PATH",
    "SUPPORTED_SCHEMA_VERSIONS",
    "UNITS",
    "ArtifactRef",
    "ImageNotFoundError",
    "NoArtifactError",
    "NoTemplateError",
    "NodeNotAvailableError",
    "Role",
    "TemplateRef",
    "TemplateResolutionError",
    "UnsupportedSchemaError",
    "UserDataError",
    "VersionNotFoundError",
    "k3s_user_data",
    "render_k3s_user_data",
    "resolve_artifact",
    "resolve_template",
    "resolve_template_by_vm_id",
    "select_artifact",
    "select_template",
    "template_with_vm_id",
]
