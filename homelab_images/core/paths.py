"""Where the project's files are."""

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]


def stack_file_path(stack: str, project_dir: Path = PROJECT_DIR) -> Path:
    return project_dir / f"Pulumi.{stack}.yaml"
