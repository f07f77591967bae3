"""The SQL plugin against the real PostgreSQL server in a warm sandbox."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from executor_sandbox.pool import Sandboxes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.basetree import GitTree
from executor.config import PluginSettings, Settings
from executor.models import FileChange
from executor.plugin_api import BaseTree, EmptyTree, MappingTree
from executor.plugins import Plugins, load_plugins
from executor.report import parse_report
from executor.validation import ValidationReport, validate

pytestmark = pytest.mark.docker

SEEDS = Path(__file__).resolve().parent.parent / "examples" / "reports"


@pytest.fixture(scope="module")
def sql_only() -> Plugins:
    return load_plugins(PluginSettings(allow=["sql"]), third_party=False)


def seed_sql(number: str) -> list[FileChange]:
    path = next(SEEDS.glob(f"{number}_*.txt"))
    return [f for f in parse_report(path.read_bytes(), name=path.name).files if f.language == "sql"]


def change(path: str, text: str) -> FileChange:
    return FileChange(
        path=path, content=text.encode(), header_line=1, line_start=2, line_end=2 + text.count("\n")
    )


def check(
    plugins: Plugins,
    sandboxes: Sandboxes,
    files: list[FileChange],
    base: BaseTree | None = None,
    **options: object,
) -> ValidationReport:
    return validate(files, base or EmptyTree(), plugins, Settings(plugin={"sql": dict(options)}), sandboxes)


def located(
    report: ValidationReport,
) -> list[tuple[str, str | None, int | None, int | None, int | None, str]]:
    return [(d.code, d.path, d.line, d.column, d.report_line, d.message) for d in report.diagnostics]


def test_seed_003_passes_with_a_proven_rollback(sql_only: Plugins, sandboxes: Sandboxes) -> None:
    report = check(sql_only, sandboxes, seed_sql("003"))
    assert report.ok, report.diagnostics
    assert [(g.name, g.ok) for g in report.gates] == [("static", True), ("sandbox", True), ("rollback", True)]
    assert report.diagnostics == []
    [rollback] = report.rollbacks
    assert (rollback.plugin, rollback.reversible, rollback.proven) == ("sql", True, True)
    assert rollback.artifacts["down.sql"] == (
        "DROP TABLE public.interactions;\nDROP TABLE public.scenarios;\nDROP TABLE public.users;\n"
    )


def test_seed_002_fails_at_the_trailing_comma(sql_only: Plugins, sandboxes: Sandboxes) -> None:
    report = check(sql_only, sandboxes, seed_sql("002"))
    assert [(g.name, g.ok) for g in report.gates] == [
        ("static", False),
        ("sandbox", False),
        ("rollback", False),
    ]
    assert located(report) == [
        (
            "sql.42601",
            "generated_1.sql",
            5,
            30,
            14,
            'syntax error at or near ")": a trailing comma before the closing parenthesis; remove the comma',
        ),
        (
            "sql.mysql-on-update",
            "generated_1.sql",
            14,
            54,
            23,
            "'ON UPDATE CURRENT\u043d\u043e\u0441\u0438\u043f\u043b\u0435\u0439' is MySQL column syntax; PostgreSQL has no such clause: "
            "keep the column current with a BEFORE UPDATE trigger",
        ),
    ]
    assert report.rollbacks == []


def test_seed_004_fails_in_each_of_its_three_sql_files(sql_only: Plugins, sandboxes: Sandboxes) -> None:
    report = check(sql_only, sandboxes, seed_sql("004"))
    assert not report.ok
    slash = "'//' does not start a comment in PostgreSQL: use '--' for a comment"
    assert [(c, p, line, col, rl) for c, p, line, col, rl, _ in located(report)] == [
        ("sql.42601", "migrations/001_create_table.sql", 5, 54, 14),
        ("sql.slash-comment", "migrations/001_create_table.sql", 5, 72, 14),
        ("sql.42883", "migrations/002_create_users_table.sql", 3, 65, 23),
        ("sql.slash-comment", "migrations/003_create_metrics_table.sql", 4, 18, 33),
        ("sql.mysql-on-update", "migrations/003_create_metrics_table.sql", 6, 41, 35),
    ]
    messages = [m for *_, m in located(report)]
    assert messages[0] == 'syntax error at or near "BETWE0N"'
    assert messages[1] == messages[3] == slash
    assert messages[2].startswith(
        "operator does not exist: character varying + unknown; hint: No operator matches"
    )
    assert messages[4].startswith("'ON UPDATE CURRENTENT' is MySQL column syntax")


def git_repo(tmp_path: Path, files: dict[str, str]) -> GitTree:
    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-C", str(tmp_path), "-c", "core.hooksPath=/dev/null", *args],
            check=True,
            capture_output=True,
        )

    git("init", "-q", "-b", "main")
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "base")
    return GitTree(tmp_path, "main")


BASE_SCHEMA = (
    "CREATE TABLE accounts (id serial PRIMARY KEY, email text NOT NULL);\n"
    "CREATE TABLE audit (id int, note text);\n"
)


def test_baseline_from_the_base_commit_and_changes_to_existing_tables_roll_back(
    sql_only: Plugins, sandboxes: Sandboxes, tmp_path: Path
) -> None:
    base = git_repo(tmp_path, {"db/001_base.sql": BASE_SCHEMA, "README.md": "x"})
    proposal = change(
        "db/002_more.sql",
        "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS plan text DEFAULT 'free', ADD COLUMN IF NOT EXISTS org int;\n"
        "CREATE TABLE IF NOT EXISTS orgs (id serial PRIMARY KEY, name text UNIQUE);\n"
        "DO $$ BEGIN\n"
        "  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'accounts_org_fk') THEN\n"
        "    ALTER TABLE accounts ADD CONSTRAINT accounts_org_fk FOREIGN KEY (org) REFERENCES orgs (id);\n"
        "  END IF;\n"
        "END $$;\n"
        "CREATE INDEX IF NOT EXISTS accounts_email_idx ON accounts (lower(email));\n"
        "CREATE OR REPLACE VIEW paying AS SELECT id, email FROM accounts WHERE plan <> 'free';\n"
        "INSERT INTO orgs (name) VALUES ('first') ON CONFLICT DO NOTHING;\n",
    )
    report = check(sql_only, sandboxes, [proposal], base)
    assert report.ok, report.diagnostics
    [rollback] = report.rollbacks
    assert rollback.proven
    assert rollback.artifacts["down.sql"].splitlines() == [  # dependents first
        "DROP VIEW public.paying;",
        "DROP INDEX public.accounts_email_idx;",
        "ALTER TABLE public.accounts DROP COLUMN plan;",
        "ALTER TABLE public.accounts DROP COLUMN org;",  # takes accounts_org_fk with it
        "DROP TABLE public.orgs;",
    ], rollback.artifacts["down.sql"]


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("DROP TABLE audit;", "m.sql:1: drops table public.audit"),
        ("UPDATE accounts SET email = lower(email);", "m.sql:1: UPDATE changes existing rows"),
        (
            "ALTER TABLE audit ALTER COLUMN note TYPE varchar(10);",
            "changes existing column public.audit note",
        ),
        (
            "INSERT INTO audit VALUES (1, 'x');",
            "m.sql:1: INSERT adds rows to public.audit that existed before",
        ),
    ],
)
def test_destructive_statements_make_the_proposal_irreversible(
    sql_only: Plugins, sandboxes: Sandboxes, sql: str, reason: str
) -> None:
    report = check(
        sql_only, sandboxes, [change("m.sql", sql)], MappingTree({"base.sql": BASE_SCHEMA.encode()})
    )
    [rollback] = report.rollbacks
    assert not rollback.reversible
    assert not rollback.proven
    assert any(r.startswith(reason) for r in rollback.reasons), rollback.reasons
    assert [(g.name, g.ok) for g in report.gates][-1] == ("rollback", False)
    [irreversible] = [d for d in report.diagnostics if d.code == "rollback.irreversible"]
    assert irreversible.plugin == "sql"
    assert reason in irreversible.message


def test_a_file_that_cannot_run_twice_is_a_warning_or_by_config_an_error(
    sql_only: Plugins, sandboxes: Sandboxes
) -> None:
    files = [change("m.sql", "SELECT 1;\nCREATE TABLE once (a int);")]
    report = check(sql_only, sandboxes, files)
    assert report.ok
    [(code, severity, line, message)] = [
        (d.code, d.severity.value, d.line, d.message) for d in report.diagnostics
    ]
    assert (code, severity, line) == ("sql.not-rerunnable", "warning", 2)
    assert 'relation "once" already exists' in message
    strict = check(sql_only, sandboxes, files, rerun="error")
    assert not strict.ok
    assert [d.severity.value for d in strict.diagnostics] == ["error"]


def test_unsafe_sql_never_reaches_the_server(sql_only: Plugins, sandboxes: Sandboxes) -> None:
    report = check(sql_only, sandboxes, [change("m.sql", "BEGIN;\nCREATE TABLE t (a int);\nCOMMIT;")])
    assert [d.code for d in report.diagnostics] == ["sql.transaction-control", "sql.transaction-control"]
    assert report.rollbacks == []


def test_a_statement_over_the_time_limit_is_cancelled(sql_only: Plugins, sandboxes: Sandboxes) -> None:
    report = check(sql_only, sandboxes, [change("m.sql", "SELECT 1;\nSELECT pg_sleep(30);")], timeout=0.5)
    assert [(d.code, d.line) for d in report.diagnostics] == [("sql.timeout", 2)]


def test_an_error_in_a_function_body_is_located_at_its_statement(
    sql_only: Plugins, sandboxes: Sandboxes
) -> None:
    body = "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT nope FROM nowhere $$;"
    report = check(sql_only, sandboxes, [change("f.sql", "\n" + body)])
    [diagnostic] = report.diagnostics
    assert (diagnostic.code, diagnostic.line) == ("sql.42P01", 2)
    assert 'relation "nowhere" does not exist' in diagnostic.message


def test_a_base_that_does_not_apply_is_reported_not_blamed_on_the_proposal(
    sql_only: Plugins, sandboxes: Sandboxes
) -> None:
    report = check(
        sql_only, sandboxes, [change("m.sql", "SELECT 1;")], MappingTree({"old.sql": b"CREATE TABLE (;"})
    )
    [diagnostic] = report.diagnostics
    assert diagnostic.code == "sql.baseline"
    assert diagnostic.path is None
    assert diagnostic.message.startswith(
        "the base commit's SQL does not apply, so the proposal cannot be judged: old.sql:1:14"
    )


@pytest.mark.parametrize(
    ("base", "where", "says"),
    [
        # The server gives a position: placed in the file it falls in.
        (
            {
                "001_a.sql": b"CREATE TABLE a (id int);\n",
                "002_b.sql": b"\nCREATE TABLE b (id int,\n  x BETWE0N);\n",
            },
            "002_b.sql:3:5",
            'type "betwe0n" does not exist',
        ),
        # No position (a run-time error): found by running the statements again, one at a time.
        (
            {
                "001_a.sql": b"CREATE TABLE a (id int);\n",
                "002_b.sql": b"SELECT 1;\n\nCREATE TABLE a (id int);\n",
            },
            "002_b.sql:3:1",
            'relation "a" already exists',
        ),
    ],
)
def test_a_failing_base_statement_is_located_in_its_file(
    sql_only: Plugins, sandboxes: Sandboxes, base: dict[str, bytes], where: str, says: str
) -> None:
    report = check(sql_only, sandboxes, [change("m.sql", "SELECT 1;")], MappingTree(base))
    [diagnostic] = report.diagnostics
    assert diagnostic.code == "sql.baseline"
    assert f"cannot be judged: {where}: {says}" in diagnostic.message


def test_a_base_over_the_time_limit_is_reported_without_a_guessed_place(
    sql_only: Plugins, sandboxes: Sandboxes
) -> None:
    base = MappingTree({"001_a.sql": b"SELECT 1;\n", "002_b.sql": b"SELECT pg_sleep(30);\n"})
    report = check(sql_only, sandboxes, [change("m.sql", "SELECT 1;")], base, timeout=0.5)
    [diagnostic] = report.diagnostics
    assert diagnostic.code == "sql.baseline"
    assert "cannot be judged: it did not finish within 2.5 s" in diagnostic.message


def test_a_down_migration_that_leaves_something_behind_fails_the_proof(sandboxes: Sandboxes) -> None:
    """The proof compares digests; a mismatch is reported with the rows that differ."""
    from executor_sql import plugin

    from executor.plugin_api import Rollback, SandboxContext

    with sandboxes.use() as use:
        context = SandboxContext(base=EmptyTree(), use=use)
        files = [change("t.sql", "CREATE TABLE IF NOT EXISTS t (id int);\nCOMMENT ON TABLE t IS 'kept';")]
        assert plugin.executor_sandbox_validate(files, context) == []
        state = context.state
        assert state["base"].digest != state["up"].digest
        assert state["db"].schema_digest() == state["up"].digest
        # Only the comment goes: the table stays, so the schema is not the baseline's.
        leaky = Rollback(reversible=True, artifacts={"down.sql": "COMMENT ON TABLE t IS NULL;\n"})
        [problem] = plugin.executor_prove_rollback(leaky, context)
        assert problem.code == "sql.rollback-mismatch"
        assert "+ relation public.t: kind=r" in problem.message


def test_an_up_that_is_not_deterministic_has_no_proven_rollback(
    sql_only: Plugins, sandboxes: Sandboxes
) -> None:
    """A name drawn from a sequence: the down made from one run cannot undo the next."""
    base = MappingTree({"001_seq.sql": b"CREATE SEQUENCE public.n;\n"})
    up = "DO $$ BEGIN EXECUTE format('CREATE TABLE public.t_%s (id int)', nextval('public.n')); END $$;"
    report = check(sql_only, sandboxes, [change("m.sql", up)], base)
    assert [d.code for d in report.diagnostics] == ["sql.reapply-mismatch"]
    assert "+ relation public.t_3" in report.diagnostics[0].message


def test_plain_ddl_that_runs_dynamic_ddl_is_still_compared(sql_only: Plugins, sandboxes: Sandboxes) -> None:
    """ALTER TABLE is plain DDL, but its CHECK calls a function that makes a table named from a sequence."""
    base = MappingTree(
        {
            "001_base.sql": b"CREATE SEQUENCE public.n;\n"
            b"CREATE TABLE public.base_t (id int);\nINSERT INTO public.base_t VALUES (1);\n"
            b"CREATE FUNCTION public.evil(int) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$\n"
            b"BEGIN EXECUTE format('CREATE TABLE public.t_%s (id int)', nextval('public.n')); RETURN true; END $$;\n"
        }
    )
    up = "ALTER TABLE public.base_t ADD CONSTRAINT c CHECK (public.evil(id));"
    report = check(sql_only, sandboxes, [change("m.sql", up)], base)
    codes = [d.code for d in report.diagnostics]
    assert codes == ["sql.reapply-mismatch", "sql.not-rerunnable"], report.diagnostics
    assert "+ relation public.t_2" in report.diagnostics[0].message


# -- property: generated down migrations restore the baseline exactly ---------------------------

_COLUMN_TYPES = ["int", "text", "boolean DEFAULT false", "numeric(8,2)", "timestamptz DEFAULT now()", "jsonb"]


@st.composite
def reversible_ddl(draw: st.DrawFn) -> str:
    statements: list[str] = []
    tables = ["accounts", "audit"]
    for index in range(draw(st.integers(1, 6))):
        choice = draw(
            st.sampled_from(["table", "column", "index", "view", "enum", "function", "schema", "fk"])
        )
        name = f"x{index}"
        if choice == "table":
            columns = draw(st.lists(st.sampled_from(_COLUMN_TYPES), min_size=1, max_size=3))
            cols = ", ".join(f"c{i} {t}" for i, t in enumerate(columns))
            key = draw(
                st.sampled_from(["id serial PRIMARY KEY", "id bigint GENERATED ALWAYS AS IDENTITY UNIQUE"])
            )
            statements.append(f"CREATE TABLE {name} ({key}, {cols})")
            tables.append(name)
        elif choice == "column":
            table = draw(st.sampled_from(tables))
            statements.append(f"ALTER TABLE {table} ADD COLUMN {name} {draw(st.sampled_from(_COLUMN_TYPES))}")
        elif choice == "index":
            statements.append(f"CREATE INDEX {name} ON {draw(st.sampled_from(tables))} (id)")
        elif choice == "view":
            statements.append(f"CREATE VIEW {name} AS SELECT id FROM {draw(st.sampled_from(tables))}")
        elif choice == "enum":
            statements.append(f"CREATE TYPE {name} AS ENUM ('a', 'b')")
        elif choice == "function":
            statements.append(
                f"CREATE FUNCTION {name}(a int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT a + 1'"
            )
        elif choice == "schema":
            statements.append(f"CREATE SCHEMA {name}")
            statements.append(f"CREATE TABLE {name}.t (id int PRIMARY KEY)")
        else:
            table = draw(st.sampled_from(tables))
            statements.append(f"ALTER TABLE {table} ADD COLUMN {name} int REFERENCES accounts (id)")
    return ";\n".join(statements) + ";\n"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reversible_ddl())
def test_generated_down_migration_restores_the_baseline(
    sql_only: Plugins, sandboxes: Sandboxes, ddl: str
) -> None:
    base = MappingTree({"base.sql": BASE_SCHEMA.encode()})
    report = check(sql_only, sandboxes, [change("m.sql", ddl)], base)
    errors = [d for d in report.diagnostics if d.is_error]
    assert not errors, (ddl, errors)
    [rollback] = report.rollbacks
    assert rollback.reversible, (ddl, rollback)
    assert rollback.proven, (ddl, rollback)


def test_a_baseline_larger_than_one_reply_page_is_snapshotted_whole(
    sql_only: Plugins, sandboxes: Sandboxes
) -> None:
    # 80 tables of 15 columns: some 1,400 snapshot rows, more than a default SQL reply carries.
    columns = ", ".join(f"c{n} int" for n in range(14))
    base = "".join(f"CREATE TABLE t{n} (id int PRIMARY KEY, {columns});\n" for n in range(80))
    report = check(
        sql_only,
        sandboxes,
        [change("m.sql", "ALTER TABLE t79 ADD COLUMN added text;\nCREATE TABLE fresh (id int);\n")],
        MappingTree({"base.sql": base.encode()}),
    )
    assert report.ok, report.diagnostics
    [rollback] = report.rollbacks
    assert rollback.proven
    assert (
        rollback.artifacts["down.sql"]
        == "DROP TABLE public.fresh;\nALTER TABLE public.t79 DROP COLUMN added;\n"
    )
