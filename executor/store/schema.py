"""Tables of the state store (SQLAlchemy Core), shared by SQLite and PostgreSQL.

The models here are what the start-up drift check compares the live database
against; ``SCHEMA_REVISION`` must equal Alembic's head (a test checks it), so
an up-to-date store is recognised without importing Alembic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
)

SCHEMA_REVISION = "0002"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


proposals = Table(
    "proposals",
    metadata,
    Column("id", String(128), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("severity", Integer, nullable=True),
    Column("block_execution", Boolean, nullable=True),
    Column("executable", Boolean, nullable=False),
    Column("source", Text, nullable=False, comment="Where the report was read from."),
    Column("ingested_at", UTCDateTime, nullable=False),
    Column("text", Text, nullable=False, comment="The proposal text; not read by list."),
    Column("document", JSON, nullable=False, comment="The parsed proposal without text and file contents."),
    PrimaryKeyConstraint("id", "revision"),
)

proposal_files = Table(
    "proposal_files",
    metadata,
    Column("proposal_id", String(128), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Column("path", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("content", LargeBinary, nullable=False),
    PrimaryKeyConstraint("proposal_id", "revision", "position"),
    ForeignKeyConstraint(["proposal_id", "revision"], ["proposals.id", "proposals.revision"]),
)

decisions = Table(
    "decisions",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("proposal_id", String(128), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("digest", String(64), nullable=False, comment="The digest the decision is bound to."),
    Column("decision", String(16), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("note", Text, nullable=True),
    Column("override_reason", Text, nullable=True),
    Column("decided_at", UTCDateTime, nullable=False),
    Column("voided_at", UTCDateTime, nullable=True),
    ForeignKeyConstraint(["proposal_id", "revision"], ["proposals.id", "proposals.revision"]),
    Index(None, "proposal_id", "revision"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("proposal_id", String(128), nullable=True),
    Column("revision", Integer, nullable=True),
    Column("event", String(32), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("detail", JSON, nullable=False),
    Index(None, "proposal_id", "seq"),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(32), nullable=False),
    Column("proposal_id", String(128), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("repo", Text, nullable=False, comment="The target repository's resolved path."),
    Column("base_ref", Text, nullable=False),
    Column("base_commit", String(64), nullable=True, comment="The base branch's tip when the run began."),
    Column(
        "status", String(32), nullable=False, comment="running, rolled_out, validated, gate_failed, crashed."
    ),
    Column("pid", Integer, nullable=False, comment="The running executor's process, to tell a crash."),
    Column("host", String(256), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("outcome", JSON, nullable=True, comment="What run --json printed."),
    PrimaryKeyConstraint("run_id"),
    Index(None, "proposal_id", "started_at"),
)

rollbacks = Table(
    "rollbacks",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("proposal_id", String(128), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("run_id", String(32), nullable=False),
    Column("repo", Text, nullable=False),
    Column("base_ref", Text, nullable=False),
    Column("ref", Text, nullable=False, comment="refs/rollbacks/<id>: the prepared revert commit."),
    Column("rollout_commit", String(64), nullable=False, comment="The base tip the rollout made."),
    Column("revert_commit", String(64), nullable=False),
    Column(
        "files",
        JSON,
        nullable=False,
        comment="Per touched path: the pre-image blob (or null) and the written blob.",
    ),
    Column("plugins", JSON, nullable=False, comment="Each plugin's proven rollback (steps, artifacts)."),
    Column("proof", JSON, nullable=False, comment="What was proven, and when."),
    Column("state", String(16), nullable=False, comment="pending, warm, applied, abandoned."),
    Column("created_at", UTCDateTime, nullable=False),
    Column("applied_at", UTCDateTime, nullable=True),
    Column("applied_commit", String(64), nullable=True),
    Index(None, "proposal_id", "repo"),
)
