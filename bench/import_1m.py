"""Import benchmark: `labctl import` of a 10^6-row cycler export vs the reader library alone.

    python bench/import_1m.py [--rows 1000000] [--repeat 3]

The file is an Arbin-style CSV export (Data_Point, Test_Time(s), Step_Time(s),
Step_Index, Cycle_Index, Current(A), Voltage(V), Charge_Capacity(Ah),
Discharge_Capacity(Ah)) of ``--rows`` rows: CC charge, rest, CC discharge, rest, over
as many cycles as fit, written once into a temporary folder.  Timed, best of
``--repeat``, each into a fresh SQLite file:

* peer: ``pandas.read_csv`` of the file (the reader library alone: columns into memory);
* labctl read: ``labctl.importers.read_file`` (the columns recognised, units converted,
  the steps and the per-step charge from the counters);
* labctl import: ``labctl.app.importing.import_file`` (read + sha256 + every sample
  committed to SQLite through the run recorder).

Printed: rows per second of each and the ratio import / peer.  Then the same for the
real 77,745-row Neware .ndax in tests/data/import against NewareNDA.read alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from labctl.app.importing import import_file
from labctl.db import Database
from labctl.importers import read_file

NDAX = Path(__file__).resolve().parents[1] / "tests" / "data" / "import" / "neware_TESTCELL0001-B2.ndax"


def write_csv(path: Path, n: int) -> None:
    per = [(0.002, 4000), (0.0, 500), (-0.002, 4000), (0.0, 500)]  # A, rows (1 s apart)
    cyc_rows = sum(r for _, r in per)
    cur = np.empty(n)
    step = np.empty(n, dtype=np.int64)
    cycle = np.empty(n, dtype=np.int64)
    st = np.empty(n)
    k = 0
    c = 1
    while k < n:
        for s, (i, r) in enumerate(per, start=1):
            e = min(k + r, n)
            cur[k:e] = i
            step[k:e] = s
            cycle[k:e] = c
            st[k:e] = np.arange(e - k, dtype=float)
            k = e
            if k >= n:
                break
        c += 1
    t = np.arange(n, dtype=float)
    qc = np.where(cur > 0, np.abs(cur) * (st + 1) / 3600.0, 0.0)
    qd = np.where(cur < 0, np.abs(cur) * (st + 1) / 3600.0, 0.0)
    v = 3.7 + 0.3 * np.sign(cur) * np.tanh(st / 2000.0)
    cols = np.column_stack([np.arange(1, n + 1), t, st, step, cycle, cur, v, qc, qd])
    header = (
        "Data_Point,Test_Time(s),Step_Time(s),Step_Index,Cycle_Index,Current(A),Voltage(V),"
        "Charge_Capacity(Ah),Discharge_Capacity(Ah)"
    )
    np.savetxt(
        path,
        cols,
        delimiter=",",
        header=header,
        comments="",
        fmt=["%d", "%.1f", "%.1f", "%d", "%d", "%.6g", "%.6f", "%.9g", "%.9g"],
    )
    assert cyc_rows > 0


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "arbin_export.csv"
        write_csv(f, a.rows)
        size = f.stat().st_size
        t_peer = best(lambda: pd.read_csv(f), a.repeat)
        t_read = best(lambda: read_file(f), a.repeat)
        n_db = [0]

        def do_import() -> None:
            n_db[0] += 1
            with Database(f"sqlite:///{Path(tmp) / f'b{n_db[0]}.db'}") as db:
                r = import_file(db, f)
                assert r.n_samples == a.rows, r

        t_imp = best(do_import, a.repeat)
        cpu = platform.processor() or platform.machine()
        print(f"# labctl import benchmark, {date.today()}, {cpu}, {os.cpu_count()} cores")
        print(f"file: {a.rows:,} rows, {size / 1e6:.1f} MB (Arbin-style CSV)")
        print(f"peer  pandas.read_csv           {t_peer:7.2f} s  {a.rows / t_peer / 1e6:5.2f} M rows/s")
        for what, t in (("labctl read_file", t_read), ("labctl import (read + SQLite)", t_imp)):
            print(f"{what:31s} {t:7.2f} s  {a.rows / t / 1e6:5.2f} M rows/s  ratio {t / t_peer:.2f}")
        try:
            import NewareNDA
        except ImportError:
            return
        n = len(NewareNDA.read(str(NDAX), log_level="ERROR"))
        t_nda = best(lambda: NewareNDA.read(str(NDAX), log_level="ERROR"), a.repeat)
        n_db2 = [0]

        def imp2() -> None:
            n_db2[0] += 1
            with Database(f"sqlite:///{Path(tmp) / f'n{n_db2[0]}.db'}") as db:
                import_file(db, NDAX)

        t_imp2 = best(imp2, a.repeat)
        print(
            f"Neware .ndax ({n:,} rows): NewareNDA.read {t_nda:.2f} s, labctl import {t_imp2:.2f} s, "
            f"ratio {t_imp2 / t_nda:.2f}"
        )


if __name__ == "__main__":
    main()
