"""A queue of 1,000 short simulated runs over 16 channels: scheduling overhead per run, channel idle time.

    python bench/queue_1000.py [--runs 1000] [--channels 16]

labctl side: one campaign of ``--runs`` replicates of a short protocol (5 min rest, then
ten 1-minute galvanostatic half-cycles: about 10 samples a minute), queued in a fresh SQLite
file and run to the end by one :class:`labctl.app.lab.worker.Worker` on a ``--channels``
simulated station in virtual time (``--speed max``, a SharedVirtualClock): claims, run rows,
engine, recording, dependants released, every transition in SQL.

Floor, measured in the same run: ``--floor-runs`` of the same runs through
``labctl.app.controller.run_protocol`` into another fresh SQLite file, on ``--channels`` plain
threads (the same concurrency): the cost of running and recording a run with no queue, no
claims, no scheduler and no dispatcher.

Figures: wall time per run for both, their ratio, the scheduling overhead per run (the
difference), and the idle time of a channel between the end of one run and the start of the
next: in virtual time (the campaign's timeline: what a real lab would see) and in wall time
(how long the dispatcher takes to hand the channel its next run).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import threading
import time
from pathlib import Path

PROTOCOL = """name: queue-bench
description: a short run for the queue benchmark
cell: {kind: symmetric, working: Mg, counter: Mg, area: 1.267 cm2, electrolyte: x}
safety: {voltage: [-2.5 V, 2.5 V], current: 20 mA, max_duration: 2 h}
steps:
  - rest: {duration: 5 min, record_every: 60 s}
  - repeat:
      times: 5
      steps:
        - galvanostatic: {label: plate, current_density: -0.5 mA/cm2, duration: 1 min, record_every: 6 s}
        - galvanostatic: {label: strip, current_density: 0.5 mA/cm2, duration: 1 min, record_every: 6 s}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--floor-runs", type=int, default=320, help="runs timed for the floor (per-run figure)")
    a = ap.parse_args()

    from labctl.app.controller import SimSettings, run_protocol
    from labctl.app.lab.campaign import load_campaign
    from labctl.app.lab.scheduler import schedule_campaign
    from labctl.app.lab.worker import Worker
    from labctl.core.clock import SharedVirtualClock
    from labctl.db import Database

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "bench.yaml").write_text(PROTOCOL)
        station = ["name: bench", "instruments:"]
        station += [f"  p{i}: {{driver: sim}}" for i in range(a.channels)]
        station += ["channels:"] + [f"  ch{i}: {{potentiostat: p{i}}}" for i in range(a.channels)]
        (tmp / "station.yaml").write_text("\n".join(station) + "\n")
        (tmp / "campaign.yaml").write_text(
            "name: queue-1000\nstations: [station.yaml]\nruns:\n"
            f"  - {{key: q, protocol: bench.yaml, preset: bare-mg, replicates: {a.runs}}}\n"
        )

        # floor: the same runs, no queue, on as many threads as channels (the same concurrency)
        floor_db = Database(f"sqlite:///{tmp / 'floor.sqlite'}")
        n_floor = min(a.floor_runs, a.runs)
        run_protocol(tmp / "bench.yaml", db=floor_db, sim=SimSettings("bare-mg", 0, 0))  # warm-up

        def lane(c: int) -> None:
            for k in range(c, n_floor, a.channels):
                run_protocol(tmp / "bench.yaml", db=floor_db, sim=SimSettings("bare-mg", k, k), channel=f"ch{c}")

        lanes = [threading.Thread(target=lane, args=(c,)) for c in range(a.channels)]
        t0 = time.perf_counter()
        for t in lanes:
            t.start()
        for t in lanes:
            t.join()
        floor = (time.perf_counter() - t0) / n_floor
        floor_db.close()

        # labctl: the queue
        db = Database(f"sqlite:///{tmp / 'queue.sqlite'}")
        t_load = time.perf_counter()
        camp = load_campaign(tmp / "campaign.yaml")
        schedule_campaign(db, camp)
        t_queue = time.perf_counter() - t_load
        wall_marks: dict[tuple[str, str], list[tuple[str, float]]] = {}

        def on_event(ev) -> None:
            wall_marks.setdefault((ev.station, ev.channel), []).append((ev.kind, time.perf_counter()))

        clock = SharedVirtualClock()
        w = Worker(db, [camp.stations["bench"]], clock=clock, until_idle=True, on_event=on_event)
        t0 = time.perf_counter()
        report = w.run()
        total = time.perf_counter() - t0
        ended = report.ended()
        assert len(ended) == a.runs and all(e.status == "completed" for e in ended), "not every run completed"

        # idle time between runs, virtual (from the run rows) and wall (dispatcher hand-over)
        runs = sorted(db.runs(), key=lambda r: (r["channel"], r["started"]))
        virtual_gaps: list[float] = []
        for prev, nxt in itertools.pairwise(runs):
            if prev["channel"] == nxt["channel"]:
                virtual_gaps.append(nxt["started"] - prev["ended"])
        wall_gaps: list[float] = []
        for marks in wall_marks.values():
            for (k1, t1), (k2, t2) in itertools.pairwise(marks):
                if k1 == "ended" and k2 == "started":
                    wall_gaps.append(t2 - t1)
        db.close()

    per_run = total / a.runs
    busy = sum(r["ended"] - r["started"] for r in runs)
    span = max(r["ended"] for r in runs) - min(r["started"] for r in runs)
    print(f"{a.runs} runs over {a.channels} channels (virtual time), SQLite")
    print(f"  queue: validate + queue {t_queue:.2f} s; run to the end {total:.2f} s = {per_run * 1e3:.1f} ms/run")
    print(f"  floor (run_protocol on {a.channels} threads, no queue, {n_floor} runs): {floor * 1e3:.1f} ms/run")
    print(
        f"  ratio queue/floor: {per_run / floor:.2f}x; scheduling overhead {max(0.0, per_run - floor) * 1e3:.1f} ms/run"
    )
    print(
        f"  channel idle between runs, virtual: mean {statistics.fmean(virtual_gaps):.3f} s, "
        f"max {max(virtual_gaps):.3f} s over {len(virtual_gaps)} hand-overs; "
        f"channel utilisation {busy / (span * a.channels):.1%}"
    )
    print(
        f"  channel idle between runs, wall: median {statistics.median(wall_gaps) * 1e3:.1f} ms, "
        f"p95 {sorted(wall_gaps)[int(0.95 * len(wall_gaps))] * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
