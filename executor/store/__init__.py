"""The state store (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

from executor.locations import StoreLocation
from executor.store.database import open_engine, sqlite_url
from executor.store.proposals import ProposalStore

__all__ = ["ProposalStore", "open_store"]


def open_store(location: StoreLocation) -> ProposalStore:
    """The store at ``location`` (``Settings.store``), migrated and checked for drift."""
    url = location.database_url or sqlite_url(location.home / "executor.db")
    return ProposalStore(open_engine(url))
