"""Whole protocol library x both presets x N replicates, simulated and stored in SQLite.

Prints wall time against a floor measured in the same run: the same campaign simulated with no
database at all (pure simulation + engine), so the ratio is the cost of recording everything.

    python bench/library.py [--replicates 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from labctl.app.campaign import RunSpec, run_campaign
from labctl.studies.mg_anode import LIBRARY_DIR

LIB = LIBRARY_DIR


def _sim_only(specs: list[RunSpec]) -> float:
    from labctl.app.controller import SimSettings, run_protocol

    t0 = time.perf_counter()
    for s in specs:
        run_protocol(s.protocol, sim=SimSettings(s.preset, s.seed, s.replicate))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicates", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    protocols = sorted(LIB.glob("*.yaml"))
    specs = [
        RunSpec(str(p), preset, seed=100 * r + k, replicate=r)
        for k, p in enumerate(protocols)
        for preset in ("bare-mg", "br-mg")
        for r in range(a.replicates)
    ]
    big = {"ce-longterm-0.5mA": 0, "ce-longterm-3mA": 1, "symmetric-0.5mA": 2, "full-cell-0.1C": 3, "rate-stepped": 4}
    specs.sort(key=lambda s: big.get(Path(s.protocol).stem, 99))
    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:///{d}/bench.sqlite"
        t0 = time.perf_counter()
        res = run_campaign(specs, url, workers=a.workers)
        wall = time.perf_counter() - t0
    n = sum(r.n_samples for r in res)
    bad = [r for r in res if r.status != "completed"]
    floor = _sim_only(specs)
    print(
        f"library: {len(protocols)} protocols x 2 presets x {a.replicates} replicates = {len(specs)} runs, "
        f"{n:,} samples, {len(bad)} not completed"
    )
    print(f"  simulated + stored (SQLite, {a.workers} workers): {wall:.1f} s wall  (limit 180 s)")
    print(f"  floor: simulation alone, no database, 1 process: {floor:.1f} s")
    print(f"  ratio stored/floor: {wall / floor:.2f}")


if __name__ == "__main__":
    main()
