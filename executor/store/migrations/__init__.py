"""Alembic migrations of the state store, applied automatically at start-up."""
