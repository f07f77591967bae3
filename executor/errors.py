"""The one user-facing error base.

Every error a user can act on is an ``ExecutorError`` carrying its exit code.
Only the CLI turns these into a one-line message and a process exit status;
everything below it raises and never prints.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit statuses; CI and operators script against them."""

    OK = 0
    GATE_FAILED = 1
    REFUSED = 2
    INFRASTRUCTURE = 3


class ExecutorError(Exception):
    """Base of all errors shown to users: what happened, where, how to fix."""

    exit_code: ExitCode = ExitCode.REFUSED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class RefusedError(ExecutorError):
    """Bad input or a request the executor declines: exit 2."""


class UnknownProposalError(RefusedError):
    """No proposal with that id is stored."""


class ReportError(RefusedError):
    """A report that cannot be turned into a proposal at all (no id, not a report)."""


class ConfigError(RefusedError):
    """The operator's configuration is invalid."""


class InfrastructureError(ExecutorError):
    """The store, Docker or another component the executor needs is unusable: exit 3."""

    exit_code = ExitCode.INFRASTRUCTURE


class SchemaDriftError(InfrastructureError):
    """The live store schema differs from what this executor's models expect."""
