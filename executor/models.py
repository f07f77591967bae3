"""The proposal model: what a report says, and what of it may be executed.

A ``Proposal`` is immutable once parsed. Its ``digest`` covers everything an
approval vouches for, so an approval bound to a digest is void the moment any
of that changes.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from enum import StrEnum
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

#: Bumped when the canonical form behind ``Proposal.digest`` changes.
DIGEST_VERSION = 1


class Kind(StrEnum):
    SELF_IMPROVEMENT = "self_improvement"
    IDEA_IMPLEMENTATION = "idea_implementation"
    UNKNOWN = "unknown"


class Status(StrEnum):
    """Where a proposal stands; derived from its decisions (and later its runs)."""

    NEW = "new"
    APPROVED = "approved"
    REJECTED = "rejected"


class Level(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class Problem(BaseModel):
    """Something wrong with a report. Errors make a proposal non-executable."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(description="Stable rule name, e.g. 'path.dotgit'.")
    level: Level
    message: str = Field(description="What is wrong, where, and how to fix it.")
    path: str | None = Field(default=None, description="File path the problem is about.")
    line: int | None = Field(default=None, description="1-based line in the report.")


_LANGUAGES = {
    ".sql": "sql",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".py": "python",
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".md": "markdown",
    ".sh": "shell",
    ".html": "html",
    ".css": "css",
}


def language_for(path: str) -> str:
    """Language by file extension; ``"unknown"`` when the extension says nothing."""
    return _LANGUAGES.get(posixpath.splitext(path)[1].lower(), "unknown")


class FileChange(BaseModel):
    """One file a proposal creates or replaces, with its exact bytes.

    Lines are 1-based lines of the report (for a JSON report: of its
    ``proposal`` string). ``line_start`` is the report line holding the
    content's first line, so content line N maps to report line
    ``line_start + N - 1``; for empty content both ends are the header line.
    """

    # Content is arbitrary bytes (it may be refused for not being UTF-8), so
    # JSON carries it as base64.
    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    path: str
    content: bytes = Field(repr=False)
    description: str | None = None
    header_line: int
    line_start: int
    line_end: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def language(self) -> str:
        return language_for(self.path)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def size(self) -> int:
        return len(self.content)

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


class Proposal(BaseModel):
    """A parsed FSAR report. Built by ``executor.report``; never mutated."""

    model_config = ConfigDict(frozen=True)

    id: str
    timestamp: str | None = Field(description="As written in the report (ISO 8601).")
    severity: int | None
    block_execution: bool | None
    kind: Kind
    kind_label: str = Field(description="The kind word as written, kept for unknown kinds.")
    text: str = Field(description="The proposal text, line endings normalized to LF.")
    opportunity: str | None = None
    risks: tuple[str, ...] = ()
    mitigations: tuple[str, ...] = ()
    files: tuple[FileChange, ...] = ()
    problems: tuple[Problem, ...] = ()
    source_format: Literal["markdown", "json"]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def executable(self) -> bool:
        """Only a clean ``idea_implementation`` with at least one file may run."""
        return (
            self.kind is Kind.IDEA_IMPLEMENTATION
            and bool(self.files)
            and not any(p.level is Level.ERROR for p in self.problems)
        )

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def digest(self) -> str:
        """sha256 over a canonical form of everything an approval vouches for.

        The same report written as markdown or as its JSON sibling has the same
        digest; file contents enter by their exact bytes (through sha256).
        """
        canonical = {
            "v": DIGEST_VERSION,
            "id": self.id,
            "timestamp": self.timestamp,
            "severity": self.severity,
            "block_execution": self.block_execution,
            "kind": self.kind_label,
            "text": self.text,
            "risks": list(self.risks),
            "mitigations": list(self.mitigations),
            "files": [[f.path, f.sha256] for f in self.files],
        }
        blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(blob.encode("ascii")).hexdigest()

    def file(self, path: str) -> FileChange | None:
        return next((f for f in self.files if f.path == path), None)

    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level is Level.ERROR]
