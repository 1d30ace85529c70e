"""The one failure every part of the runner raises for a problem the user must act on."""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_INVALID = 2


class RunnerError(Exception):
    """Printed as ``error: <what failed>, <where>: <what to do>``; never with a traceback."""

    def __init__(self, what: str, where: str, todo: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(f"{what}, {where}: {todo}")
        self.what = what
        self.where = where
        self.todo = todo
        self.exit_code = exit_code


class Interrupted(Exception):
    """SIGINT or SIGTERM reached the runner; cleanup runs, then it exits 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum
