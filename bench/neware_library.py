"""The full-length study protocols on an emulated 8-channel Neware vs the in-process simulator.

The tests run shortened variants (tests/test_neware.py); this runs ``symmetric-0.5mA``,
``aurbach-ce`` and ``ce-longterm-0.5mA`` as written, in virtual time, and prints for each the
wall time of both, the sample counts, the largest differences and the analysed numbers.

    python bench/neware_library.py [--preset br-mg] [--seed 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from labctl.app.controller import SimSettings, run_protocol
from labctl.app.cycler_run import run_on_cycler
from labctl.app.results import analyze_and_store
from labctl.app.station import load_station_text
from labctl.core.clock import VirtualClock
from labctl.db import Database
from labctl.protocols import load_protocol
from labctl.simulators.emulators.neware import NewareEmulator

LIB = Path(__file__).resolve().parent.parent / "labctl" / "studies" / "mg_anode" / "library"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="br-mg")
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args()
    em = NewareEmulator(clock=VirtualClock(), preset=a.preset, seed=a.seed, channels=8)
    tmp = tempfile.mkdtemp()
    chans = "\n".join(f"  N{c}: {{cycler: bts, address: 27-1-{c}}}" for c in range(1, 9))
    st = load_station_text(
        f"instruments:\n  bts: {{driver: neware, port: {em.port}, step_folder: '{tmp}'}}\nchannels:\n{chans}\n"
    )
    db = Database("sqlite://")
    for n, name in enumerate(("symmetric-0.5mA", "aurbach-ce", "ce-longterm-0.5mA"), start=1):
        proto = load_protocol(LIB / f"{name}.yaml")
        t0 = time.perf_counter()
        c = run_on_cycler(proto, db=db, station=st, channel=f"N{n}", poll=0.01)
        t1 = time.perf_counter()
        s = run_protocol(proto, db=db, sim=SimSettings(a.preset, seed=a.seed))
        t2 = time.perf_counter()
        x, y = db.samples(c.run_id), db.samples(s.run_id)
        same = len(x["t"]) == len(y["t"])
        dv = float(np.max(np.abs(x["voltage"] - y["voltage"]))) if same else float("nan")
        dt = float(np.max(np.abs(x["t"] - y["t"]))) if same else float("nan")
        ra = {r["name"]: r["value"] for r in analyze_and_store(db, c.run_id) if r["step_index"] is None}
        rb = {r["name"]: r["value"] for r in analyze_and_store(db, s.run_id) if r["step_index"] is None}
        print(f"{name}: cycler {c.status} ({c.end_reason}) {c.n_samples:,} samples in {t1 - t0:.1f} s; "
              f"sim {s.status} ({s.end_reason}) {s.n_samples:,} samples in {t2 - t1:.1f} s; "
              f"max |dV| {dv:.2e} V, max |dt| {dt:.3f} s")  # fmt: skip
        for k in sorted(ra):
            if isinstance(ra[k], float) and isinstance(rb.get(k), float):
                print(f"    {k}: cycler {ra[k]:.6g}  sim {rb[k]:.6g}")
    em.close()


if __name__ == "__main__":
    main()
