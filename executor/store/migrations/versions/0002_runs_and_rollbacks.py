"""Runs and their rollback artifacts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("proposal_id", sa.String(128), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("repo", sa.Text, nullable=False, comment="The target repository's resolved path."),
        sa.Column("base_ref", sa.Text, nullable=False),
        sa.Column(
            "base_commit", sa.String(64), nullable=True, comment="The base branch's tip when the run began."
        ),
        sa.Column(
            "status",
            sa.String(32),
            nullable=False,
            comment="running, rolled_out, validated, gate_failed, crashed.",
        ),
        sa.Column(
            "pid", sa.Integer, nullable=False, comment="The running executor's process, to tell a crash."
        ),
        sa.Column("host", sa.String(256), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.JSON, nullable=True, comment="What run --json printed."),
        sa.PrimaryKeyConstraint("run_id", name="pk_runs"),
    )
    op.create_index("ix_runs_proposal_id_started_at", "runs", ["proposal_id", "started_at"])
    op.create_table(
        "rollbacks",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("proposal_id", sa.String(128), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("repo", sa.Text, nullable=False),
        sa.Column("base_ref", sa.Text, nullable=False),
        sa.Column("ref", sa.Text, nullable=False, comment="refs/rollbacks/<id>: the prepared revert commit."),
        sa.Column("rollout_commit", sa.String(64), nullable=False, comment="The base tip the rollout made."),
        sa.Column("revert_commit", sa.String(64), nullable=False),
        sa.Column(
            "files",
            sa.JSON,
            nullable=False,
            comment="Per touched path: the pre-image blob (or null) and the written blob.",
        ),
        sa.Column(
            "plugins", sa.JSON, nullable=False, comment="Each plugin's proven rollback (steps, artifacts)."
        ),
        sa.Column("proof", sa.JSON, nullable=False, comment="What was proven, and when."),
        sa.Column("state", sa.String(16), nullable=False, comment="pending, warm, applied, abandoned."),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("applied_commit", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_rollbacks"),
    )
    op.create_index("ix_rollbacks_proposal_id_repo", "rollbacks", ["proposal_id", "repo"])


def downgrade() -> None:
    op.drop_index("ix_rollbacks_proposal_id_repo", table_name="rollbacks")
    op.drop_table("rollbacks")
    op.drop_index("ix_runs_proposal_id_started_at", table_name="runs")
    op.drop_table("runs")
