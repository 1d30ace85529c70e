"""A model of how the Pulumi engine and pulumi-command run a ``local.Command``: a test double.

Neither the Pulumi CLI nor the command provider can run here, so this module
does what they do with the real command strings, step by step, and is at
least as strict. Each rule cites where it comes from:

[run]      pulumi/pulumi-command v1.2.1, provider/pkg/provider/local/commandOutputs.go, ``run``:
           argv ``/bin/sh -c <command>``; ``cmd.Env = os.Environ()`` of the provider, then the
           Command's ``environment``, then ``PULUMI_COMMAND_STDOUT`` / ``PULUMI_COMMAND_STDERR``
           from the outputs being replaced (each only when not empty, unless
           ``addPreviousOutputInEnv`` is false); later duplicates win (Go os/exec ``dedupEnv``);
           ``Stdin`` only when not empty (Go os/exec, exec.go ``Cmd.Stdin``: nil reads from
           ``os.DevNull``); working directory the provider's (the project root);
           on success stdout and stderr are stored with one trailing newline trimmed; on a failure
           the error is ``<err>: running "<command>":\\n<stdout+stderr>``.
[create]   same repository, local/commandController.go, ``Create``: in preview the command is not
           run; a fresh output has no previous stdout/stderr.
[update]   ``Update``: runs ``update`` (``create`` when unset) with the NEW inputs and the OLD
           outputs as the previous ones.
[delete]   ``Delete``: runs ``delete`` with the OLD inputs (stdin, environment) and old outputs.
[triggers] provider/pkg/provider/common/inputs.go: ``triggers`` is ``replaceOnChanges``; any other
           changed input is an update.
[failed]   pulumi/pulumi-go-provider v1.3.0 (pulumi-command's go.mod), infer/resource.go,
           ``derivedResourceController.Create``/``Update``: an error that is not a
           ResourceInitFailedError returns no properties, so the engine records nothing for a
           failed create and keeps the old state for a failed update.
[preview]  infer/resource.go ``getDependenciesRaw`` (``ensureDefaultComputed``, ``MarkMap``): in a
           preview, outputs of a created or changed resource are unknown.
[replace]  pulumi/pulumi pkg/resource/deploy/step_generator.go (``generateSteps``) and
           tests/integration/steps/step3: without deleteBeforeReplace a replacement is
           CreateReplacement(new), then DeleteReplaced(old) after the new one exists; a failed
           delete leaves the old resource in state as pending deletion, deleted first by the next
           deployment (``GeneratePendingDeletes``).
[cancel]   pulumi-go-provider v1.3.0 middleware/cancel/cancel.go ``Wrap``: the engine's Cancel
           cancels each operation's context; ``exec.CommandContext`` (Go os/exec, exec.go) then
           calls ``Process.Kill``: SIGKILL to the ``/bin/sh`` process only, not its group.
[execve]   Linux include/uapi/linux/binfmts.h: one argument or environment string (with its NUL)
           may not exceed MAX_ARG_STRLEN = 32 pages (128 KiB), else execve fails with E2BIG;
           argv plus envp together may not exceed ARG_MAX (a quarter of the stack limit).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

PREVIOUS_STDOUT = "PULUMI_COMMAND_STDOUT"
PREVIOUS_STDERR = "PULUMI_COMMAND_STDERR"
MAX_ARG_STRLEN = 32 * 4096
INTERPRETER = ("/bin/sh", "-c")
TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class CommandInputs:
    """The inputs of a ``command.local.Command`` that matter to its lifecycle."""

    create: str
    update: str | None
    delete: str | None
    stdin: str
    environment: Mapping[str, str]
    triggers: list[Any]
    add_previous_output_in_env: bool = True

    def but(self, **changes: Any) -> CommandInputs:
        return replace(self, **changes)


@dataclass
class Run:
    """One execution of a command string, as the provider saw it."""

    command: str
    returncode: int
    stdout: str
    stderr: str
    env: dict[str, str] = field(repr=False, default_factory=dict)
    stdin: str = field(repr=False, default="")
    """What the provider wrote to the command's stdin: the stdin input of the inputs it ran with."""
    recorded: Recorded | None = field(repr=False, default=None)
    """The state the engine keeps after this run (create and update)."""
    secrets: tuple[str, ...] = field(repr=False, default=())

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def result(self) -> dict[str, Any]:
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        assert lines, f"no result line; stderr:\n{self.stderr}"
        value: dict[str, Any] = json.loads(lines[-1])
        return value

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error: ")]

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("warning: ")]

    def assert_clean(self) -> None:
        """No secret anywhere the user or Pulumi state sees, and no traceback."""
        for text in (self.stdout, self.stderr):
            assert all(secret not in text for secret in self.secrets)
            assert "Traceback" not in text
            assert "PRIVATE KEY" not in text

    @property
    def provider_error(self) -> str:
        """The error pulumi-command reports for a failed run [run]."""
        return f"exit status {self.returncode}: running {self.command!r}:\n{self.stdout}{self.stderr}"


@dataclass(frozen=True)
class Recorded:
    """What the engine keeps in state for the resource: inputs and the trimmed outputs [run]."""

    inputs: CommandInputs
    stdout: str
    stderr: str


@dataclass
class Step:
    """One resource operation of a ``pulumi up``/``destroy`` and the commands it ran."""

    operation: str  # create | update | replace | delete | same
    runs: list[Run]

    @property
    def ok(self) -> bool:
        return all(run.ok for run in self.runs)

    @property
    def run(self) -> Run:
        """The first command run (create of a replacement), or the only one."""
        return self.runs[0]

    @property
    def deleted(self) -> Run | None:
        """The delete of the replaced resource, when it ran."""
        return self.runs[1] if self.operation == "replace" and len(self.runs) > 1 else None


@dataclass(frozen=True)
class Preview:
    operation: str
    stdout_known: bool


class ExecveRefused(Exception):
    """execve(2) would fail with E2BIG [execve]."""


def check_execve_limits(argv: list[str], env: Mapping[str, str]) -> None:
    strings = [*argv, *(f"{key}={value}" for key, value in env.items())]
    for text in strings:
        size = len(text.encode("utf-8", "surrogateescape")) + 1
        if size > MAX_ARG_STRLEN:
            raise ExecveRefused(f"fork/exec {argv[0]}: argument list too long ({text.split('=', 1)[0]}: {size} bytes)")
    total = sum(len(text.encode("utf-8", "surrogateescape")) + 1 for text in strings)
    if total > os.sysconf("SC_ARG_MAX"):
        raise ExecveRefused(f"fork/exec {argv[0]}: argument list too long ({total} bytes in all)")


def trim(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


@dataclass
class Running:
    """A command started in the background, to be cancelled like the engine cancels it [cancel]."""

    process: subprocess.Popen[str]
    command: str
    env: dict[str, str]
    stdin: str = ""
    secrets: tuple[str, ...] = ()

    def cancel(self) -> None:
        self.process.send_signal(signal.SIGKILL)

    def finish(self, timeout: float = TIMEOUT_SECONDS) -> Run:
        stdout, stderr = self.process.communicate(timeout=timeout)
        return Run(self.command, self.process.returncode, stdout, stderr, self.env, self.stdin, secrets=self.secrets)


@dataclass
class CommandProvider:
    """pulumi-command's local provider as the engine drives it, with the provider's own environment."""

    provider_env: Mapping[str, str]
    """``os.Environ()`` of the provider: the environment of the shell that runs ``pulumi``."""
    cwd: Path
    secrets: tuple[str, ...] = ()
    """Values that must never show in a command's output."""

    def environment(self, inputs: CommandInputs, previous: Recorded | None) -> dict[str, str]:
        env = dict(self.provider_env)
        env.update(inputs.environment)
        if previous is not None and inputs.add_previous_output_in_env:
            if previous.stdout:
                env[PREVIOUS_STDOUT] = previous.stdout
            if previous.stderr:
                env[PREVIOUS_STDERR] = previous.stderr
        return env

    def _argv_env(
        self, command: str, inputs: CommandInputs, previous: Recorded | None
    ) -> tuple[list[str], dict[str, str]]:
        argv = [*INTERPRETER, command]
        env = self.environment(inputs, previous)
        check_execve_limits(argv, env)
        return argv, env

    def run(self, command: str, inputs: CommandInputs, previous: Recorded | None) -> Run:
        try:
            argv, env = self._argv_env(command, inputs, previous)
        except ExecveRefused as refused:
            return Run(command, 127, "", str(refused), secrets=self.secrets)
        done = subprocess.run(
            argv,
            input=inputs.stdin or None,
            stdin=None if inputs.stdin else subprocess.DEVNULL,
            env=env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
        return Run(command, done.returncode, done.stdout, done.stderr, env, inputs.stdin, secrets=self.secrets)

    def start(self, command: str, inputs: CommandInputs, previous: Recorded | None) -> Running:
        argv, env = self._argv_env(command, inputs, previous)
        # The provider is a plugin in its own process group: a terminal's Ctrl-C never reaches it.
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if inputs.stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=self.cwd,
            text=True,
            start_new_session=True,
        )
        if process.stdin is not None:
            process.stdin.write(inputs.stdin)
            process.stdin.close()
            process.stdin = None
        return Running(process, command, env, inputs.stdin, self.secrets)

    def create(self, inputs: CommandInputs) -> tuple[Run, Recorded | None]:
        run = self.run(inputs.create, inputs, None)
        if run.ok:
            run.recorded = Recorded(inputs, trim(run.stdout), trim(run.stderr))
        return run, run.recorded

    def update(self, old: Recorded, inputs: CommandInputs) -> tuple[Run, Recorded]:
        run = self.run(inputs.update or inputs.create, inputs, old)
        if run.ok:
            run.recorded = Recorded(inputs, trim(run.stdout), trim(run.stderr))
        return run, run.recorded or old

    def delete(self, old: Recorded) -> Run:
        if old.inputs.delete is None:
            return Run("", 0, "", "")
        return self.run(old.inputs.delete, old.inputs, old)


@dataclass
class Stack:
    """One ``local.Command`` resource in a stack, driven through ``pulumi up``, ``preview`` and ``destroy``."""

    provider: CommandProvider
    state: Recorded | None = None
    pending_deletes: list[Recorded] = field(default_factory=list)

    def plan(self, inputs: CommandInputs) -> str:
        if self.state is None:
            return "create"
        if inputs.triggers != self.state.inputs.triggers:
            return "replace"
        return "same" if inputs == self.state.inputs else "update"

    def preview(self, inputs: CommandInputs) -> Preview:
        operation = self.plan(inputs)
        return Preview(operation, stdout_known=operation == "same")

    def _retry_pending_deletes(self) -> list[Run]:
        runs = []
        for old in list(self.pending_deletes):
            run = self.provider.delete(old)
            runs.append(run)
            if run.ok:
                self.pending_deletes.remove(old)
        return runs

    def up(self, inputs: CommandInputs) -> Step:
        earlier = self._retry_pending_deletes()
        if earlier and not all(run.ok for run in earlier):
            return Step("delete", earlier)
        operation = self.plan(inputs)
        if operation == "same":
            return Step("same", [])
        if operation == "create":
            run, self.state = self.provider.create(inputs)
            return Step("create", [run])
        assert self.state is not None
        if operation == "update":
            run, self.state = self.provider.update(self.state, inputs)
            return Step("update", [run])
        old = self.state
        run, new = self.provider.create(inputs)
        if new is None:
            return Step("replace", [run])
        self.state = new
        deleted = self.provider.delete(old)
        if not deleted.ok:
            self.pending_deletes.append(old)
        return Step("replace", [run, deleted])

    def start_up(self, inputs: CommandInputs) -> Running:
        """A ``pulumi up`` whose create is still running (to cancel it)."""
        assert self.plan(inputs) == "create", "only a first create is started in the background"
        return self.provider.start(inputs.create, inputs, None)

    def destroy(self) -> Step:
        runs = self._retry_pending_deletes()
        if self.state is not None:
            run = self.provider.delete(self.state)
            runs.append(run)
            if run.ok:
                self.state = None
        return Step("delete", runs)
