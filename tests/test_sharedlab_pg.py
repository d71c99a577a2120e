"""The shared lab on PostgreSQL: three worker processes, three stations, one campaign, procrastinate.

Real PostgreSQL (a throw-away schema of the session's test database), real processes
(`labctl worker`), simulated channels in virtual time.  Exactly once is checked on the
rows: one run per planned run, recorded by the worker process of the station that owns
its channel; a worker SIGKILLed in the middle of a run and started again resumes that
run (same run id, gap on record) instead of running it a second time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from labctl.db import Database
from tests.test_cli import SHORT

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
LABCTL = [sys.executable, "-m", "labctl.cli"]

#: three stations of two simulated channels each (queue = station name)
STATIONS = {
    "bench-a": ("a1", "a2"),
    "bench-b": ("b1", "b2"),
    "bench-c": ("c1", "c2"),
}

TINY = SHORT.replace("times: 3", "times: 1").replace("rest: {duration: 1 h", "rest: {duration: 10 min")
LONG = SHORT.replace("times: 3", "times: 60")


def write_stations(folder: Path) -> dict[str, Path]:
    """One station file per station; every channel a simulated potentiostat."""
    paths = {}
    for name, channels in STATIONS.items():
        inst = "\n".join(f"  p{c}: {{driver: sim}}" for c in channels)
        chans = "\n".join(f"  {c}: {{potentiostat: p{c}}}" for c in channels)
        p = folder / f"{name}.yaml"
        p.write_text(f"name: {name}\ninstruments:\n{inst}\nchannels:\n{chans}\n")
        paths[name] = p
    return paths


def start_worker(url: str, station: Path, *, speed: str = "max", log: Path | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [*LABCTL, "worker", "--station", str(station), "--db", url, "--speed", speed, "--heartbeat", "0.5"],
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def planned(db: Database) -> list[dict]:
    with db.engine.connect() as c:
        return [
            dict(r)
            for r in c.execute(
                sa.text(
                    "SELECT id, key, station, channel, state, run_id, attempts, reason FROM planned_runs ORDER BY id"
                )
            ).mappings()
        ]


def run_rows(db: Database) -> list[dict]:
    with db.engine.connect() as c:
        return [
            dict(r)
            for r in c.execute(
                sa.text("SELECT id, status, channel, owner, meta, n_samples FROM runs ORDER BY id")
            ).mappings()
        ]


def write_campaign(folder: Path, *, name: str = "shared", protocol: str = TINY) -> Path:
    """Nine runs over three stations: pinned runs on every channel, a pooled pair on bench-a,
    and one run on bench-c after a run on bench-b (a prerequisite on another PC)."""
    write_stations(folder)
    (folder / "proto.yaml").write_text(protocol)
    runs = []
    for st, chans in STATIONS.items():
        for ch in chans:
            runs.append(f"{{key: {ch}-pinned, protocol: proto.yaml, preset: br-mg, station: {st}, channel: {ch}}}")
    runs.append("{key: a-pool, protocol: proto.yaml, preset: br-mg, station: bench-a, pool: [a1, a2], replicates: 2}")
    runs.append(
        "{key: c-after, protocol: proto.yaml, preset: br-mg, station: bench-c, channel: c2, "
        "after: [b1-pinned, c2-pinned]}"
    )
    text = f"name: {name}\nstations: [bench-a.yaml, bench-b.yaml, bench-c.yaml]\nruns:\n" + "".join(
        f"  - {r}\n" for r in runs
    )
    p = folder / f"{name}.yaml"
    p.write_text(text)
    return p


def jobs(db: Database) -> list[dict]:
    with db.engine.connect() as c:
        return [
            dict(r)
            for r in c.execute(
                sa.text("SELECT id, queue_name, lock, queueing_lock, status, args FROM procrastinate_jobs ORDER BY id")
            ).mappings()
        ]


def test_schedule_defers_due_runs_per_station_queue_with_channel_locks(pg_url: str, tmp_path: Path):
    from labctl.app import pgqueue
    from labctl.app.lab.campaign import load_campaign

    camp = load_campaign(write_campaign(tmp_path))
    summary = pgqueue.schedule_campaign(pg_url, camp)
    assert summary["planned"] == 9 and summary["deferred"] == 8 and summary["waiting"] == 1
    with Database(pg_url) as db:
        rows = {r["key"]: r for r in planned(db)}
        js = {int(j["args"]["planned_id"]): j for j in jobs(db)}
        assert rows["c-after"]["state"] == "waiting" and rows["c-after"]["id"] not in js  # waits for b1-pinned
        for key, r in rows.items():
            if key == "c-after":
                continue
            j = js[r["id"]]
            assert j["queue_name"] == r["station"] and j["status"] == "todo"
            assert j["queueing_lock"] == f"planned-{r['id']}"
            assert j["lock"] == (None if key.startswith("a-pool") else f"{r['station']}/{r['channel']}")
        # scheduling again defers nothing twice (idempotent release)
        app = pgqueue.make_app(pg_url)
        with app.open():
            assert pgqueue.release(db, app).deferred == []
        assert len(jobs(db)) == 8
