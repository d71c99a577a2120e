"""Start-up benchmark: ``labctl --help`` and ``labctl validate`` vs ``python -c pass``.

    python bench/startup.py [--repeat 10]

Each command runs ``--repeat`` times in a fresh interpreter (the one running this
script), alternating with the floor, ``python -c pass``, so that machine load hits
both alike; the figures are medians of wall time.  ``labctl --help`` runs as
``python -m labctl.cli --help`` (the console script adds only its own small
launcher).  Prints absolute times, the ratio to the floor and the time above it.
Exits 1 when ``labctl --help`` needs more than 0.3 s above the floor.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.3  # labctl --help, above the interpreter's own start-up


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, check=True)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    py = sys.executable
    cases = {
        "python -c pass": [py, "-c", "pass"],
        "labctl --help": [py, "-m", "labctl.cli", "--help"],
        "labctl validate tafel.yaml": [
            py,
            "-m",
            "labctl.cli",
            "validate",
            "labctl/studies/mg_anode/library/tafel.yaml",
        ],
    }
    for cmd in cases.values():  # warm the file cache and the .pyc files
        wall(cmd)
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeat):
        for name, cmd in cases.items():
            times[name].append(wall(cmd))
    med = {k: statistics.median(v) for k, v in times.items()}
    floor = med["python -c pass"]
    print(
        f"{date.today()}  {platform.platform()}  python {platform.python_version()}  "
        f"{os.cpu_count()} cores  median of {args.repeat}"
    )
    print(f"{'command':<30} {'median s':>9} {'min s':>7} {'ratio':>7} {'above floor s':>14}")
    for name, m in med.items():
        print(f"{name:<30} {m:9.3f} {min(times[name]):7.3f} {m / floor:7.1f} {m - floor:14.3f}")
    extra = med["labctl --help"] - floor
    ok = extra <= TARGET_S
    print(f"labctl --help: {extra:.3f} s above `python -c pass` (target <= {TARGET_S} s): {'ok' if ok else 'TOO SLOW'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
