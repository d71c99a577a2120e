"""RunRecorder: the write side of one run, with its own writer thread.

The engine calls ``step_started``, ``samples``, ``step_ended``, ``event`` and
``finish``; each call only queues work and returns.  One writer thread per run
performs every write of the run in order, in batches: a batch is committed when it
holds ``commit_rows`` samples, when its oldest item is ``commit_interval`` seconds
old, or when a flush/finish/close asks for it.  A committed batch survives a crash
of the process (SQLite WAL, PostgreSQL commit).  Memory is bounded: ``samples``
waits while more than ``max_queued_samples`` samples are queued and not committed.

If the writer fails, every later call on the recorder raises :class:`StorageError`
with the original exception chained; ``finish`` raises it too and marks the run
``failed`` when the database is still reachable.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import logging
import os
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from labctl.db import envelope, pgcopy
from labctl.db.jsonutil import jsonable
from labctl.db.schema import FLOAT_SAMPLE_COLUMNS, SAMPLE_ID_BITS, checkpoints, events, runs, samples, steps
from labctl.db.spill import SpillFile, StorageOutage, default_spill_dir, is_outage, read_spill

if TYPE_CHECKING:
    from labctl.db.database import Database

#: How a run can end; "interrupted" (SIGTERM, SIGHUP, its owner gone) is resumable from its last checkpoint.
FINAL_STATUSES = ("completed", "aborted", "failed", "safety", "interrupted")
_REQUIRED = ("t", "voltage", "current", "charge")

# Queue item kinds.  An item is (kind, enqueue monotonic time, *payload).
_STEP_START, _SAMPLES, _STEP_END, _EVENT, _FINISH, _FLUSH, _STOP, _CHECKPOINT = range(8)
_MAX_SAMPLES = 1 << SAMPLE_ID_BITS


class StorageError(RuntimeError):
    """The database writer of a run failed; the original exception is chained."""


class RunRecorder:
    """Records one run; create it with :meth:`db.Database.open_run`."""

    def __init__(self, db: Database, run_id: int, n_committed: int = 0) -> None:
        self._db = db
        self.run_id = run_id
        self._base = run_id << SAMPLE_ID_BITS
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._queue: collections.deque[tuple] = collections.deque()
        self._queued_samples = 0  # queued or being written, not yet committed
        self._producers_waiting = 0
        self._max_queued = db.max_queued_samples
        self._commit_rows = db.commit_rows
        self._commit_interval = db.commit_interval
        self._n_committed = int(n_committed)  # sample numbers allocated by the writer (= committed count)
        self._error: BaseException | None = None
        self._error_reported = False
        self._finished = False
        self._closed = False
        self._sink = _make_sink(db, run_id)
        self._heartbeat_every = float(getattr(db, "heartbeat_interval", 5.0))
        self._spill: SpillFile | None = None
        self._spill_n = 0
        self._spill_dir = getattr(db, "spill_dir", None) or default_spill_dir()
        self._outage_wait = float(getattr(db, "outage_wait", 30.0))
        self._sqlite_path = getattr(db, "sqlite_path", None)
        self._last_t = 0.0
        self._last_beat = time.monotonic()
        self._thread = threading.Thread(target=self._writer, name=f"labctl-db-writer-run-{run_id}", daemon=True)
        self._thread.start()
        _live.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<RunRecorder run_id={self.run_id} {state}>"

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ producer side
    def step_started(
        self,
        step_index: int,
        *,
        path: str,
        kind: str,
        label: str | None,
        cycle: int,
        params: dict,
        t: float,
    ) -> None:
        """A step began at clock time ``t`` (``step_index`` is allocated by the engine)."""
        self._put(
            (
                _STEP_START,
                time.monotonic(),
                int(step_index),
                str(path),
                str(kind),
                None if label is None else str(label),
                int(cycle),
                jsonable(params if params is not None else {}),
                float(t),
            )
        )

    def samples(
        self,
        step_index: int,
        cycle: int,
        t: Any,
        voltage: Any,
        current: Any,
        charge: Any,
        temperature: Any = None,
        frequency: Any = None,
        z_re: Any = None,
        z_im: Any = None,
    ) -> None:
        """Queue a block of samples (float64 arrays of one length; optional columns may be None).

        Returns at once; waits only while more than ``max_queued_samples`` are queued.
        The arrays are copied, so the caller may reuse its buffers.
        """
        given = (t, voltage, current, charge, temperature, frequency, z_re, z_im)
        arrays: list[np.ndarray | None] = []
        n = -1
        for name, value in zip(FLOAT_SAMPLE_COLUMNS, given):
            if value is None:
                if name in _REQUIRED:
                    raise ValueError(f"samples: column {name} is required")
                arrays.append(None)
                continue
            a = np.array(value, dtype=np.float64)  # always a copy
            if a.ndim != 1:
                raise ValueError(f"samples: column {name} must be one-dimensional, got shape {a.shape}")
            if n < 0:
                n = len(a)
            elif len(a) != n:
                raise ValueError(f"samples: column {name} has {len(a)} values, t has {n}")
            arrays.append(a)
        if n == 0:
            self._check()
            return
        t_col = arrays[0]
        if t_col is not None:
            self._last_t = float(t_col[-1])
        self._put((_SAMPLES, time.monotonic(), int(step_index), int(cycle), arrays, n), n)

    def step_ended(
        self,
        step_index: int,
        *,
        t: float,
        end_reason: str,
        detail: str,
        n_samples: int,
        charge: float,
    ) -> None:
        """The step ended at clock time ``t``; ``charge`` in C, ``n_samples`` as counted by the engine."""
        self._put(
            (
                _STEP_END,
                time.monotonic(),
                int(step_index),
                float(t),
                _text(end_reason),
                None if detail is None else str(detail),
                int(n_samples),
                None if charge is None else float(charge),
            )
        )

    def event(self, t: float, kind: str, message: str, data: dict | None = None) -> None:
        """Something happened at clock time ``t`` (safety trip, pause, operator note, ...)."""
        self._put(
            (_EVENT, time.monotonic(), float(t), str(kind), str(message), None if data is None else jsonable(data))
        )

    def checkpoint(self, t: float, state: dict) -> None:
        """The engine's state at a step or cycle boundary (committed after the samples before it)."""
        self._put((_CHECKPOINT, time.monotonic(), float(t), jsonable(state)))

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything queued so far is committed (``TimeoutError`` after ``timeout`` s)."""
        with self._lock:
            stopping = self._finished or self._closed
        if stopping:  # finish/close flush everything themselves
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"run {self.run_id}: flush did not complete within {timeout} s")
            self._check()
            return
        done = threading.Event()
        self._put((_FLUSH, time.monotonic(), done))
        if not done.wait(timeout):
            raise TimeoutError(f"run {self.run_id}: flush did not complete within {timeout} s")
        self._check()

    def finish(self, status: str, end_reason: str, ended_unix: float) -> None:
        """Record how the run ended, flush everything and stop the writer.

        ``status`` is one of completed, aborted, failed, safety.  Raises
        :class:`StorageError` if the writer failed at any point of the run.
        """
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {', '.join(FINAL_STATUSES)}, not {status!r}")
        with self._lock:
            if self._closed or self._finished:
                raise RuntimeError(f"run {self.run_id}: recorder already finished or closed")
            self._finished = True
        self._stop((_FINISH, time.monotonic(), status, _text(end_reason), float(ended_unix)))
        if self._error is not None:
            self._error_reported = True
            self._mark_failed_directly(ended_unix)
            raise StorageError(f"run {self.run_id}: storage failed: {self._error!r}") from self._error

    def close(self) -> None:
        """Flush what is queued and stop the writer; idempotent.

        Without a prior :meth:`finish` the run is marked ``aborted`` (end reason
        "recorder closed before finish").  Raises a writer failure only if no earlier
        call has reported it.
        """
        with self._lock:
            if self._closed:
                return
            finished = self._finished
            self._finished = True
        final = None
        if not finished:
            final = (_FINISH, time.monotonic(), "aborted", "recorder closed before finish", time.time())
        self._stop(final)
        if self._error is not None and not self._error_reported:
            self._error_reported = True
            if not finished:
                self._mark_failed_directly(time.time())
            raise StorageError(f"run {self.run_id}: storage failed: {self._error!r}") from self._error

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ internals
    def _check(self) -> None:
        if self._error is not None:
            self._error_reported = True
            raise StorageError(f"run {self.run_id}: storage failed: {self._error!r}") from self._error

    def _put(self, item: tuple, n: int = 0) -> None:
        with self._lock:
            if self._closed or self._finished:
                raise RuntimeError(f"run {self.run_id}: recorder is finished/closed")
            self._check()
            # Back-pressure: bounded memory.  A block larger than the bound is still
            # accepted once the queue is empty.
            while self._queued_samples > 0 and self._queued_samples + n > self._max_queued and self._error is None:
                self._producers_waiting += 1
                self._not_empty.notify()  # the writer commits at once when someone waits
                try:
                    self._not_full.wait()
                finally:
                    self._producers_waiting -= 1
            self._check()
            self._queue.append(item)
            self._queued_samples += n
            self._not_empty.notify()

    def _stop(self, final: tuple | None) -> None:
        with self._lock:
            if self._error is None:
                if final is not None:
                    self._queue.append(final)
                self._queue.append((_STOP, time.monotonic()))
                self._not_empty.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join()
        with self._lock:
            self._closed = True
        _live.discard(self)
        self._db.forget_recorder(self)

    def _mark_failed_directly(self, ended_unix: float) -> None:
        """Best effort, from the caller's thread: the writer is gone."""
        try:
            with self._db.transaction(write=True) as conn:
                conn.execute(
                    runs.update()
                    .where(runs.c.id == self.run_id)
                    .values(
                        status="failed",
                        ended_unix=float(ended_unix),
                        end_reason=f"storage error: {self._error!r}"[:2000],
                    )
                )
        except Exception:
            pass

    # ------------------------------------------------------------------ writer thread
    def _writer(self) -> None:
        batch: list[tuple] = []
        try:
            while True:
                batch, rows, stop = self._take()
                if batch:
                    self._commit_or_spill(batch, rows)
                elif self._spill is not None:
                    self._maybe_replay()
                elif not stop and time.monotonic() - self._last_beat >= self._heartbeat_every:
                    self._beat()
                if stop and self._spill is not None:
                    self._final_replay()
                with self._lock:
                    self._queued_samples -= rows
                    self._not_full.notify_all()
                for item in batch:
                    if item[0] == _FLUSH:
                        item[2].set()
                batch = []
                if stop:
                    return
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            with self._lock:
                self._error = exc
                pending = batch + list(self._queue)
                self._queue.clear()
                self._queued_samples = 0
                self._not_full.notify_all()
            for item in pending:
                if item[0] == _FLUSH:
                    item[2].set()

    def _take(self) -> tuple[list[tuple], int, bool]:
        """Wait for the next batch: full, old enough, or asked for."""
        batch: list[tuple] = []
        rows = 0
        oldest = 0.0
        with self._lock:
            while True:
                urgent = False
                while self._queue and rows < self._commit_rows:
                    item = self._queue.popleft()
                    if not batch:
                        oldest = item[1]
                    batch.append(item)
                    kind = item[0]
                    if kind == _SAMPLES:
                        rows += item[5]
                    elif kind == _STOP:
                        return batch, rows, True
                    elif kind == _FLUSH or kind == _FINISH:
                        urgent = True
                if urgent or rows >= self._commit_rows or (batch and self._producers_waiting):
                    return batch, rows, False
                if batch:
                    wait = oldest + self._commit_interval - time.monotonic()
                    if wait <= 0:
                        return batch, rows, False
                    self._not_empty.wait(wait)
                else:
                    if not self._not_empty.wait(self._heartbeat_every) and not self._queue:
                        return batch, rows, False  # idle: let the writer beat

    def _final_replay(self) -> None:
        """At the end of the run: wait up to ``outage_wait`` s for the database, then give up
        with the spill file kept (``labctl spill replay FILE`` writes it later)."""
        deadline = time.monotonic() + self._outage_wait
        while not self._maybe_replay(force=True):
            if time.monotonic() >= deadline:
                assert self._spill is not None
                self._spill.close()
                raise StorageOutage(
                    f"the database stayed unreachable ({self._outage_reason}); {self._spill.samples} samples "
                    f"of run {self.run_id} are kept in {self._spill.path} (hint: when the database is back, "
                    f"run `labctl spill replay {self._spill.path}`)"
                )
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def _beat(self) -> None:
        """The owner is alive: refresh the run's heartbeat (also done by every commit)."""
        with self._db.transaction(write=True) as conn:
            conn.execute(
                runs.update()
                .where(runs.c.id == self.run_id, runs.c.status == "running")
                .values(heartbeat_unix=time.time())
            )
        self._last_beat = time.monotonic()

    def _write(self, batch: list[tuple]) -> None:
        """One transaction: every item of the batch, in order, then the sample counters."""
        if self._sqlite_path is not None and not os.path.exists(self._sqlite_path):
            raise StorageOutage(f"the database file {self._sqlite_path} is gone (its folder deleted or unmounted)")
        beat = time.monotonic() - self._last_beat >= self._heartbeat_every
        self._n_committed = commit_batch(self._db, self.run_id, self._sink, self._n_committed, batch, heartbeat=beat)
        if beat:
            self._last_beat = time.monotonic()

    # ------------------------------------------------------------------ storage outages
    def _commit_or_spill(self, batch: list[tuple], rows: int) -> None:
        if self._spill is None:
            try:
                self._write(batch)
                return
            except BaseException as exc:
                if not is_outage(exc):
                    raise
                self._begin_outage(exc)
        assert self._spill is not None
        self._spill.append(self._spill_n, batch, rows)
        self._spill_n += rows
        self._maybe_replay()

    def _begin_outage(self, exc: BaseException) -> None:
        path = self._spill_dir / f"run-{self.run_id}-{os.getpid()}.spill"
        self._spill = SpillFile(path)
        self._spill_n = self._n_committed
        self._outage_since = time.monotonic()
        self._retry_at = time.monotonic() + 0.5
        self._backoff = 0.5
        self._outage_reason = f"{type(exc).__name__}: {exc}"[:500]
        log.error(
            "run %s: database unreachable (%s); samples go to %s until it returns",
            self.run_id,
            self._outage_reason,
            path,
        )

    def _maybe_replay(self, force: bool = False) -> bool:
        """Try to write the spill file back; True once it is empty (the outage is over)."""
        if self._spill is None:
            return True
        if not force and time.monotonic() < self._retry_at:
            return False
        try:
            for n_first, batch in read_spill(self._spill.path):
                if n_first < self._n_committed:
                    continue  # committed by an earlier, interrupted replay
                self._write(batch)
        except BaseException as exc:
            if not is_outage(exc):
                raise
            self._backoff = min(self._backoff * 2, 30.0)
            self._retry_at = time.monotonic() + self._backoff
            return False
        spilled, lasted = self._spill.samples, time.monotonic() - self._outage_since
        self._spill.remove()
        self._spill = None
        note = (
            _EVENT,
            time.monotonic(),
            self._last_t,
            "storage",
            f"database unreachable for {lasted:.0f} s ({self._outage_reason}); {spilled} samples kept in a "
            f"spill file and written back in order",
            None,
        )
        try:
            self._write([note])
        except Exception:  # noqa: BLE001 - the data is in; the note is a courtesy
            log.warning("run %s: %s", self.run_id, note[4])
        return True


def commit_batch(db: Database, run_id: int, sink: Any, n0: int, batch: list[tuple], *, heartbeat: bool = True) -> int:
    """One transaction: every item of ``batch``, in order, then the sample counters and the
    run's voltage envelope (``labctl.db.envelope``); the new count."""
    if all(item[0] in (_FLUSH, _STOP) for item in batch):
        return n0
    n = n0
    base = run_id << SAMPLE_ID_BITS
    ranges: dict[int, list[int]] = {}
    t_parts: list[np.ndarray] = []
    v_parts: list[np.ndarray] = []
    with db.transaction(write=True) as conn:
        raw = conn.connection.driver_connection
        sink.start()
        for item in batch:
            kind = item[0]
            if kind == _SAMPLES:
                _, _, step_index, cycle, arrays, count = item
                if n + count > _MAX_SAMPLES:
                    raise OverflowError(f"run {run_id}: more than 2**{SAMPLE_ID_BITS} samples")
                sink.add(conn, raw, base + n, step_index, cycle, arrays)
                t_parts.append(arrays[0])
                v_parts.append(arrays[1])
                r = ranges.get(step_index)
                if r is None:
                    ranges[step_index] = [n, n + count - 1]
                else:
                    r[1] = n + count - 1
                n += count
                continue
            if kind in (_FLUSH, _STOP):
                continue
            sink.flush(conn, raw)
            if kind == _STEP_START:
                _, _, step_index, path, skind, label, cycle, params, t = item
                conn.execute(
                    steps.insert().values(
                        run_id=run_id,
                        step_index=step_index,
                        path=path,
                        kind=skind,
                        label=label,
                        cycle=cycle,
                        params=params,
                        t_start=t,
                    )
                )
            elif kind == _STEP_END:
                _, _, step_index, t, reason, detail, n_samples, charge = item
                conn.execute(
                    steps.update()
                    .where(steps.c.run_id == run_id, steps.c.step_index == step_index)
                    .values(t_end=t, end_reason=reason, end_detail=detail, n_samples=n_samples, charge=charge)
                )
            elif kind == _EVENT:
                _, _, t, ekind, message, data = item
                conn.execute(events.insert().values(run_id=run_id, t=t, kind=ekind, message=message, data=data))
            elif kind == _CHECKPOINT:
                _, _, t, state = item
                conn.execute(checkpoints.insert().values(run_id=run_id, t=t, state=state))
            elif kind == _FINISH:
                _, _, status, reason, ended = item
                conn.execute(
                    runs.update().where(runs.c.id == run_id).values(status=status, end_reason=reason, ended_unix=ended)
                )
        sink.flush(conn, raw)
        for step_index, (first, last) in ranges.items():
            conn.execute(
                steps.update()
                .where(steps.c.run_id == run_id, steps.c.step_index == step_index)
                .values(first_sample=sa.func.coalesce(steps.c.first_sample, first), last_sample=last)
            )
        if n != n0:
            conn.execute(runs.update().where(runs.c.id == run_id).values(n_samples=n))
            # after the run's row is updated (locked, on PostgreSQL), so an envelope rebuilt
            # meanwhile (envelope.rebuild locks that row first) is seen and extended
            envelope.append(
                conn,
                run_id,
                n0,
                t_parts[0] if len(t_parts) == 1 else np.concatenate(t_parts),
                v_parts[0] if len(v_parts) == 1 else np.concatenate(v_parts),
            )
        if heartbeat:
            conn.execute(
                runs.update().where(runs.c.id == run_id, runs.c.status == "running").values(heartbeat_unix=time.time())
            )
    return n


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


# ---------------------------------------------------------------------- sample sinks
class _SqliteSink:
    """Multi-row ``INSERT ... VALUES (...), (...), ...`` of ``ROWS_PER_INSERT`` samples per
    statement, parameters flattened from the numpy columns; constants inlined in the SQL.

    One statement per 100 samples instead of one per sample: the sqlite3 module's
    per-execution overhead (reset, step, a GIL release and re-acquire) is paid 100x less
    often, which is what makes the writer faster than row-by-row ``executemany``.
    While this run holds the largest sample id in the table (always, unless a newer run
    records at the same time), SQLite's automatic rowid (largest + 1) is exactly the next
    sample id, so the id is not bound at all; the writer holds the write lock for the
    whole transaction, so nobody can insert in between.
    """

    #: rows per statement: 100 x 9 parameters at most, well inside SQLite's limits
    #: (32,766 variables, 500 terms of a compound VALUES).
    ROWS_PER_INSERT = 100

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self._sql: dict[tuple, str] = {}
        self._auto = False

    def start(self) -> None:
        self._auto = False

    def _statement(self, step_index: int, cycle: int, present: tuple, rows: int) -> str:
        key = (step_index, cycle, present, self._auto, rows)
        sql = self._sql.get(key)
        if sql is None:
            if len(self._sql) > 256:
                self._sql.clear()
            names = ", ".join(FLOAT_SAMPLE_COLUMNS[i] for i in present)
            marks = ", ".join("?" * len(present))
            id_name, id_mark = ("", "") if self._auto else ("id, ", "?, ")
            # run_id, step_index and cycle are ints (converted with int()): safe literals,
            # and three fewer bindings per row.
            one = f"({id_mark}{int(self.run_id)}, {int(step_index)}, {int(cycle)}, {marks})"
            sql = f"INSERT INTO samples ({id_name}run_id, step_index, cycle, {names}) VALUES " + ", ".join([one] * rows)
            self._sql[key] = sql
        return sql

    def add(self, conn: sa.Connection, raw: Any, id0: int, step_index: int, cycle: int, arrays: list) -> None:
        present = tuple(i for i, a in enumerate(arrays) if a is not None)
        n = len(arrays[present[0]])
        if not self._auto:
            self._auto = raw.execute("SELECT max(id) FROM samples").fetchone()[0] == id0 - 1
        if self._auto:
            width = len(present)
            flat = np.column_stack([arrays[i] for i in present]).ravel().tolist()
        else:
            width = len(present) + 1
            flat = list(itertools.chain.from_iterable(zip(range(id0, id0 + n), *(arrays[i].tolist() for i in present))))
        k = self.ROWS_PER_INSERT
        full, rest = divmod(n, k)
        if full:
            w = k * width
            raw.executemany(
                self._statement(step_index, cycle, present, k), (flat[j * w : (j + 1) * w] for j in range(full))
            )
        if rest:
            raw.execute(self._statement(step_index, cycle, present, rest), flat[full * k * width :])
        if not self._auto:
            self._auto = raw.execute("SELECT max(id) FROM samples").fetchone()[0] == id0 + n - 1

    def flush(self, conn: sa.Connection, raw: Any) -> None:
        pass


class _PostgresSink:
    """Binary COPY; consecutive blocks of a batch share one COPY statement."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self._pending: list[bytes] = []

    def start(self) -> None:
        self._pending = []

    def add(self, conn: sa.Connection, raw: Any, id0: int, step_index: int, cycle: int, arrays: list) -> None:
        self._pending.append(pgcopy.encode_block(id0, self.run_id, step_index, cycle, arrays))

    def flush(self, conn: sa.Connection, raw: Any) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        with raw.cursor() as cur, cur.copy(pgcopy.COPY_SQL) as copy:
            copy.write(pgcopy.HEADER)
            for payload in pending:
                copy.write(payload)
            copy.write(pgcopy.TRAILER)


class _GenericSink:
    """Any other SQLAlchemy dialect: Core executemany (correct, not fast)."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id

    def start(self) -> None:
        pass

    def add(self, conn: sa.Connection, raw: Any, id0: int, step_index: int, cycle: int, arrays: list) -> None:
        present = [(name, a.tolist()) for name, a in zip(FLOAT_SAMPLE_COLUMNS, arrays) if a is not None]
        n = len(present[0][1])
        rows = [
            {
                "id": id0 + k,
                "run_id": self.run_id,
                "step_index": step_index,
                "cycle": cycle,
                **{name: _none_if_nan(col[k]) for name, col in present},
            }
            for k in range(n)
        ]
        conn.execute(samples.insert(), rows)

    def flush(self, conn: sa.Connection, raw: Any) -> None:
        pass


def _none_if_nan(x: float) -> float | None:
    return None if x != x else x


def _make_sink(db: Database, run_id: int) -> _SqliteSink | _PostgresSink | _GenericSink:
    name = db.engine.dialect.name
    driver = db.engine.dialect.driver
    if name == "sqlite" and driver == "pysqlite":
        return _SqliteSink(run_id)
    if name == "postgresql" and driver == "psycopg":
        return _PostgresSink(run_id)
    return _GenericSink(run_id)


# ---------------------------------------------------------------------- shutdown
_live: weakref.WeakSet[RunRecorder] = weakref.WeakSet()


def close_all() -> None:
    """Flush and close every open recorder of this process (registered with atexit)."""
    for rec in list(_live):
        try:
            rec.close()
        except Exception as exc:  # noqa: BLE001 - at exit there is no caller left to raise to
            print(f"labctl db: run {rec.run_id}: {exc}", file=sys.stderr)


atexit.register(close_all)

make_sink = _make_sink
log = logging.getLogger("labctl.db")
