"""Checkpoints (the engine's state at step and cycle boundaries) and run liveness (owner, heartbeat).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("id", Id, nullable=False),
        sa.Column("run_id", Id, nullable=False),
        sa.Column("t", sa.Double(), nullable=False),
        sa.Column("state", Json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_checkpoints"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_checkpoints_run_id_runs"),
    )
    op.create_index("ix_checkpoints_run_id", "checkpoints", ["run_id"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("owner", sa.String()))
        batch.add_column(sa.Column("heartbeat_unix", sa.Double()))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("heartbeat_unix")
        batch.drop_column("owner")
    op.drop_index("ix_checkpoints_run_id", table_name="checkpoints")
    op.drop_table("checkpoints")
