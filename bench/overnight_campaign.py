"""The overnight campaign with the study's library protocols, rehearsed in virtual time.

18 runs (both anodes x three replicates of the symmetric, Aurbach and long-term CE protocols) and
the dip coat before its cycling run, on a 16-channel simulated station, scheduler included
(``labctl schedule --rehearse``).  Checks that every planned run completed exactly once, after
its start time and its ``after:`` runs, one run at a time per channel, and prints the virtual
time the plan covers against the wall time it took: the speed-up of the rehearsal, against the
floor 3600 (an hour of lab time checked per second of wall time).

    python bench/overnight_campaign.py [--db sqlite:///out/overnight.sqlite]

The test suite runs the same campaign with shortened protocols (tests/test_campaigns.py); this
is the full-length check, kept out of the suite for its minutes.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

from labctl.app.lab.campaign import load_campaign
from labctl.app.lab.rehearsal import rehearse
from labctl.db import Database

CAMPAIGN = Path(__file__).resolve().parent.parent / "tests" / "data" / "campaigns" / "overnight.yaml"
FLOOR = 3600.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default=None, help="database URL (default: a temporary SQLite file)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(args.db or f"sqlite:///{Path(tmp) / 'overnight.sqlite'}")
        try:
            t0 = time.perf_counter()
            reh = rehearse(load_campaign(CAMPAIGN), db)
            wall = time.perf_counter() - t0
            tl = reh.timeline
            bad = [(r.key, r.state, r.reason) for r in tl if r.state != "done" or r.status != "completed"]
            once = len({r.run_id for r in tl}) == len(tl) == len(db.runs())
            by_key = {r.key: r for r in tl}
            ordered = all(
                (r.at is None or r.start_unix >= r.at - 1e-6)
                and all(r.start_unix >= by_key[d].end_unix - 1e-6 for d in r.after)
                for r in tl
            )
            spans: dict[str, list[tuple[float, float]]] = {}
            for r in tl:
                spans.setdefault(r.channel, []).append((r.start_unix, r.end_unix))
            one_per_channel = all(b[0] >= a[1] - 1e-6 for s in spans.values() for a, b in itertools.pairwise(sorted(s)))
            virtual = reh.end_unix - reh.start_unix
            samples = sum(int(r["n_samples"] or 0) for r in db.runs())
        finally:
            db.close()
    print(f"planned runs: {len(tl)}; not completed: {bad or 'none'}")
    print(f"exactly once: {once}; start times and after: kept: {ordered}; one run per channel: {one_per_channel}")
    print(f"samples recorded: {samples:,}")
    print(f"virtual time covered: {virtual / 3600:,.0f} h; wall: {wall:.1f} s")
    print(f"speed-up {virtual / wall:,.0f}x; ratio to the floor ({FLOOR:.0f}x): {virtual / wall / FLOOR:.1f}")
    if bad or not (once and ordered and one_per_channel):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
