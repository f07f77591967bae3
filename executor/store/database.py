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

from sqlalchemy import Column, Engine, TypeDecorator, create_engine, event, inspect, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.types import TypeEngine

from executor.errors import InfrastructureError, SchemaDriftError
from executor.store.schema import SCHEMA_REVISION, metadata

MIGRATIONS = Path(__file__).with_name("migrations")
# Arbitrary constant naming the executor's migration lock on PostgreSQL.
_PG_MIGRATION_LOCK = 0x6578_6563


def display_url(url: str | URL) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def create_store_engine(url: str | URL) -> Engine:
    """An engine whose transactions serialize writers correctly on every backend."""
    try:
        parsed = make_url(url)
        parsed.get_backend_name()
    except (ArgumentError, ValueError) as exc:
        # Not echoed: an unparseable URL cannot be masked and may hold a password.
        raise InfrastructureError(
            "the database URL (EXECUTOR_DATABASE_URL or database_url) is not a valid SQLAlchemy URL",
            hint="use e.g. postgresql+psycopg://user@host:5432/db",
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
    # synchronous=NORMAL is SQLite's advice for WAL: a commit survives any
    # crash of a process (kill -9 included) and the file never corrupts; only
    # a power cut may lose the newest commits, as git's own ref updates may.
    # FULL would fsync every commit, about 4 ms each here, ten per run.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
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


def _affinity(column_type: TypeEngine[Any]) -> type[TypeEngine[Any]]:
    """The generic type a dialect type stands for (VARCHAR -> String, BYTEA -> LargeBinary)."""
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    affinity = column_type._type_affinity
    return affinity if affinity is not None else type(column_type)


def _type_drift(table: str, column: Column[Any], live: Any) -> str | None:
    want, have = _affinity(column.type), _affinity(live)
    if not (issubclass(have, want) or issubclass(want, have)):
        return f"column {table}.{column.name} is {live}, not {column.type.compile()}"
    want_length = getattr(column.type, "length", None)
    have_length = getattr(live, "length", None)
    if want_length is not None and have_length is not None and have_length < want_length:
        return f"column {table}.{column.name} holds at most {have_length} characters, not {want_length}"
    return None


def find_drift(connection: Connection) -> list[Drift]:
    """Differences between the live schema and ``schema.metadata`` that break queries.

    Checked: tables, columns, their type family and length, nullability,
    primary keys and foreign keys. Extra nullable columns are tolerated.
    """
    inspector = inspect(connection)
    live_tables = set(inspector.get_table_names())
    drift: list[Drift] = []
    for table in metadata.sorted_tables:
        name = table.name
        if name not in live_tables:
            drift.append(Drift(name, None, f"table {name!r} is missing"))
            continue
        live = {c["name"]: c for c in inspector.get_columns(name)}
        for column in table.columns:
            found = live.pop(column.name, None)
            if found is None:
                drift.append(Drift(name, column.name, f"table {name!r} has no column {column.name!r}"))
                continue
            if problem := _type_drift(name, column, found["type"]):
                drift.append(Drift(name, column.name, problem))
            if bool(found["nullable"]) != bool(column.nullable) and not column.primary_key:
                want = "nullable" if column.nullable else "NOT NULL"
                drift.append(Drift(name, column.name, f"column {name}.{column.name} should be {want}"))
        for extra, found in live.items():
            if not found["nullable"] and found.get("default") is None:
                drift.append(
                    Drift(
                        name,
                        extra,
                        f"table {name!r} has an unknown NOT NULL column {extra!r} that this executor cannot fill",
                    )
                )
        want_pk = [c.name for c in table.primary_key.columns]
        have_pk = inspector.get_pk_constraint(name).get("constrained_columns") or []
        if sorted(want_pk) != sorted(have_pk):
            drift.append(
                Drift(name, None, f"table {name!r} has primary key {have_pk or 'none'}, not {want_pk}")
            )
        have_fks = {
            (tuple(fk["constrained_columns"]), fk["referred_table"])
            for fk in inspector.get_foreign_keys(name)
        }
        for fk in table.foreign_key_constraints:
            key = (tuple(fk.column_keys), fk.referred_table.name)
            if key not in have_fks:
                drift.append(
                    Drift(name, None, f"table {name!r} lost its foreign key {list(key[0])} -> {key[1]!r}")
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


def sqlite_url(path: Path) -> URL:
    """A SQLite URL for ``path``, whatever characters the path holds ('?', '#', '%')."""
    return URL.create("sqlite", database=str(path))


def open_engine(url: str | URL) -> Engine:
    """Create the engine and bring the schema up to date; the store's entry point."""
    engine = create_store_engine(url)
    ensure_schema(engine)
    return engine
