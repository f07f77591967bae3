"""What plugins find: one located finding model shared by every plugin and gate.

A plugin builds ``Diagnostic(path=..., line=..., column=..., severity=...,
code=..., message=...)`` with lines and columns of the *file* (1-based). The
host stamps ``plugin`` and ``report_line`` (the line of the FSAR report holding
that file line), so a reviewer can jump from either side.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from executor.models import FileChange, Level


class Diagnostic(BaseModel):
    """One finding. Errors fail their gate; warnings are reported and do not."""

    model_config = ConfigDict(frozen=True)

    plugin: str = Field(default="", description="Set by the host: the plugin that reported it.")
    path: str | None = Field(default=None, description="File of the proposal; None: about the proposal.")
    line: int | None = Field(default=None, ge=1, description="1-based line in the file.")
    column: int | None = Field(default=None, ge=1, description="1-based column (characters) in the line.")
    severity: Level
    code: str = Field(description="Stable rule name, e.g. 'sql.syntax'.")
    message: str = Field(description="What is wrong and, where possible, how to fix it.")
    report_line: int | None = Field(default=None, description="Set by the host: line in the report.")
    blocks_sandbox: bool = Field(
        default=False,
        description="From a static check: nothing of this plugin's files may run in a sandbox.",
    )

    @property
    def is_error(self) -> bool:
        return self.severity is Level.ERROR

    def location(self) -> str:
        parts = [self.path or "(proposal)"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


def stamp(diagnostics: Iterable[Diagnostic], plugin: str, files: Sequence[FileChange]) -> list[Diagnostic]:
    """Name the plugin and map each file line to its report line."""
    by_path = {f.path: f for f in files}
    stamped = []
    for diagnostic in diagnostics:
        if not isinstance(diagnostic, Diagnostic):
            raise TypeError(f"expected Diagnostic, got {type(diagnostic).__name__}")
        change = by_path.get(diagnostic.path or "")
        report_line = None
        if change is not None:
            report_line = (
                change.header_line if diagnostic.line is None else change.line_start + diagnostic.line - 1
            )
            report_line = min(report_line, max(change.line_end, change.header_line))
        stamped.append(diagnostic.model_copy(update={"plugin": plugin, "report_line": report_line}))
    return stamped


def offset_to_line_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a 0-based character offset into ``text``."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column
