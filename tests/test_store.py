"""The state store: revisions, digest-bound decisions, audit log, migrations and drift."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, MetaData, String, Table, Text, create_engine, make_url, text
from sqlalchemy.types import TypeEngine

from executor.errors import InfrastructureError, RefusedError, SchemaDriftError, UnknownProposalError
from executor.models import Kind, Proposal, Status
from executor.report import parse_report
from executor.store import schema
from executor.store.database import alembic_config, create_store_engine, ensure_schema, open_engine
from executor.store.proposals import ProposalStore
from executor.store.schema import SCHEMA_REVISION
from tests.conftest import SEED_FILES, SEED_IDS, seed

# The store is written for SQLite and PostgreSQL alike. Set
# EXECUTOR_TEST_POSTGRES_URL (a server URL whose user may create databases)
# to run every store test against PostgreSQL as well.
POSTGRES_URL = os.environ.get("EXECUTOR_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    assert POSTGRES_URL is not None
    name = f"executor_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def store(db_url: str) -> ProposalStore:
    return ProposalStore(open_engine(db_url))


def edited(prefix: str, old: bytes, new: bytes) -> Proposal:
    data = seed(prefix).read_bytes()
    assert old in data
    return parse_report(data.replace(old, new))


def approve(store: ProposalStore, proposal_id: str, actor: str = "alice") -> None:
    stored = store.get(proposal_id)
    store.decide(
        proposal_id,
        revision=stored.revision,
        digest=stored.proposal.digest,
        decision=Status.APPROVED,
        actor=actor,
    )


def test_round_trip_keeps_every_byte_and_field(store: ProposalStore) -> None:
    for path in SEED_FILES:
        proposal = parse_report(path.read_bytes())
        assert store.ingest(proposal, source=str(path), actor="ci").outcome == "new"
        stored = store.get(proposal.id)
        assert stored.proposal == proposal
        assert stored.proposal.digest == proposal.digest
        assert [f.content for f in stored.proposal.files] == [f.content for f in proposal.files]
        assert (stored.revision, stored.status, stored.source) == (1, Status.NEW, str(path))


def test_ingesting_the_same_report_again_is_a_no_op(store: ProposalStore) -> None:
    proposal = parse_report(seed("003").read_bytes())
    store.ingest(proposal, source="a", actor="ci")
    assert store.ingest(proposal, source="b", actor="ci").outcome == "unchanged"
    assert [e.event for e in store.log(proposal.id)] == ["ingested"]


def test_new_content_is_a_new_revision_that_voids_the_approval(store: ProposalStore) -> None:
    first = parse_report(seed("003").read_bytes())
    store.ingest(first, source="a", actor="ci")
    approve(store, first.id)
    assert store.get(first.id).status is Status.APPROVED
    second = edited("003", b"VARCHAR(255) NOT NULL", b"VARCHAR(200) NOT NULL")
    result = store.ingest(second, source="b", actor="ci")
    assert (result.outcome, result.revision) == ("revised", 2)
    assert result.voided is not None
    assert (result.voided.decision, result.voided.actor) == (Status.APPROVED, "alice")
    now = store.get(first.id)
    assert (now.revision, now.status, now.proposal.digest) == (2, Status.NEW, second.digest)
    assert store.get(first.id, revision=1).proposal.digest == first.digest
    assert [e.event for e in store.log(first.id)] == ["ingested", "approved", "revised", "approval_voided"]
    # Going back to the first content is yet another revision, still unapproved.
    assert store.ingest(first, source="a", actor="ci").revision == 3
    assert store.get(first.id).status is Status.NEW


def test_decision_is_refused_if_the_proposal_changed_meanwhile(store: ProposalStore) -> None:
    first = parse_report(seed("003").read_bytes())
    store.ingest(first, source="a", actor="ci")
    seen = store.get(first.id)
    store.ingest(edited("003", b"users", b"members"), source="b", actor="ci")
    with pytest.raises(RefusedError, match="changed"):
        store.decide(
            first.id, revision=seen.revision, digest=first.digest, decision=Status.APPROVED, actor="bob"
        )
    assert store.get(first.id).status is Status.NEW


def test_unknown_ids_and_revisions(store: ProposalStore) -> None:
    with pytest.raises(UnknownProposalError):
        store.get("fsar_nope")
    store.ingest(parse_report(seed("003").read_bytes()), source="a", actor="ci")
    with pytest.raises(UnknownProposalError, match="revision 2"):
        store.get(SEED_IDS["003"], revision=2)


def test_summaries_filter_by_kind_and_status(store: ProposalStore) -> None:
    for path in SEED_FILES:
        store.ingest(parse_report(path.read_bytes()), source=str(path), actor="ci")
    approve(store, SEED_IDS["003"])
    stored = store.get(SEED_IDS["002"])
    store.decide(
        SEED_IDS["002"], revision=1, digest=stored.proposal.digest, decision=Status.REJECTED, actor="bob"
    )
    assert [s.id for s in store.summaries()] == sorted(SEED_IDS.values())
    assert {s.id for s in store.summaries(kind=Kind.SELF_IMPROVEMENT)} == {SEED_IDS["000"], SEED_IDS["001"]}
    assert [s.id for s in store.summaries(status=Status.APPROVED)] == [SEED_IDS["003"]]
    assert [s.id for s in store.summaries(status=Status.REJECTED)] == [SEED_IDS["002"]]
    (s004,) = [s for s in store.summaries() if s.id == SEED_IDS["004"]]
    assert (s004.files, s004.errors, s004.warnings, s004.executable) == (8, 0, 1, True)


def test_audit_log_records_actor_time_and_detail(store: ProposalStore) -> None:
    proposal = parse_report(seed("003").read_bytes())
    store.ingest(proposal, source="a", actor="ci")
    stored = store.get(proposal.id)
    store.decide(
        proposal.id,
        revision=1,
        digest=proposal.digest,
        decision=Status.APPROVED,
        actor="carol",
        note="looks fine",
    )
    entries = store.log(proposal.id)
    assert [(e.event, e.actor) for e in entries] == [("ingested", "ci"), ("approved", "carol")]
    assert entries[1].detail == {"digest": proposal.digest, "note": "looks fine"}
    assert entries[0].at <= entries[1].at
    assert entries[1].at.tzinfo is not None
    assert stored.ingested_at == entries[0].at
    assert [e.event for e in store.log(limit=1)] == ["approved"]


def test_concurrent_ingests_of_one_id_never_lose_a_revision(db_url: str) -> None:
    ensure_schema(create_store_engine(db_url))
    variants = [edited("003", b"VARCHAR(255) NOT NULL", f"VARCHAR({n}) NOT NULL".encode()) for n in range(8)]
    errors: list[BaseException] = []

    def worker(p: Proposal) -> None:
        try:
            ProposalStore(create_store_engine(db_url)).ingest(p, source="t", actor="t")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(p,)) for p in variants]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = ProposalStore(create_store_engine(db_url))
    assert store.get(variants[0].id).revision == 8
    assert sorted(store.get(variants[0].id, revision=r).proposal.digest for r in range(1, 9)) == sorted(
        p.digest for p in variants
    )


# -- migrations and drift -------------------------------------------------------


def test_schema_revision_constant_is_alembic_head(db_url: str) -> None:
    engine = create_store_engine(db_url)
    with engine.connect() as connection:
        head = ScriptDirectory.from_config(alembic_config(connection)).get_current_head()
    assert head == SCHEMA_REVISION


def _first_revision(engine: Engine) -> str:
    with engine.connect() as connection:
        script = ScriptDirectory.from_config(alembic_config(connection))
        return list(script.walk_revisions())[-1].revision


def test_store_built_at_first_revision_upgrades_without_drift(db_url: str) -> None:
    engine = create_store_engine(db_url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), _first_revision(engine))
    ensure_schema(engine)  # upgrades to head and checks drift
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == SCHEMA_REVISION
    store = ProposalStore(engine)
    store.ingest(parse_report(seed("004").read_bytes()), source="a", actor="ci")
    assert store.get(SEED_IDS["004"]).proposal.files[0].path == "migrations/001_create_table.sql"


def test_dropped_column_is_refused_naming_table_and_column(db_url: str) -> None:
    engine = open_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE decisions DROP COLUMN override_reason"))
    with pytest.raises(SchemaDriftError, match="table 'decisions' has no column 'override_reason'") as caught:
        open_engine(db_url)
    assert caught.value.exit_code == 3


def _recreate(engine: Engine, name: str, mutate: Callable[[Table], Table]) -> None:
    """Drop table ``name`` and create it again as ``mutate`` changes its definition."""
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE {name}"))
        mutate(schema.metadata.tables[name].to_metadata(MetaData())).create(connection)


def _without_fk(table: Table) -> Table:
    columns = [Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in table.columns]
    return Table(table.name, MetaData(), *columns)


def _without_pk(table: Table) -> Table:
    return Table(table.name, MetaData(), *[Column(c.name, c.type, nullable=True) for c in table.columns])


def _column_type(column: str, new_type: TypeEngine[Any]) -> Callable[[Table], Table]:
    def mutate(table: Table) -> Table:
        columns = [
            Column(
                c.name,
                new_type if c.name == column else c.type,
                primary_key=c.primary_key,
                nullable=c.nullable,
            )
            for c in table.columns
        ]
        return Table(table.name, MetaData(), *columns)

    return mutate


@pytest.mark.parametrize(
    ("table", "mutate", "message"),
    [
        ("proposal_files", _column_type("content", Text()), "column proposal_files.content is TEXT"),
        ("decisions", _column_type("digest", String(8)), "decisions.digest holds at most 8 characters"),
        (
            "decisions",
            _without_fk,
            "table 'decisions' lost its foreign key ['proposal_id', 'revision'] -> 'proposals'",
        ),
        ("audit_log", _without_pk, "table 'audit_log' has primary key none, not ['seq']"),
    ],
)
def test_changed_types_keys_and_lengths_are_drift(
    db_url: str, table: str, mutate: Callable[[Table], Table], message: str
) -> None:
    engine = open_engine(db_url)
    _recreate(engine, table, mutate)
    with pytest.raises(SchemaDriftError) as caught:
        open_engine(db_url)
    assert message in str(caught.value)


def test_dropped_table_is_refused(db_url: str) -> None:
    engine = open_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE audit_log"))
    with pytest.raises(SchemaDriftError, match="table 'audit_log' is missing"):
        open_engine(db_url)


def test_store_from_a_newer_executor_is_refused(db_url: str) -> None:
    engine = open_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(InfrastructureError, match=r"'9999'.*upgrade proposal-executor"):
        open_engine(db_url)


def test_unreachable_database_is_an_infrastructure_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(InfrastructureError) as caught:
        open_engine(f"sqlite:///{blocker}/sub/store.db")
    assert caught.value.exit_code == 3


def test_invalid_url_is_an_infrastructure_error() -> None:
    with pytest.raises(InfrastructureError, match="not a valid SQLAlchemy URL"):
        open_engine("not a url")


def test_ids_differing_only_by_case_are_refused(store: ProposalStore) -> None:
    proposal = parse_report(seed("003").read_bytes())
    store.ingest(proposal, source="a", actor="ci")
    twin = parse_report(seed("003").read_bytes().replace(proposal.id.encode(), proposal.id.upper().encode()))
    with pytest.raises(RefusedError, match="differs only by case"):
        store.ingest(twin, source="b", actor="ci")


def test_decision_racing_a_revision_never_lands_on_the_superseded_one(db_url: str) -> None:
    """Ingest of revision 2 and an approval of revision 1 race; the approval is refused or voided."""
    store = ProposalStore(open_engine(db_url))
    first = parse_report(seed("003").read_bytes())
    store.ingest(first, source="a", actor="ci")
    second = edited("003", b"users", b"members")
    results: list[str] = []

    def approve_first() -> None:
        try:
            ProposalStore(create_store_engine(db_url)).decide(
                first.id, revision=1, digest=first.digest, decision=Status.APPROVED, actor="racer"
            )
            results.append("approved")
        except RefusedError:
            results.append("refused")

    threads = [threading.Thread(target=approve_first)]
    threads[0].start()
    ProposalStore(create_store_engine(db_url)).ingest(second, source="b", actor="ci")
    threads[0].join()
    head = store.get(first.id)
    assert (head.revision, head.status) == (2, Status.NEW)
    events = [e.event for e in store.log(first.id)]
    if results == ["approved"]:
        # The approval committed first, so the revision voided it, in that order.
        assert events == ["ingested", "approved", "revised", "approval_voided"]
        assert store.get(first.id, revision=1).status is Status.NEW
    else:
        assert events == ["ingested", "revised"]


def test_a_run_finishes_once(store: ProposalStore) -> None:
    from executor.store.runs import RunStore

    runs = RunStore(store)
    runs.begin_run(
        run_id="r1",
        proposal_id="p",
        revision=1,
        digest="d",
        repo="/x/.git#id",
        base_ref="refs/heads/main",
        actor="t",
    )
    outcome = {"commit": None, "rollout_commit": None}
    assert runs.finish_run("r1", status="crashed", base_commit=None, outcome=outcome, actor="doctor")
    assert not runs.finish_run(
        "r1", status="crashed", base_commit=None, outcome=outcome, actor="other thread"
    )
    assert [r.status for r in runs.runs("p")] == ["crashed"]
    assert [e.event for e in store.log("p")] == ["run_started", "run_crashed"]


def test_sqlite_store_uses_wal_with_normal_sync(tmp_path: Path) -> None:
    """WAL, and a commit that survives a killed process without an fsync each (see database.py)."""
    engine = open_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_a_durable_transaction_syncs_and_the_connection_goes_back_to_normal(tmp_path: Path) -> None:
    store = ProposalStore(open_engine(f"sqlite:///{tmp_path / 'store.db'}"))
    with store._transaction(durable=True) as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL for this commit
    with store._transaction() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # the pooled connection: NORMAL
