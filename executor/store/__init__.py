"""The state store (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

from executor.config import Settings
from executor.store.database import open_engine, sqlite_url
from executor.store.proposals import ProposalStore

__all__ = ["ProposalStore", "open_store"]


def open_store(settings: Settings) -> ProposalStore:
    """The store for ``settings``, migrated and checked for drift."""
    url = settings.database_url or sqlite_url(settings.home / "executor.db")
    return ProposalStore(open_engine(url))
