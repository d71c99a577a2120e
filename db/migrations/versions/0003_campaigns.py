"""Campaigns and their planned runs (the queue of labctl schedule / labctl worker).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Real = sa.Double()


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", Id, nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("source", sa.Text()),
        sa.Column("created_unix", Real, nullable=False),
        sa.Column("misfire_limit_s", Real, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
        sa.UniqueConstraint("name", name="uq_campaigns_name"),
    )
    op.create_table(
        "planned_runs",
        sa.Column("id", Id, nullable=False),
        sa.Column("campaign_id", Id, nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("spec", Json, nullable=False),
        sa.Column("station", sa.String(), nullable=False),
        sa.Column("channel", sa.String()),
        sa.Column("pool", Json),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("control", sa.String(16)),
        sa.Column("run_id", Id),
        sa.Column("claimed_by", sa.String()),
        sa.Column("claimed_unix", Real),
        sa.Column("heartbeat_unix", Real),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("not_before_unix", Real),
        sa.Column("start_ok", sa.Boolean(), nullable=False),
        sa.Column("after", Json, nullable=False),
        sa.Column("created_unix", Real, nullable=False),
        sa.Column("started_unix", Real),
        sa.Column("ended_unix", Real),
        sa.PrimaryKeyConstraint("id", name="pk_planned_runs"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], name="fk_planned_runs_campaign_id_campaigns"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_planned_runs_run_id_runs"),
        sa.UniqueConstraint("campaign_id", "key", name="uq_planned_runs_campaign_id"),
    )
    op.create_index("ix_planned_runs_state", "planned_runs", ["state", "station"])


def downgrade() -> None:
    op.drop_index("ix_planned_runs_state", table_name="planned_runs")
    op.drop_table("planned_runs")
    op.drop_table("campaigns")
