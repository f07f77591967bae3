"""The ``executor`` command: the only place errors become messages and exit codes.

Module imports stay light (click only) so ``executor --help`` starts fast; each
command imports the store, parser and rendering it needs when it runs.
"""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from executor import __version__
from executor.errors import ExecutorError, ExitCode

if TYPE_CHECKING:
    from executor.config import Settings
    from executor.store import ProposalStore

KINDS = ("self_improvement", "idea_implementation", "unknown")
STATUSES = ("new", "approved", "rejected")


def _fail(ctx: click.Context, message: str, code: ExitCode, hint: str | None = None) -> NoReturn:
    from executor.terminal import inert

    click.echo(f"executor: error: {inert(message)}", err=True)
    if hint:
        click.echo(f"executor: hint: {inert(hint)}", err=True)
    ctx.exit(int(code))


class ExecutorGroup(click.Group):
    """Turns ``ExecutorError`` into its one-line message and exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("executor: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            from executor.terminal import silence_stdout

            silence_stdout()
            ctx.exit(141)  # as if killed by SIGPIPE, like other tools in a pipeline
        except ExecutorError as exc:
            if ctx.meta.get("executor.debug"):
                raise
            _fail(ctx, exc.message, exc.exit_code, exc.hint)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if ctx.meta.get("executor.debug"):
                raise
            _fail(
                ctx,
                f"internal error: {type(exc).__name__}: {exc}",
                ExitCode.INFRASTRUCTURE,
                "this is a bug in proposal-executor; rerun with --debug for the traceback and report it",
            )


def _text(limit: int, *, multiline: bool = False) -> Any:
    """A click callback refusing text the store or a terminal should not get."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) > limit:
            raise click.BadParameter(f"is {len(value)} characters long; at most {limit} are kept")
        for ch in value:
            category = unicodedata.category(ch)
            if category == "Cs":
                raise click.BadParameter("is not valid UTF-8 text")
            if category == "Cc" and not (multiline and ch in "\n\t"):
                raise click.BadParameter(f"contains control character U+{ord(ch):04X}")
        return value

    return check


def _proposal_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from executor.ids import is_proposal_id

    if value is not None and not is_proposal_id(value):
        from executor.terminal import inert

        raise click.BadParameter(f"{inert(value)!r} is not a proposal id; see: executor list")
    return value


def _settings(ctx: click.Context) -> Settings:
    from executor.config import load_settings

    settings = ctx.meta.get("executor.settings")
    if settings is None:
        settings = ctx.meta["executor.settings"] = load_settings()
    return settings


def _store(ctx: click.Context, *, settings: bool = True) -> ProposalStore:
    """The store; with ``settings=False`` only its location is read (see ``executor.locations``)."""
    from executor.locations import store_location
    from executor.store import open_store

    return open_store(_settings(ctx).store if settings else store_location())


def _actor(by: str | None) -> str:
    if by and by.strip():
        return by.strip()
    import getpass

    from executor.terminal import storable

    try:
        return storable(getpass.getuser())[:256]
    except (KeyError, OSError):
        return "unknown"


def _print_json(data: Any) -> None:
    # ASCII-escaped: report text must not reach a terminal raw, even as JSON.
    click.echo(json.dumps(data, indent=2, ensure_ascii=True))


@click.group(cls=ExecutorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="executor")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Turn approved FSAR proposals into validated git changes with tested rollbacks.

    \b
    Exit codes: 0 ok; 1 a gate failed (run: approval, paths, checks,
    sandbox, rollback proof, rollout conflict); 2 refused or bad input
    (unknown id, not executable, approval refused, malformed report);
    3 infrastructure error (store or Docker unreachable).
    State: EXECUTOR_HOME (default: the user data dir), EXECUTOR_DATABASE_URL.
    """
    ctx.meta["executor.debug"] = debug


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the outcome of every report as JSON.")
@click.option(
    "--by", callback=_text(256), help="Who ingests (recorded in the audit log); default: the OS user."
)
@click.pass_context
def ingest(ctx: click.Context, paths: tuple[Path, ...], as_json: bool, by: str | None) -> None:
    """Parse reports (files or directories) and store their proposals.

    One line per report: outcome, id, revision, kind, files, problems. Exit 2 if
    any report is malformed or unreadable; the others are stored regardless.
    """
    from executor.ingest import ingest_paths
    from executor.render import outcome_json, outcome_line, stdout_console

    settings = _settings(ctx)
    store = _store(ctx)
    console = stdout_console()
    outcomes = []
    for outcome in ingest_paths(paths, store, settings, actor=_actor(by)):
        outcomes.append(outcome)
        if not as_json:  # goes quiet, and storing goes on, if the reader leaves (| head)
            console.print(outcome_line(outcome), highlight=False)
    if as_json:
        _print_json([outcome_json(o) for o in outcomes])
    bad = sum(1 for o in outcomes if o.malformed)
    if bad:
        click.echo(f"executor: {bad} of {len(outcomes)} reports malformed or unreadable", err=True)
        ctx.exit(int(ExitCode.REFUSED))


@cli.command(name="list")
@click.option("--kind", type=click.Choice(KINDS), help="Only proposals of this kind.")
@click.option("--status", type=click.Choice(STATUSES), help="Only proposals in this state.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_(ctx: click.Context, kind: str | None, status: str | None, as_json: bool) -> None:
    """List stored proposals (latest revision of each)."""
    from executor.models import Kind, Status
    from executor.render import stdout_console, summaries_table, summary_json

    rows = _store(ctx).summaries(kind=Kind(kind) if kind else None, status=Status(status) if status else None)
    if as_json:
        _print_json([summary_json(s) for s in rows])
    elif rows:
        stdout_console().print(summaries_table(rows))
    else:
        click.echo("no proposals stored; add some with: executor ingest PATH", err=True)


@cli.command()
@click.argument("proposal_id", callback=_proposal_id)
@click.option("--revision", type=click.IntRange(min=1), help="An earlier revision (default: the latest).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--content", is_flag=True, help="Also print every file's content.")
@click.option("--file", "file_path", metavar="PATH", help="Write the exact bytes of one file to stdout.")
@click.pass_context
def show(
    ctx: click.Context,
    proposal_id: str,
    revision: int | None,
    as_json: bool,
    content: bool,
    file_path: str | None,
) -> None:
    """Show one proposal: header, files it would write, problems, decision."""
    from executor.errors import RefusedError
    from executor.render import proposal_json, render_proposal, stdout_console

    store = _store(ctx)
    stored = store.get(proposal_id, revision)
    if file_path is not None:
        change = stored.proposal.file(file_path)
        if change is None:
            raise RefusedError(
                f"proposal {proposal_id} has no file {file_path!r}",
                hint=f"its files: {', '.join(f.path for f in stored.proposal.files) or 'none'}",
            )
        sys.stdout.buffer.write(change.content)
        sys.stdout.buffer.flush()
        return
    from executor.render import render_runs, runs_json
    from executor.store.runs import RunStore

    runs = RunStore(store).runs(proposal_id)
    rollbacks = RunStore(store).rollbacks(proposal_id=proposal_id)
    if as_json:
        _print_json({**proposal_json(stored), **runs_json(runs, rollbacks)})
    else:
        console = stdout_console()
        render_proposal(console, stored, content=content)
        render_runs(console, runs, rollbacks)


@cli.command()
@click.argument("proposal_id", callback=_proposal_id)
@click.option(
    "--by", callback=_text(256), help="Reviewer; required at or above the review severity threshold."
)
@click.option("--note", callback=_text(4096, multiline=True), help="Recorded with the approval.")
@click.option("--override-block", is_flag=True, help="Approve although the report sets block_execution.")
@click.option(
    "--reason",
    callback=_text(4096, multiline=True),
    help="Why the block is overridden (required with --override-block).",
)
@click.option(
    "--digest",
    "digest_prefix",
    metavar="PREFIX",
    help="Refuse unless the digest starts with this (at least 8 hex digits).",
)
@click.pass_context
def approve(
    ctx: click.Context,
    proposal_id: str,
    by: str | None,
    note: str | None,
    override_block: bool,
    reason: str | None,
    digest_prefix: str | None,
) -> None:
    """Approve a proposal; the approval is bound to its current digest."""
    from executor.approval import check_approvable
    from executor.models import Status

    settings = _settings(ctx)
    store = _store(ctx)
    stored = store.get(proposal_id)
    proposal = stored.proposal
    check_approvable(
        proposal,
        by=by,
        override_block=override_block,
        reason=reason,
        review_threshold=settings.review_threshold,
        limits=settings.limits,
        digest_prefix=digest_prefix,
    )
    if stored.status is Status.APPROVED and not (override_block or note):
        assert stored.decision is not None
        click.echo(
            f"{proposal_id} is already approved by {stored.decision.actor} (digest {proposal.digest[:12]})"
        )
        return
    decision = store.decide(
        proposal_id,
        revision=stored.revision,
        digest=proposal.digest,
        decision=Status.APPROVED,
        actor=_actor(by),
        note=note,
        override_reason=reason if override_block else None,
    )
    overridden = " (block_execution overridden)" if decision.override_reason else ""
    click.echo(
        f"approved {proposal_id} revision {stored.revision} by {decision.actor}, "
        f"bound to digest {proposal.digest[:12]}{overridden}"
    )


@cli.command()
@click.argument("proposal_id", callback=_proposal_id)
@click.option("--by", callback=_text(256), help="Who rejects; default: the OS user.")
@click.option("--note", callback=_text(4096, multiline=True), help="Why; recorded with the rejection.")
@click.pass_context
def reject(ctx: click.Context, proposal_id: str, by: str | None, note: str | None) -> None:
    """Reject a proposal; supersedes an earlier approval of the same revision."""
    from executor.models import Status

    store = _store(ctx)
    stored = store.get(proposal_id)
    if stored.status is Status.REJECTED:
        click.echo(f"{proposal_id} is already rejected")
        return
    decision = store.decide(
        proposal_id,
        revision=stored.revision,
        digest=stored.proposal.digest,
        decision=Status.REJECTED,
        actor=_actor(by),
        note=note,
    )
    click.echo(f"rejected {proposal_id} revision {stored.revision} by {decision.actor}")


@cli.command()
@click.argument("proposal_id", required=False, callback=_proposal_id)
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N entries.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def log(ctx: click.Context, proposal_id: str | None, limit: int | None, as_json: bool) -> None:
    """The audit trail: every state change, with time and actor."""
    from executor.render import audit_json, audit_table, stdout_console

    store = _store(ctx)
    if proposal_id is not None:
        store.get(proposal_id)  # unknown id: exit 2, not an empty log
    entries = store.log(proposal_id, limit=limit)
    if as_json:
        _print_json([audit_json(e) for e in entries])
    else:
        stdout_console().print(audit_table(entries))


from executor.cli_plugins import plugins_command  # noqa: E402  (click only; pluggy loads per command)
from executor.cli_run import rollback_command, rollbacks_command, run_command  # noqa: E402  (click only)
from executor.cli_sandbox import doctor, sandbox_group  # noqa: E402  (click only; docker loads per command)

cli.add_command(run_command)
cli.add_command(rollback_command)
cli.add_command(rollbacks_command)
cli.add_command(sandbox_group)
cli.add_command(doctor)
cli.add_command(plugins_command)


def main() -> None:
    # pydantic looks up its own plugins through entry points when it builds the
    # first model (~25 ms a process); the executor uses none.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    cli(prog_name="executor")
