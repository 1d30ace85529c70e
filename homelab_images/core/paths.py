"""Where the project's files are."""

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
KICKSTART_DIR = PROJECT_DIR / "kickstart"


def stack_file_path(stack: str, project_dir: Path = PROJECT_DIR) -> Path:
    return project_dir / f"Pulumi.{stack}.yaml"


def kickstart_dir_for(stack_file: Path) -> Path:
    """The ``kickstart/`` next to a stack file, or the project's own if there is none there.

    A stack file and the kickstart it was written for travel together (a copy of the
    project elsewhere, the frozen test fixture).
    """
    beside = stack_file.parent / "kickstart"
    return beside if beside.is_dir() else KICKSTART_DIR
