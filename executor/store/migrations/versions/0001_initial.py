"""Initial store: proposals and their files, decisions, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "proposals",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("severity", sa.Integer, nullable=True),
        sa.Column("block_execution", sa.Boolean, nullable=True),
        sa.Column("executable", sa.Boolean, nullable=False),
        sa.Column("source", sa.Text, nullable=False, comment="Where the report was read from."),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text, nullable=False, comment="The proposal text; not read by list."),
        sa.Column(
            "document", sa.JSON, nullable=False, comment="The parsed proposal without text and file contents."
        ),
        sa.PrimaryKeyConstraint("id", "revision", name="pk_proposals"),
    )
    op.create_table(
        "proposal_files",
        sa.Column("proposal_id", sa.String(128), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("proposal_id", "revision", "position", name="pk_proposal_files"),
        sa.ForeignKeyConstraint(
            ["proposal_id", "revision"],
            ["proposals.id", "proposals.revision"],
            name="fk_proposal_files_proposal_id_revision_proposals",
        ),
    )
    op.create_table(
        "decisions",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("proposal_id", sa.String(128), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, comment="The digest the decision is bound to."),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("override_reason", sa.Text, nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_decisions"),
        sa.ForeignKeyConstraint(
            ["proposal_id", "revision"],
            ["proposals.id", "proposals.revision"],
            name="fk_decisions_proposal_id_revision_proposals",
        ),
    )
    op.create_index("ix_decisions_proposal_id_revision", "decisions", ["proposal_id", "revision"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("proposal_id", sa.String(128), nullable=True),
        sa.Column("revision", sa.Integer, nullable=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_proposal_id_seq", "audit_log", ["proposal_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_proposal_id_seq", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_decisions_proposal_id_revision", table_name="decisions")
    op.drop_table("decisions")
    op.drop_table("proposal_files")
    op.drop_table("proposals")
