"""Ingest benchmark, PostgreSQL: labctl RunRecorder.samples vs raw psycopg binary COPY.

    python bench/ingest_postgres.py [--rows 2000000] [--block 10000] [--repeat 3]

Server: ``$LABCTL_TEST_PG_URL`` (default postgresql://postgres@127.0.0.1:5432/test).
Each trial gets a fresh schema ``labctl_bench_<random>`` created by labctl's
migrations (same table, same index for both sides), dropped afterwards.  The floor
is psycopg's documented binary COPY: ``cursor.copy(...)``, ``set_types`` and
``write_row`` per row from a prebuilt list of tuples (building the list is not
timed), one COPY and one commit per ``commit_rows`` rows.  labctl is timed from the
first ``samples()`` until ``finish()`` returned.  Prints rows/s and the ratio
(target >= 0.8).

The writer also stores the run's voltage envelope (labctl.db.envelope) in each commit; what
that costs is measured in the same run: labctl again with it switched off (interleaved), and
the time spent inside it as a share of each run (info lines).
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from urllib.parse import quote

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _envelope import ENVELOPE_SECONDS, timing_envelope, without_envelope  # noqa: E402

from labctl.db import Database  # noqa: E402
from labctl.db.schema import SAMPLE_ID_BITS  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
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


INDEXES = {
    "brin": None,  # labctl's schema as migrated
    "none": "DROP INDEX ix_samples_run_id_id_brin",
    "btree": "DROP INDEX ix_samples_run_id_id_brin; CREATE INDEX ix_bench ON samples (run_id, step_index)",
    "pk": "DROP INDEX ix_samples_run_id_id_brin; ALTER TABLE samples ADD PRIMARY KEY (id)",
}
INDEX = "brin"


class Schema:
    """A fresh schema with the labctl tables; dropped on exit."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.name = f"labctl_bench_{secrets.token_hex(4)}"

    def __enter__(self) -> str:
        with psycopg.connect(self.base, autocommit=True) as c:
            c.execute(f'CREATE SCHEMA "{self.name}"')
        sep = "&" if "?" in self.base else "?"
        url = f"{self.base}{sep}options={quote(f'-csearch_path={self.name}')}"
        Database(url).close()
        if INDEXES[INDEX]:
            with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as c:
                for statement in INDEXES[INDEX].split(";"):
                    c.execute(statement)
        return url

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(self.base, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')


def run_raw(base_url: str, data: dict[str, np.ndarray], commit_rows: int) -> float:
    n = len(data["t"])
    steps = data["step_index"]
    rows = list(
        zip(
            ((1 << SAMPLE_ID_BITS) + np.arange(n)).tolist(),
            [1] * n,
            steps.tolist(),
            (steps // 2).tolist(),
            data["t"].tolist(),
            data["voltage"].tolist(),
            data["current"].tolist(),
            data["charge"].tolist(),
            data["temperature"].tolist(),
        )
    )
    with Schema(base_url) as url, psycopg.connect(url.replace("+psycopg", "")) as con:
        sql = (
            "COPY samples (id, run_id, step_index, cycle, t, voltage, current, charge, temperature) "
            "FROM STDIN (FORMAT BINARY)"
        )
        types = ["int8", "int8", "int4", "int4", "float8", "float8", "float8", "float8", "float8"]
        t0 = time.perf_counter()
        for k in range(0, n, commit_rows):
            with con.cursor() as cur, cur.copy(sql) as copy:
                copy.set_types(types)
                for row in rows[k : k + commit_rows]:
                    copy.write_row(row)
            con.commit()
        dt = time.perf_counter() - t0
        assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == n
    return n / dt


def run_labctl(
    base_url: str, data: dict[str, np.ndarray], block: int, commit_rows: int, read_rates: list[float]
) -> float:
    n = len(data["t"])
    steps = data["step_index"]
    with Schema(base_url) as url:
        db = Database(url, commit_rows=commit_rows)
        rec = db.open_run(protocol_name="bench", protocol_text="bench", channel="ch1", simulated=True)
        t0 = time.perf_counter()
        for k in range(0, n, block):
            s = int(steps[k])
            e = min(k + block, n)
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
        t1 = time.perf_counter()
        back = db.samples(rec.run_id)
        read_rates.append(n / (time.perf_counter() - t1))
        for c in ("t", "voltage", "current", "charge", "temperature"):
            assert np.array_equal(back[c], data[c]), c
        assert np.array_equal(back["step_index"], steps) and np.isnan(back["z_im"]).all()
        db.close()
    return n / dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--block", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--commit-rows", type=int, default=100_000)
    p.add_argument(
        "--index",
        choices=sorted(INDEXES),
        default="brin",
        help="index on samples for both sides (default: labctl's BRIN)",
    )
    a = p.parse_args()
    global INDEX
    INDEX = a.index
    base = os.environ.get("LABCTL_TEST_PG_URL", DEFAULT_URL)
    try:
        psycopg.connect(base, connect_timeout=5).close()
    except psycopg.Error as exc:
        print(f"ingest_postgres: skipped, no PostgreSQL at {base}: {exc}".strip())
        sys.exit(1 if os.environ.get("LABCTL_REQUIRE_PG") == "1" else 0)
    data = make_data(a.rows)
    raw, lab, bare, reads = [], [], [], []
    for k in range(a.repeat):
        raw.append(run_raw(base, data, a.commit_rows))
        for side in ("with", "without") if k % 2 == 0 else ("without", "with"):  # neither always second
            if side == "with":
                with timing_envelope():
                    lab.append(run_labctl(base, data, a.block, a.commit_rows, reads))
            else:
                with without_envelope():
                    bare.append(run_labctl(base, data, a.block, a.commit_rows, []))
    with psycopg.connect(base) as c:
        server = c.execute("SHOW server_version").fetchone()[0]
    r, l_ = statistics.median(raw), statistics.median(lab)
    print(
        f"ingest_postgres  {date.today()}  {platform.machine()} {os.cpu_count()} cores  "
        f"python {platform.python_version()}  PostgreSQL {server} (same machine)  psycopg {psycopg.__version__}"
    )
    print(
        f"rows {a.rows:,}  block {a.block:,}  commit every {a.commit_rows:,} rows  median of {a.repeat}"
        f"  samples index: {a.index}"
    )
    print(f"raw COPY write_row (floor): {r:12,.0f} rows/s   runs: {', '.join(f'{x:,.0f}' for x in raw)}")
    print(f"labctl RunRecorder:         {l_:12,.0f} rows/s   runs: {', '.join(f'{x:,.0f}' for x in lab)}")
    print(f"ratio labctl/raw: {l_ / r:.2f}  (target >= 0.8)")
    b = statistics.median(bare)
    print(f"info: labctl without the stored envelope: {b:12,.0f} rows/s   runs: {', '.join(f'{x:,.0f}' for x in bare)}")
    print(f"info: envelope cost, labctl with / without it: {l_ / b:.3f}")
    share = [e * x / a.rows for e, x in zip(ENVELOPE_SECONDS, lab, strict=True)]
    print(f"info: share of the run spent storing the envelope: {', '.join(f'{x:.1%}' for x in share)}")
    print(f"info: labctl db.samples read-back, all 10 columns: {statistics.median(reads):12,.0f} rows/s")


if __name__ == "__main__":
    main()
