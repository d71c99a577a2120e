"""Imported files: one row per instrument file imported as a run (sha256 unique: never imported twice).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "imports",
        sa.Column("id", Id, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("run_id", Id),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("format", sa.String()),
        sa.Column("created_unix", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_imports"),
        sa.UniqueConstraint("sha256", name="uq_imports_sha256"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_imports_run_id_runs"),
    )


def downgrade() -> None:
    op.drop_table("imports")
