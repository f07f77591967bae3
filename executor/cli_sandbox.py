"""``executor sandbox ...`` and ``executor doctor``: operating the Docker side.

Only click is imported here; docker-py, rich and the sandbox package are
imported when a command runs, so ``executor --help`` stays fast. Errors are
raised as ``ExecutorError``s: the CLI group turns them into a message and an
exit code (3 for the engine or a build).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Literal

import click

from executor.errors import ExitCode

if TYPE_CHECKING:
    from executor_sandbox.doctor import Check
    from executor_sandbox.pool import Sandboxes
    from rich.console import Console

STYLES = {"ok": ("ok", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "bold red")}


def _console(*, stderr: bool) -> Console:
    from rich.console import Console

    console = Console(stderr=stderr, emoji=False, highlight=False)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, width=10_000, no_color=True, emoji=False, highlight=False)


def _safe(text: str) -> str:
    """Engine-supplied text (names, labels, log lines) made inert for a terminal and rich markup."""
    from rich.markup import escape

    from executor.terminal import inert

    return escape(inert(text))


@click.group(name="sandbox")
def sandbox_group() -> None:
    """The Docker sandboxes proposals are validated in."""


@sandbox_group.command()
@click.option(
    "--base",
    type=click.Choice(["auto", "pull", "offline"]),
    default="auto",
    show_default=True,
    help="pull: debian:bookworm-slim from a registry; offline: a base debootstrapped from the host's "
    "apt sources (root); auto: the slim image if present, else offline if possible, else pull.",
)
@click.option(
    "--force", is_flag=True, help="Rebuild even if the current definition's image exists (no build cache)."
)
def build(base: Literal["auto", "pull", "offline"], force: bool) -> None:
    """Build the sandbox image of the current definition.

    The tag is a hash of the image definition (Dockerfile and harness.py in
    sandboxes/executor_sandbox/image/), so an unchanged definition is reused
    and a changed one is built. The image is tagged only
    after a check in a container hardened like a sandbox passes. Progress goes
    to stderr; the last line (stdout) names the tag, its size and the seconds.
    Exit 3 if the engine is unreachable or the build fails.
    """
    from executor_sandbox import engine
    from executor_sandbox.build import BuildError, build_image
    from executor_sandbox.image import find_image, image_tag

    started = time.monotonic()
    err = _console(stderr=True)
    client = engine.connect()
    tag = image_tag()
    reused = not force and find_image(client, tag) is not None
    with err.status(f"building {tag}", spinner="dots") as status:

        def progress(line: str) -> None:
            short = line if len(line) <= 160 else line[:159] + "…"
            err.print(_safe(short), style="dim", soft_wrap=True)
            status.update(_safe(short[:100]))

        try:
            image = build_image(client, base=base, force=force, progress=progress)
        except BuildError as exc:
            for line in exc.log_tail:
                err.print(_safe(line), soft_wrap=True)
            raise
    size = int(image.attrs.get("Size") or 0) / 1e6
    seconds = time.monotonic() - started
    click.echo(f"{'current' if reused else 'built'} {tag} ({size:.0f} MB) in {seconds:.1f} s")


def _pool(ctx: click.Context) -> Sandboxes:
    from executor_sandbox.pool import Sandboxes

    from executor.config import load_settings

    settings = ctx.meta.get("executor.settings") or load_settings()
    return Sandboxes(settings.sandbox)


@sandbox_group.command()
@click.option("-n", "count", type=click.IntRange(min=1), help="How many (default: sandbox.warm_pool).")
@click.pass_context
def up(ctx: click.Context, count: int | None) -> None:
    """Start warm sandboxes (PostgreSQL ready, template prepared) so runs find them waiting.

    Runs start them on demand too; this pays the start-up ahead of time. A
    warm sandbox of an older definition or other limits is replaced.
    """
    pool = _pool(ctx)
    pool.prune()
    for entry in pool.up(count):
        seconds = f" in {entry['seconds']:.2f} s" if "seconds" in entry else ""
        click.echo(f"{entry['name']}: {entry['state']}{seconds}")


@sandbox_group.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Remove every idle warm sandbox (one in use is left to finish)."""
    removed = _pool(ctx).prune(warm=True)
    click.echo(f"removed {len(removed)} sandbox(es)" + (": " + ", ".join(removed) if removed else ""))


@sandbox_group.command()
@click.option(
    "--images", is_flag=True, help="Also remove images of older definitions and untagged leftovers."
)
@click.pass_context
def prune(ctx: click.Context, images: bool) -> None:
    """Remove sandboxes no one will use again: those of killed executors, stopped or outdated warm ones.

    Also runs at the start of every command that uses sandboxes. Sandboxes in
    use are never touched.
    """
    pool = _pool(ctx)
    removed = pool.prune()
    click.echo(f"removed {len(removed)} sandbox(es)" + (": " + ", ".join(removed) if removed else ""))
    if images:
        import functools

        import docker.errors
        from executor_sandbox import engine
        from executor_sandbox.build import stale_images

        gone = []
        for image in stale_images(pool.client):
            # By tag: an old tag on an image the current one is built on is only untagged.
            for ref in image.tags or [str(image.id)]:
                try:
                    engine.call("remove an image", functools.partial(pool.client.images.remove, ref))
                    gone.append(ref if image.tags else str(image.short_id))
                except docker.errors.APIError as exc:
                    click.echo(f"kept {ref}: {exc.explanation}", err=True)
        click.echo(f"removed {len(gone)} image(s)" + (": " + "; ".join(gone) if gone else ""))


@sandbox_group.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """The executor's sandboxes: warm slots and one-shot ones, busy or idle, current or not."""
    import dataclasses

    rows = _pool(ctx).status()
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in rows], indent=2, ensure_ascii=True))
        return
    if not rows:
        click.echo("no sandboxes; start warm ones with: executor sandbox up", err=True)
        return
    from rich.table import Table

    table = Table("name", "purpose", "state", "current", "busy", "orphan")
    for row in rows:
        table.add_row(
            _safe(row.name),
            row.purpose,
            row.state,
            "yes" if row.current else "no",
            "yes" if row.busy else "",
            "yes" if row.orphan else "",
        )
    _console(stderr=False).print(table)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check that sandboxes can run here, and say how to fix what cannot.

    \b
    Checks: configuration; Docker engine reachable (address, version); sandbox
    image present and current; stale images of older definitions; warm
    sandboxes (running, current definition); orphaned one-shot sandboxes of
    dead executor processes; free disk for Docker and EXECUTOR_HOME (2 GiB);
    runs whose executor was killed (settled: rolled out with their rollback,
    or marked crashed with the base untouched).
    Each prints ok, warn or FAIL, and for warn/FAIL the command that fixes it.
    Exit 0: no check failed (warnings allowed); 1: a check failed; 3: the
    Docker engine is unreachable (the checks needing it are skipped).
    """
    from executor_sandbox import doctor as checks

    from executor.config import load_settings
    from executor.errors import ConfigError
    from executor.locations import default_home

    out = None if as_json else _console(stderr=False)
    results: list[Check] = []

    def report(check: Check) -> None:
        results.append(check)
        if out is not None:
            word, style = STYLES[check.status]
            out.print(f"[{style}]{word:<4}[/] {check.name:<15} {_safe(check.detail)}", soft_wrap=True)
            if check.fix and check.status != "ok":
                out.print(f"     {'':<15} fix: {_safe(check.fix)}", soft_wrap=True)

    try:
        settings = ctx.meta.get("executor.settings") or load_settings()
        home, override = settings.home, settings.sandbox.image
        report(checks.Check("config", "ok", f"home {home}"))
    except ConfigError as exc:
        home, override = default_home(), None
        report(checks.Check("config", "fail", exc.message, exc.hint or "correct the setting named above"))
    engine_check, client, engine_error = checks.connect()
    report(engine_check)
    if client is not None:
        for check in checks.engine_checks(client, home=home, image_override=override):
            report(check)
    else:
        report(
            checks.disk_check("home disk", home, "free space there, or point EXECUTOR_HOME at a larger disk")
        )
    report(_runs_check())
    if as_json:
        ok = all(c.status != "fail" for c in results)
        click.echo(
            json.dumps({"ok": ok, "checks": [c.as_json() for c in results]}, indent=2, ensure_ascii=True)
        )
    if engine_error is not None:
        raise engine_error
    if any(c.status == "fail" for c in results):
        ctx.exit(int(ExitCode.GATE_FAILED))


def _runs_check() -> Check:
    """Settle what killed ``executor run``s and ``rollback``s left: their records, refs and run states."""
    from executor_rollback.records import recover_rollbacks, recover_runs
    from executor_sandbox.doctor import Check

    from executor.config import load_settings
    from executor.errors import ExecutorError
    from executor.store import open_store
    from executor.store.runs import RunStore

    try:
        runs = RunStore(open_store(load_settings().store))
        # Rollbacks first: settling a dead run's repository would settle them unreported.
        rolled = recover_rollbacks(runs, "doctor")
        recovered = recover_runs(runs, "doctor")
    except ExecutorError as exc:
        return Check("runs", "fail", f"cannot read the store: {exc.message}", exc.hint or "see the message")
    if not recovered and not rolled:
        return Check("runs", "ok", "no run or rollback was left behind by a killed executor")
    settled = [f"settled {len(recovered)} run(s) of killed executors"] if recovered else []
    settled += [f"settled {len(rolled)} rollback(s) of killed executors"] if rolled else []
    return Check("runs", "ok", ", ".join(settled) + ": " + "; ".join(recovered + rolled))
