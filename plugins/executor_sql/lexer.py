"""A PostgreSQL lexer just deep enough to split a file into statements and point at tokens.

The server judges the SQL; this only has to agree with it on where strings,
comments, dollar quotes and statements begin and end (the rules of the server's
scan.l and psql's psqlscan.l, including ``BEGIN ATOMIC ... END`` bodies), so
each statement can be sent alone and an error position mapped back to the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OPERATOR_CHARS = "+-*/<>=~!@#%^&|`?"
_IDENT = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")
_NUMBER = re.compile(r"(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")
_PARAM = re.compile(r"\$\d+")


@dataclass(frozen=True)
class Token:
    kind: str  # ident, qident, string, dollar, number, op, punct, semicolon, backslash, comment, space, unterminated
    text: str
    start: int  # character offset in the source

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    @property
    def word(self) -> str:
        """An unquoted identifier or keyword, upper-cased; '' for anything else."""
        return self.text.upper() if self.kind == "ident" else ""


@dataclass(frozen=True)
class Statement:
    text: str  # from its first token to its last, without the ';'
    start: int
    tokens: tuple[Token, ...]  # significant tokens only (no space or comment)

    def words(self, count: int) -> list[str]:
        return [t.word for t in self.tokens[:count]]


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        start = i
        if ch.isspace():
            while i < n and source[i].isspace():
                i += 1
            kind = "space"
        elif source.startswith("--", i):
            end = source.find("\n", i)
            i = n if end < 0 else end
            kind = "comment"
        elif source.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if source.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif source.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            kind = "comment" if depth == 0 else "unterminated"
        elif ch in "eE" and source.startswith("'", i + 1):
            i, kind = _quoted(source, i + 1, "'", backslash=True)
        elif ch in "bBxXnN" and source.startswith("'", i + 1):
            i, kind = _quoted(source, i + 1, "'", backslash=False)
        elif ch in "uU" and source.startswith("&'", i + 1):
            i, kind = _quoted(source, i + 2, "'", backslash=False)
        elif ch in "uU" and source.startswith('&"', i + 1):
            i, kind = _quoted(source, i + 2, '"', backslash=False)
            kind = "qident" if kind == "string" else kind
        elif ch == "'":
            i, kind = _quoted(source, i, "'", backslash=False)
        elif ch == '"':
            i, kind = _quoted(source, i, '"', backslash=False)
            kind = "qident" if kind == "string" else kind
        elif ch == "$" and (match := _DOLLAR_TAG.match(source, i)):
            tag = match.group()
            end = source.find(tag, match.end())
            i, kind = (n, "unterminated") if end < 0 else (end + len(tag), "dollar")
        elif ch == "$" and (match := _PARAM.match(source, i)):
            i, kind = match.end(), "param"
        elif match := _IDENT.match(source, i):
            i, kind = match.end(), "ident"
        elif (ch.isdigit() or (ch == "." and i + 1 < n and source[i + 1].isdigit())) and (
            match := _NUMBER.match(source, i)
        ):
            i, kind = match.end(), "number"
        elif ch in OPERATOR_CHARS:
            while i < n and source[i] in OPERATOR_CHARS:
                if i > start and (source.startswith("--", i) or source.startswith("/*", i)):
                    break
                i += 1
            kind = "op"
        elif ch == ";":
            i, kind = i + 1, "semicolon"
        elif ch == "\\":  # a psql meta-command: it runs to the end of the line
            end = source.find("\n", i)
            i, kind = (n if end < 0 else end), "backslash"
        else:
            i, kind = i + 1, "punct"
        tokens.append(Token(kind, source[start:i], start))
    return tokens


def _quoted(source: str, i: int, quote: str, *, backslash: bool) -> tuple[int, str]:
    """End of a quoted token opening at ``i``; doubled quotes (and backslashes in E'') escape."""
    i += 1
    n = len(source)
    while i < n:
        ch = source[i]
        if backslash and ch == "\\":
            i += 2
        elif ch == quote:
            if source.startswith(quote, i + 1):
                i += 2
            else:
                return i + 1, "string"
        else:
            i += 1
    return n, "unterminated"


# Splitting is the host's main cost of a large baseline: every run of a
# repository splits the same migration files again. Results are kept by text,
# up to a budget of characters; past it the cache starts over.
_SPLIT_CACHE: dict[str, tuple[Statement, ...]] = {}
_SPLIT_CACHE_BUDGET = 1024 * 1024  # characters of SQL; with its tokens, about 45 bytes each
_split_cache_size = 0


def split(source: str) -> list[Statement]:
    """Statements in order, as psql would send them; empty ones (only comments) are dropped."""
    global _split_cache_size
    cached = _SPLIT_CACHE.get(source)
    if cached is None:
        cached = tuple(_split(source))
        if len(source) > _SPLIT_CACHE_BUDGET:
            return list(cached)
        if _split_cache_size + len(source) > _SPLIT_CACHE_BUDGET:
            _SPLIT_CACHE.clear()
            _split_cache_size = 0
        _SPLIT_CACHE[source] = cached
        _split_cache_size += len(source)
    return list(cached)


def _split(source: str) -> list[Statement]:
    statements: list[Statement] = []
    current: list[Token] = []
    begin_depth = 0

    def flush() -> None:
        if current:
            start = current[0].start
            statements.append(Statement(source[start : current[-1].end], start, tuple(current)))
            current.clear()

    for token in tokenize(source):
        if token.kind in ("space", "comment"):
            continue
        if token.kind == "semicolon" and begin_depth == 0:
            flush()
            continue
        if token.kind == "backslash":  # psql would run it on its own, between statements
            flush()
            current.append(token)
            flush()
            continue
        current.append(token)
        if _in_routine_body_scope(current):
            word = token.word
            if word == "BEGIN" or (word == "CASE" and begin_depth > 0):
                begin_depth += 1
            elif word == "END" and begin_depth > 0:
                begin_depth -= 1
    flush()
    return statements


def _in_routine_body_scope(tokens: list[Token]) -> bool:
    """psql's rule: BEGIN ... END nesting counts only in CREATE [OR REPLACE] FUNCTION/PROCEDURE."""
    words = [t.word for t in tokens[:4]]
    if not words or words[0] != "CREATE":
        return False
    return (len(words) > 1 and words[1] in ("FUNCTION", "PROCEDURE")) or (
        len(words) > 3 and words[1:3] == ["OR", "REPLACE"] and words[3] in ("FUNCTION", "PROCEDURE")
    )
