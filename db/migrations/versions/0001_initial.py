"""Initial labctl schema: protocols, cells, runs, steps, samples, events, results, coatings.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Real = sa.Double()


def _pk(table: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint("id", name=f"pk_{table}")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name

    op.create_table(
        "protocols",
        sa.Column("id", Id, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("source", sa.Text()),
        sa.Column("created_unix", Real, nullable=False),
        _pk("protocols"),
        sa.UniqueConstraint("sha256", name="uq_protocols_sha256"),
    )
    op.create_table(
        "cells",
        sa.Column("id", Id, nullable=False),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("kind", sa.String()),
        sa.Column("attributes", Json, nullable=False),
        sa.Column("created_unix", Real, nullable=False),
        _pk("cells"),
        sa.UniqueConstraint("label", name="uq_cells_label"),
    )
    op.create_table(
        "runs",
        sa.Column("id", Id, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("cell_id", Id),
        sa.Column("protocol_id", Id, nullable=False),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column("seed", sa.BigInteger()),
        sa.Column("preset", sa.String()),
        sa.Column("started_unix", Real, nullable=False),
        sa.Column("ended_unix", Real),
        sa.Column("end_reason", sa.Text()),
        sa.Column("meta", Json, nullable=False),
        sa.Column("n_samples", sa.BigInteger(), nullable=False, server_default="0"),
        _pk("runs"),
        sa.ForeignKeyConstraint(["cell_id"], ["cells.id"], name="fk_runs_cell_id_cells"),
        sa.ForeignKeyConstraint(["protocol_id"], ["protocols.id"], name="fk_runs_protocol_id_protocols"),
    )
    op.create_index("ix_runs_cell_id", "runs", ["cell_id"])
    op.create_table(
        "steps",
        sa.Column("id", Id, nullable=False),
        sa.Column("run_id", Id, nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("label", sa.String()),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("params", Json, nullable=False),
        sa.Column("t_start", Real, nullable=False),
        sa.Column("t_end", Real),
        sa.Column("end_reason", sa.String()),
        sa.Column("end_detail", sa.Text()),
        sa.Column("n_samples", sa.BigInteger()),
        sa.Column("charge", Real),
        sa.Column("first_sample", sa.BigInteger()),
        sa.Column("last_sample", sa.BigInteger()),
        _pk("steps"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_steps_run_id_runs"),
        sa.UniqueConstraint("run_id", "step_index", name="uq_steps_run_id"),
    )

    # samples: one row per sample, id = run_id * 2**40 + n (see db/schema.py).
    sample_columns = [
        sa.Column("id", Id, nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        *(
            sa.Column(name, Real)
            for name in ("t", "voltage", "current", "charge", "temperature", "frequency", "z_re", "z_im")
        ),
    ]
    if dialect == "postgresql":
        # Heap + BRIN: COPY appends to the heap and the BRIN summary costs next to nothing;
        # the reader sorts by id on the client (the heap order is not guaranteed).
        op.create_table("samples", *sample_columns)
        op.create_index(
            "ix_samples_run_id_id_brin",
            "samples",
            ["run_id", "id"],
            postgresql_using="brin",
            postgresql_with={"autosummarize": "on"},
        )
    else:
        # SQLite: "INTEGER" + primary key makes id the rowid, so the table B-tree is
        # clustered by run and no secondary index is needed.
        op.create_table("samples", *sample_columns, _pk("samples"))

    op.create_table(
        "events",
        sa.Column("id", Id, nullable=False),
        sa.Column("run_id", Id, nullable=False),
        sa.Column("t", Real, nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", Json),
        _pk("events"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_events_run_id_runs"),
    )
    op.create_index("ix_events_run_id", "events", ["run_id"])
    op.create_table(
        "results",
        sa.Column("id", Id, nullable=False),
        sa.Column("run_id", Id, nullable=False),
        sa.Column("step_index", sa.Integer()),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("value", Real),
        sa.Column("unit", sa.String()),
        sa.Column("uncertainty", Real),
        sa.Column("method", sa.String()),
        sa.Column("analysis_version", sa.String()),
        sa.Column("data", Json),
        sa.Column("created_unix", Real, nullable=False),
        _pk("results"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_results_run_id_runs"),
    )
    op.create_index("ix_results_run_id", "results", ["run_id", "name"])
    op.create_table(
        "coatings",
        sa.Column("id", Id, nullable=False),
        sa.Column("cell_label", sa.String(), nullable=False),
        sa.Column("run_id", Id),
        sa.Column("step_index", sa.Integer()),
        sa.Column("solution", sa.String()),
        sa.Column("concentration", sa.String()),
        sa.Column("rinse_solution", sa.String()),
        sa.Column("immersion_start", Real),
        sa.Column("immersion_end", Real),
        sa.Column("rinse_start", Real),
        sa.Column("rinse_end", Real),
        sa.Column("operator", sa.String()),
        sa.Column("planned_immersion_s", Real),
        sa.Column("planned_rinse_s", Real),
        sa.Column("deviations", Json),
        sa.Column("mode", sa.String()),
        sa.Column("notes", sa.Text()),
        sa.Column("created_unix", Real, nullable=False),
        _pk("coatings"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_coatings_run_id_runs"),
    )
    op.create_index("ix_coatings_cell_label", "coatings", ["cell_label"])


def downgrade() -> None:
    for name in ("coatings", "results", "events", "samples", "steps", "runs", "cells", "protocols"):
        op.drop_table(name)
