"""The 1,610 h Br-Mg symmetric run recorded every 1 s (~5.8 M samples): simulated and stored.

    python bench/symmetric_1s.py

labctl side (a child process, so its peak memory is its own): the library protocol
`symmetric-0.5mA` with every step recording every 1 s, run on the simulator (`--speed max`)
into a fresh SQLite file; wall time from start to the run's final commit, and peak RSS.

Floor, measured in the same run: raw `sqlite3.executemany` of the very same rows (read back
from labctl's file in chunks, tuples prebuilt outside the timing) into a fresh file with the
same schema, WAL, synchronous=NORMAL, a commit every 100,000 rows.
Targets: labctl wall <= 1.5x the floor's insert time; peak memory < 300 MB.
"""

from __future__ import annotations

import json
import os
import re
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labctl.studies.mg_anode import LIBRARY_DIR

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def protocol_text() -> str:
    text = (LIBRARY_DIR / "symmetric-0.5mA.yaml").read_text()
    text = re.sub(r"record_every: \{time: 10 s, voltage: 5 mV\}", "record_every: 1 s", text)
    text = text.replace("record_every: 60 s", "record_every: 1 s")
    return text.replace("name: symmetric-0.5mA", "name: symmetric-0.5mA-1s")


def child(url: str) -> None:
    from labctl.db import Database
    from labctl.app.controller import SimSettings, run_protocol
    from labctl.protocols import load_protocol_text

    proto = load_protocol_text(protocol_text(), "symmetric-0.5mA-1s.yaml")
    t0 = time.perf_counter()
    db = Database(url)
    out = run_protocol(proto, db=db, sim=SimSettings("br-mg", 0, 0))
    wall = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "wall_s": wall,
                "samples": out.n_samples,
                "run_id": out.run_id,
                "hours": out.duration / 3600,
                "peak_rss_mb": rss_mb,
                "status": out.status,
            }
        )
    )


def floor(src: str, run_id: int, dst: Path) -> float:
    from labctl.db import Database

    Database(f"sqlite:///{dst}").close()  # same schema, from the migrations
    db = Database(f"sqlite:///{src}")
    con = sqlite3.connect(dst, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    sql = (
        "INSERT INTO samples (run_id, step_index, cycle, t, voltage, current, charge, temperature) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    spent = 0.0
    for chunk in db.iter_samples(
        run_id, chunk_rows=100_000, columns=["step_index", "cycle", "t", "voltage", "current", "charge", "temperature"]
    ):
        n = len(chunk["t"])
        rows = list(
            zip(
                [run_id] * n,
                chunk["step_index"].astype(int).tolist(),
                chunk["cycle"].astype(int).tolist(),
                chunk["t"].tolist(),
                chunk["voltage"].tolist(),
                chunk["current"].tolist(),
                chunk["charge"].tolist(),
                chunk["temperature"].tolist(),
            )
        )
        t0 = time.perf_counter()
        con.execute("BEGIN IMMEDIATE")
        con.executemany(sql, rows)
        con.execute("COMMIT")
        spent += time.perf_counter() - t0
    con.close()
    db.close()
    return spent


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2])
        return
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "labctl.sqlite"
        r = subprocess.run(
            [sys.executable, __file__, "--child", f"sqlite:///{src}"], capture_output=True, text=True, check=True
        )
        res = json.loads(r.stdout.strip().splitlines()[-1])
        raw = floor(str(src), res["run_id"], Path(d) / "raw.sqlite")
    print(
        f"symmetric 0.5 mA/cm2, Br-Mg, every 1 s: {res['samples']:,} samples, {res['hours']:.0f} h simulated "
        f"({res['status']}); {os.cpu_count()} cores"
    )
    print(
        f"  labctl simulate + store: {res['wall_s']:.2f} s  ({res['samples'] / res['wall_s']:,.0f} samples/s), "
        f"peak RSS {res['peak_rss_mb']:.0f} MB (limit 300 MB)"
    )
    print(f"  floor, raw executemany of the same rows: {raw:.2f} s ({res['samples'] / raw:,.0f} rows/s)")
    print(f"  ratio labctl/floor: {res['wall_s'] / raw:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
