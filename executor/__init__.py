"""proposal-executor: turn approved FSAR proposals into validated, reversible git changes.

Importing this package stays cheap: `executor --help` must not pull in the
store, Docker, git or plugin layers. ``hookimpl`` (the one public marker for
plugin authors: ``from executor import hookimpl``) is made on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from executor.hookspecs import hookimpl as hookimpl

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "hookimpl":
        from executor.hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module 'executor' has no attribute {name!r}")
