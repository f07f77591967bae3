"""A proposal-executor plugin: every ``.toml`` file of a proposal must parse.

The worked example of docs/plugins.md. Parsing with :mod:`tomllib` runs
nothing from the file, so the whole check is static: it happens on the host,
and the plugin has no sandbox hooks (the executor then starts no sandbox for it).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence

from executor import hookimpl
from executor.diagnostics import Diagnostic, offset_to_line_column
from executor.models import FileChange, Level

# tomllib ends its messages with where parsing stopped.
_WHERE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


@hookimpl
def executor_languages() -> Sequence[str]:
    return ["toml"]


@hookimpl
def executor_claim_files(files: Sequence[FileChange]) -> list[str]:
    # A hook implementation may take fewer parameters than the spec: only these are passed.
    return [f.path for f in files if f.language == "toml"]


@hookimpl
def executor_static_check(files: Sequence[FileChange]) -> list[Diagnostic]:
    return [diagnostic for f in files if (diagnostic := check(f)) is not None]


def check(file: FileChange) -> Diagnostic | None:
    """The one error that stops ``tomllib`` on this file, located; None when it parses."""
    try:
        text = file.content.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Diagnostic(
            path=file.path,
            line=file.content.count(b"\n", 0, exc.start) + 1,
            severity=Level.ERROR,
            code="toml.encoding",
            message="a TOML file must be UTF-8",
        )
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _WHERE.search(str(exc))
        if match is not None and match[1] is not None:
            line, column = int(match[1]), int(match[2])
        else:  # "(at end of document)": the document ended too early
            line, column = offset_to_line_column(text, len(text))
        reason = _WHERE.sub("", str(exc))
        return Diagnostic(
            path=file.path,
            line=line,
            column=column,
            severity=Level.ERROR,
            code="toml.syntax",
            message=f"invalid TOML: {reason}",
        )
    return None
