"""Cycler jobs: the job id, barcode, step file and harvest cursor of every run on a battery cycler.

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cycler_jobs",
        sa.Column("id", Id, nullable=False),
        sa.Column("run_id", Id, nullable=False),
        sa.Column("instrument", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("job", sa.String()),
        sa.Column("barcode", sa.String(), nullable=False),
        sa.Column("step_file", sa.Text()),
        sa.Column("step_file_sha", sa.String(64), nullable=False),
        sa.Column("cursor", sa.String()),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text()),
        sa.Column("created_unix", sa.Double(), nullable=False),
        sa.Column("updated_unix", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cycler_jobs"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_cycler_jobs_run_id_runs"),
        sa.UniqueConstraint("barcode", name="uq_cycler_jobs_barcode"),
    )
    op.create_index("ix_cycler_jobs_run_id", "cycler_jobs", ["run_id"])
    op.create_index("ix_cycler_jobs_instrument", "cycler_jobs", ["instrument", "channel"])


def downgrade() -> None:
    op.drop_index("ix_cycler_jobs_instrument", table_name="cycler_jobs")
    op.drop_index("ix_cycler_jobs_run_id", table_name="cycler_jobs")
    op.drop_table("cycler_jobs")
