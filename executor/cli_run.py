"""``executor run``, ``executor rollback`` and ``executor rollbacks``: the user's main job and the way back."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from executor.errors import ExecutorError, ExitCode

if TYPE_CHECKING:
    from executor.run import Runner, RunOutcome


def _repo_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--repo",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("."),
        show_default="current directory",
        help=help_text,
    )


def _proposal_id_argument(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from executor.cli import _proposal_id  # late: executor.cli imports this module

    return _proposal_id(ctx, param, value)


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, str], None]]:
    """A live line on stderr saying which gate and plugin is at work (terminals only)."""
    import sys

    if not enabled or not sys.stderr.isatty():  # rich costs ~40 ms to import: only for a terminal
        yield lambda gate, detail: None
        return
    from rich.console import Console
    from rich.text import Text

    from executor.terminal import inert

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda gate, detail: None
        return
    with console.status("starting") as status:

        def update(gate: str, detail: str) -> None:  # file names are the proposal's: no markup, no controls
            status.update(Text(inert(f"{gate}{': ' + detail if detail else ''}")))

        yield update


def _summary(outcome: RunOutcome) -> list[str]:
    from executor.terminal import inert as safe

    short = (outcome.rollout_commit or outcome.commit or "")[:12]
    base = outcome.base.removeprefix("refs/heads/")
    lines = []
    if outcome.status == "rolled_out":
        how = "merge commit" if outcome.merged else "fast-forward"
        lines.append(f"rolled out {outcome.proposal_id} to {base} at {short} ({how})")
    elif outcome.status == "already_rolled_out":
        lines.append(f"{outcome.proposal_id} is already rolled out to {base} at {short}; nothing to do")
    elif outcome.status == "validated":
        lines.append(f"validated {outcome.proposal_id}: every gate passed; not rolled out (--no-rollout)")
    else:
        failed = outcome.failed_gate
        lines.append(
            f"{outcome.proposal_id} failed the {failed.name if failed else '?'} gate; nothing rolled out"
        )
        if failed is not None and failed.message:
            lines.append(f"  {safe(failed.message)}")
    if outcome.gates:
        lines.append(
            "gates: "
            + ", ".join(
                f"{g.name} {'skipped' if g.skipped else 'ok' if g.ok else 'FAILED'} {g.seconds:.2f}s"
                for g in outcome.gates
            )
        )
    for d in outcome.diagnostics:
        plugin = f" [{d.plugin}]" if d.plugin else ""
        report = f" (report line {d.report_line})" if d.report_line else ""
        lines.append(
            f"  {safe(d.location())}: {d.severity.value} {d.code}: {safe(d.message)}{plugin}{report}"
        )
    if outcome.branch and outcome.status == "gate_failed":
        lines.append(
            f"branch kept for inspection: {outcome.branch.removeprefix('refs/heads/')} ({outcome.commit and outcome.commit[:12]})"
        )
    if outcome.rollback is not None and outcome.status != "validated":
        lines.append(
            f"rollback ready: {outcome.rollback.ref} ({outcome.rollback.commit[:12]}, proven); "
            f"undo with: executor rollback {outcome.proposal_id}"
        )
        for name, path in outcome.rollback.files.items():
            lines.append(f"  rollback artifact {name}: {path}")
    lines += [safe(note) for note in outcome.notes]
    return lines


@click.command(name="run")
@click.argument("proposal_id", required=False, callback=_proposal_id_argument)
@_repo_option("The target git repository.")
@click.option("--base", help="Base branch (default: the repository's current branch).")
@click.option(
    "--no-rollout", is_flag=True, help="Stop after the gates: commit on proposals/<id>, base untouched."
)
@click.option(
    "--all-approved", is_flag=True, help="Run every approved proposal not yet run on this repository."
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1, 32),
    default=1,
    show_default=True,
    help="With --all-approved: runs at once.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.option(
    "--junit", type=click.Path(dir_okay=False, path_type=Path), help="Also write a JUnit XML report here."
)
@click.option(
    "--sarif", type=click.Path(dir_okay=False, path_type=Path), help="Also write a SARIF 2.1.0 report here."
)
@click.option("--by", help="Who runs it (audit log); default: the OS user.")
@click.pass_context
def run_command(
    ctx: click.Context,
    proposal_id: str | None,
    repo: Path,
    base: str | None,
    no_rollout: bool,
    all_approved: bool,
    jobs: int,
    as_json: bool,
    junit: Path | None,
    sarif: Path | None,
    by: str | None,
) -> None:
    """Run an approved proposal: gates, commit on proposals/<id>, rollout, rollback artifact.

    \b
    Gates, in order, each hard pass/fail: approval, paths and content, static
    checks, sandbox validation, rollback built and proven; then the rollout.
    Exit 0 rolled out (or validated with --no-rollout, or already rolled out);
    1 a gate failed (nothing rolled out; the branch is kept); 2 refused before
    any change (unknown id, no executable file changes, not a repository);
    3 infrastructure (store, Docker). With --all-approved: the worst of these.
    """
    from executor_sandbox.pool import Sandboxes

    from executor.cli import _actor, _print_json, _settings, _store
    from executor.errors import ExitCode, InfrastructureError
    from executor.plugins import load_plugins
    from executor.run import Runner, outcome_json
    from executor.store.runs import RunStore

    if (proposal_id is None) == (not all_approved):
        raise click.UsageError("name one proposal (executor run PROPOSAL_ID) or pass --all-approved")
    settings = _settings(ctx)
    store = _store(ctx)
    with _progress(not as_json and not all_approved) as progress:
        runner = Runner(
            settings=settings,
            store=store,
            runs=RunStore(store),
            plugins=load_plugins(settings.plugins),
            sandboxes=Sandboxes(settings.sandbox),
            actor=_actor(by),
            progress=progress,
        )
        if proposal_id is not None:
            try:
                outcomes = [runner.run(proposal_id, repo, base, rollout=not no_rollout)]
            except ExecutorError as exc:
                # CI reads the reports and the JSON: say it there too, never leave an old report in place.
                refusal = _refusal(proposal_id, exc)
                _write_ci_reports([], [refusal], junit, sarif)
                if as_json:
                    _print_json(refusal)
                raise
            refused: list[dict[str, object]] = []
        else:
            outcomes, refused = _run_all(
                runner, repo, base, rollout=not no_rollout, jobs=jobs, echo=not as_json
            )
    _write_ci_reports(outcomes, refused, junit, sarif)
    codes = [int(o.exit_code) for o in outcomes] + [int(str(r["exit_code"])) for r in refused]
    if as_json:
        _print_json(
            outcome_json(outcomes[0]) if proposal_id is not None else [*map(outcome_json, outcomes), *refused]
        )
    elif proposal_id is not None:
        for line in _summary(outcomes[0]):
            click.echo(line)
    else:
        click.echo(
            f"{len(outcomes) + len(refused)} approved proposal(s) run: "
            f"{sum(o.status == 'rolled_out' for o in outcomes)} rolled out, "
            f"{sum(o.status == 'gate_failed' for o in outcomes)} failed a gate, {len(refused)} refused"
        )
    if int(ExitCode.INFRASTRUCTURE) in codes:
        raise InfrastructureError("an infrastructure error stopped some runs; see above")
    ctx.exit(int(ExitCode.GATE_FAILED) if int(ExitCode.GATE_FAILED) in codes else max(codes, default=0))


def _run_all(
    runner: Runner, repo: Path, base: str | None, *, rollout: bool, jobs: int, echo: bool
) -> tuple[list[RunOutcome], list[dict[str, object]]]:
    """Every approved proposal not yet run, ``jobs`` at a time; refusals are collected, not raised."""
    from concurrent.futures import ThreadPoolExecutor

    from executor.errors import ExecutorError, ExitCode

    ids = runner.not_yet_run(repo, base)
    outcomes: list[RunOutcome] = []
    refused: list[dict[str, object]] = []

    def one(proposal_id: str) -> RunOutcome | dict[str, object]:
        try:
            return runner.run(proposal_id, repo, base, rollout=rollout)
        except ExecutorError as exc:
            return _refusal(proposal_id, exc)
        except Exception as exc:  # a bug in one run must not lose the others' outcomes and reports
            return {
                "proposal_id": proposal_id,
                "status": "error",
                "exit_code": int(ExitCode.INFRASTRUCTURE),
                "message": f"internal error: {type(exc).__name__}: {exc}",
            }

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="run") as pool:
        for result in pool.map(one, ids):
            if isinstance(result, dict):
                refused.append(result)
                if echo:
                    click.echo(f"{result['proposal_id']}: refused: {result['message']}")
            else:
                outcomes.append(result)
                if echo:
                    lines = _summary(result)
                    click.echo(lines[0])
                    if (
                        result.status == "gate_failed"
                        and len(lines) > 1
                        and not lines[1].startswith("gates:")
                    ):
                        click.echo(lines[1])  # why: the failed gate's message
    return outcomes, refused


def _refusal(proposal_id: str, exc: ExecutorError) -> dict[str, object]:
    status = "refused" if exc.exit_code == ExitCode.REFUSED else "error"
    return {
        "proposal_id": proposal_id,
        "status": status,
        "exit_code": int(exc.exit_code),
        "message": exc.message,
        "hint": exc.hint,
    }


def _write_ci_reports(
    outcomes: list[RunOutcome], refused: list[dict[str, object]], junit: Path | None, sarif: Path | None
) -> None:
    if junit is None and sarif is None:
        return
    from executor import ci_reports

    if junit is not None:
        ci_reports.write_atomically(junit, ci_reports.junit(outcomes, refused))
    if sarif is not None:
        ci_reports.write_atomically(sarif, ci_reports.sarif(outcomes, refused))


@click.command(name="rollback")
@click.argument("proposal_id", callback=_proposal_id_argument)
@_repo_option("The repository the proposal was rolled out to.")
@click.option("--base", help="The branch it was rolled out to (default: that of its latest rollout).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.option("--by", help="Who rolls back (audit log); default: the OS user.")
@click.pass_context
def rollback_command(
    ctx: click.Context, proposal_id: str, repo: Path, base: str | None, as_json: bool, by: str | None
) -> None:
    """Undo a rollout with its warm, proven rollback.

    \b
    The base moves to the prepared revert commit (if it moved on since the
    rollout, the revert is rebuilt on it and proven again, or refused with the
    paths that changed since). Rolling back twice is a no-op that says so.
    Exit 0 rolled back (or already); 1 the rollback cannot be applied as proven
    (nothing changed); 2 nothing to roll back; 3 infrastructure. Of the
    settings, only the store's location is read: a bad sandbox or plugin
    setting does not stand in the way of a prepared rollback (a rebuilt one
    is proven again in the sandbox, with every setting).
    """
    import time

    from executor_rollback.records import roll_back

    from executor.cli import _actor, _print_json, _store
    from executor.gitrepo import TargetRepo
    from executor.store.runs import RunStore

    began = time.monotonic()
    target = TargetRepo(repo)
    try:
        outcome = roll_back(target, RunStore(_store(ctx, settings=False)), proposal_id, _actor(by), base)
    finally:
        target.close()
    outcome.seconds = round(time.monotonic() - began, 6)
    if as_json:
        _print_json(outcome.as_json())
        return
    base = outcome.base.removeprefix("refs/heads/")
    if outcome.status == "rolled_back":
        how = " (revert rebuilt on the moved base and proven again)" if outcome.rebuilt else ""
        click.echo(f"rolled back {proposal_id}: {base} is now at {str(outcome.commit)[:12]}{how}")
    for note in outcome.notes:
        click.echo(note)


@click.command(name="rollbacks")
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Only this repository (default: all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rollbacks_command(ctx: click.Context, repo: Path | None, as_json: bool) -> None:
    """Rollback artifacts, what was proven, and their state.

    \b
    States: warm, stale (base moved on), applied, orphaned (rollout no longer
    in the base), lost (its ref is gone), abandoned, and pending or
    rolling_back (only while a run or rollback holds the repository's lock).
    """
    from executor_rollback.records import live_state, recover_rollbacks, recover_runs

    from executor.cli import _print_json, _store
    from executor.errors import RefusedError
    from executor.gitrepo import TargetRepo, repository_path
    from executor.store.runs import RunStore

    runs = RunStore(_store(ctx, settings=False))  # as rollback: only the store's location is read
    recover_rollbacks(runs, "rollbacks")  # a killed rollback's record shows as what it became
    recover_runs(runs, "rollbacks")  # and a killed run's pending one
    key = None
    if repo is not None:
        opened = TargetRepo(repo)
        key = opened.key
        opened.close()
    records = runs.rollbacks(repo=key)
    repos: dict[str, TargetRepo | None] = {}
    rows = []
    for record in records:
        if record.repo not in repos:
            try:
                opened = TargetRepo(repository_path(record.repo))
                repos[record.repo] = opened if opened.key == record.repo else None
            except RefusedError:
                repos[record.repo] = None
        target = repos[record.repo]
        state = live_state(target, record) if target is not None else "repository gone"
        rows.append(
            {
                "proposal_id": record.proposal_id,
                "state": state,
                "repo": record.repo,
                "base": record.base_ref,
                "ref": record.ref,
                "rollout_commit": record.rollout_commit,
                "revert_commit": record.revert_commit,
                "created_at": record.created_at.isoformat(),
                "applied_at": record.applied_at.isoformat() if record.applied_at else None,
                "files": record.files,
                "plugins": record.plugins,
                "proof": record.proof,
            }
        )
    for target in repos.values():
        if target is not None:
            target.close()
    if as_json:
        _print_json(rows)
        return
    if not rows:
        click.echo("no rollback artifacts; they are made by: executor run PROPOSAL_ID", err=True)
        return
    from rich.table import Table

    from executor.render import safe, stdout_console

    table = Table(
        "proposal", "state", "proven", "base", "rollout", "revert", "repository", box=None, pad_edge=False
    )
    for row in rows:
        table.add_row(
            str(row["proposal_id"]),
            str(row["state"]),
            _proven(row),
            str(row["base"]).removeprefix("refs/heads/"),
            str(row["rollout_commit"])[:12],
            str(row["revert_commit"])[:12],
            safe(repository_path(str(row["repo"]))),
        )
    stdout_console().print(table)


def _proven(row: dict[str, Any]) -> str:
    """What was proven before the rollout, and when: the revert's tree, and each plugin's rollback."""
    proof = row["proof"] or {}
    what = ["tree"] if proof.get("base_tree") else []
    what += [str(p.get("plugin")) for p in row["plugins"] if p.get("proven")]
    when = str(proof.get("proven_at", ""))[:16].replace("T", " ")
    return f"{'+'.join(what) or '-'} {when}".strip()
