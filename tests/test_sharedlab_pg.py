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
