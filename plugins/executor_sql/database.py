"""The SQL plugin's sandbox database: audit log, baseline, applying files, schema snapshots.

Proposal SQL runs as the use's own non-superuser role, one file per
transaction, one statement at a time (so an error names its statement and
the server's position maps back into the file). After each statement a probe
reads the audit log's high-water mark: that is how every recorded event is
tied to the statement that caused it.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from executor.diagnostics import Diagnostic, offset_to_line_column
from executor.errors import InfrastructureError
from executor.models import FileChange, Level
from executor_sql.lexer import Statement, split

if TYPE_CHECKING:
    from executor_sandbox.sandbox import ScriptResult, SqlError, Use

SEQ_PROBE = "SELECT coalesce(pg_catalog.max(seq), 0) FROM executor_audit.events"
ADMIN_ROWS = 1_000_000  # rows of a snapshot or event query; more is refused, never cut
MARK = "audit mark"  # the snapshot row that carries the audit log's high-water mark
DIGEST = "digest"  # the snapshot row that carries the digest of all the others
# SHA-256 over the compared columns of every row, in one order, each field
# length-prefixed so that no two different sets of rows encode alike.
DIGEST_OF_ROWS = (
    "encode(sha256(convert_to(coalesce(string_agg(format('%s:%s|%s:%s|%s:%s|%s', length(kind), kind, "
    "length(parent), parent, length(name), name, coalesce(length(definition) || ':' || definition, '-')), "
    "'' ORDER BY kind, parent, name, definition), ''), 'UTF8')), 'hex')"
)
# Run on a spare database's proposal connection before a use gets it, then
# rolled back: the first DDL of a session loads catalog caches and compiles the
# audit triggers, and this makes that happen off the clock.
PROPOSAL_WARMUP = """BEGIN;
CREATE TABLE executor_warmup (id serial PRIMARY KEY, name varchar(255) UNIQUE NOT NULL,
    n integer CHECK (n > 0) DEFAULT 1, at timestamptz DEFAULT now(),
    parent integer REFERENCES executor_warmup (id) ON DELETE CASCADE, tags text[]);
CREATE INDEX ON executor_warmup (at);
SELECT coalesce(pg_catalog.max(seq), 0) FROM executor_audit.events;
DROP TABLE executor_warmup;
ROLLBACK"""
_MIGRATION_NUMBER = re.compile(r"^(?:[vV])?(\d+)(?:[._\-]|__|$)")

#: (kind, parent, name, definition): the compared part of a snapshot row.
Row = tuple[str, str, str, str]


def _resource(name: str) -> str:
    return (resources.files("executor_sql") / name).read_text(encoding="utf-8")


def is_numbered(path: str) -> bool:
    """Whether the file name carries a migration number (``001_x.sql``, ``V2__y.sql``)."""
    return _MIGRATION_NUMBER.match(path.rsplit("/", 1)[-1]) is not None


def migration_order(paths: list[str]) -> list[str]:
    """Migration-numbered files (``001_x.sql``, ``V2__y.sql``) by number, then the others by path."""

    def key(path: str) -> tuple[int, int, str]:
        match = _MIGRATION_NUMBER.match(path.rsplit("/", 1)[-1])
        return (0, int(match.group(1)), path) if match else (1, 0, path)

    return sorted(paths, key=key)


@dataclass
class AppliedFile:
    """A file that applied cleanly: its statements, their command tags, and the audit mark after each."""

    change: FileChange
    text: str
    statements: list[Statement]
    statuses: list[str]
    marks: list[int]

    def locate(self, seq: int) -> tuple[int, str] | None:
        """The 1-based line and first words of the statement that recorded audit event ``seq``."""
        for statement, mark in zip(self.statements, self.marks, strict=True):
            if seq <= mark:
                line, _ = offset_to_line_column(self.text, statement.start)
                return line, " ".join(w for w in statement.words(3) if w)
        return None


class Snapshot:
    """A normalized schema: rows to compare, each row's catalog address, and the audit mark when taken."""

    def __init__(self, rows: list[list[Any]]) -> None:
        self.rows: dict[tuple[str, str, str], str] = {}
        self.addresses: dict[tuple[str, str, str], str | None] = {}
        self.mark = 0
        self.digest = ""
        for kind, parent, name, definition, address in rows:
            if kind == MARK:
                self.mark = int(definition)
                continue
            if kind == DIGEST:
                self.digest = str(definition)
                continue
            self.rows[(kind, parent, name)] = definition
            self.addresses[(kind, parent, name)] = address

    def without_role(self, role: str) -> Snapshot:
        """This snapshot with the use's own role (in ACLs: every use has another) shown as ``<role>``.

        Needed only to compare schemas of two uses' databases.
        """
        other = Snapshot([])
        other.mark, other.digest = self.mark, ""
        for key, definition in self.rows.items():
            renamed = tuple(part.replace(role, "<role>") for part in key)
            other.rows[(renamed[0], renamed[1], renamed[2])] = (
                definition.replace(role, "<role>") if isinstance(definition, str) else definition
            )
            other.addresses[(renamed[0], renamed[1], renamed[2])] = self.addresses[key]
        return other

    def compared(self) -> set[Row]:
        return {(*key, definition) for key, definition in self.rows.items()}

    def difference(self, other: Snapshot, limit: int = 6) -> str:
        """What differs from ``other`` ('-' only in other, '+' only here), for a message."""
        mine, theirs = self.compared(), other.compared()
        lines = [f"- {' '.join(filter(None, row[:3]))}: {row[3]}" for row in sorted(theirs - mine)]
        lines += [f"+ {' '.join(filter(None, row[:3]))}: {row[3]}" for row in sorted(mine - theirs)]
        more = f"; and {len(lines) - limit} more" if len(lines) > limit else ""
        return "; ".join(lines[:limit]) + more


class Database:
    def __init__(self, use: Use, timeout: float) -> None:
        self.use = use
        self.timeout = timeout

    def admin(self, sql: str) -> list[list[Any]]:
        """Trusted SQL as the superuser; any error is ours, not the proposal's."""
        result = self.use.sql(
            sql, role="admin", transaction="none", timeout=self.timeout, max_rows=ADMIN_ROWS
        )
        if not result.ok:
            reason = result.error.message if result.error else "timed out"
            raise InfrastructureError(f"the SQL plugin's own query failed in the sandbox: {reason}")
        if result.rows_truncated:  # a partial snapshot would make a wrong down migration
            raise InfrastructureError(
                f"the schema is too large for the SQL plugin: its query returned more than {ADMIN_ROWS} rows"
            )
        return result.rows or []

    def install_audit(self) -> None:
        """Event triggers, and the snapshot query prepared on the superuser's session.

        That session resolves names in pg_catalog only, so no function or
        operator the proposal creates can stand in for ours. On a warm sandbox
        the harness has done all this (and run the snapshot once, to fill the
        session's caches) before the use began.
        """
        catalog = _resource("catalog.sql")
        self.use.prepare(
            session="SET search_path = pg_catalog, pg_temp;\n"
            f"PREPARE executor_snapshot AS WITH catalog AS ({catalog})\n"
            f"SELECT '{MARK}', '', '', coalesce(max(seq), 0)::text, NULL FROM executor_audit.events\n"
            "UNION ALL SELECT * FROM catalog\n"
            f"UNION ALL SELECT '{DIGEST}', '', '', {DIGEST_OF_ROWS}, NULL FROM catalog;\n"
            f"PREPARE executor_schema_digest AS WITH catalog AS ({catalog}) SELECT {DIGEST_OF_ROWS} FROM catalog",
            sql="SET search_path = pg_catalog, pg_temp;\n" + _resource("audit.sql"),
            warmup="EXECUTE executor_snapshot; EXECUTE executor_schema_digest",
            proposal_warmup=PROPOSAL_WARMUP,
        )

    def snapshot(self) -> Snapshot:
        """The schema now, its digest, and the audit mark at the same moment (one round trip)."""
        return Snapshot(self.admin("EXECUTE executor_snapshot"))

    def events(self, after: int, through: int) -> list[tuple[str, str, str, str]]:
        """What the audit log says statements did between two marks: (event, command, object type, identity)."""
        rows = self.admin(
            "SELECT event, coalesce(command_tag, ''), coalesce(object_type, ''), coalesce(object_identity, '') "
            f"FROM executor_audit.events WHERE seq > {int(after)} AND seq <= {int(through)} ORDER BY seq"
        )
        return [(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]

    def schema_digest(self) -> str:
        """Only the digest of the schema now: enough to prove it equals a snapshot's, at less cost."""
        [[digest]] = self.admin("EXECUTE executor_schema_digest")
        return str(digest)

    def run(self, statements: list[Statement], *, commit: bool = True) -> ScriptResult:
        return self.use.sql_script(
            [s.text for s in statements],
            transaction="commit" if commit else "rollback",
            timeout=self.timeout,
            probe=SEQ_PROBE,
        )

    def apply_baseline(self, files: list[tuple[FileChange, str]]) -> Diagnostic | None:
        """The base's files, as one query in one transaction, without probes (their events are not the proposal's).

        A repository with many migrations pays one round trip and one parse
        on the server, not one per statement; and the sandbox skips the
        leading files a database made ahead already holds (the last base it
        saw, e.g. this repository before its last rollout). An error is still
        located in its file: by the server's position in the query, or, for
        an error with none (most run-time errors), by running the statements
        one at a time again, rolled back, to see which one fails.
        """
        split_files = [(change, text, split(text)) for change, text in files]
        sent = [
            (change, text, statements, "".join(f"{statement.text};\n" for statement in statements))
            for change, text, statements in split_files
            if statements
        ]
        if not sent:
            return None
        timeout = self.timeout + len(sent)
        # New migrations get the next number, so the numbered files are what the next base
        # begins with; a file without a number may sort anywhere (after them, by path).
        numbered = sum(1 for change, _, _, _ in sent if is_numbered(change.path))
        result, skipped = self.use.baseline(
            [(_file_key(change.path, sql), sql) for change, _, _, sql in sent],
            timeout=timeout,
            ahead=numbered or None,
        )
        if result.ok:
            return None
        error = result.error
        if result.timed_out or error is None:  # running it again to place it would take as long
            return Diagnostic(
                severity=Level.ERROR,
                code="sql.timeout",
                message=f"it did not finish within {timeout:g} s and was cancelled",
            )
        statements: list[tuple[FileChange, str, Statement]] = []
        starts: list[int] = []
        offset = 0
        for change, text, file_statements, _ in sent[skipped:]:
            for statement in file_statements:
                statements.append((change, text, statement))
                starts.append(offset)
                offset += len(statement.text) + 2  # ";\n"
        if error.position:
            index = bisect.bisect_right(starts, error.position - 1) - 1
            change, text, statement = statements[index]
            moved = dataclasses.replace(error, position=error.position - starts[index])
            return located_error(change, text, statement, moved, timeout)
        again = self.use.sql_script(
            [statement.text for _, _, statement in statements], transaction="rollback", timeout=timeout
        )
        if again.error is None or again.error_index is None or again.error.message != error.message:
            # Not the same failure (a COMMIT in a base file kept part of the first run; the error
            # came at commit time): say what the server said, without guessing a place.
            return Diagnostic(
                severity=Level.ERROR, code=f"sql.{error.sqlstate or 'error'}", message=error.message
            )
        change, text, statement = statements[again.error_index]
        return located_error(change, text, statement, again.error, timeout)

    def apply(self, change: FileChange, text: str, *, commit: bool = True) -> AppliedFile | Diagnostic:
        """Run one file in one transaction; the located error if it fails."""
        statements = split(text)
        result = self.run(statements, commit=commit)
        if result.ok:
            return AppliedFile(
                change,
                text,
                statements,
                [s.status or "" for s in result.statements],
                [int(s.probe[0]) if s.probe else 0 for s in result.statements],
            )
        index = result.error_index if result.error_index is not None else len(result.statements)
        statement = statements[min(index, len(statements) - 1)]
        return located_error(change, text, statement, result.error, self.timeout)


def _file_key(path: str, sql: str) -> str:
    """What a base file is to the sandbox's cache: its path and the SQL sent for it."""
    return hashlib.sha256(f"{path}\0{sql}".encode()).hexdigest()


def located_error(
    change: FileChange, text: str, statement: Statement, error: SqlError | None, timeout: float
) -> Diagnostic:
    """The server's error as a diagnostic at the file line and column it points to."""
    offset = statement.start
    if error is None:
        line, column = offset_to_line_column(text, offset)
        return Diagnostic(
            path=change.path,
            line=line,
            column=column,
            severity=Level.ERROR,
            code="sql.timeout",
            message=f"statement did not finish within {timeout:g} s and was cancelled",
        )
    if error.position:
        offset += error.position - 1
    message = error.message
    comma = _trailing_comma(statement, offset) if error.sqlstate == "42601" else None
    if comma is not None:
        offset = comma
        message += ": a trailing comma before the closing parenthesis; remove the comma"
    line, column = offset_to_line_column(text, offset)
    if error.detail:
        message += f" ({error.detail})"
    if error.internal_query and error.internal_position:
        message += f"; in the body, at: {error.internal_query[error.internal_position - 1 :][:60]!r}"
    if error.hint:
        message += f"; hint: {error.hint}"
    code = "sql.timeout" if error.sqlstate == "57014" else f"sql.{error.sqlstate or 'error'}"
    return Diagnostic(
        path=change.path, line=line, column=column, severity=Level.ERROR, code=code, message=message
    )


def _trailing_comma(statement: Statement, offset: int) -> int | None:
    """Where the comma is, when a syntax error sits on a ')' right after one."""
    tokens = statement.tokens
    for index, token in enumerate(tokens):
        if token.start == offset and token.text == ")" and index and tokens[index - 1].text == ",":
            return tokens[index - 1].start
    return None
