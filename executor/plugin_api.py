"""The types a plugin receives and returns, besides ``Diagnostic`` and ``FileChange``.

Everything here is data or a read-only view: plugins get what they need to
judge their files and nothing of the store, the CLI or git.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from executor_sandbox.sandbox import Use


class BaseTree(Protocol):
    """The target repository at the base commit, read-only (regular files only)."""

    def paths(self) -> list[str]:
        """Every regular file's path (POSIX, relative), sorted."""
        ...

    def read(self, path: str) -> bytes | None:
        """A file's bytes, or None when the base has no regular file there."""
        ...


class EmptyTree:
    """A base with no files: a new repository."""

    def paths(self) -> list[str]:
        return []

    def read(self, path: str) -> bytes | None:
        return None


@dataclass(frozen=True)
class PluginContext:
    """What every hook of a plugin may consult."""

    base: BaseTree
    #: The operator's ``[plugin.<name>]`` table from config.toml (never from a proposal).
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SandboxContext(PluginContext):
    """A plugin's share of a sandbox for one proposal.

    The same context (same ``use``: one fresh database, one work directory) is
    passed to ``executor_sandbox_validate``, ``executor_build_rollback`` and
    ``executor_prove_rollback`` in that order, so ``state`` can carry what the
    plugin learned from one to the next.
    """

    use: Use | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def sandbox(self) -> Use:
        if self.use is None:
            raise RuntimeError("this context has no sandbox")
        return self.use


class Rollback(BaseModel):
    """How to undo what a plugin's files do beyond the git change (e.g. a SQL down migration)."""

    model_config = ConfigDict(frozen=True)

    plugin: str = Field(default="", description="Set by the host.")
    reversible: bool = Field(description="False: undoing needs a data snapshot or a human.")
    reasons: tuple[str, ...] = Field(default=(), description="Why it is not reversible, one per cause.")
    steps: tuple[str, ...] = Field(default=(), description="What the rollback does, for people.")
    artifacts: dict[str, str] = Field(
        default_factory=dict, description="Named texts to keep, e.g. {'down.sql': ...}."
    )
    proven: bool = Field(default=False, description="Set by the host once the proof passed.")


class MappingTree:
    """A base tree from a path → bytes mapping: for tests and for plugin authors' tests."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self._files = dict(files)

    def paths(self) -> list[str]:
        return sorted(self._files)

    def read(self, path: str) -> bytes | None:
        return self._files.get(path)
