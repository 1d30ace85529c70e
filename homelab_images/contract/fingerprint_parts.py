"""The named parts of an image fingerprint: a build's triggers, so a preview names what changed.

Standard library only: the policy pack checks the triggers with these names.
"""

FRESHNESS_PART = "freshness"
# Parts every target of an image shares: a change to one rebuilds every target.
SHARED_PART_NAMES = ("kickstart", "scripts", "iso", "k3s", "hardware", FRESHNESS_PART)
# Parts of one target only: a change to one rebuilds that target only.
TARGET_PART_NAMES = {
    "proxmox-iso": ("packer", "plugin"),
    "qemu": ("builder", "plugin", "firmware", "format"),
}
# An imported template's own part: the sha256 of the qcow2 it is imported from.
ARTIFACT_PART = "artifact"
# An imported template (importFrom) is built from nothing this stack renders: its parts are the
# qcow2, the hardware the import gives the VM and the k3s version its outputs claim (which the smoke
# test checks against the file), all of them always present; no freshness, as importing the same
# file again makes the same template.
IMPORT_PART_NAMES = (ARTIFACT_PART, "hardware", "k3s")
# The proxmox-iso build's parts, which are also its triggers; freshness only with rebuildEvery.
PART_NAMES = SHARED_PART_NAMES + TARGET_PART_NAMES["proxmox-iso"]
ALWAYS_PRESENT = tuple(name for name in PART_NAMES if name != FRESHNESS_PART)
# The same for the qemu build.
QEMU_ALWAYS_PRESENT = tuple(name for name in SHARED_PART_NAMES + TARGET_PART_NAMES["qemu"] if name != FRESHNESS_PART)
