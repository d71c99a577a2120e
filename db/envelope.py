"""The voltage envelope of a run, persisted beside its samples (table ``trace_buckets``).

A run's samples ``n = 0 .. n_samples-1`` are cut into buckets of :data:`ENVELOPE_BUCKET`
consecutive samples; bucket ``b`` (row id ``run_id * 2**40 + b``) holds how many samples it
has so far, the test time of its first and last sample and its least and greatest voltage
(NaN voltages left out; NULL where not a number).  The run writer folds every committed
batch in (:func:`append`, called by ``commit_batch`` in the transaction that inserts the
samples), so a committed bucket never claims a sample that is not committed; only the run's
last bucket grows.  The dashboard merges these rows to the plot's width instead of reading
millions of samples (``labctl.web.trace``).

Runs recorded before the table existed have no rows.  :func:`read` returns ``None`` for a run
whose rows do not add up to its samples, and :func:`rebuild` computes them from the samples
(:func:`scan`) and stores them; the writer adds nothing to a run whose envelope is missing or
does not add up, so a half envelope is never extended.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import sqlalchemy as sa

from labctl.db.schema import ENVELOPE_BUCKET, SAMPLE_ID_BITS, runs, trace_buckets

__all__ = ["ENVELOPE_BUCKET", "append", "read", "rebuild", "scan"]

#: One bucket as the dashboard merges it: (t of the first sample, t of the last, min V, max V).
Bucket = tuple[Any, Any, Any, Any]

_tb = trace_buckets.c
_COLUMNS = "id, run_id, n, t_first, t_last, v_min, v_max"


def append(conn: sa.Connection, run_id: int, n0: int, t: np.ndarray, v: np.ndarray) -> None:
    """Fold samples ``n0 .. n0 + len(t) - 1`` of ``run_id`` (inserted in this transaction) into
    its buckets: the run's last bucket is updated if it is partly filled, the rest inserted."""
    m = len(t)
    if m == 0:
        return
    size = ENVELOPE_BUCKET
    base = int(run_id) << SAMPLE_ID_BITS
    b0 = n0 // size
    raw = _driver(conn)
    fast = raw is not None
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    if fast and conn.dialect.name == "postgresql":
        _append_postgres(raw, base, n0, _rows(run_id, base, n0, t, v))
        return
    prev = None
    if n0 > 0:
        # The run's last bucket so far: it is extended, and it shows that the run has an envelope
        # covering every sample before n0 (a run recorded before the table existed has none).
        last = (n0 - 1) // size
        if fast:
            cur = raw.cursor()
            try:
                cur.execute(f"SELECT n, v_min, v_max FROM trace_buckets WHERE id = {mark}", (base + last,))
                prev = cur.fetchone()
            finally:
                cur.close()
        else:
            prev = conn.execute(sa.select(_tb.n, _tb.v_min, _tb.v_max).where(_tb.id == base + last)).first()
        if prev is None or int(prev[0]) != n0 - last * size:
            return
        if last != b0:  # it is full: the new samples start the next bucket
            prev = None
    rows = _rows(run_id, base, n0, t, v)
    if prev is not None:
        id0, _, c, _, tl, lo0, hi0 = rows.pop(0)
        values = (int(prev[0]) + c, tl, _pick(min, prev[1], lo0), _pick(max, prev[2], hi0))
        if fast:
            cur = raw.cursor()
            try:
                cur.execute(
                    f"UPDATE trace_buckets SET n = {mark}, t_last = {mark}, v_min = {mark}, v_max = {mark} "
                    f"WHERE id = {mark}",
                    (*values, id0),
                )
            finally:
                cur.close()
        else:
            conn.execute(
                trace_buckets.update()
                .where(_tb.id == id0)
                .values(n=values[0], t_last=values[1], v_min=values[2], v_max=values[3])
            )
    if not rows:
        return
    if fast:
        cur = raw.cursor()
        try:
            one = f"({', '.join([mark] * 7)})"
            for k in range(0, len(rows), 100):  # one multi-row INSERT per 100 buckets
                part = rows[k : k + 100]
                cur.execute(
                    f"INSERT INTO trace_buckets ({_COLUMNS}) VALUES {', '.join([one] * len(part))}",
                    [x for r in part for x in r],
                )
        finally:
            cur.close()
    else:
        conn.execute(trace_buckets.insert(), [dict(zip(_COLUMNS.split(", "), r, strict=True)) for r in rows])


def _rows(run_id: int, base: int, n0: int, t: np.ndarray, v: np.ndarray) -> list[tuple]:
    """The bucket rows of samples ``n0 ..`` alone: ``(id, run_id, n, t_first, t_last, v_min, v_max)``."""
    size = ENVELOPE_BUCKET
    m = len(t)
    b0 = n0 // size
    starts = np.concatenate(([0], np.arange((b0 + 1) * size, n0 + m, size, dtype=np.int64) - n0))
    ends = np.append(starts[1:], m)
    lo = np.fmin.reduceat(v, starts)  # fmin/fmax leave NaN out (NaN only if every voltage is)
    hi = np.fmax.reduceat(v, starts)
    return list(
        zip(
            range(base + b0, base + b0 + len(starts)),
            itertools.repeat(int(run_id)),
            (ends - starts).tolist(),
            _nulls(t[starts]),
            _nulls(t[ends - 1]),
            _nulls(lo),
            _nulls(hi),
            strict=False,
        )
    )


def _append_postgres(raw: Any, base: int, n0: int, rows: list[tuple]) -> None:
    """:func:`append` as one statement (one round trip): seven arrays (its text never changes, so
    psycopg does not parse it again), inserted only if the run's envelope covers sample ``n0 - 1``
    exactly; a partly filled last bucket is extended by the conflict clause (LEAST and GREATEST
    leave NULL out)."""
    size = ENVELOPE_BUCKET
    last = max(0, n0 - 1) // size
    with raw.cursor() as cur:
        cur.execute(
            f"INSERT INTO trace_buckets ({_COLUMNS}) SELECT * FROM unnest(%s::int8[], %s::int8[], %s::int4[], "
            "%s::float8[], %s::float8[], %s::float8[], %s::float8[]) "
            "WHERE %s = 0 OR EXISTS (SELECT 1 FROM trace_buckets WHERE id = %s AND n = %s) "
            "ON CONFLICT (id) DO UPDATE SET n = trace_buckets.n + excluded.n, t_last = excluded.t_last, "
            "v_min = LEAST(trace_buckets.v_min, excluded.v_min), v_max = GREATEST(trace_buckets.v_max, excluded.v_max)",
            [*(list(c) for c in zip(*rows, strict=True)), n0, base + last, n0 - last * size],
        )


def read(conn: sa.Connection, run_id: int, n: int) -> list[Bucket] | None:
    """The buckets of the run's first ``n`` samples, in order; ``None`` if they are not all
    there (a run recorded before the envelope was stored: see :func:`rebuild`)."""
    size = ENVELOPE_BUCKET
    nb = (n + size - 1) // size
    if nb == 0:
        return []
    base = int(run_id) << SAMPLE_ID_BITS
    raw = _driver(conn)
    rows: list[Any]
    if raw is not None:  # plain tuples: a tenth of the time of Core rows for 6,000 of them
        mark = "?" if conn.dialect.name == "sqlite" else "%s"
        cur = raw.cursor()
        try:
            cur.execute(
                f"SELECT n, t_first, t_last, v_min, v_max FROM trace_buckets WHERE id BETWEEN {mark} AND {mark} "
                "ORDER BY id",
                (base, base + nb - 1),
            )
            rows = cur.fetchall()
        finally:
            cur.close()
    else:
        rows = list(
            conn.execute(
                sa.select(_tb.n, _tb.t_first, _tb.t_last, _tb.v_min, _tb.v_max)
                .where(_tb.id.between(base, base + nb - 1))
                .order_by(_tb.id)
            ).all()
        )
    # ids are unique and in range: nb rows are buckets 0 .. nb-1.  Every bucket but the last is
    # full; the last holds at least the samples counted in n (more if a commit came in between).
    if len(rows) != nb or rows[-1][0] < n - (nb - 1) * size:
        return None
    counts, *cols = zip(*rows, strict=True)
    if counts.count(size) < nb - 1 or (nb > 1 and counts[-1] > size):
        return None
    return list(zip(*cols, strict=True))


def rebuild(conn: sa.Connection, run_id: int, *, if_missing: bool = False) -> tuple[int, list[Bucket]]:
    """In a write transaction: replace the run's buckets by ones computed from its committed
    samples; ``(n_samples, buckets)``.  With ``if_missing``, buckets that add up (another
    request built them meanwhile) are returned as they are.  ``KeyError`` if there is no such run."""
    # The run's row is locked first (PostgreSQL; SQLite's write transaction holds the whole
    # file): a writer committing meanwhile waits at its n_samples update, and then finds these
    # buckets and extends them.
    n = conn.execute(sa.select(runs.c.n_samples).where(runs.c.id == run_id).with_for_update()).scalar()
    if n is None:
        raise KeyError(run_id)
    n = int(n)
    if if_missing:
        have = read(conn, run_id, n)
        if have is not None:
            return n, have
    size = ENVELOPE_BUCKET
    base = int(run_id) << SAMPLE_ID_BITS
    nb = (n + size - 1) // size
    conn.execute(trace_buckets.delete().where(_tb.id.between(base, base + (1 << SAMPLE_ID_BITS) - 1)))
    got = scan(conn, run_id, n, size, list(range(nb)))
    out: list[Bucket] = []
    rows = []
    for b in range(nb):
        t0, t1, lo, hi = (_num(x) for x in got[b])
        out.append((t0, t1, lo, hi))
        rows.append(
            {
                "id": base + b,
                "run_id": int(run_id),
                "n": min(size, n - b * size),
                "t_first": t0,
                "t_last": t1,
                "v_min": lo,
                "v_max": hi,
            }
        )
    for k in range(0, len(rows), 5000):
        conn.execute(trace_buckets.insert(), rows[k : k + 5000])
    return n, out


def scan(conn: sa.Connection, run_id: int, n: int, size: int, todo: list[int]) -> dict[int, Bucket]:
    """Buckets ``todo`` of ``size`` consecutive samples of the run's first ``n``, read from the
    samples: on SQLite one range query per bucket (a range of the table's own B-tree, the first
    and last sample's t by key), on PostgreSQL one ``GROUP BY``.  NaN voltages are left out (SQLite
    stores them as NULL; PostgreSQL would rank NaN above every number)."""
    out: dict[int, Bucket] = {}
    if not todo:
        return out
    base = int(run_id) << SAMPLE_ID_BITS
    if conn.dialect.name == "postgresql":
        lo_b, hi_b = min(todo), max(todo)
        rows = conn.execute(
            sa.text(
                "SELECT (id - :base) / :size AS b, min(t), max(t), min(voltage) FILTER (WHERE voltage <> 'NaN'), "
                "max(voltage) FILTER (WHERE voltage <> 'NaN') FROM samples "
                "WHERE run_id = :run AND id BETWEEN :lo AND :hi GROUP BY 1"
            ),
            {
                "base": base,
                "size": size,
                "run": int(run_id),
                "lo": base + lo_b * size,
                "hi": base + min(n, (hi_b + 1) * size) - 1,
            },
        ).all()
        want = set(todo)
        for r in rows:
            if int(r[0]) in want:
                out[int(r[0])] = (r[1], r[2], r[3], r[4])
        return out
    if conn.dialect.name != "sqlite":
        for b in todo:
            lo, hi = base + b * size, base + min(n, (b + 1) * size) - 1
            r = conn.execute(
                sa.text("SELECT min(t), max(t), min(voltage), max(voltage) FROM samples WHERE id BETWEEN :lo AND :hi"),
                {"lo": lo, "hi": hi},
            ).one()
            out[b] = (r[0], r[1], r[2], r[3])
        return out
    sql = (
        "SELECT (SELECT t FROM samples WHERE id = ?1), (SELECT t FROM samples WHERE id = ?2), "
        "min(voltage), max(voltage) FROM samples WHERE id BETWEEN ?1 AND ?2"
    )
    raw: Any = conn.connection.driver_connection
    cur = raw.cursor()
    try:
        for b in todo:
            lo, hi = base + b * size, base + min(n, (b + 1) * size) - 1
            out[b] = cur.execute(sql, (lo, hi)).fetchone()
    finally:
        cur.close()
    return out


def _num(x: Any) -> float | None:
    """A stored time or voltage: NaN is NULL (as SQLite stores it)."""
    if x is None:
        return None
    x = float(x)
    return None if x != x else x


def _driver(conn: sa.Connection) -> Any:
    """The DB-API connection for SQLite and PostgreSQL (plain executemany: a tenth of Core's cost
    per batch); None for other dialects (SQLAlchemy Core)."""
    return conn.connection.driver_connection if conn.dialect.name in ("sqlite", "postgresql") else None


def _nulls(a: np.ndarray) -> list[float | None]:
    """Python floats, NaN as None (NULL)."""
    out: list[float | None] = a.tolist()
    if np.isnan(a).any():
        out = [None if x != x else x for x in out]
    return out


def _pick(f: Any, a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return f(a, b)
