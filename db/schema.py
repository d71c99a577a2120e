"""The labctl schema as SQLAlchemy Core tables (the migrations create it; see ``migrations/``).

Sample ids are the clustering key: ``samples.id = run_id * 2**40 + n`` where ``n``
counts the run's samples from 0 in recording order.  A run's samples therefore
form one contiguous key range, which on SQLite is the table's own B-tree (the
rowid), so reading a run is a range scan and ingest maintains no second index.
On PostgreSQL a small BRIN index on ``(run_id, id)`` finds the range.  See
``docs/performance.md`` for the measurements behind this choice.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

#: ``samples.id = (run_id << SAMPLE_ID_BITS) + n``: up to 2**40 (1.1e12) samples per
#: run and run ids below 2**23 (8.4 million runs).
SAMPLE_ID_BITS = 40
MAX_RUN_ID = (1 << (63 - SAMPLE_ID_BITS)) - 1

#: Integer primary keys: BIGINT, but INTEGER on SQLite so the column is the rowid.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Real: sa.Double[float] = sa.Double()

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)

protocols = sa.Table(
    "protocols",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("source", sa.Text()),
    sa.Column("created_unix", Real, nullable=False),
)

cells = sa.Table(
    "cells",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("label", sa.String(), nullable=False, unique=True),
    sa.Column("kind", sa.String()),
    sa.Column("attributes", Json, nullable=False),
    sa.Column("created_unix", Real, nullable=False),
)

RUN_STATUSES = ("running", "completed", "aborted", "failed", "safety")

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("channel", sa.String(), nullable=False),
    sa.Column("cell_id", Id, sa.ForeignKey("cells.id")),
    sa.Column("protocol_id", Id, sa.ForeignKey("protocols.id"), nullable=False),
    sa.Column("simulated", sa.Boolean(), nullable=False),
    sa.Column("seed", sa.BigInteger()),
    sa.Column("preset", sa.String()),
    sa.Column("started_unix", Real, nullable=False),
    sa.Column("ended_unix", Real),
    sa.Column("end_reason", sa.Text()),
    sa.Column("meta", Json, nullable=False),
    sa.Column("n_samples", sa.BigInteger(), nullable=False, server_default="0"),
    # liveness: who runs it (host:pid) and when its writer last said so; a running run whose
    # owner is gone is shown (and resumed) as interrupted
    sa.Column("owner", sa.String()),
    sa.Column("heartbeat_unix", Real),
    sa.Index(None, "cell_id"),
)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("run_id", Id, sa.ForeignKey("runs.id"), nullable=False),
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
    # Sample numbers (n in samples.id) of the step's first and last committed sample.
    sa.Column("first_sample", sa.BigInteger()),
    sa.Column("last_sample", sa.BigInteger()),
    sa.UniqueConstraint("run_id", "step_index"),
)

#: Columns of a sample as returned by Database.samples (in this order).
SAMPLE_COLUMNS = (
    "step_index",
    "cycle",
    "t",
    "voltage",
    "current",
    "charge",
    "temperature",
    "frequency",
    "z_re",
    "z_im",
)
INT_SAMPLE_COLUMNS = ("step_index", "cycle")
FLOAT_SAMPLE_COLUMNS = SAMPLE_COLUMNS[2:]
OPTIONAL_SAMPLE_COLUMNS = ("temperature", "frequency", "z_re", "z_im")

# No primary key in the metadata: SQLite gets ``id INTEGER PRIMARY KEY`` (the rowid),
# PostgreSQL a BRIN index; see the initial migration.  No foreign key either: a
# per-row check would cost ingest time, and the writer is the only producer.
samples = sa.Table(
    "samples",
    metadata,
    sa.Column("id", Id, nullable=False),
    sa.Column("run_id", sa.BigInteger(), nullable=False),
    sa.Column("step_index", sa.Integer(), nullable=False),
    sa.Column("cycle", sa.Integer(), nullable=False),
    *(sa.Column(name, Real) for name in FLOAT_SAMPLE_COLUMNS),
)

#: Samples per row of ``trace_buckets`` (a power of two; bucket ``b`` of a run holds its samples
#: ``n = b * ENVELOPE_BUCKET .. (b + 1) * ENVELOPE_BUCKET - 1``).
ENVELOPE_BUCKET = 1024

#: The voltage envelope of each run (labctl.db.envelope), written by the run writer in the same
#: transaction as the samples it summarises: ``id = run_id * 2**40 + b``; ``n`` samples so far
#: (``ENVELOPE_BUCKET`` once full; only a run's last bucket grows), the test time of the first and
#: last of them and the least and greatest voltage among them (NULL where not a number).  No
#: foreign key, like ``samples``.
trace_buckets = sa.Table(
    "trace_buckets",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("run_id", sa.BigInteger(), nullable=False),
    sa.Column("n", sa.Integer(), nullable=False),
    sa.Column("t_first", Real),
    sa.Column("t_last", Real),
    sa.Column("v_min", Real),
    sa.Column("v_max", Real),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("run_id", Id, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("t", Real, nullable=False),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("data", Json),
    sa.Index(None, "run_id"),
)

#: The engine's state at step and cycle boundaries (labctl.engine.program.ProgramState), in
#: order: the last committed one is where a run resumes.  Written in the same transaction
#: as the samples before it, so it never points past committed data.
checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("run_id", Id, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("t", Real, nullable=False),
    sa.Column("state", Json, nullable=False),
    sa.Index(None, "run_id"),
)

results = sa.Table(
    "results",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("run_id", Id, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("step_index", sa.Integer()),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("value", Real),
    sa.Column("unit", sa.String()),
    sa.Column("uncertainty", Real),
    sa.Column("method", sa.String()),
    sa.Column("analysis_version", sa.String()),
    sa.Column("data", Json),
    sa.Column("created_unix", Real, nullable=False),
    sa.Index(None, "run_id", "name"),
)

coatings = sa.Table(
    "coatings",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("cell_label", sa.String(), nullable=False),
    sa.Column("run_id", Id, sa.ForeignKey("runs.id")),
    sa.Column("step_index", sa.Integer()),
    sa.Column("solution", sa.String()),
    sa.Column("concentration", sa.String()),  # as written, e.g. "2 vol%"
    sa.Column("rinse_solution", sa.String()),
    # unix times (s)
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
    sa.Index(None, "cell_label"),
)

#: Instrument files imported as runs (labctl.app.importing): a file's sha256 is stored once,
#: so the same file is never imported twice.  ``run_id`` is NULL while the import is under way.
imports = sa.Table(
    "imports",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("run_id", Id, sa.ForeignKey("runs.id")),
    sa.Column("source", sa.Text(), nullable=False),
    sa.Column("format", sa.String()),
    sa.Column("created_unix", Real, nullable=False),
)

#: Jobs on instruments that run a whole protocol on their own (battery cyclers): one row per
#: start, written before the start is sent (state ``submitting``), so a restarted labctl finds
#: the job instead of starting it twice, and harvests from ``cursor`` on.
cycler_jobs = sa.Table(
    "cycler_jobs",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("run_id", Id, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("instrument", sa.String(), nullable=False),  # station instrument name
    sa.Column("channel", sa.String(), nullable=False),  # the cycler's channel address, e.g. 27-1-3
    sa.Column("job", sa.String()),  # the cycler's job/test id, once it answered the start
    sa.Column("barcode", sa.String(), nullable=False, unique=True),
    sa.Column("step_file", sa.Text()),
    sa.Column("step_file_sha", sa.String(64), nullable=False),
    sa.Column("cursor", sa.String()),  # opaque to labctl: the driver's harvest position
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text()),
    sa.Column("created_unix", Real, nullable=False),
    sa.Column("updated_unix", Real, nullable=False),
    sa.Index(None, "run_id"),
    sa.Index(None, "instrument", "channel"),
)

#: Campaigns (labctl.app.lab): a file of planned runs, stored as written.
campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("name", sa.String(), nullable=False, unique=True),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("source", sa.Text()),
    sa.Column("created_unix", Real, nullable=False),
    # a run whose start time was missed by more than this (s) is failed, not started late
    sa.Column("misfire_limit_s", Real, nullable=False),
)

#: States of a planned run (see labctl.db.campaigns for the transitions).
PLANNED_STATES = ("waiting", "due", "claimed", "running", "paused", "done", "failed", "cancelled", "interrupted")

planned_runs = sa.Table(
    "planned_runs",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("campaign_id", Id, sa.ForeignKey("campaigns.id"), nullable=False),
    sa.Column("key", sa.String(), nullable=False),
    sa.Column("spec", Json, nullable=False),
    sa.Column("station", sa.String(), nullable=False),
    sa.Column("channel", sa.String()),  # pinned, or the pool channel it was claimed on
    sa.Column("pool", Json),  # channel names it may run on (None: pinned to ``channel``)
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text()),
    sa.Column("control", sa.String(16)),  # pause | resume | cancel, applied by the worker at a step boundary
    sa.Column("run_id", Id, sa.ForeignKey("runs.id")),
    sa.Column("claimed_by", sa.String()),  # host:pid of the worker
    sa.Column("claimed_unix", Real),
    sa.Column("heartbeat_unix", Real),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("not_before_unix", Real),  # the run's `at:` time
    sa.Column("start_ok", sa.Boolean(), nullable=False),  # its `at:` time came (or it has none)
    sa.Column("after", Json, nullable=False),  # keys of runs that must be done first
    sa.Column("created_unix", Real, nullable=False),
    sa.Column("started_unix", Real),
    sa.Column("ended_unix", Real),
    sa.UniqueConstraint("campaign_id", "key"),
    sa.Index(None, "state", "station"),
)
