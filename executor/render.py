"""What the CLI prints: stable JSON shapes (a contract) and rich tables for people."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from executor.ingest import ReportOutcome
from executor.models import Level, Proposal
from executor.store.proposals import AuditEntry, Decision, StoredProposal, Summary
from executor.store.runs import RollbackRecord, RunRecord
from executor.terminal import inert, silence_stdout


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # Rich exits the process here; a reader leaving (``| head``) must not
        # stop work such as storing the rest of an ingest batch.
        self.quiet = True
        silence_stdout()


def stdout_console() -> Console:
    # Piped output must not wrap: scripts parse it line by line. No emoji
    # codes (":lock:") or auto-highlighting may alter report text.
    console = _Console(emoji=False, highlight=False)
    if console.is_terminal:
        return console
    return _Console(width=10_000, no_color=True, emoji=False, highlight=False)


def safe(text: str, *, multiline: bool = False) -> str:
    """Report-derived text made inert for a terminal and for rich markup."""
    return escape(inert(text, multiline=multiline))


def _time(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def _decision_json(decision: Decision | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {
        "decision": decision.decision.value,
        "by": decision.actor,
        "at": _time(decision.decided_at),
        "digest": decision.digest,
        "note": decision.note,
        "override_block_reason": decision.override_reason,
    }


def problems_json(proposal: Proposal) -> list[dict[str, Any]]:
    return [p.model_dump(mode="json") for p in proposal.problems]


def proposal_json(stored: StoredProposal) -> dict[str, Any]:
    p = stored.proposal
    return {
        "id": p.id,
        "revision": stored.revision,
        "kind": p.kind.value,
        "timestamp": p.timestamp,
        "severity": p.severity,
        "block_execution": p.block_execution,
        "executable": p.executable,
        "status": stored.status.value,
        "digest": p.digest,
        "opportunity": p.opportunity,
        "source": stored.source,
        "source_format": p.source_format,
        "ingested_at": _time(stored.ingested_at),
        "decision": _decision_json(stored.decision),
        "files": [
            {
                "path": f.path,
                "language": f.language,
                "bytes": f.size,
                "sha256": f.sha256,
                "description": f.description,
                "header_line": f.header_line,
                "line_start": f.line_start,
                "line_end": f.line_end,
            }
            for f in p.files
        ],
        "problems": problems_json(p),
        "risks": list(p.risks),
        "mitigations": list(p.mitigations),
        "text": p.text,
    }


def runs_json(runs: list[RunRecord], rollbacks: list[RollbackRecord]) -> dict[str, Any]:
    """A proposal's runs and rollback records, for ``show`` (stored states; live ones: ``executor rollbacks``)."""
    return {
        "runs": [
            {
                "run_id": r.run_id,
                "revision": r.revision,
                "repo": r.repo,
                "base": r.base_ref,
                "status": r.status,
                "started_at": _time(r.started_at),
                "finished_at": _time(r.finished_at) if r.finished_at else None,
                "commit": (r.outcome or {}).get("commit"),
                "rollout_commit": (r.outcome or {}).get("rollout_commit"),
            }
            for r in runs
        ],
        "rollbacks": [
            {
                "repo": b.repo,
                "base": b.base_ref,
                "state": b.state,
                "ref": b.ref,
                "rollout_commit": b.rollout_commit,
                "revert_commit": b.revert_commit,
                "applied_at": _time(b.applied_at) if b.applied_at else None,
            }
            for b in rollbacks
        ],
    }


def render_runs(console: Console, runs: list[RunRecord], rollbacks: list[RollbackRecord]) -> None:
    if runs:
        table = Table(title="runs", title_justify="left", box=None, pad_edge=False)
        for column in ("STARTED", "STATUS", "BASE", "COMMIT", "REPOSITORY"):
            table.add_column(column)
        for r in runs:
            commit = (r.outcome or {}).get("rollout_commit") or (r.outcome or {}).get("commit") or ""
            table.add_row(
                _time(r.started_at),
                r.status,
                r.base_ref.removeprefix("refs/heads/"),
                str(commit)[:12],
                safe(r.repo),
            )
        console.print(table)
    for b in rollbacks:
        console.print(f"  rollback {b.state:<9} {b.ref} revert {b.revert_commit[:12]} in {safe(b.repo)}")


def summary_json(s: Summary) -> dict[str, Any]:
    return {
        "id": s.id,
        "revision": s.revision,
        "kind": s.kind.value,
        "severity": s.severity,
        "block_execution": s.block_execution,
        "executable": s.executable,
        "status": s.status.value,
        "digest": s.digest,
        "files": s.files,
        "errors": s.errors,
        "warnings": s.warnings,
        "opportunity": s.opportunity,
        "ingested_at": _time(s.ingested_at),
    }


def outcome_json(o: ReportOutcome) -> dict[str, Any]:
    out: dict[str, Any] = {"path": str(o.path), "malformed": o.malformed}
    if o.error is not None:
        out["error"] = o.error
    if o.proposal is not None and o.result is not None:
        out.update(
            id=o.proposal.id,
            kind=o.proposal.kind.value,
            revision=o.result.revision,
            outcome=o.result.outcome,
            executable=o.proposal.executable,
            files=len(o.proposal.files),
            problems=problems_json(o.proposal),
            approval_voided=_decision_json(o.result.voided),
        )
    return out


def audit_json(e: AuditEntry) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "at": _time(e.at),
        "proposal_id": e.proposal_id,
        "revision": e.revision,
        "event": e.event,
        "actor": e.actor,
        "detail": e.detail,
    }


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def outcome_line(o: ReportOutcome) -> str:
    if o.error is not None or o.proposal is None or o.result is None:
        return f"[red]error[/]     {safe(o.error or str(o.path))}"
    p, r = o.proposal, o.result
    errors = len(p.errors())
    warnings = len(p.problems) - errors
    label = {"new": "[green]new[/]      ", "unchanged": "unchanged", "revised": "[yellow]revised[/]  "}[
        r.outcome
    ]
    parts = [
        label,
        safe(p.id),
        f"rev {r.revision}",
        p.kind.value,
        _count(len(p.files), "file"),
        f"[red]{_count(errors, 'error')}[/]" if errors else "0 errors",
        _count(warnings, "warning"),
    ]
    if r.outcome == "revised" and r.voided is not None:
        parts.append(f"[yellow]{r.voided.decision.value} by {safe(r.voided.actor)} voided[/]")
    if o.malformed:
        parts.append("[red]malformed[/]")
    return "  ".join(parts) + f"  ({safe(o.path.name)})"


def summaries_table(rows: list[Summary]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "REV", "KIND", "SEV", "STATUS", "EXEC", "FILES", "PROBLEMS", "OPPORTUNITY"):
        table.add_column(column, overflow="fold" if column == "ID" else "ellipsis")
    for s in rows:
        problems = f"{s.errors}E {s.warnings}W" if s.errors or s.warnings else "-"
        table.add_row(
            safe(s.id),
            str(s.revision),
            s.kind.value,
            "-" if s.severity is None else str(s.severity),
            s.status.value,
            "yes" if s.executable else "no",
            str(s.files),
            problems,
            safe(s.opportunity or ""),
        )
    return table


def render_proposal(console: Console, stored: StoredProposal, *, content: bool) -> None:
    from rich.syntax import Syntax

    p = stored.proposal
    console.print(f"[bold]{safe(p.id)}[/]  revision {stored.revision}  digest {p.digest}")
    facts = [
        ("kind", p.kind_label or p.kind.value),
        ("timestamp", p.timestamp or "-"),
        ("severity", "-" if p.severity is None else str(p.severity)),
        ("block_execution", "-" if p.block_execution is None else str(p.block_execution).lower()),
        ("executable", "yes" if p.executable else "no"),
        ("status", stored.status.value),
        ("opportunity", p.opportunity or "-"),
        ("source", stored.source),
    ]
    if stored.decision is not None:
        d = stored.decision
        facts.append(
            (d.decision.value, f"by {d.actor} at {_time(d.decided_at)}" + (f": {d.note}" if d.note else ""))
        )
        if d.override_reason:
            facts.append(("block overridden", d.override_reason))
    for key, value in facts:
        console.print(f"  {key:<16} {safe(value)}")
    if p.files:
        table = Table(title="files", title_justify="left", box=None, pad_edge=False)
        for column in ("PATH", "LANGUAGE", "BYTES", "SHA256", "REPORT LINES", "DESCRIPTION"):
            table.add_column(column)
        for f in p.files:
            table.add_row(
                safe(f.path),
                f.language,
                str(f.size),
                f.sha256[:12],
                f"{f.line_start}-{f.line_end}" if f.size else f"{f.header_line} (empty)",
                safe(f.description or ""),
            )
        console.print(table)
    if p.problems:
        table = Table(title="problems", title_justify="left", box=None, pad_edge=False)
        for column in ("LEVEL", "CODE", "LINE", "MESSAGE"):
            table.add_column(column, overflow="fold")
        for problem in p.problems:
            style = "red" if problem.level is Level.ERROR else "yellow"
            table.add_row(
                f"[{style}]{problem.level.value}[/]",
                problem.code,
                "-" if problem.line is None else str(problem.line),
                safe(problem.message),
            )
        console.print(table)
    if content:
        for f in p.files:
            console.rule(safe(f.path))
            text = inert(f.content.decode("utf-8", "replace"), multiline=True)
            lexer = {"javascript": "javascript", "python": "python", "sql": "sql"}.get(f.language, "text")
            console.print(Syntax(text, lexer, line_numbers=True, word_wrap=True))


def audit_table(entries: list[AuditEntry]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("TIME", "PROPOSAL", "REV", "EVENT", "ACTOR", "DETAIL"):
        table.add_column(column, overflow="fold")
    for e in entries:
        detail = ", ".join(
            f"{k}={v[:12] if k.endswith('digest') and isinstance(v, str) else v}" for k, v in e.detail.items()
        )
        table.add_row(
            _time(e.at),
            safe(e.proposal_id or "-"),
            "-" if e.revision is None else str(e.revision),
            e.event,
            safe(e.actor),
            safe(detail),
        )
    return table
