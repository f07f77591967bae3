"""``executor plugins``: which plugins are loaded, what they handle, and which failed."""

from __future__ import annotations

import dataclasses

import click


@click.command(name="plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def plugins_command(ctx: click.Context, as_json: bool) -> None:
    """List plugins: name, version, languages, hooks; and any that failed to load.

    Plugins come from the entry-point group ``executor.plugins``; the operator's
    ``[plugins] allow``/``deny`` in config.toml choose among them.
    """
    from executor.cli import _print_json, _settings
    from executor.plugins import load_plugins

    plugins = load_plugins(_settings(ctx).plugins)
    infos = plugins.info()
    if as_json:
        _print_json(
            {
                "plugins": [dataclasses.asdict(info) for info in infos],
                "failures": [dataclasses.asdict(failure) for failure in plugins.failures],
            }
        )
        return
    from rich.table import Table

    from executor.cli_sandbox import _console, _safe

    table = Table("name", "version", "source", "languages", "hooks", box=None, pad_edge=False)
    for info in infos:
        hooks = ", ".join(hook.removeprefix("executor_") for hook in info.hooks)
        source = "built-in" if info.builtin else _safe(info.distribution or "?")
        table.add_row(_safe(info.name), _safe(info.version), source, _safe(", ".join(info.languages)), hooks)
    console = _console(stderr=False)
    console.print(table)
    for failure in plugins.failures:
        console.print(f"[bold red]failed[/] {_safe(failure.message())}")
