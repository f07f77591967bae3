"""Proposal records: revisions, decisions bound to digests, and the audit log.

Every public method is one transaction: the store holds either the old or the
new state, never a mix, and each state change is appended to the audit log in
the same transaction as the change itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, and_, func, insert, select, text, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import DBAPIError, IntegrityError

from executor.errors import InfrastructureError, RefusedError, UnknownProposalError
from executor.store.schema import audit_log, decisions, proposal_files, proposals

if TYPE_CHECKING:
    from executor.models import Kind, Proposal, Status

_INGEST_ATTEMPTS = 3


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Decision:
    decision: Status
    actor: str
    digest: str
    decided_at: datetime
    note: str | None = None
    override_reason: str | None = None


@dataclass(frozen=True)
class Summary:
    """What ``list`` shows, read without loading file contents."""

    id: str
    revision: int
    kind: Kind
    severity: int | None
    block_execution: bool | None
    executable: bool
    digest: str
    status: Status
    files: int
    errors: int
    warnings: int
    opportunity: str | None
    ingested_at: datetime


@dataclass(frozen=True)
class StoredProposal:
    proposal: Proposal
    revision: int
    source: str
    ingested_at: datetime
    status: Status
    decision: Decision | None


@dataclass(frozen=True)
class IngestResult:
    proposal_id: str
    revision: int
    outcome: str  # "new", "unchanged" or "revised"
    voided: Decision | None = None


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    proposal_id: str | None
    revision: int | None
    event: str
    actor: str
    detail: dict[str, Any]


def _document(proposal: Proposal) -> dict[str, Any]:
    return proposal.model_dump(mode="json", exclude={"text": True, "files": {"__all__": {"content"}}})


class ProposalStore:
    """Persistence of proposals; policy (who may approve what) lives in the callers."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _transaction(self, *, durable: bool = False) -> Iterator[Connection]:
        """One transaction; ``durable``: on disk when it returns, even through a power cut.

        SQLite runs with synchronous=NORMAL (see database.py), so only the
        commits that something outside the store will rely on, such as a rollback
        record written before the base branch moves, pay for an fsync.
        """
        try:
            with self.engine.connect() as connection:
                raw = connection.connection.dbapi_connection if self.engine.dialect.name == "sqlite" else None
                if durable and raw is not None:
                    raw.execute("PRAGMA synchronous=FULL")  # outside a transaction, as SQLite requires
                try:
                    with connection.begin():
                        yield connection
                finally:
                    if durable and raw is not None:
                        raw.execute("PRAGMA synchronous=NORMAL")
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise InfrastructureError(
                f"the store at {self.engine.url.render_as_string(hide_password=True)} failed: {exc.orig}"
            ) from exc

    # -- writes ---------------------------------------------------------------

    def ingest(self, proposal: Proposal, *, source: str, actor: str) -> IngestResult:
        """Store ``proposal`` as its id's first or next revision; a no-op if unchanged."""
        for attempt in range(_INGEST_ATTEMPTS):
            try:
                with self._transaction() as connection:
                    return self._ingest(connection, proposal, source=source, actor=actor)
            except IntegrityError as exc:  # a concurrent ingest took the revision number
                if attempt == _INGEST_ATTEMPTS - 1:
                    raise InfrastructureError(
                        f"could not store {proposal.id}: concurrent writers kept conflicting ({exc.orig})"
                    ) from exc
        raise AssertionError("unreachable")

    def _ingest(self, connection: Connection, proposal: Proposal, *, source: str, actor: str) -> IngestResult:
        from executor.models import Status

        self._lock(connection, proposal.id)
        head = self._head_row(connection, proposal.id)
        if head is None:
            twin = connection.execute(
                select(proposals.c.id)
                .where(func.lower(proposals.c.id) == proposal.id.lower(), proposals.c.id != proposal.id)
                .limit(1)
            ).scalar()
            if twin is not None:
                raise RefusedError(
                    f"proposal id {proposal.id!r} differs only by case from the stored {twin!r}; "
                    "their branches would collide on case-insensitive filesystems",
                    hint="fix the id in the report",
                )
        if head is not None and head.digest == proposal.digest:
            return IngestResult(proposal.id, head.revision, "unchanged")
        revision = 1 if head is None else head.revision + 1
        now = utcnow()
        connection.execute(
            insert(proposals).values(
                id=proposal.id,
                revision=revision,
                digest=proposal.digest,
                kind=proposal.kind.value,
                severity=proposal.severity,
                block_execution=proposal.block_execution,
                executable=proposal.executable,
                source=source,
                ingested_at=now,
                text=proposal.text,
                document=_document(proposal),
            )
        )
        if proposal.files:
            connection.execute(
                insert(proposal_files),
                [
                    {
                        "proposal_id": proposal.id,
                        "revision": revision,
                        "position": position,
                        "path": change.path,
                        "sha256": change.sha256,
                        "content": change.content,
                    }
                    for position, change in enumerate(proposal.files)
                ],
            )
        detail: dict[str, Any] = {"digest": proposal.digest, "source": source}
        voided = None
        if head is not None:
            detail["previous_digest"] = head.digest
            voided = self._current_decision(connection, proposal.id, head.revision, head.digest)
            connection.execute(
                update(decisions)
                .where(decisions.c.proposal_id == proposal.id, decisions.c.voided_at.is_(None))
                .values(voided_at=now)
            )
        self._audit(connection, "revised" if head else "ingested", actor, proposal.id, revision, detail, now)
        if voided is not None and voided.decision is Status.APPROVED:
            self._audit(
                connection,
                "approval_voided",
                actor,
                proposal.id,
                head.revision if head else None,
                {"approved_by": voided.actor, "digest": voided.digest, "superseded_by": revision},
                now,
            )
        return IngestResult(proposal.id, revision, "revised" if head else "new", voided)

    def decide(
        self,
        proposal_id: str,
        *,
        revision: int,
        digest: str,
        decision: Status,
        actor: str,
        note: str | None = None,
        override_reason: str | None = None,
    ) -> Decision:
        """Record an approval or rejection bound to ``digest`` of ``revision``.

        Refused if the proposal changed since the caller looked at it, so a
        decision always vouches for exactly what its maker saw.
        """
        with self._transaction() as connection:
            self._lock(connection, proposal_id)
            head = self._head_row(connection, proposal_id)
            if head is None:
                raise UnknownProposalError(f"no proposal with id {proposal_id!r}")
            if head.revision != revision or head.digest != digest:
                raise RefusedError(
                    f"proposal {proposal_id} changed (now revision {head.revision}, digest {head.digest[:12]}) "
                    "while it was being decided",
                    hint=f"review it again with: executor show {proposal_id}",
                )
            now = utcnow()
            connection.execute(
                insert(decisions).values(
                    proposal_id=proposal_id,
                    revision=revision,
                    digest=digest,
                    decision=decision.value,
                    actor=actor,
                    note=note,
                    override_reason=override_reason,
                    decided_at=now,
                )
            )
            detail: dict[str, Any] = {"digest": digest}
            if note:
                detail["note"] = note
            if override_reason:
                detail["override_block_reason"] = override_reason
            self._audit(connection, decision.value, actor, proposal_id, revision, detail, now)
            return Decision(decision, actor, digest, now, note, override_reason)

    # -- reads ----------------------------------------------------------------

    def get(self, proposal_id: str, revision: int | None = None) -> StoredProposal:
        from executor.models import Proposal, Status

        with self._transaction() as connection:
            row = (
                self._head_row(connection, proposal_id)
                if revision is None
                else connection.execute(
                    select(proposals).where(proposals.c.id == proposal_id, proposals.c.revision == revision)
                ).first()
            )
            if row is None:
                what = f"revision {revision} of proposal" if revision is not None else "proposal with id"
                raise UnknownProposalError(
                    f"no {what} {proposal_id!r}", hint="list stored proposals with: executor list"
                )
            contents = connection.execute(
                select(proposal_files.c.position, proposal_files.c.content)
                .where(proposal_files.c.proposal_id == proposal_id, proposal_files.c.revision == row.revision)
                .order_by(proposal_files.c.position)
            ).all()
            decision = self._current_decision(connection, proposal_id, row.revision, row.digest)
        document = dict(row.document)
        files = [dict(f) for f in document["files"]]
        if len(files) != len(contents):
            raise InfrastructureError(f"the store is inconsistent: proposal {proposal_id} lost file contents")
        for file, (_, content) in zip(files, contents, strict=True):
            file["content"] = bytes(content)
        proposal = Proposal.model_validate({**document, "text": row.text, "files": files})
        if proposal.digest != row.digest:
            raise InfrastructureError(
                f"the store is inconsistent: proposal {proposal_id} revision {row.revision} no longer "
                f"matches its digest {row.digest[:12]}",
                hint="the database was modified outside the executor; re-ingest the report",
            )
        return StoredProposal(
            proposal=proposal,
            revision=row.revision,
            source=row.source,
            ingested_at=row.ingested_at,
            status=decision.decision if decision else Status.NEW,
            decision=decision,
        )

    def summaries(self, *, kind: Kind | None = None, status: Status | None = None) -> list[Summary]:
        """The latest revision of every proposal, ordered by id."""
        from executor.models import Kind, Level, Status

        latest = (
            select(proposals.c.id, func.max(proposals.c.revision).label("revision"))
            .group_by(proposals.c.id)
            .subquery()
        )
        columns = [c for c in proposals.c if c.name != "text"]  # text repeats every file's content
        query = (
            select(*columns)
            .join(latest, and_(proposals.c.id == latest.c.id, proposals.c.revision == latest.c.revision))
            .order_by(proposals.c.id)
        )
        if kind is not None:
            query = query.where(proposals.c.kind == kind.value)
        with self._transaction() as connection:
            rows = connection.execute(query).all()
            current = {
                (r.proposal_id, r.revision): r
                for r in connection.execute(
                    select(decisions).where(decisions.c.voided_at.is_(None)).order_by(decisions.c.seq)
                )
            }
        out = []
        for row in rows:
            decision = current.get((row.id, row.revision))
            row_status = (
                Status(decision.decision)
                if decision is not None and decision.digest == row.digest
                else Status.NEW
            )
            if status is not None and row_status is not status:
                continue
            problems = row.document.get("problems", [])
            out.append(
                Summary(
                    id=row.id,
                    revision=row.revision,
                    kind=Kind(row.kind),
                    severity=row.severity,
                    block_execution=row.block_execution,
                    executable=row.executable,
                    digest=row.digest,
                    status=row_status,
                    files=len(row.document.get("files", [])),
                    errors=sum(1 for p in problems if p.get("level") == Level.ERROR.value),
                    warnings=sum(1 for p in problems if p.get("level") == Level.WARNING.value),
                    opportunity=row.document.get("opportunity"),
                    ingested_at=row.ingested_at,
                )
            )
        return out

    def log(self, proposal_id: str | None = None, *, limit: int | None = None) -> list[AuditEntry]:
        """Audit entries, oldest first (the newest ``limit`` of them if given)."""
        query = select(audit_log).order_by(audit_log.c.seq.desc())
        if proposal_id is not None:
            query = query.where(audit_log.c.proposal_id == proposal_id)
        if limit is not None:
            query = query.limit(limit)
        with self._transaction() as connection:
            rows: Sequence[Row[Any]] = connection.execute(query).all()
        return [
            AuditEntry(r.seq, r.at, r.proposal_id, r.revision, r.event, r.actor, dict(r.detail))
            for r in reversed(rows)
        ]

    # -- helpers --------------------------------------------------------------

    @staticmethod
    def _lock(connection: Connection, proposal_id: str) -> None:
        """Serialize writers of one proposal until the transaction ends.

        SQLite already serializes every writer at BEGIN IMMEDIATE. On
        PostgreSQL, READ COMMITTED alone lets two ingests pick the same next
        revision, or a decision land on a revision being superseded; a
        transaction-scoped advisory lock per id (case-folded, so ids differing
        only by case serialize too) closes both races and dies with its holder.
        """
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": proposal_id.lower()}
            )

    @staticmethod
    def _head_row(connection: Connection, proposal_id: str) -> Row[Any] | None:
        return connection.execute(
            select(proposals)
            .where(proposals.c.id == proposal_id)
            .order_by(proposals.c.revision.desc())
            .limit(1)
        ).first()

    @staticmethod
    def _current_decision(
        connection: Connection, proposal_id: str, revision: int, digest: str
    ) -> Decision | None:
        """The latest decision still in force for this revision and digest."""
        from executor.models import Status

        row = connection.execute(
            select(decisions)
            .where(
                decisions.c.proposal_id == proposal_id,
                decisions.c.revision == revision,
                decisions.c.digest == digest,
                decisions.c.voided_at.is_(None),
            )
            .order_by(decisions.c.seq.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        return Decision(
            Status(row.decision), row.actor, row.digest, row.decided_at, row.note, row.override_reason
        )

    @staticmethod
    def _audit(
        connection: Connection,
        event: str,
        actor: str,
        proposal_id: str | None,
        revision: int | None,
        detail: dict[str, Any],
        at: datetime,
    ) -> None:
        connection.execute(
            insert(audit_log).values(
                at=at, proposal_id=proposal_id, revision=revision, event=event, actor=actor, detail=detail
            )
        )
