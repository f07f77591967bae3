"""Parse FSAR proposal reports, markdown or their JSON sibling, into ``Proposal``s.

Reports are untrusted and often broken. Parsing never raises for a broken
proposal: every defect becomes a ``Problem`` on the result. Only a report that
cannot become a proposal at all (no usable id, not a report) raises
``ReportError``.

File changes are extracted in the forms the generator writes:

* ``Create or update the file X with this complete content:`` followed by the
  content, which ends at a closing fence or at the ``This is for opportunity:``
  / ``Make sure the file is complete…`` trailer;
* ``===FILE:path ===  // optional description`` followed by the content and
  closed by a fence; a fence right after the header closes an empty block.

Content may also sit inside an opening fence with an info string
(```` ```sql ````), then it runs to the matching closing fence. Outside fences,
blank lines around content are framing; inside, every byte is kept. Prose
between and after blocks (headings, bash snippets) is not a file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from executor.content import Limits, check_content
from executor.errors import ReportError
from executor.models import FileChange, Kind, Level, Problem, Proposal
from executor.paths import check_path, find_collisions

Format = Literal["markdown", "json"]
Line = tuple[int, str]  # (1-based line number, text with its line ending)

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
HEADER_FIELDS = ("id", "timestamp", "severity", "block_execution", "proposal")
JSON_FIELDS = frozenset(HEADER_FIELDS) | {"risks", "mitigations"}

_TITLE = re.compile(r"^#\s+FSAR\b", re.IGNORECASE)
_HEADER_ITEM = re.compile(r"^[-*]\s+(?P<key>[A-Za-z_][A-Za-z0-9_ ]*?)\s*:\s*(?P<value>.*?)\s*$")
_SECTION = re.compile(r"^##\s+(?P<name>risks|mitigations)\s*:?\s*$", re.IGNORECASE)
_KIND = re.compile(r"^\s*(?P<kind>[A-Za-z_][A-Za-z0-9_-]*)\s*:[ \t]?")
_CREATE = re.compile(
    r"create or update (?:the )?file\s+(?P<path>.+?)\s+with (?:this|the following) complete content\s*:?\s*$",
    re.IGNORECASE,
)
_BLOCK = re.compile(r"^\s*={3,}\s*FILE\s*:\s*(?P<path>.*?)\s*(?:={3,}(?P<rest>.*))?$", re.IGNORECASE)
_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_TRAILER = re.compile(r"^\s*(?:this is for opportunity\s*:|make sure the file is complete)", re.IGNORECASE)
_OPPORTUNITY = re.compile(r"^\s*this is for opportunity\s*:\s*(?P<value>.*?)\s*$", re.IGNORECASE)
_COMMENT_LEAD = re.compile(r"^(?://+|#+|--+|/\*+)\s*")


def storable(text: str) -> str:
    """Text safe to store and print: undecodable bytes and NUL made visible.

    Reports are decoded with ``surrogateescape`` so file contents keep their
    exact bytes; strings kept for display must not carry those surrogates.
    """
    if text.isascii() and "\0" not in text:
        return text
    visible = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return visible.replace("\0", "\\x00")


def decode(data: bytes) -> str:
    """Report bytes to text: BOM dropped, bad bytes kept as surrogates."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.decode("utf-8", "surrogateescape")


def split_lines(text: str, first: int = 1) -> list[Line]:
    """Lines with their endings, numbered; splits on LF only, as editors count."""
    parts = text.split("\n")
    lines = [(first + i, part + "\n") for i, part in enumerate(parts[:-1])]
    if parts[-1]:
        lines.append((first + len(parts) - 1, parts[-1]))
    return lines


def detect_format(name: str, data: bytes) -> Format:
    if name.lower().endswith(".json"):
        return "json"
    return "json" if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{" else "markdown"


def parse_report(
    data: bytes, *, name: str = "<report>", limits: Limits | None = None, fmt: Format | None = None
) -> Proposal:
    """Parse one report. Raises ``ReportError`` only if no proposal can be built."""
    limits = limits or Limits()
    fmt = fmt or detect_format(name, data)
    parser = _JsonReport if fmt == "json" else _MarkdownReport
    return parser(name, decode(data), limits).build()


def is_malformed(proposal: Proposal) -> bool:
    """A report whose header could not be read as written (``ingest`` exits 2)."""
    return any(p.level is Level.ERROR and p.code.startswith("header.") for p in proposal.problems)


@dataclass
class _Report:
    """Shared state of one parse; subclasses read their format's framing."""

    name: str
    text: str
    limits: Limits
    problems: list[Problem] = field(default_factory=list)

    def problem(
        self, code: str, level: Level, message: str, *, path: str | None = None, line: int | None = None
    ) -> None:
        self.problems.append(Problem(code=code, level=level, message=message, path=path, line=line))

    # -- header ---------------------------------------------------------------

    def header(
        self, raw: Mapping[str, tuple[object, int | None]]
    ) -> tuple[str, str | None, int | None, bool | None]:
        """Validate header values; returns (id, timestamp, severity, block_execution)."""
        value, _ = raw.get("id", (None, None))
        if not isinstance(value, str) or not value.strip():
            raise ReportError(f"{self.name}: the report has no 'id' field; it is not an FSAR proposal report")
        ident = value.strip().strip("`")
        if not ID_RE.match(ident) or ".." in ident or ident.endswith(".lock"):
            raise ReportError(
                f"{self.name}: id {storable(ident)!r} is not a usable proposal id "
                "(1-128 letters, digits, '.', '_', '-', starting with a letter or digit)"
            )
        return ident, self._timestamp(raw), self._severity(raw), self._block(raw)

    def _missing(self, key: str, level: Level = Level.ERROR) -> None:
        self.problem(
            f"header.missing_{key}", level, f"the report has no '{key}' field; add '- {key}: …' to its header"
        )

    def _timestamp(self, raw: Mapping[str, tuple[object, int | None]]) -> str | None:
        if "timestamp" not in raw:
            self._missing("timestamp", Level.WARNING)
            return None
        value, line = raw["timestamp"]
        text = storable(str(value)).strip()
        try:
            datetime.fromisoformat(text)
        except ValueError:
            self.problem(
                "header.invalid_timestamp",
                Level.WARNING,
                f"timestamp {text!r} is not ISO 8601 (e.g. 2026-01-02T19:18:11.553Z)",
                line=line,
            )
        return text

    def _severity(self, raw: Mapping[str, tuple[object, int | None]]) -> int | None:
        if "severity" not in raw:
            self._missing("severity")
            return None
        value, line = raw["severity"]
        if isinstance(value, str) and value.strip().isdecimal():
            value = int(value.strip())
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        self.problem(
            "header.invalid_severity",
            Level.ERROR,
            f"severity {storable(str(value))!r} is not a non-negative integer (the generator writes 6, 30 or 50)",
            line=line,
        )
        return None

    def _block(self, raw: Mapping[str, tuple[object, int | None]]) -> bool | None:
        if "block_execution" not in raw:
            self._missing("block_execution")
            return None
        value, line = raw["block_execution"]
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        self.problem(
            "header.invalid_block_execution",
            Level.ERROR,
            f"block_execution {storable(str(value))!r} is not true or false",
            line=line,
        )
        return None

    # -- proposal body --------------------------------------------------------

    def proposal(
        self,
        header: tuple[str, str | None, int | None, bool | None],
        body: list[Line],
        risks: list[str],
        mitigations: list[str],
        fmt: Format,
    ) -> Proposal:
        ident, timestamp, severity, block = header
        text = "".join(line for _, line in body).replace("\r\n", "\n").strip()
        kind, label, body = self._kind(body)
        files: list[FileChange] = []
        opportunity = None
        if kind is Kind.IDEA_IMPLEMENTATION:
            files, opportunity = _BodyScanner(self, body).scan()
        else:
            opportunity = next((m["value"] for _, line in body if (m := _OPPORTUNITY.match(line))), None)
        return Proposal(
            id=ident,
            timestamp=timestamp,
            severity=severity,
            block_execution=block,
            kind=kind,
            kind_label=label,
            text=storable(text),
            opportunity=storable(opportunity) if opportunity else None,
            risks=tuple(storable(r) for r in risks),
            mitigations=tuple(storable(m) for m in mitigations),
            files=tuple(files),
            problems=tuple(self.problems),
            source_format=fmt,
        )

    def _kind(self, body: list[Line]) -> tuple[Kind, str, list[Line]]:
        """The kind word on the first non-blank line; the body without it."""
        start = next((i for i, (_, line) in enumerate(body) if line.strip()), None)
        if start is None:
            self.problem("proposal.empty", Level.ERROR, "the proposal text is empty")
            return Kind.UNKNOWN, "", []
        number, first = body[start]
        match = _KIND.match(first)
        if match is None:
            self.problem(
                "kind.missing",
                Level.ERROR,
                "the proposal does not start with its kind ('idea_implementation:' or 'self_improvement:')",
                line=number,
            )
            return Kind.UNKNOWN, "", body[start:]
        label = match["kind"]
        rest = [(number, first[match.end() :]), *body[start + 1 :]]
        try:
            kind = Kind(label)
        except ValueError:
            kind = Kind.UNKNOWN
        if kind is Kind.UNKNOWN:
            self.problem(
                "kind.unknown",
                Level.ERROR,
                f"unknown proposal kind {storable(label)!r}; only idea_implementation is executed",
                line=number,
            )
        return kind, label, rest


class _BodyScanner:
    """Walks an ``idea_implementation`` body and cuts out the file changes."""

    def __init__(self, report: _Report, body: list[Line]) -> None:
        self.report = report
        self.body = body
        self.stripped = [line.rstrip("\r\n") for _, line in body]

    def _marker(self, index: int) -> tuple[str, str | None] | None:
        """(raw path, description) if line ``index`` starts a file, else None."""
        text = self.stripped[index]
        if "=" in text and (block := _BLOCK.match(text)):
            rest = (block["rest"] or "").strip()
            description = _COMMENT_LEAD.sub("", rest).removesuffix("*/").strip() or None
            return block["path"], description
        if "omplete content" in text and (create := _CREATE.search(text)):
            return create["path"], None
        return None

    def scan(self) -> tuple[list[FileChange], str | None]:
        files: list[FileChange] = []
        opportunity: str | None = None
        i, n = 0, len(self.body)
        while i < n:
            marker = self._marker(i)
            if marker is None:
                if opp := _OPPORTUNITY.match(self.stripped[i]):
                    opportunity = opp["value"]
                i += 1
                continue
            change, i = self._block(i, *marker)
            files.append(change)
        if not files:
            self.report.problem(
                "proposal.no_files",
                Level.ERROR,
                "no file changes found; expected 'Create or update the file PATH with this complete "
                "content:' or '===FILE:PATH ===' blocks",
            )
        self._check_files(files)
        return files, opportunity

    def _block(self, start: int, raw_path: str, description: str | None) -> tuple[FileChange, int]:
        """Cut one file starting at marker line ``start``; returns it and the next index."""
        header_line = self.body[start][0]
        path = raw_path.strip()
        if len(path) >= 2 and path[0] == path[-1] and path[0] in "`'\"":
            path = path[1:-1]
        n = len(self.body)
        j = start + 1
        while j < n and not self.stripped[j].strip():
            j += 1
        fence = None
        if j < n and (opening := _FENCE.match(self.stripped[j])) and opening["info"].strip():
            fence = opening["fence"]
            j += 1
        k = j
        closed = False
        while k < n:
            text = self.stripped[k]
            if fence is not None:
                closing = _FENCE.match(text)
                if closing and not closing["info"].strip() and closing["fence"].startswith(fence):
                    closed = True
                    break
            elif (bare := _FENCE.match(text)) and not bare["info"].strip():
                closed = True
                break
            elif _TRAILER.match(text) or self._marker(k) is not None:
                break
            k += 1
        lines = self.body[j:k]
        if fence is None:
            while lines and not lines[0][1].strip():
                lines = lines[1:]
            while lines and not lines[-1][1].strip():
                lines = lines[:-1]
        elif not closed:
            self.report.problem(
                "block.unclosed_fence",
                Level.ERROR,
                f"the fence opened at line {self.body[j - 1][0]} for '{storable(path)}' is never closed; "
                "where the file ends is ambiguous",
                path=storable(path),
                line=self.body[j - 1][0],
            )
        content = "".join(line for _, line in lines).encode("utf-8", "surrogateescape")
        first = lines[0][0] if lines else header_line
        last = lines[-1][0] if lines else header_line
        change = FileChange(
            path=storable(path),
            content=content,
            description=storable(description) if description else None,
            header_line=header_line,
            line_start=first,
            line_end=last,
        )
        self._check_file(path, change)
        return change, (k + 1 if closed else k)

    def _check_file(self, raw_path: str, change: FileChange) -> None:
        shown = change.path
        for violation in check_path(raw_path):
            self.report.problem(
                f"path.{violation.rule}",
                Level.ERROR,
                f"path '{shown}' {violation.message}",
                path=shown,
                line=change.header_line,
            )
        for issue in check_content(change.content, self.report.limits):
            line = change.line_start + issue.line - 1 if issue.line else change.header_line
            self.report.problem(
                f"content.{issue.rule}",
                Level.ERROR if issue.is_error else Level.WARNING,
                f"{shown} {issue.message}",
                path=shown,
                line=line,
            )

    def _check_files(self, files: list[FileChange]) -> None:
        seen: dict[str, FileChange] = {}
        for change in files:
            earlier = seen.setdefault(change.path, change)
            if earlier is not change:
                self.report.problem(
                    "path.duplicate",
                    Level.ERROR,
                    f"'{change.path}' is written twice (lines {earlier.header_line} and "
                    f"{change.header_line}); a proposal must give each file once",
                    path=change.path,
                    line=change.header_line,
                )
        for first, second, why in find_collisions(seen):
            self.report.problem(
                "path.collision",
                Level.ERROR,
                f"'{first}' and '{second}' {why}; they cannot both be written",
                path=second,
                line=seen[second].header_line,
            )
        total = sum(f.size for f in files)
        if total > self.report.limits.max_proposal_bytes:
            self.report.problem(
                "proposal.too_large",
                Level.ERROR,
                f"the files total {total} bytes, over the limit of "
                f"{self.report.limits.max_proposal_bytes} bytes per proposal",
            )


class _MarkdownReport(_Report):
    def build(self) -> Proposal:
        lines = split_lines(self.text)
        i, n = 0, len(lines)
        while i < n and not lines[i][1].strip():
            i += 1
        if i < n and _TITLE.match(lines[i][1]):
            i += 1
        else:
            self.problem(
                "header.title", Level.WARNING, "the report does not start with '# FSAR Proposal Report'"
            )
        raw: dict[str, tuple[object, int | None]] = {}
        body_start: int | None = None
        inline = ""
        while i < n:
            number, line = lines[i]
            stripped = line.strip()
            i += 1
            if not stripped:
                continue
            item = _HEADER_ITEM.match(stripped)
            if item is None:
                i -= 1
                break
            key = item["key"].lower().replace(" ", "_")
            if key == "proposal":
                body_start, inline = i, item["value"]
                break
            if key in raw:
                self.problem(
                    "header.duplicate", Level.ERROR, f"header field {key!r} is given twice", line=number
                )
            elif key not in HEADER_FIELDS:
                self.problem(
                    "header.unknown_field", Level.WARNING, f"unknown header field {key!r}", line=number
                )
            raw[key] = (item["value"], number)
        header = self.header(raw)
        trailer = self._trailer_start(lines, body_start if body_start is not None else i)
        risks, mitigations = self._sections(lines[trailer:])
        if body_start is None:
            self.problem("header.missing_proposal", Level.ERROR, "the report has no '- proposal:' field")
            body: list[Line] = []
        else:
            body = lines[body_start:trailer]
            if inline:
                body = [(lines[body_start - 1][0], inline + "\n"), *body]
        return self.proposal(header, body, risks, mitigations, "markdown")

    @staticmethod
    def _trailer_start(lines: list[Line], floor: int) -> int:
        """Index of the trailing ``## Risks`` / ``## Mitigations`` sections.

        Found from the end, so a heading inside file content cannot cut the
        proposal short: only headings followed by nothing but list items count.
        """
        start = len(lines)
        for index in range(len(lines) - 1, floor - 1, -1):
            stripped = lines[index][1].strip()
            if _SECTION.match(stripped):
                start = index
            elif stripped and not stripped.startswith("-"):
                break
        return start

    @staticmethod
    def _sections(lines: list[Line]) -> tuple[list[str], list[str]]:
        sections: dict[str, list[str]] = {"risks": [], "mitigations": []}
        current: list[str] | None = None
        for _, line in lines:
            stripped = line.strip()
            if heading := _SECTION.match(stripped):
                current = sections[heading["name"].lower()]
            elif current is not None and stripped.startswith("-"):
                current.append(stripped[1:].strip())
        return sections["risks"], sections["mitigations"]


class _JsonReport(_Report):
    def build(self) -> Proposal:
        try:
            document = json.loads(self.text)
        except json.JSONDecodeError as exc:
            raise ReportError(
                f"{self.name}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from exc
        if not isinstance(document, dict):
            raise ReportError(f"{self.name}: a JSON report must be an object with id, proposal, …")
        for key in sorted(set(document) - JSON_FIELDS):
            self.problem("header.unknown_field", Level.WARNING, f"unknown field {storable(str(key))!r}")
        header = self.header({k: (v, None) for k, v in document.items() if k in HEADER_FIELDS})
        proposal = document.get("proposal")
        if not isinstance(proposal, str):
            self.problem(
                "header.missing_proposal",
                Level.ERROR,
                "the report has no 'proposal' string" if proposal is None else "'proposal' is not a string",
            )
            proposal = ""
        return self.proposal(
            header,
            split_lines(proposal),
            self._strings(document, "risks"),
            self._strings(document, "mitigations"),
            "json",
        )

    def _strings(self, document: dict[str, object], key: str) -> list[str]:
        value = document.get(key, [])
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [str(v) for v in value]
        self.problem(f"header.invalid_{key}", Level.WARNING, f"'{key}' is not a list of strings; ignored")
        return []
