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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from executor.content import Limits, check_content
from executor.errors import ReportError
from executor.ids import is_proposal_id
from executor.models import FileChange, Kind, Level, Problem, Proposal
from executor.paths import check_path, find_collisions
from executor.terminal import storable

Format = Literal["markdown", "json"]
Line = tuple[int, str]  # (1-based line number, text with its line ending)

# Ids name git branches (proposals/<id>) later: git's ref rules apply too.
MAX_SEVERITY = 1000
HEADER_FIELDS = ("id", "timestamp", "severity", "block_execution", "proposal")
JSON_FIELDS = frozenset(HEADER_FIELDS) | {"risks", "mitigations"}

_TITLE = re.compile(r"^#\s+FSAR\b", re.IGNORECASE)
# Patterns are anchored and free of nested or lazy quantifiers before a tail,
# so matching stays linear in the line length (reports are hostile input).
_HEADER_ITEM = re.compile(r"^[-*][ \t]+(?P<key>[A-Za-z_][A-Za-z0-9_ ]{0,63}):(?P<value>.*)$")
_SECTION = re.compile(r"^##[ \t]+(?P<name>risks|mitigations)[ \t]*:?$", re.IGNORECASE)
_KIND = re.compile(r"^[ \t]*(?P<kind>[A-Za-z_][A-Za-z0-9_-]{0,63})[ \t]*:[ \t]?")
_CREATE = re.compile(r"^[ \t]*create or update (?:the )?file[ \t]+", re.IGNORECASE)
_CREATE_TAIL = re.compile(r"[ \t]+with (?:this|the following) complete content[ \t]*:?$", re.IGNORECASE)
_BLOCK = re.compile(r"^[ \t]*={3,}[ \t]*FILE[ \t]*:", re.IGNORECASE)
_TRAILER = re.compile(
    r"^[ \t]*(?:this is for opportunity[ \t]*:|make sure the file is complete)", re.IGNORECASE
)
_OPPORTUNITY = re.compile(r"^[ \t]*this is for opportunity[ \t]*:(?P<value>.*)$", re.IGNORECASE)
_MIDLINE_MARKER = re.compile(r"create or update (?:the )?file\b.*complete content", re.IGNORECASE)
_COMMENT_LEAD = re.compile(r"^(?://+|#+|--+|/\*+)\s*")


@dataclass(frozen=True, slots=True)
class _Fence:
    fence: str  # the run of backticks or tildes
    info: str  # what follows it (language), stripped; "" for a bare fence


def _fence(text: str) -> _Fence | None:
    """The CommonMark code fence on this line, if any (a linear scan, no regex)."""
    body = text.lstrip(" ")
    if len(text) - len(body) > 3 or body[:1] not in ("`", "~"):
        return None
    char = body[0]
    run = len(body) - len(body.lstrip(char))
    info = body[run:]
    if run < 3 or (char == "`" and "`" in info):
        return None
    return _Fence(body[:run], info.strip())


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


def file_problems(change: FileChange, limits: Limits, *, raw_path: str | None = None) -> list[Problem]:
    """Path and content problems of one file.

    ``raw_path`` is the path as written in the report, before undecodable
    bytes and NUL were made visible; the stored, escaped form is checked when
    it is not given (as when a stored proposal is checked again), which can
    only refuse more, never less.
    """
    shown = change.path
    out = []
    for violation in check_path(change.path if raw_path is None else raw_path):
        out.append(
            Problem(
                code=f"path.{violation.rule}",
                level=Level.ERROR if violation.is_error else Level.WARNING,
                message=f"path '{shown}' {violation.message}",
                path=shown,
                line=change.header_line,
            )
        )
    for issue in check_content(change.content, limits):
        out.append(
            Problem(
                code=f"content.{issue.rule}",
                level=Level.ERROR if issue.is_error else Level.WARNING,
                message=f"{shown} {issue.message}",
                path=shown,
                line=change.line_start + issue.line - 1 if issue.line else change.header_line,
            )
        )
    return out


def set_problems(files: Sequence[FileChange], limits: Limits) -> list[Problem]:
    """Problems of the files taken together: duplicates, collisions, total size."""
    out = []
    seen: dict[str, FileChange] = {}
    for change in files:
        earlier = seen.setdefault(change.path, change)
        if earlier is not change:
            out.append(
                Problem(
                    code="path.duplicate",
                    level=Level.ERROR,
                    message=f"'{change.path}' is written twice (lines {earlier.header_line} and "
                    f"{change.header_line}); a proposal must give each file once",
                    path=change.path,
                    line=change.header_line,
                )
            )
    for first, second, why in find_collisions(seen):
        out.append(
            Problem(
                code="path.collision",
                level=Level.ERROR,
                message=f"'{first}' and '{second}' {why}; they cannot both be written",
                path=second,
                line=seen[second].header_line,
            )
        )
    total = sum(f.size for f in files)
    if total > limits.max_proposal_bytes:
        out.append(
            Problem(
                code="proposal.too_large",
                level=Level.ERROR,
                message=f"the files total {total} bytes, over the limit of {limits.max_proposal_bytes} "
                "bytes per proposal",
            )
        )
    return out


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
        if not is_proposal_id(ident):
            raise ReportError(
                f"{self.name}: id {storable(ident)!r} is not a usable proposal id "
                "(1-128 letters, digits, '.', '_', '-', starting and ending with a letter or digit)"
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
        if isinstance(value, str):
            text = value.strip()
            # ASCII digits only, and few of them: int() of a huge string is slow.
            if text.isascii() and text.isdecimal() and len(text) <= 9:
                value = int(text)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEVERITY:
            return value
        shown = (
            storable(str(value)) if not isinstance(value, int) or value.bit_length() < 64 else "a huge number"
        )
        self.problem(
            "header.invalid_severity",
            Level.ERROR,
            f"severity {shown[:40]!r} is not an integer from 0 to {MAX_SEVERITY} (the generator writes 6, 30 or 50)",
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
            opportunity = next(
                (m["value"].strip() for _, line in body if (m := _OPPORTUNITY.match(line.rstrip("\r\n")))),
                None,
            )
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
        if block := _BLOCK.match(text):
            rest = text[block.end() :]
            end = rest.find("===")
            if end < 0:
                return rest.strip(), None
            tail = rest[end:].lstrip("=")
            description = _COMMENT_LEAD.sub("", tail.strip()).removesuffix("*/").strip()
            return rest[:end].strip(), description or None
        if create := _CREATE.match(text):
            rest = text[create.end() :]
            ending = _CREATE_TAIL.search(rest)
            if ending is not None:
                return rest[: ending.start()].strip(), None
        return None

    def _is_boundary(self, index: int) -> bool:
        """A line that can never be file content outside a fence."""
        text = self.stripped[index]
        return _fence(text) is not None or _TRAILER.match(text) is not None or self._marker(index) is not None

    def scan(self) -> tuple[list[FileChange], str | None]:
        files: list[FileChange] = []
        opportunity: str | None = None
        prose_fence: str | None = None  # a fenced snippet open in prose (e.g. ```bash)
        i, n = 0, len(self.body)
        while i < n:
            text = self.stripped[i]
            fence = _fence(text)
            if prose_fence is not None:
                if fence and not fence.info and fence.fence.startswith(prose_fence):
                    prose_fence = None
                i += 1
                continue
            marker = self._marker(i)
            if marker is not None:
                change, i = self._block(i, *marker)
                files.append(change)
                continue
            if fence:
                if fence.info:
                    prose_fence = fence.fence
                else:
                    self._problem(
                        "block.stray_fence",
                        f"line {self.body[i][0]} closes a fence that was never opened; "
                        "a file block before it was probably misread",
                        line=self.body[i][0],
                    )
            elif opp := _OPPORTUNITY.match(text):
                opportunity = opp["value"].strip()
            elif _MIDLINE_MARKER.search(text):
                self.report.problem(
                    "block.midline_marker",
                    Level.WARNING,
                    f"line {self.body[i][0]} mentions 'Create or update the file … complete content' inside "
                    "a sentence; only a line that starts with it begins a file",
                    line=self.body[i][0],
                )
            i += 1
        if not files:
            self._problem(
                "proposal.no_files",
                "no file changes found; expected 'Create or update the file PATH with this complete "
                "content:' or '===FILE:PATH ===' blocks",
            )
        self.report.problems.extend(set_problems(files, self.report.limits))
        return files, opportunity

    def _problem(self, code: str, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.report.problem(code, Level.ERROR, message, path=path, line=line)

    def _opens_fence(self, index: int) -> str | None:
        """The fence string if line ``index``, right after a file header, opens a fenced block.

        A fence with an info string (```sql) always opens. A bare fence opens
        only when content follows on the very next line; otherwise it closes
        an empty block, as in the generator's ``===FILE:x ===`` + fence form.
        """
        fence = _fence(self.stripped[index])
        if fence is None:
            return None
        if fence.info:
            return fence.fence
        after = index + 1
        if after < len(self.body) and self.stripped[after].strip() and not self._is_boundary(after):
            return fence.fence
        return None

    def _block(self, start: int, raw_path: str, description: str | None) -> tuple[FileChange, int]:
        """Cut one file starting at marker line ``start``; returns it and the next index."""
        header_line = self.body[start][0]
        path = raw_path.strip()
        if len(path) >= 2 and path[0] == path[-1] and path[0] in "`'\"":
            path = path[1:-1]
        shown = storable(path)
        n = len(self.body)
        j = start + 1
        while j < n and not self.stripped[j].strip():
            j += 1
        fence = self._opens_fence(j) if j < n else None
        if fence is not None:
            j += 1
        k = j
        ended_by = "end"
        while k < n:
            text = self.stripped[k]
            found = _fence(text)
            if fence is not None:
                if found and not found.info and found.fence.startswith(fence):
                    ended_by = "fence"
                    break
            elif found:
                ended_by = "snippet" if found.info else "fence"
                break
            elif _TRAILER.match(text):
                ended_by = "trailer"
                break
            elif self._marker(k) is not None:
                ended_by = "marker"
                break
            k += 1
        lines = self.body[j:k]
        if fence is None:
            while lines and not lines[0][1].strip():
                lines = lines[1:]
            while lines and not lines[-1][1].strip():
                lines = lines[:-1]
        where = self.body[k][0] if k < n else None
        if ended_by == "end":
            opened = f"the fence opened at line {self.body[j - 1][0]}" if fence else "its content"
            self._problem(
                "block.unclosed",
                f"the block for '{shown}' (line {header_line}): {opened} is never closed by a fence or "
                "a trailer, so where the file ends is ambiguous",
                path=shown,
                line=header_line,
            )
        elif ended_by == "snippet":
            self._problem(
                "block.ambiguous_end",
                f"the block for '{shown}' (line {header_line}) runs into a fenced snippet at line {where} "
                "before any closing fence, so where the file ends is ambiguous",
                path=shown,
                line=where,
            )
        content = "".join(line for _, line in lines).encode("utf-8", "surrogateescape")
        first = lines[0][0] if lines else header_line
        last = lines[-1][0] if lines else header_line
        change = FileChange(
            path=shown,
            content=content,
            description=storable(description) if description else None,
            header_line=header_line,
            line_start=first,
            line_end=last,
        )
        self.report.problems.extend(file_problems(change, self.report.limits, raw_path=path))
        return change, (k + 1 if ended_by in ("fence", "snippet") else k)


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
            key = item["key"].strip().lower().replace(" ", "_")
            if key == "proposal":
                body_start, inline = i, item["value"].strip()
                break
            if key in raw:
                self.problem(
                    "header.duplicate", Level.ERROR, f"header field {key!r} is given twice", line=number
                )
            elif key not in HEADER_FIELDS:
                self.problem(
                    "header.unknown_field", Level.WARNING, f"unknown header field {key!r}", line=number
                )
            raw[key] = (item["value"].strip(), number)
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


def _reescape(value: object) -> object:
    """JSON strings with the same meaning as text decoded from bytes.

    ``\\ud800`` escapes decode to lone surrogates; turn them into the bytes
    they would encode to, held as ``surrogateescape`` characters, so content
    checks see invalid UTF-8 exactly as they would in a markdown report.
    """
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "surrogateescape")
    if isinstance(value, list):
        return [_reescape(v) for v in value]
    if isinstance(value, dict):
        return {_reescape(k): _reescape(v) for k, v in value.items()}
    return value


class _JsonReport(_Report):
    def build(self) -> Proposal:
        try:
            document = _reescape(json.loads(self.text))
        except json.JSONDecodeError as exc:
            raise ReportError(
                f"{self.name}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from exc
        except (RecursionError, ValueError) as exc:
            raise ReportError(
                f"{self.name}: not a usable JSON report: {type(exc).__name__}: {str(exc)[:200]}"
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
