"""Database: open (and migrate) a labctl database, record runs, read them back."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from labctl.db import migrate
from labctl.db.jsonutil import dumps, jsonable
from labctl.db.liveness import effective_status, owner_gone, owner_id
from labctl.db.recorder import RunRecorder
from labctl.db.schema import (
    INT_SAMPLE_COLUMNS,
    MAX_RUN_ID,
    SAMPLE_COLUMNS,
    SAMPLE_ID_BITS,
    cells,
    checkpoints,
    coatings,
    cycler_jobs,
    events,
    protocols,
    results,
    runs,
    samples,
    steps,
)
from labctl.db.url import default_url, masked, normalize_url

#: How long a SQLite connection waits for another writer (ms): PRAGMA busy_timeout.
SQLITE_BUSY_TIMEOUT_MS = 60_000

COATING_FIELDS = tuple(c.name for c in coatings.columns if c.name != "id")
RESULT_FIELDS = (
    "name",
    "value",
    "unit",
    "uncertainty",
    "method",
    "analysis_version",
    "step_index",
    "data",
    "created_unix",
)


class Database:
    """A labctl database.  ``url=None`` means :func:`db.default_url`.

    Opening runs the schema migrations (``alembic upgrade head``).  SQLite files are
    put in WAL mode with ``synchronous=NORMAL``: a committed transaction survives a
    crash of the process; a power loss may lose the last commits.

    ``max_queued_samples``, ``commit_rows`` and ``commit_interval`` tune the run
    writers (back-pressure bound, batch size, and the longest time between commits).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        max_queued_samples: int = 1_000_000,
        commit_rows: int = 100_000,
        commit_interval: float = 1.0,
    ) -> None:
        self._url = normalize_url(url) if url is not None else default_url()
        self.max_queued_samples = int(max_queued_samples)
        self.commit_rows = int(commit_rows)
        self.commit_interval = float(commit_interval)
        #: seconds between heartbeats of a running run's writer (see labctl.db.liveness)
        self.heartbeat_interval = 5.0
        #: where writers keep what they cannot commit during a database outage (see labctl.db.spill)
        self.spill_dir: Path | None = None
        #: how long a finishing run waits for an unreachable database before it gives up (spill kept)
        self.outage_wait = 30.0
        u = make_url(self._url)
        self.sqlite_path: str | None = (
            u.database
            if u.get_backend_name() == "sqlite"
            and u.database
            and u.database != ":memory:"
            and not u.database.startswith("file:")
            else None
        )
        self._recorders: weakref.WeakSet[RunRecorder] = weakref.WeakSet()
        self._recorders_lock = threading.Lock()
        self._closed = False
        #: True for an archive: a SQLite file or folder without write permission, or a ``mode=ro`` /
        #: ``immutable=1`` URL.  Reads work; every write raises :class:`ReadOnlyDatabase`.
        self.read_only = False
        engine_url = self._url
        if u.get_backend_name() == "sqlite":
            ro_url = _sqlite_read_only_url(u)
            if ro_url is not None:
                self.read_only = True
                engine_url = ro_url
        self.engine, self._guard = _make_engine(engine_url, read_only=self.read_only)
        try:
            if self.read_only:
                _check_read_only_schema(self.engine, self.url)
            else:
                migrate.upgrade(self.engine)
        except BaseException:
            self.engine.dispose()
            raise

    # ------------------------------------------------------------------ basics
    @property
    def url(self) -> str:
        """The database URL with the password masked (``***``); ``engine.url`` has the real one."""
        return masked(self._url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def __repr__(self) -> str:
        return f"Database({self.url!r})"

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every open recorder of this database (flushing it), then the connections."""
        if self._closed:
            return
        with self._recorders_lock:
            open_recs = list(self._recorders)
        error: BaseException | None = None
        for rec in open_recs:
            try:
                rec.close()
            except Exception as exc:  # noqa: BLE001 - close the others first
                error = error or exc
        self._closed = True
        self.engine.dispose()
        if error is not None:
            raise error

    def _forget(self, rec: RunRecorder) -> None:
        with self._recorders_lock:
            self._recorders.discard(rec)

    def forget_recorder(self, rec: RunRecorder) -> None:
        """A recorder of this database has stopped (its writer is done)."""
        self._forget(rec)

    def transaction(self, write: bool = False) -> contextlib.AbstractContextManager[Connection]:
        """A connection in a transaction (SQLite: BEGIN IMMEDIATE when ``write``); for the run writers."""
        return self._tx(write=write)

    @contextlib.contextmanager
    def _tx(self, write: bool = False) -> Iterator[Connection]:
        """A connection in a transaction (SQLite: BEGIN IMMEDIATE when ``write``)."""
        if write and self.read_only:
            raise ReadOnlyDatabase(
                f"the database {self.url} is read-only (an archive): it can be listed, shown, exported and "
                "analysed, not written to (hint: use a writable --db, or copy the file somewhere writable)"
            )
        with self._guard, self.engine.connect() as conn:
            if write:
                conn = conn.execution_options(labctl_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    # ------------------------------------------------------------------ runs: writing
    def open_run(
        self,
        *,
        protocol_name: str,
        protocol_text: str,
        protocol_source: str | None = None,
        cell_label: str | None = None,
        cell_kind: str | None = None,
        cell_attrs: dict | None = None,
        channel: str,
        simulated: bool,
        seed: int | None = None,
        preset: str | None = None,
        started_unix: float | None = None,
        meta: dict | None = None,
        on_created: Callable[[Connection, int], None] | None = None,
    ) -> RunRecorder:
        """Create the run (status ``running``) now and return its recorder.

        The protocol is stored once per distinct text (sha256).  The cell is created
        on first use; later runs update its kind and merge ``cell_attrs`` into its
        attributes.  ``on_created(conn, run_id)`` runs in the transaction that creates the run
        (a planned run is linked to its run there: both or neither are committed).
        """
        if self._closed:
            raise RuntimeError("database is closed")
        now = time.time()
        text = str(protocol_text)
        sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
        attrs = jsonable(cell_attrs or {})
        meta_json = jsonable(meta or {})
        with self._tx(write=True) as conn:
            protocol_id = self._upsert(
                conn,
                protocols,
                "sha256",
                sha,
                dict(
                    sha256=sha,
                    name=str(protocol_name),
                    text=text,
                    source=None if protocol_source is None else str(protocol_source),
                    created_unix=now,
                ),
            )
            cell_id = None
            if cell_label is not None:
                cell_id = self._upsert(
                    conn,
                    cells,
                    "label",
                    str(cell_label),
                    dict(label=str(cell_label), kind=cell_kind, attributes=attrs, created_unix=now),
                )
                row = conn.execute(sa.select(cells.c.kind, cells.c.attributes).where(cells.c.id == cell_id)).one()
                merged = {**(row.attributes or {}), **attrs}
                kind = cell_kind if cell_kind is not None else row.kind
                if merged != row.attributes or kind != row.kind:
                    conn.execute(cells.update().where(cells.c.id == cell_id).values(kind=kind, attributes=merged))
            run_id = conn.execute(
                runs.insert().values(
                    status="running",
                    channel=str(channel),
                    cell_id=cell_id,
                    protocol_id=protocol_id,
                    simulated=bool(simulated),
                    seed=None if seed is None else int(seed),
                    preset=preset,
                    started_unix=float(now if started_unix is None else started_unix),
                    meta=meta_json,
                    n_samples=0,
                    owner=owner_id(),
                    heartbeat_unix=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]  # a one-row INSERT has its key
            if run_id > MAX_RUN_ID:
                raise OverflowError(f"run id {run_id} exceeds {MAX_RUN_ID} (sample id layout)")
            if on_created is not None:
                on_created(conn, int(run_id))
        rec = RunRecorder(self, int(run_id))
        with self._recorders_lock:
            self._recorders.add(rec)
        return rec

    def _upsert(self, conn: Connection, table: sa.Table, key: str, value: Any, row: dict) -> int:
        """Insert ``row`` unless a row with ``table.key == value`` exists; return its id."""
        name = conn.dialect.name
        if name in ("sqlite", "postgresql"):
            ins = (sqlite_dialect.insert if name == "sqlite" else pg_dialect.insert)(table)
            conn.execute(ins.values(**row).on_conflict_do_nothing(index_elements=[key]))
        else:
            found = conn.execute(sa.select(table.c.id).where(table.c[key] == value)).scalar()
            if found is not None:
                return int(found)
            conn.execute(table.insert().values(**row))
        return int(conn.execute(sa.select(table.c.id).where(table.c[key] == value)).scalar_one())

    def add_coating(self, **fields: Any) -> int:
        """Record one dip-coating; returns its id.

        Fields: ``cell_label`` (required), ``run_id``, ``step_index``, ``solution``,
        ``concentration`` (text as written, e.g. "2 vol%"), ``rinse_solution``,
        ``immersion_start``, ``immersion_end``, ``rinse_start``, ``rinse_end`` (unix s),
        ``operator``, ``planned_immersion_s``, ``planned_rinse_s``, ``deviations`` (JSON),
        ``mode``, ``notes``, ``created_unix`` (default now).
        """
        unknown = set(fields) - set(COATING_FIELDS)
        if unknown:
            raise TypeError(f"unknown coating field(s) {sorted(unknown)}; allowed: {', '.join(COATING_FIELDS)}")
        if not fields.get("cell_label"):
            raise ValueError("a coating needs a cell_label")
        row = dict(fields)
        row.setdefault("created_unix", time.time())
        if "deviations" in row:
            row["deviations"] = jsonable(row["deviations"])
        with self._tx(write=True) as conn:
            return int(conn.execute(coatings.insert().values(**row)).inserted_primary_key[0])  # type: ignore[index]

    def coatings(self, cell_label: str) -> list[dict]:
        """The coatings of a cell, oldest first."""
        with self._tx() as conn:
            rows = (
                conn.execute(
                    sa.select(coatings)
                    .where(coatings.c.cell_label == cell_label)
                    .order_by(coatings.c.immersion_start, coatings.c.id)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    # ------------------------------------------------------------------ cycler jobs
    CYCLER_JOB_STATES = ("submitting", "running", "paused", "completed", "stopped", "failed", "refused", "unknown")

    def add_cycler_job(
        self, *, run_id: int, instrument: str, channel: str, barcode: str, step_file: str | None, step_file_sha: str
    ) -> int:
        """Record a job about to be started on a cycler channel (state ``submitting``); its id.

        Written *before* the start is sent: a labctl killed between the start and the
        cycler's answer finds this row on restart and looks the job up by its barcode
        instead of starting it again.  Barcodes are unique."""
        now = time.time()
        with self._tx(write=True) as conn:
            res = conn.execute(
                cycler_jobs.insert().values(
                    run_id=run_id,
                    instrument=instrument,
                    channel=channel,
                    barcode=barcode,
                    step_file=step_file,
                    step_file_sha=step_file_sha,
                    state="submitting",
                    created_unix=now,
                    updated_unix=now,
                )
            )
            return int(res.inserted_primary_key[0])  # type: ignore[index]

    def update_cycler_job(self, job_row: int, **fields: Any) -> None:
        """Set ``job``, ``cursor``, ``state``, ``detail`` or ``step_file`` of a cycler job row."""
        allowed = {"job", "cursor", "state", "detail", "step_file"}
        unknown = set(fields) - allowed
        if unknown:
            raise TypeError(f"unknown cycler job field(s) {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}")
        if "state" in fields and fields["state"] not in self.CYCLER_JOB_STATES:
            raise ValueError(f"cycler job state {fields['state']!r}; one of {', '.join(self.CYCLER_JOB_STATES)}")
        with self._tx(write=True) as conn:
            conn.execute(
                cycler_jobs.update().where(cycler_jobs.c.id == job_row).values(**fields, updated_unix=time.time())
            )

    def cycler_jobs(
        self, *, run_id: int | None = None, instrument: str | None = None, channel: str | None = None
    ) -> list[dict]:
        """Cycler job rows, oldest first, optionally of one run or one instrument channel."""
        q = sa.select(cycler_jobs).order_by(cycler_jobs.c.id)
        if run_id is not None:
            q = q.where(cycler_jobs.c.run_id == run_id)
        if instrument is not None:
            q = q.where(cycler_jobs.c.instrument == instrument)
        if channel is not None:
            q = q.where(cycler_jobs.c.channel == channel)
        with self._tx() as conn:
            return [dict(r) for r in conn.execute(q).mappings().all()]

    def reopen_step(self, run_id: int, step_index: int) -> None:
        """Open a step again that :meth:`reopen_run` closed as interrupted: a cycler went on
        running it while labctl was away, so its samples continue in the same step."""
        with self._tx(write=True) as conn:
            conn.execute(
                steps.update()
                .where(steps.c.run_id == run_id, steps.c.step_index == step_index)
                .values(t_end=None, end_reason=None, end_detail=None)
            )

    def add_results(self, run_id: int, rows: Sequence[dict]) -> None:
        """Store analysis results of a run.

        Each row has ``name`` and any of value, unit, uncertainty, method,
        analysis_version, step_index, data (JSON), created_unix.  A row replaces an
        earlier result of the same run, name, step_index and method (re-analysis).
        """
        clean = []
        for r in rows:
            unknown = set(r) - set(RESULT_FIELDS) - {"run_id"}
            if unknown:
                raise TypeError(f"unknown result field(s) {sorted(unknown)}; allowed: {', '.join(RESULT_FIELDS)}")
            if not r.get("name"):
                raise ValueError(f"a result needs a name: {r!r}")
            row: dict[str, Any] = {k: r.get(k) for k in RESULT_FIELDS}
            row["run_id"] = int(run_id)
            row["data"] = jsonable(row["data"])
            for k in ("value", "uncertainty"):
                if row[k] is not None:
                    row[k] = float(row[k])
            if row["step_index"] is not None:
                row["step_index"] = int(row["step_index"])
            if row["created_unix"] is None:
                row["created_unix"] = time.time()
            clean.append(row)
        with self._tx(write=True) as conn:
            self._require_run(conn, run_id)
            for row in clean:
                conn.execute(
                    results.delete().where(
                        results.c.run_id == row["run_id"],
                        results.c.name == row["name"],
                        _eq_or_null(results.c.step_index, row["step_index"]),
                        _eq_or_null(results.c.method, row["method"]),
                    )
                )
                conn.execute(results.insert().values(**row))

    def results(self, run_id: int) -> list[dict]:
        """The results of a run, by step (run-level first), name, then insertion."""
        with self._tx() as conn:
            rows = (
                conn.execute(
                    sa.select(results)
                    .where(results.c.run_id == run_id)
                    .order_by(results.c.step_index.is_not(None), results.c.step_index, results.c.name, results.c.id)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    # ------------------------------------------------------------------ runs: reading
    def _run_query(self) -> sa.Select:
        return sa.select(
            runs.c.id,
            runs.c.status,
            protocols.c.name.label("protocol"),
            cells.c.label.label("cell"),
            runs.c.channel,
            runs.c.simulated,
            runs.c.seed,
            runs.c.preset,
            runs.c.started_unix.label("started"),
            runs.c.ended_unix.label("ended"),
            runs.c.end_reason,
            runs.c.n_samples,
            runs.c.owner,
            runs.c.heartbeat_unix,
        ).select_from(
            runs.join(protocols, runs.c.protocol_id == protocols.c.id).outerjoin(cells, runs.c.cell_id == cells.c.id)
        )

    def runs(self, limit: int | None = None) -> list[dict]:
        """Runs, newest first: id, status, protocol, cell, channel, simulated, seed, preset,
        started, ended (unix s), end_reason, n_samples."""
        q = self._run_query().order_by(runs.c.id.desc())
        if limit is not None:
            q = q.limit(int(limit))
        with self._tx() as conn:
            return [_live_row(dict(r)) for r in conn.execute(q).mappings()]

    def run(self, run_id: int) -> dict:
        """One run: the :meth:`runs` fields plus meta, started_unix, ended_unix, protocol_id,
        protocol_text, protocol_hash (= protocol_sha256), protocol_source, cell_id, cell_kind, cell_attrs.
        Raises ``KeyError(run_id)`` if there is no such run."""
        if not 0 < int(run_id) <= MAX_RUN_ID:  # no such run; and more than SQL's BIGINT may hold
            raise KeyError(run_id)
        q = (
            self._run_query()
            .add_columns(
                runs.c.meta,
                runs.c.started_unix,
                runs.c.ended_unix,
                runs.c.protocol_id,
                protocols.c.text.label("protocol_text"),
                protocols.c.sha256.label("protocol_hash"),
                protocols.c.sha256.label("protocol_sha256"),
                protocols.c.source.label("protocol_source"),
                runs.c.cell_id,
                cells.c.kind.label("cell_kind"),
                cells.c.attributes.label("cell_attrs"),
            )
            .where(runs.c.id == run_id)
        )
        with self._tx() as conn:
            row = conn.execute(q).mappings().first()
        if row is None:
            raise KeyError(run_id)
        return _live_row(dict(row))

    def steps(self, run_id: int) -> list[dict]:
        """The steps of a run by step_index (first_sample/last_sample: sample numbers in the run)."""
        with self._tx() as conn:
            rows = (
                conn.execute(sa.select(steps).where(steps.c.run_id == run_id).order_by(steps.c.step_index))
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    def events(self, run_id: int) -> list[dict]:
        """The events of a run in the order they were recorded."""
        with self._tx() as conn:
            rows = (
                conn.execute(sa.select(events).where(events.c.run_id == run_id).order_by(events.c.id)).mappings().all()
            )
        return [dict(r) for r in rows]

    def checkpoints(self, run_id: int) -> list[dict]:
        """The engine's checkpoints of a run, in order (``t``: test time; ``state``: the dict)."""
        with self._tx() as conn:
            rows = (
                conn.execute(
                    sa.select(checkpoints.c.t, checkpoints.c.state)
                    .where(checkpoints.c.run_id == run_id)
                    .order_by(checkpoints.c.id)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    def last_checkpoint(self, run_id: int) -> dict | None:
        """The last committed checkpoint's state: where the run resumes (None before the first)."""
        with self._tx() as conn:
            row = conn.execute(
                sa.select(checkpoints.c.state)
                .where(checkpoints.c.run_id == run_id)
                .order_by(checkpoints.c.id.desc())
                .limit(1)
            ).first()
        return None if row is None else dict(row[0])

    def mark_interrupted(self, run_id: int, why: str) -> bool:
        """Record that a running run's owner is gone (status ``interrupted``, an event saying why).
        Returns False when the run was no longer ``running`` (someone else got there first)."""
        now = time.time()
        with self._tx(write=True) as conn:
            row = conn.execute(
                sa.select(runs.c.started_unix, runs.c.heartbeat_unix).where(
                    runs.c.id == run_id, runs.c.status == "running"
                )
            ).first()
            if row is None:
                return False
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id, runs.c.status == "running")
                .values(status="interrupted", end_reason=f"interrupted: {why}", ended_unix=row.heartbeat_unix or now)
            )
            t_last = conn.execute(sa.select(sa.func.max(events.c.t)).where(events.c.run_id == run_id)).scalar()
            t = max(float(t_last or 0.0), (row.heartbeat_unix or now) - row.started_unix)
            conn.execute(
                events.insert().values(
                    run_id=run_id, t=t, kind="interrupted", message=f"run interrupted: {why}", data=None
                )
            )
        return True

    def reopen_run(self, run_id: int) -> tuple[RunRecorder, dict]:
        """Take over an interrupted run to resume it: this process becomes its owner again.

        Steps left open by the crash are closed as ``interrupted`` with the samples they hold.
        Returns the recorder (sample numbers continue after the committed ones) and what the
        resume needs: ``n_samples``, ``max_step`` (last step index), ``t_last`` (test time of
        the last committed sample or event), ``heartbeat_unix`` and ``started_unix``.
        Raises ``KeyError`` for an unknown run, ``RuntimeError`` when the run is not resumable.
        """
        row = self.run(run_id)
        if row["status"] != "interrupted":
            raise RuntimeError(f"run {run_id} is {row['status']}, not interrupted: nothing to resume")
        now = time.time()
        with self._tx(write=True) as conn:
            raw = conn.execute(
                sa.select(runs.c.status, runs.c.n_samples, runs.c.heartbeat_unix, runs.c.started_unix).where(
                    runs.c.id == run_id
                )
            ).one()
            if raw.status not in ("running", "interrupted"):
                raise RuntimeError(f"run {run_id} is {raw.status}: nothing to resume")
            n = int(raw.n_samples)
            for st in conn.execute(
                sa.select(steps.c.step_index, steps.c.first_sample, steps.c.last_sample).where(
                    steps.c.run_id == run_id, steps.c.t_end.is_(None)
                )
            ).all():
                held = 0 if st.first_sample is None else int(st.last_sample) - int(st.first_sample) + 1
                t_last_sample = None
                if st.last_sample is not None:
                    t_last_sample = conn.execute(
                        sa.select(samples.c.t).where(samples.c.id == (run_id << SAMPLE_ID_BITS) + int(st.last_sample))
                    ).scalar()
                conn.execute(
                    steps.update()
                    .where(steps.c.run_id == run_id, steps.c.step_index == st.step_index)
                    .values(
                        t_end=t_last_sample,
                        end_reason="interrupted",
                        end_detail="the run was interrupted in this step",
                        n_samples=held,
                    )
                )
            max_step = conn.execute(sa.select(sa.func.max(steps.c.step_index)).where(steps.c.run_id == run_id)).scalar()
            t_sample = None
            if n:
                t_sample = conn.execute(
                    sa.select(samples.c.t).where(samples.c.id == (run_id << SAMPLE_ID_BITS) + n - 1)
                ).scalar()
            t_event = conn.execute(sa.select(sa.func.max(events.c.t)).where(events.c.run_id == run_id)).scalar()
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .values(status="running", owner=owner_id(), heartbeat_unix=now, ended_unix=None, end_reason=None)
            )
        info = {
            "n_samples": n,
            "max_step": int(max_step or 0),
            "t_last": max(float(t_sample or 0.0), float(t_event or 0.0)),
            "heartbeat_unix": raw.heartbeat_unix,
            "started_unix": raw.started_unix,
        }
        rec = RunRecorder(self, int(run_id), n_committed=n)
        with self._recorders_lock:
            self._recorders.add(rec)
        return rec, info

    def reap_interrupted(self) -> list[int]:
        """Mark every running run whose owner is gone as interrupted; the ids so marked."""
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(runs.c.id, runs.c.owner, runs.c.heartbeat_unix).where(runs.c.status == "running")
            ).all()
        out = []
        for r in rows:
            why = owner_gone(r.owner, r.heartbeat_unix)
            if why and self.mark_interrupted(int(r.id), why):
                out.append(int(r.id))
        return out

    def n_samples(self, run_id: int) -> int:
        """Committed samples of a run.  Raises ``KeyError(run_id)`` if there is no such run."""
        with self._tx() as conn:
            return self._require_run(conn, run_id)

    def _require_run(self, conn: Connection, run_id: int) -> int:
        if not 0 < int(run_id) <= MAX_RUN_ID:
            raise KeyError(run_id)
        n = conn.execute(sa.select(runs.c.n_samples).where(runs.c.id == run_id)).scalar()
        if n is None:
            raise KeyError(run_id)
        return int(n)

    # ------------------------------------------------------------------ samples: reading
    def samples(
        self, run_id: int, step_index: int | None = None, columns: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """A run's (or one step's) committed samples as numpy arrays, in recording order
        (by step_index, then t, as the engine records them).

        Columns (default all): step_index, cycle (int64), t, voltage, current, charge,
        temperature, frequency, z_re, z_im (float64; NULL/absent values are NaN).
        """
        cols = _columns(columns)
        with self._tx() as conn:
            n = self._require_run(conn, run_id)
            lo, hi = 0, n - 1
            if step_index is not None:
                step_index = int(step_index)
                r = conn.execute(
                    sa.select(steps.c.first_sample, steps.c.last_sample).where(
                        steps.c.run_id == run_id, steps.c.step_index == step_index
                    )
                ).first()
                if r is not None and r.first_sample is not None:
                    lo, hi = int(r.first_sample), min(int(r.last_sample), n - 1)
            if hi < lo:
                return _empty(cols)
            return self._read(conn, run_id, lo, hi, cols, step_index)

    def iter_samples(
        self, run_id: int, chunk_rows: int = 200_000, columns: Sequence[str] | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """A run's samples in chunks of at most ``chunk_rows`` rows (bounded memory).

        Covers what was committed when the iteration started.
        """
        cols = _columns(columns)
        chunk_rows = max(1, int(chunk_rows))
        with self._tx() as conn:
            n = self._require_run(conn, run_id)

        def chunks() -> Iterator[dict[str, np.ndarray]]:
            for lo in range(0, n, chunk_rows):
                hi = min(lo + chunk_rows, n) - 1
                with self._tx() as conn:
                    part = self._read(conn, run_id, lo, hi, cols, None)
                if len(part[cols[0]]):
                    yield part

        return chunks()

    def _read(
        self, conn: Connection, run_id: int, lo: int, hi: int, cols: tuple[str, ...], step_index: int | None
    ) -> dict[str, np.ndarray]:
        """Samples with sample numbers lo..hi (inclusive) of a run, optionally of one step."""
        base = run_id << SAMPLE_ID_BITS
        name = conn.dialect.name
        raw: Any = conn.connection.driver_connection
        k = len(cols)
        bound = hi - lo + 1  # at most this many rows
        if name == "sqlite":
            sql = f"SELECT {', '.join(cols)} FROM samples WHERE id BETWEEN ? AND ?"
            params: tuple = (base + lo, base + hi)
            if step_index is not None:
                sql += " AND step_index = ?"
                params += (step_index,)
            table = _collect(raw.execute(sql + " ORDER BY id", params), k, bound)
        elif name == "postgresql" and conn.dialect.driver == "psycopg":
            # The heap order is not guaranteed: fetch the sample number and sort if needed.
            sql = f"SELECT id - %s, {', '.join(cols)} FROM samples WHERE run_id = %s AND id BETWEEN %s AND %s"
            params = (base, run_id, base + lo, base + hi)
            if step_index is not None:
                sql += " AND step_index = %s"
                params += (step_index,)
            with raw.cursor(binary=True) as cur:
                cur.execute(sql, params)
                table = _collect(cur, k + 1, bound)
            order = table[0]
            if len(order) > 1 and not bool(np.all(order[1:] > order[:-1])):
                table = table[:, np.argsort(order, kind="stable")]
            table = table[1:]
        else:
            q = sa.select(*(samples.c[c] for c in cols)).where(samples.c.id.between(base + lo, base + hi))
            if step_index is not None:
                q = q.where(samples.c.step_index == step_index)
            table = _collect(iter(conn.execute(q.order_by(samples.c.id))), k, bound)
        out: dict[str, np.ndarray] = {}
        for j, c in enumerate(cols):
            out[c] = table[j].astype(np.int64) if c in INT_SAMPLE_COLUMNS else table[j]
        return out


def _collect(rows: Iterator[Sequence[Any]], k: int, bound: int, chunk: int = 8192) -> np.ndarray:
    """A (k, n) float64 array from an iterator of at most ``bound`` k-tuples (None -> NaN).

    Converts in cache-sized chunks straight into the column-major result, so the
    peak memory is the result itself.
    """
    out = np.empty((k, bound), dtype=np.float64)
    rows = iter(rows)
    pos = 0
    while pos < bound:
        m = min(chunk, bound - pos)
        flat = np.fromiter(itertools.chain.from_iterable(itertools.islice(rows, m)), np.float64)
        got = flat.size // k
        out[:, pos : pos + got] = flat.reshape(got, k).T
        pos += got
        if got < m:
            break
    return out[:, :pos] if pos < bound else out


def _columns(columns: Sequence[str] | None) -> tuple[str, ...]:
    if columns is None:
        return SAMPLE_COLUMNS
    if isinstance(columns, str):
        columns = (columns,)
    cols = tuple(columns)
    bad = [c for c in cols if c not in SAMPLE_COLUMNS]
    if bad or not cols:
        raise ValueError(f"unknown sample column(s) {bad}; choose from {', '.join(SAMPLE_COLUMNS)}")
    return cols


def _empty(cols: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {c: np.zeros(0, np.int64 if c in INT_SAMPLE_COLUMNS else np.float64) for c in cols}


def _eq_or_null(column: sa.ColumnElement, value: Any) -> sa.ColumnElement:
    return column.is_(None) if value is None else column == value


class ReadOnlyDatabase(Exception):
    """A write to a read-only database (an archive): the user's to fix (another --db), exit code 2."""


def _sqlite_read_only_url(u: Any) -> str | None:
    """The URL to open a read-only SQLite file with, or None when the file is writable (or in memory).

    Read-only means: ``mode=ro`` or ``immutable=1`` in the URL, or a file (or its folder) the process
    may not write.  A read-only folder cannot hold SQLite's ``-shm`` file, so the archive is then opened
    ``immutable=1`` (nobody can write it either).
    """
    database = u.database or ""
    query = {k: str(v) for k, v in u.query.items()}
    if database in ("", ":memory:") or query.get("mode") == "memory":
        return None
    if database.startswith("file:"):
        if query.get("mode") == "ro" or query.get("immutable") == "1":
            return str(u.render_as_string(hide_password=False))
        return None
    path = Path(database).expanduser()
    if not path.exists():
        return None
    folder = path.resolve().parent
    file_ro = not os.access(path, os.W_OK)
    dir_ro = not os.access(folder, os.W_OK | os.X_OK)
    if not (file_ro or dir_ro):
        return None
    params = "mode=ro"
    shm = Path(str(path) + "-shm")
    if dir_ro and not shm.exists():
        params += "&immutable=1"
    return f"sqlite:///file:{urllib.parse.quote(str(path.resolve()))}?{params}&uri=true"


def _check_read_only_schema(engine: Engine, url: str) -> None:
    """A read-only database cannot be migrated: it must already be at the schema this labctl reads."""
    try:
        with engine.connect() as conn:
            current = migrate.current_revision(conn)
    except sa.exc.DBAPIError as e:
        raise ReadOnlyDatabase(f"cannot read the read-only database {url}: {e.orig}") from None
    head = migrate.head_revision()
    if current != head:
        raise ReadOnlyDatabase(
            f"the read-only database {url} has the schema revision {current!r}, this labctl reads {head!r} "
            "(hint: copy the file somewhere writable and open the copy: it is migrated when opened)"
        )


def _make_engine(url: str, *, read_only: bool = False) -> tuple[Engine, Any]:
    """The engine plus a guard context manager (a lock for in-memory SQLite, else a no-op)."""
    u = make_url(url)
    guard: Any = contextlib.nullcontext()
    if u.get_backend_name() != "sqlite":
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if u.get_backend_name() == "postgresql":
            kwargs["pool_size"] = 10
        return sa.create_engine(u, json_serializer=dumps, **kwargs), guard

    database = u.database or ""
    memory = database in ("", ":memory:") or u.query.get("mode") == "memory"
    if memory:
        # One connection shared by all threads, used one at a time under the guard.
        guard = threading.RLock()
        engine = sa.create_engine(
            u, json_serializer=dumps, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        if not database.startswith("file:") and not read_only:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            u,
            json_serializer=dumps,
            pool_size=10,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # SQLAlchemy, not the sqlite3 module, emits BEGIN (see _on_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if not memory and not read_only:
            cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock at BEGIN, so a writer waits (busy_timeout) instead
        # of failing when its read lock cannot be upgraded.
        mode = conn.get_execution_options().get("labctl_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())

    return engine, guard


def _live_row(row: dict) -> dict:
    """A run row as it really is: ``running`` with its owner gone reads ``interrupted``."""
    status, why = effective_status(row["status"], row.get("owner"), row.get("heartbeat_unix"))
    if status != row["status"]:
        row["status"] = status
        row["end_reason"] = f"interrupted: {why}"
    return row
