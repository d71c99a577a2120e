"""Ingest benchmark, SQLite: labctl RunRecorder.samples vs raw sqlite3 executemany.

    python bench/ingest_sqlite.py [--rows 2000000] [--block 10000] [--repeat 3]

Both sides write the same rows into the same schema (created by labctl's migration:
same table, same indexes), each into a fresh file in WAL mode with
synchronous=NORMAL, committing every ``commit_rows`` rows.  The floor is raw
``sqlite3.executemany`` of a prebuilt list of tuples (building the list is not timed);
labctl is timed from the first ``samples()`` call until ``finish()`` returned, so the
copy of each block, the queue, the tuple building in the writer thread and every commit
are inside the measurement.  Prints rows/s of both and the ratio (target >= 0.8).

The writer also stores the run's voltage envelope (labctl.db.envelope) in each commit; what
that costs is measured in the same run: labctl again with it switched off (interleaved), and
the time spent inside it as a share of each run (info lines).
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
from _envelope import ENVELOPE_SECONDS, timing_envelope, without_envelope  # noqa: E402

from labctl.db import Database  # noqa: E402

STEP_ROWS = 100_000


def make_data(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64) * 0.1
    current = np.where((np.arange(n) // STEP_ROWS) % 2 == 0, 1e-3, -1e-3) + rng.normal(0, 1e-6, n)
    return {
        "step_index": np.arange(n) // STEP_ROWS,
        "t": t,
        "voltage": 0.2 + 0.05 * np.sin(t / 50.0) + rng.normal(0, 1e-4, n),
        "current": current,
        "charge": np.cumsum(current) * 0.1,
        "temperature": 25.0 + rng.normal(0, 0.05, n),
    }


EXTRA_INDEX: str | None = None  # --extra-index: measure what a secondary index would cost


def fresh(path: Path) -> str:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    Database(url).close()  # the labctl schema, from the migrations
    if EXTRA_INDEX:
        con = sqlite3.connect(path)
        con.execute(f"CREATE INDEX ix_bench_extra ON samples ({EXTRA_INDEX})")
        con.commit()
        con.close()
    return url


def run_raw(path: Path, data: dict[str, np.ndarray], commit_rows: int) -> float:
    fresh(path)
    n = len(data["t"])
    cycles = (data["step_index"] // 2).tolist()
    rows = list(
        zip(
            [1] * n,
            data["step_index"].tolist(),
            cycles,
            data["t"].tolist(),
            data["voltage"].tolist(),
            data["current"].tolist(),
            data["charge"].tolist(),
            data["temperature"].tolist(),
        )
    )
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    sql = (
        "INSERT INTO samples (run_id, step_index, cycle, t, voltage, current, charge, temperature) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    t0 = time.perf_counter()
    for k in range(0, n, commit_rows):
        con.execute("BEGIN IMMEDIATE")
        con.executemany(sql, rows[k : k + commit_rows])
        con.execute("COMMIT")
    dt = time.perf_counter() - t0
    assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == n
    con.close()
    return n / dt


def run_labctl(path: Path, data: dict[str, np.ndarray], block: int, commit_rows: int) -> float:
    url = fresh(path)
    n = len(data["t"])
    db = Database(url, commit_rows=commit_rows)
    rec = db.open_run(
        protocol_name="bench", protocol_text="bench", channel="ch1", simulated=True, started_unix=time.time()
    )
    steps = data["step_index"]
    t0 = time.perf_counter()
    for k in range(0, n, block):
        s = int(steps[k])
        e = min(k + block, n)
        assert steps[e - 1] == s, "blocks must not straddle steps"
        rec.samples(
            s,
            s // 2,
            data["t"][k:e],
            data["voltage"][k:e],
            data["current"][k:e],
            data["charge"][k:e],
            temperature=data["temperature"][k:e],
        )
    rec.finish("completed", "complete", time.time())
    dt = time.perf_counter() - t0
    assert db.n_samples(rec.run_id) == n
    back = db.samples(rec.run_id, columns=["t", "temperature"])
    assert np.array_equal(back["t"], data["t"]) and np.array_equal(back["temperature"], data["temperature"])
    db.close()
    return n / dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--block", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--commit-rows", type=int, default=100_000)
    p.add_argument("--dir", default=None, help="where the files go (default: a temp dir)")
    p.add_argument(
        "--extra-index",
        default=None,
        metavar="COLUMNS",
        help='add "CREATE INDEX ON samples (COLUMNS)" on both sides, e.g. "run_id, step_index"',
    )
    a = p.parse_args()
    global EXTRA_INDEX
    EXTRA_INDEX = a.extra_index
    data = make_data(a.rows)
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        path = Path(d) / "bench.sqlite"
        raw, lab, bare = [], [], []
        for k in range(a.repeat):  # alternate, so drift hits every side alike
            raw.append(run_raw(path, data, a.commit_rows))
            for side in ("with", "without") if k % 2 == 0 else ("without", "with"):
                if side == "with":
                    with timing_envelope():
                        lab.append(run_labctl(path, data, a.block, a.commit_rows))
                else:
                    with without_envelope():
                        bare.append(run_labctl(path, data, a.block, a.commit_rows))
    r, l_ = statistics.median(raw), statistics.median(lab)
    print(
        f"ingest_sqlite  {date.today()}  {platform.machine()} {os.cpu_count()} cores  "
        f"python {platform.python_version()}  sqlite {sqlite3.sqlite_version}"
    )
    print(
        f"rows {a.rows:,}  block {a.block:,}  commit every {a.commit_rows:,} rows  median of {a.repeat}"
        + (f"  extra index ({a.extra_index})" if a.extra_index else "")
    )
    print(f"raw executemany (floor): {r:12,.0f} rows/s   runs: {', '.join(f'{x:,.0f}' for x in raw)}")
    print(f"labctl RunRecorder:      {l_:12,.0f} rows/s   runs: {', '.join(f'{x:,.0f}' for x in lab)}")
    print(f"ratio labctl/raw: {l_ / r:.2f}  (target >= 0.8)")
    b = statistics.median(bare)
    print(f"info: labctl without the stored envelope: {b:12,.0f} rows/s   runs: {', '.join(f'{x:,.0f}' for x in bare)}")
    print(f"info: envelope cost, labctl with / without it: {l_ / b:.3f}")
    share = [e * x / a.rows for e, x in zip(ENVELOPE_SECONDS, lab, strict=True)]
    print(f"info: share of the run spent storing the envelope: {', '.join(f'{x:.1%}' for x in share)}")


if __name__ == "__main__":
    main()
