"""The SQL plugin's host side: lexer, statement splitting, static rules (nothing runs)."""

from __future__ import annotations

import pytest
from executor_sql.checks import check
from executor_sql.database import migration_order
from executor_sql.lexer import split, tokenize
from hypothesis import given
from hypothesis import strategies as st

from executor.models import FileChange


def change(text: str | bytes, path: str = "m.sql") -> FileChange:
    data = text.encode() if isinstance(text, str) else text
    return FileChange(path=path, content=data, header_line=1, line_start=2, line_end=2 + data.count(b"\n"))


def found(text: str | bytes) -> list[tuple[str, int | None, int | None, bool]]:
    return [(d.code, d.line, d.column, d.blocks_sandbox) for d in check(change(text))]


def test_split_respects_strings_comments_dollar_quotes_and_atomic_bodies() -> None:
    source = (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; "
        "SELECT CASE WHEN true THEN 2 END; END;\n"
        "select 'a;b', $$x;$$, $t$ $$; $t$, E'\\';', \"q;\" ; -- c;\n"
        "/* ; /* ; */ */ select 1"
    )
    statements = split(source)
    assert [s.text for s in statements] == [
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END",
        "select 'a;b', $$x;$$, $t$ $$; $t$, E'\\';', \"q;\"",
        "select 1",
    ]
    assert all(source[s.start : s.start + len(s.text)] == s.text for s in statements)


def test_plpgsql_body_begin_is_inside_its_dollar_quote() -> None:
    source = "CREATE FUNCTION g() RETURNS trigger AS $$ BEGIN RETURN NEW; END $$ LANGUAGE plpgsql; SELECT 2"
    assert len(split(source)) == 2


_piece = st.sampled_from(
    ["SELECT 1", "select 'a;b'", "SELECT $$;$$", 'SELECT "x;y"', "SELECT E'\\';'", "SELECT 2 -- ;"]
)


@given(st.lists(_piece, min_size=1, max_size=8), st.sampled_from([";", ";\n", " ;\n\n"]))
def test_split_finds_exactly_the_statements_joined(pieces: list[str], separator: str) -> None:
    source = separator.join(p if not p.endswith("-- ;") else p + "\n" for p in pieces)
    texts = [s.text for s in split(source)]
    assert texts == [p.removesuffix(" -- ;") for p in pieces]


@given(st.text(max_size=200))
def test_tokens_cover_the_source_exactly(source: str) -> None:
    assert "".join(t.text for t in tokenize(source)) == source


def test_transaction_control_meta_commands_and_copy_program_block_the_sandbox() -> None:
    text = "BEGIN;\nCREATE TABLE t (a int);\n\\copy t from 'x'\nCOPY t FROM PROGRAM 'id';\nCOMMIT;\n"
    assert found(text) == [
        ("sql.transaction-control", 1, 1, True),
        ("sql.psql-meta", 3, 1, True),
        ("sql.copy-program", 4, 13, True),
        ("sql.transaction-control", 5, 1, True),
    ]


def test_slash_comments_and_mysql_on_update_are_located() -> None:
    text = "CREATE TABLE t (\n  a int, // note\n  b timestamp ON UPDATE CURRENT_TIMESTAMP,\n  c int REFERENCES u ON UPDATE CASCADE\n);"
    assert found(text) == [("sql.slash-comment", 2, 10, False), ("sql.mysql-on-update", 3, 15, False)]


def test_rule_on_update_to_is_not_mysql_syntax() -> None:
    assert found("CREATE RULE r AS ON UPDATE TO t DO INSTEAD NOTHING;") == []


def test_stray_byte_is_located_and_blocks() -> None:
    assert found(b"SELECT 1;\nSELECT '\xff';") == [("sql.encoding", 2, 9, True)]


def test_unterminated_string_and_empty_file() -> None:
    assert found("SELECT 'abc;") == [("sql.unterminated", 1, 8, False)]
    assert found("-- only a comment\n") == [("sql.empty", 1, 1, False)]


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (
            ["b.sql", "migrations/010_x.sql", "migrations/002_y.sql", "a.sql"],
            ["migrations/002_y.sql", "migrations/010_x.sql", "a.sql", "b.sql"],
        ),
        (["V10__late.sql", "V2__early.sql"], ["V2__early.sql", "V10__late.sql"]),
    ],
)
def test_migration_order(paths: list[str], expected: list[str]) -> None:
    assert migration_order(paths) == expected


def test_split_results_are_kept_within_a_budget_and_callers_get_their_own_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from executor_sql import lexer

    monkeypatch.setattr(lexer, "_SPLIT_CACHE", {})
    monkeypatch.setattr(lexer, "_split_cache_size", 0)
    monkeypatch.setattr(lexer, "_SPLIT_CACHE_BUDGET", 40)
    first = split("SELECT 1; SELECT 2;")
    first.clear()  # a caller's list is its own
    assert [s.text for s in split("SELECT 1; SELECT 2;")] == ["SELECT 1", "SELECT 2"]
    assert list(lexer._SPLIT_CACHE) == ["SELECT 1; SELECT 2;"]
    split("CREATE TABLE t (id int);")  # over the budget: the cache starts over
    assert list(lexer._SPLIT_CACHE) == ["CREATE TABLE t (id int);"]
    assert lexer._split_cache_size == len("CREATE TABLE t (id int);")
