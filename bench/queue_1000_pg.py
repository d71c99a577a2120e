"""Queue benchmark, the shared lab on PostgreSQL: 1,000 short simulated runs over 16 channels
through procrastinate (``labctl schedule`` + ``labctl worker`` on PostgreSQL) vs the same runs
handed straight to 16 channel threads (no queue).

    python bench/queue_1000_pg.py [--runs 1000] [--channels 16]

Server: ``$LABCTL_TEST_PG_URL`` (default postgresql://postgres@127.0.0.1:5432/test); each
side gets a throw-away database ``labctl_bench_<random>``, dropped afterwards.  Both sides
run the same campaign (one pooled entry, ``replicates: N``, a 10-minute rest recorded every
minute, virtual time) through the same :func:`labctl.app.lab.execute.execute_planned`:

* **queue**: :func:`labctl.app.pgqueue.schedule_campaign` (stores the planned runs, defers
  one procrastinate job each on the station's queue), then :func:`labctl.app.pgqueue.run_worker`
  in this process until no planned run is left: jobs fetched by procrastinate, a pool channel
  taken under its advisory lock, the planned run claimed, run and recorded;
* **floor**: the planned runs stored the same way, then 16 threads, one per channel, each
  claiming the next due planned run (:func:`labctl.db.campaigns.claim`) and running it.

Prints each side's time from the first claim to the last end (``planned_runs``; the worker's
start-up, a fixed cost, is printed apart), the scheduling overhead per run ((queue - floor) / runs)
and the channels' idle time between runs: from a run's end to the claim of the run that
takes its channel (``planned_runs``), median and 95th percentile.  The ratio queue / floor is what counts
on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import queue as queue_mod
import secrets
import statistics
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from labctl.db import Database

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"

PROTOCOL = """name: bench-rest
description: a short open-circuit rest (the queue benchmark's run)
cell: {kind: symmetric, id: BENCH, working: Br-Mg, area: 1.267 cm2}
safety: {voltage: [-2.5 V, 2.5 V], current: 20 mA}
steps:
  - rest: {duration: 10 min, record_every: 60 s}
"""


def write_files(folder: Path, runs: int, channels: int) -> Path:
    inst = "\n".join(f"  p{i}: {{driver: sim}}" for i in range(1, channels + 1))
    chans = "\n".join(f"  ch{i}: {{potentiostat: p{i}}}" for i in range(1, channels + 1))
    (folder / "bench16.yaml").write_text(f"name: bench16\ninstruments:\n{inst}\nchannels:\n{chans}\n")
    (folder / "rest.yaml").write_text(PROTOCOL)
    camp = folder / "queue.yaml"
    camp.write_text(
        "name: queue-bench\nstations: [bench16.yaml]\n"
        f"runs:\n  - {{key: run, protocol: rest.yaml, preset: br-mg, replicates: {runs}}}\n"
    )
    return camp


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


class ThrowawayDatabase:
    def __init__(self, base: str) -> None:
        self.base = base
        self.name = f"labctl_bench_{secrets.token_hex(4)}"
        self.url = with_database(base, self.name)

    def __enter__(self) -> str:
        with psycopg.connect(self.base, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self.url

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(self.base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def idle_gaps(url: str, channels: int) -> list[float]:
    """How long a channel freed by a run's end waits for the run that takes its place (s): the
    i-th end (in time order) is matched with the (i + channels)-th claim, as every claim after
    the first ``channels`` needs a channel that a run freed."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT claimed_unix, ended_unix FROM planned_runs WHERE state = 'done'").fetchall()
    claims = sorted(r[0] for r in rows)
    ends = sorted(r[1] for r in rows)
    return [claims[i + channels] - ends[i] for i in range(len(claims) - channels)]


def makespan(url: str) -> float:
    """From the first claim to the last end (s): the campaign's time on the channels."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT min(claimed_unix), max(ended_unix) FROM planned_runs").fetchone()
    assert row is not None
    return float(row[1] - row[0])


def check_done(url: str, runs: int) -> None:
    with psycopg.connect(url) as conn:
        states = dict(conn.execute("SELECT state, count(*) FROM planned_runs GROUP BY state").fetchall())
        n_runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]  # type: ignore[index]
    if states != {"done": runs} or n_runs != runs:
        raise SystemExit(f"not every run done exactly once: {states}, {n_runs} runs")


def queue_side(url: str, camp: Path, runs: int) -> tuple[float, float]:
    from labctl.app import pgqueue
    from labctl.app.lab.campaign import load_campaign

    campaign = load_campaign(camp)
    t0 = time.perf_counter()
    pgqueue.schedule_campaign(url, campaign)
    t_schedule = time.perf_counter() - t0
    t0 = time.perf_counter()
    pgqueue.run_worker(url, camp.parent / "bench16.yaml", speed="max", heartbeat=5.0, poll=0.2, until_idle=True)
    wall = time.perf_counter() - t0
    check_done(url, runs)
    return t_schedule, wall


def floor_side(url: str, camp: Path, runs: int, channels: int) -> float:
    from labctl.app import pgqueue
    from labctl.app.lab.campaign import load_campaign
    from labctl.app.lab.execute import execute_planned
    from labctl.app.station import load_station
    from labctl.core.clock import VirtualClock
    from labctl.db import campaigns as plan
    from labctl.db.liveness import owner_id

    campaign = load_campaign(camp)
    station = load_station(camp.parent / "bench16.yaml")
    db = Database(url)
    try:
        _, ids = pgqueue.store_campaign(db, campaign)
        todo: queue_mod.Queue[int] = queue_mod.Queue()
        for i in sorted(ids.values()):
            todo.put(i)
        me = owner_id()

        def channel(name: str) -> None:
            while True:
                try:
                    pid = todo.get_nowait()
                except queue_mod.Empty:
                    return
                if plan.claim(db, pid, name, me):
                    execute_planned(db, pid, station, name, clock=VirtualClock(), owner=me)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=channel, args=(c,)) for c in station.channels]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        db.close()
    check_done(url, runs)
    return wall


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--channels", type=int, default=16)
    args = ap.parse_args()
    base = os.environ.get("LABCTL_TEST_PG_URL", DEFAULT_URL)
    try:
        psycopg.connect(base, connect_timeout=5).close()
    except psycopg.Error as e:
        print(f"skipped: PostgreSQL unavailable ({e})".strip())
        return 1 if os.environ.get("LABCTL_REQUIRE_PG") == "1" else 0
    print(f"{date.today()} {platform.node()} {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"{args.runs} runs (10 min rest at 60 s, virtual time) over {args.channels} channels, PostgreSQL")
    with tempfile.TemporaryDirectory() as tmp:
        camp = write_files(Path(tmp), args.runs, args.channels)
        with ThrowawayDatabase(base) as url:
            floor_side(url, camp, args.runs, args.channels)
            floor, gaps_floor = makespan(url), idle_gaps(url, args.channels)
        with ThrowawayDatabase(base) as url:
            t_schedule, wall_worker = queue_side(url, camp, args.runs)
            wall, gaps_queue = makespan(url), idle_gaps(url, args.channels)
    over = (wall - floor) / args.runs
    n = args.runs
    print(
        f"floor (channel threads, no queue): first claim to last end {floor:.1f} s ({floor / n * 1000:.1f} ms per run)"
    )
    print(
        f"procrastinate: schedule {t_schedule:.1f} s ({t_schedule / n * 1000:.2f} ms per run, store + defer); "
        f"first claim to last end {wall:.1f} s ({wall / n * 1000:.1f} ms per run); "
        f"worker start to exit {wall_worker:.1f} s"
    )
    print(f"scheduling overhead per run (procrastinate - floor) / runs: {over * 1000:.1f} ms")
    for name, g in (("floor", gaps_floor), ("procrastinate", gaps_queue)):
        print(
            f"channel idle between runs (end to next claim), {name}: median {statistics.median(g) * 1000:.0f} ms, "
            f"p95 {pct(g, 0.95) * 1000:.0f} ms, max {max(g) * 1000:.0f} ms"
        )
    print(f"ratio worker / floor: {wall / floor:.2f} (target <= 1.5)")
    return 0 if wall / floor <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
