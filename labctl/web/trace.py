"""A run's voltage-time trace at the plot's resolution, keeping the extremes.

The samples of a run are the key range ``run_id * 2**40 + n`` (n = 0 .. n_samples-1).  The
range is cut into buckets of ``size`` consecutive samples (a power of two, so the buckets
of a growing run stay the same until the size doubles); each bucket gives its minimum and
maximum voltage and the test times of its first and last sample.  A short or a spike
therefore always shows: it is the minimum or maximum of its bucket, never averaged away.

Buckets of at least ``ENVELOPE_BUCKET`` (1,024) samples are merged from the run's stored
envelope (``labctl.db.envelope``: a row per 1,024 samples, written by the run writer with
the samples), so a run of 6 M samples is drawn from about 6,000 rows, whoever asks first.  A
run recorded before the envelope was stored gets it computed from its samples on its first
trace and stored (a read-only archive is scanned instead).  Finer buckets (runs of less than
about 0.7 M samples at a full-width plot) are read from the samples: on SQLite one ``min/max`` range query
per bucket, on PostgreSQL one ``GROUP BY``; full ones are cached per run and bucket size,
since committed samples never change, so a live page's refresh reads only the last again.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from labctl.db import envelope
from labctl.db.schema import ENVELOPE_BUCKET, SAMPLE_ID_BITS, runs

#: buckets of a full-width plot (a bucket gives two points)
DEFAULT_BINS = 1500
#: runs with at most this many samples are sent point by point
RAW_LIMIT = 3000
#: the cached buckets cut a run into at most this many; coarser traces are merged from them
FINE_BINS = 2048


@dataclass
class Trace:
    run_id: int
    n_samples: int
    bucket: int  # samples per bucket; 1 = every sample
    envelope: bool
    t: list[float]
    voltage: list[float | None]


class TraceCache:
    """Full buckets of recent runs: ``(run_id, size) -> {bucket: (t0, t1, vmin, vmax)}`` (LRU)."""

    def __init__(self, max_runs: int = 32) -> None:
        self.max_runs = max_runs
        #: buckets read from the database so far (what the cache did not have)
        self.scanned = 0
        self._data: OrderedDict[tuple[int, int], dict[int, tuple[Any, Any, Any, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int]) -> dict[int, tuple[Any, Any, Any, Any]]:
        with self._lock:
            d = self._data.get(key)
            if d is None:
                d = self._data[key] = {}
                while len(self._data) > self.max_runs:
                    self._data.popitem(last=False)
            else:
                self._data.move_to_end(key)
            return d


def bucket_size(n: int, bins: int) -> int:
    """The power of two that cuts ``n`` samples into at most ``bins`` buckets."""
    need = max(1, math.ceil(n / max(1, bins)))
    return 1 << (need - 1).bit_length()


def voltage_trace(db: Any, run_id: int, *, bins: int = DEFAULT_BINS, cache: TraceCache | None = None) -> Trace:
    """The voltage-time trace of run ``run_id`` (``KeyError`` if there is no such run)."""
    base = int(run_id) << SAMPLE_ID_BITS
    stored: list[envelope.Bucket] | None = None
    t: list[float]
    v: list[float | None]
    with db.transaction() as conn:
        n = conn.execute(sa.select(runs.c.n_samples).where(runs.c.id == run_id)).scalar()
        if n is None:
            raise KeyError(run_id)
        n = int(n)
        if n <= max(RAW_LIMIT, 2 * bins):
            rows = conn.execute(
                sa.text("SELECT t, voltage FROM samples WHERE id BETWEEN :lo AND :hi ORDER BY id"),
                {"lo": base, "hi": base + n - 1},
            ).all()
            return Trace(int(run_id), n, 1, False, [float(r[0]) for r in rows], [_num(r[1]) for r in rows])
        size = bucket_size(n, bins)
        if size >= ENVELOPE_BUCKET:
            stored = envelope.read(conn, int(run_id), n)
        if stored is None and (size < ENVELOPE_BUCKET or db.read_only):
            got_fine, fine, nf = _scanned(conn, int(run_id), n, size, cache)
    if stored is None and size >= ENVELOPE_BUCKET and not db.read_only:
        # recorded before the envelope was stored: computed from the samples once, and kept
        with db.transaction(write=True) as conn:
            n, stored = envelope.rebuild(conn, int(run_id), if_missing=True)
        size = bucket_size(n, bins)
    if stored is not None:
        t, v = _merged(stored, size // ENVELOPE_BUCKET)
        return Trace(int(run_id), n, size, True, t, v)
    k = size // fine
    nb = (n + size - 1) // size
    got = {b: _merge([got_fine.get(j) for j in range(b * k, min(nf, (b + 1) * k))]) for b in range(nb)}
    t = []
    v = []
    for b in range(nb):
        cell = got.get(b)
        if cell is None:
            continue
        t0, t1, lo, hi = cell
        if t0 is None or t1 is None:
            continue
        # two points per bucket: its minimum and its maximum, at its first and last sample's time
        t += [float(t0), float(t1)]
        v += [_num(lo), _num(hi)]
    return Trace(int(run_id), n, size, True, t, v)


def _merged(stored: list[envelope.Bucket], k: int) -> tuple[list[float], list[float | None]]:
    """The trace from stored buckets, ``k`` of them merged into each of the plot's: the first
    one's first t, the last one's last t, the least minimum, the greatest maximum (numpy)."""
    a = np.array(stored, dtype=np.float64)  # NULL -> NaN
    starts = np.arange(0, len(a), k)
    ends = np.minimum(starts + k, len(a)) - 1
    t0, t1 = a[starts, 0], a[ends, 1]
    lo, hi = np.fmin.reduceat(a[:, 2], starts), np.fmax.reduceat(a[:, 3], starts)
    keep = ~(np.isnan(t0) | np.isnan(t1))
    t = np.column_stack([t0[keep], t1[keep]]).ravel().tolist()
    v = np.column_stack([lo[keep], hi[keep]]).ravel()
    v[~np.isfinite(v)] = np.nan
    return t, [None if x != x else x for x in v.tolist()]


def _scanned(conn: Any, run_id: int, n: int, size: int, cache: TraceCache | None) -> tuple[dict[int, Any], int, int]:
    """Buckets finer than the stored ones (or of a read-only archive's run that has none), read
    from the samples: ``(buckets, samples per bucket, number of buckets)``."""
    fine = min(size, bucket_size(n, FINE_BINS))  # computed (and cached) at this size, merged up
    nf = (n + fine - 1) // fine
    full = n // fine  # buckets 0..full-1 are complete and never change
    done = cache.get((run_id, fine)) if cache is not None else {}
    todo = [b for b in range(nf) if b not in done]
    fresh = envelope.scan(conn, run_id, n, fine, todo)
    if cache is not None:
        cache.scanned += len(todo)
    for b, row in fresh.items():
        if b < full:
            done[b] = row
    return {**done, **fresh}, fine, nf


def _merge(parts: list[tuple | None]) -> tuple | None:
    """One bucket from consecutive finer ones: first t, last t, min and max voltage."""
    cells = [p for p in parts if p is not None and p[0] is not None]
    if not cells:
        return None
    if len(cells) == 1:
        return cells[0]
    lows = [c[2] for c in cells if c[2] is not None]
    highs = [c[3] for c in cells if c[3] is not None]
    return (cells[0][0], cells[-1][1], min(lows) if lows else None, max(highs) if highs else None)


def warm(db: Any, cache: TraceCache, run_ids: list[int]) -> None:
    """Make the traces of these runs fast to draw: store the envelope of a run recorded before
    it was stored, fill ``cache`` with the finer buckets of a shorter run (a server does it at
    start for the latest run of each channel, so the first visitor does not wait for the scan)."""
    for run_id in run_ids:
        voltage_trace(db, run_id, bins=FINE_BINS, cache=cache)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
