"""Opening the store: engine, automatic migrations, and the schema drift check.

The fast path (store already at ``SCHEMA_REVISION``) never imports Alembic,
which costs ~160 ms here. Drift is checked on every open, from the live
catalog, so a column dropped or renamed behind the executor's back is named
at start-up instead of failing some later query.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from executor.errors import InfrastructureError, SchemaDriftError
from executor.store.schema import SCHEMA_REVISION, metadata

MIGRATIONS = Path(__file__).with_name("migrations")
# Arbitrary constant naming the executor's migration lock on PostgreSQL.
_PG_MIGRATION_LOCK = 0x6578_6563


def display_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def create_store_engine(url: str) -> Engine:
    """An engine whose transactions serialize writers correctly on every backend."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InfrastructureError(
            f"the database URL {url!r} is not valid",
            hint="set EXECUTOR_DATABASE_URL to e.g. postgresql+psycopg://user@host/db",
        ) from exc
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            directory = Path(parsed.database).parent
            try:
                directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise InfrastructureError(
                    f"cannot create the store directory {directory}: {exc.strerror}",
                    hint="set EXECUTOR_HOME to a writable directory",
                ) from exc
        kwargs["connect_args"] = {"timeout": 30}
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        raise InfrastructureError(
            f"no database driver for {display_url(url)}: {exc}",
            hint="install the driver named in the URL (e.g. pip install 'psycopg[binary]')",
        ) from exc
    if engine.dialect.name == "sqlite":
        _serialize_sqlite_writers(engine)
    return engine


def _serialize_sqlite_writers(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and never locks up
    # front; take the write lock at BEGIN so read-modify-write is atomic
    # (SQLAlchemy's documented recipe), and use WAL so readers don't block.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@dataclass(frozen=True)
class Drift:
    table: str
    column: str | None
    message: str


def find_drift(connection: Connection) -> list[Drift]:
    """Differences between the live schema and ``schema.metadata`` that break queries."""
    inspector = inspect(connection)
    live_tables = set(inspector.get_table_names())
    drift: list[Drift] = []
    for table in metadata.sorted_tables:
        if table.name not in live_tables:
            drift.append(Drift(table.name, None, f"table {table.name!r} is missing"))
            continue
        live = {c["name"]: c for c in inspector.get_columns(table.name)}
        for column in table.columns:
            found = live.pop(column.name, None)
            if found is None:
                drift.append(
                    Drift(table.name, column.name, f"table {table.name!r} has no column {column.name!r}")
                )
            elif bool(found["nullable"]) != bool(column.nullable) and not column.primary_key:
                want = "nullable" if column.nullable else "NOT NULL"
                drift.append(
                    Drift(table.name, column.name, f"column {table.name}.{column.name} should be {want}")
                )
        for extra in live:
            if not live[extra]["nullable"] and live[extra].get("default") is None:
                drift.append(
                    Drift(
                        table.name,
                        extra,
                        f"table {table.name!r} has an unknown NOT NULL column {extra!r} "
                        "that this executor cannot fill",
                    )
                )
    return drift


def current_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
    return None if row is None else str(row[0])


def ensure_schema(engine: Engine) -> None:
    """Migrate the store to ``SCHEMA_REVISION`` if needed, then refuse on drift."""
    url = engine.url.render_as_string(hide_password=True)
    try:
        with engine.begin() as connection:
            revision = current_revision(connection)
            if revision != SCHEMA_REVISION:
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                    )
                    revision = current_revision(connection)
                if revision != SCHEMA_REVISION:
                    _upgrade(connection, revision, url)
            drift = find_drift(connection)
    except DBAPIError as exc:
        raise InfrastructureError(
            f"cannot use the store at {url}: {exc.orig}",
            hint="check EXECUTOR_DATABASE_URL / EXECUTOR_HOME and that the database is reachable",
        ) from exc
    if drift:
        details = "; ".join(d.message for d in drift)
        raise SchemaDriftError(
            f"the store at {url} does not match this executor's schema (revision {SCHEMA_REVISION}): {details}",
            hint="the database was changed outside executor migrations; restore it from a backup "
            "or repair the named tables and columns, then retry",
        )


def alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection, revision: str | None, url: str) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    config = alembic_config(connection)
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    if revision is not None and revision not in known:
        raise InfrastructureError(
            f"the store at {url} is at schema revision {revision!r}, which this executor "
            f"does not know (it knows up to {SCHEMA_REVISION})",
            hint="a newer executor wrote it; upgrade proposal-executor",
        )
    command.upgrade(config, SCHEMA_REVISION)


def open_engine(url: str) -> Engine:
    """Create the engine and bring the schema up to date; the store's entry point."""
    engine = create_store_engine(url)
    ensure_schema(engine)
    return engine
