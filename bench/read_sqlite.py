"""Read benchmark, SQLite: labctl Database.samples vs raw sqlite3 SELECT + np.array.

    python bench/read_sqlite.py [--rows 2000000] [--repeat 5]

One file holds a small earlier run and then the measured run (``--rows`` samples,
written by labctl).  Both sides read the same columns of the same rows into float
numpy arrays.  The floor is a plain ``sqlite3`` connection running the same SELECT
(the run's sample-id range, ``ORDER BY id``), ``fetchall()`` and
``np.array(rows, dtype=float)``.  labctl returns one contiguous array per column
(step_index and cycle as int64).  For information it also times the raw query written
the obvious way (``WHERE run_id = ?``) and ``iter_samples``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from labctl.db import SAMPLE_COLUMNS, Database  # noqa: E402
from labctl.db.schema import SAMPLE_ID_BITS  # noqa: E402

STEP_ROWS = 100_000


def record(db: Database, n: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    rec = db.open_run(protocol_name="bench", protocol_text="bench", channel="ch1", simulated=True)
    for k in range(0, n, 10_000):
        e = min(k + 10_000, n)
        s = k // STEP_ROWS
        t = np.arange(k, e) * 0.1
        i = rng.normal(1e-3, 1e-6, e - k)
        rec.samples(s, s // 2, t, rng.normal(0.2, 0.01, e - k), i, np.cumsum(i), temperature=rng.normal(25, 0.1, e - k))
    rec.finish("completed", "complete", time.time())
    return rec.run_id


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--dir", default=None)
    a = p.parse_args()
    cols = ", ".join(SAMPLE_COLUMNS)
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        url = f"sqlite:///{d}/read.sqlite"
        db = Database(url)
        record(db, 50_000, 1)
        run_id = record(db, a.rows, 2)
        lo = run_id << SAMPLE_ID_BITS
        con = sqlite3.connect(f"{d}/read.sqlite")
        raw_t, lab_t, naive_t, iter_t = [], [], [], []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            rows = con.execute(
                f"SELECT {cols} FROM samples WHERE id BETWEEN ? AND ? ORDER BY id", (lo, lo + a.rows - 1)
            ).fetchall()
            arr = np.array(rows, dtype=np.float64)
            raw_t.append(time.perf_counter() - t0)
            del rows
            t0 = time.perf_counter()
            got = db.samples(run_id)
            lab_t.append(time.perf_counter() - t0)
            for j, c in enumerate(SAMPLE_COLUMNS):
                assert np.array_equal(got[c], arr[:, j], equal_nan=True), c
            del arr, got
            t0 = time.perf_counter()
            rows = con.execute(f"SELECT {cols} FROM samples WHERE run_id = ?", (run_id,)).fetchall()
            naive = np.array(rows, dtype=np.float64)
            naive_t.append(time.perf_counter() - t0)
            assert len(naive) == a.rows
            del rows, naive
            t0 = time.perf_counter()
            total = sum(len(chunk["t"]) for chunk in db.iter_samples(run_id))
            iter_t.append(time.perf_counter() - t0)
            assert total == a.rows
        con.close()
        db.close()
    n = a.rows
    r, lab = n / statistics.median(raw_t), n / statistics.median(lab_t)
    print(
        f"read_sqlite  {date.today()}  {platform.machine()} {os.cpu_count()} cores  "
        f"python {platform.python_version()}  sqlite {sqlite3.sqlite_version}"
    )
    print(f"rows {n:,} x {len(SAMPLE_COLUMNS)} columns  median of {a.repeat}")
    print(f"raw SELECT + np.array (floor): {r:12,.0f} rows/s  ({statistics.median(raw_t):.2f} s)")
    print(f"labctl db.samples:             {lab:12,.0f} rows/s  ({statistics.median(lab_t):.2f} s)")
    print(f"ratio labctl/raw: {lab / r:.2f}  (target >= 0.8)")
    print(f"info: raw 'WHERE run_id = ?' (full scan): {n / statistics.median(naive_t):12,.0f} rows/s")
    print(f"info: labctl iter_samples (200k chunks):  {n / statistics.median(iter_t):12,.0f} rows/s")


if __name__ == "__main__":
    main()
