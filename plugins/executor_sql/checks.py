"""Static SQL checks on the host: what must never reach a server, and what PostgreSQL does not have.

Nothing is executed: these read tokens. Transaction control, psql
meta-commands and ``COPY ... PROGRAM`` block the sandbox run altogether;
the other rules are errors the server would stop at only once per file.
"""

from __future__ import annotations

from collections.abc import Iterator

from executor.diagnostics import Diagnostic, offset_to_line_column
from executor.models import FileChange, Level
from executor_sql.lexer import Statement, Token, split, tokenize

TRANSACTION_WORDS = {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE"}
REFERENTIAL_ACTIONS = {"CASCADE", "RESTRICT", "SET", "NO", "TO"}  # TO: CREATE RULE ... ON UPDATE TO


def decode(change: FileChange) -> tuple[str | None, Diagnostic | None]:
    """The file as text, or the diagnostic saying where it is not UTF-8 text PostgreSQL accepts."""
    try:
        text = change.content.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = change.content[: exc.start].decode("utf-8")
        line, column = offset_to_line_column(prefix, len(prefix))
        return None, _at(
            change,
            line,
            column,
            "sql.encoding",
            f"byte 0x{change.content[exc.start]:02x} is not UTF-8; PostgreSQL reads migrations as UTF-8 text: "
            "remove the stray byte or re-encode the file",
            blocks=True,
        )
    if "\x00" in text:
        line, column = offset_to_line_column(text, text.index("\x00"))
        return None, _at(change, line, column, "sql.encoding", "NUL character: remove it", blocks=True)
    return text, None


def check(change: FileChange) -> list[Diagnostic]:
    text, problem = decode(change)
    if text is None:
        return [problem] if problem else []
    statements = split(text)
    if not statements:
        return [_at(change, 1, 1, "sql.empty", "no SQL statement in the file", level=Level.WARNING)]
    found = [*_statement_rules(change, text, statements), *_token_rules(change, text, tokenize(text))]
    return sorted(found, key=lambda d: (d.line or 0, d.column or 0))


def _statement_rules(change: FileChange, text: str, statements: list[Statement]) -> Iterator[Diagnostic]:
    for statement in statements:
        words = statement.words(3)
        first = statement.tokens[0]
        if words[0] in TRANSACTION_WORDS or words[:2] in (["PREPARE", "TRANSACTION"], ["COMMIT", "PREPARED"]):
            yield _token(
                change,
                text,
                first,
                "sql.transaction-control",
                f"{' '.join(w for w in words[:2] if w)} controls the transaction; the executor runs each file "
                "in one transaction of its own: remove the statement",
                blocks=True,
            )
        if words[0] == "COPY":
            for token in statement.tokens:
                if token.word == "PROGRAM":
                    yield _token(
                        change,
                        text,
                        token,
                        "sql.copy-program",
                        "COPY ... PROGRAM runs a shell command on the database server: not allowed in a migration",
                        blocks=True,
                    )


def _token_rules(change: FileChange, text: str, tokens: list[Token]) -> Iterator[Diagnostic]:
    significant = [t for t in tokens if t.kind not in ("space", "comment")]
    for index, token in enumerate(significant):
        if token.kind == "backslash":
            command = token.text.split(None, 1)[0][:20]
            yield _token(
                change,
                text,
                token,
                "sql.psql-meta",
                f"{command} is a psql meta-command, not SQL: migrations must be plain SQL",
                blocks=True,
            )
        elif token.kind == "op" and token.text.startswith("//"):
            yield _token(
                change,
                text,
                token,
                "sql.slash-comment",
                "'//' does not start a comment in PostgreSQL: use '--' for a comment",
            )
        elif token.kind == "unterminated":
            what = {"'": "string", '"': "quoted identifier", "$": "dollar-quoted string", "/": "comment"}
            yield _token(
                change,
                text,
                token,
                "sql.unterminated",
                f"unterminated {what.get(token.text[0], 'token')}: it runs to the end of the file",
            )
        elif token.word == "ON" and index + 2 < len(significant) and significant[index + 1].word == "UPDATE":
            action = significant[index + 2]
            if action.word not in REFERENTIAL_ACTIONS:
                yield _token(
                    change,
                    text,
                    token,
                    "sql.mysql-on-update",
                    f"'ON UPDATE {action.text}' is MySQL column syntax; PostgreSQL has no such clause: "
                    "keep the column current with a BEFORE UPDATE trigger",
                )


def _token(
    change: FileChange, text: str, token: Token, code: str, message: str, *, blocks: bool = False
) -> Diagnostic:
    line, column = offset_to_line_column(text, token.start)
    return _at(change, line, column, code, message, blocks=blocks)


def _at(
    change: FileChange,
    line: int,
    column: int,
    code: str,
    message: str,
    *,
    level: Level = Level.ERROR,
    blocks: bool = False,
) -> Diagnostic:
    return Diagnostic(
        path=change.path,
        line=line,
        column=column,
        severity=level,
        code=code,
        message=message,
        blocks_sandbox=blocks,
    )
