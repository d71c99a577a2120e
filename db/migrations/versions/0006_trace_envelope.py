"""The voltage envelope of every run, persisted: one row per 1,024 consecutive samples.

Revision ID: 0006_trace_envelope
Revises: 0005
Create Date: 2026-12-02

Rows are written by the run writer in the transaction that commits the samples they
summarise (labctl.db.envelope).  Runs recorded before this revision have none; the
dashboard computes and stores theirs from the samples the first time it draws them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_trace_envelope"
down_revision = "0005"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "trace_buckets",
        sa.Column("id", Id, nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("t_first", sa.Double()),
        sa.Column("t_last", sa.Double()),
        sa.Column("v_min", sa.Double()),
        sa.Column("v_max", sa.Double()),
        sa.PrimaryKeyConstraint("id", name="pk_trace_buckets"),
    )


def downgrade() -> None:
    op.drop_table("trace_buckets")
