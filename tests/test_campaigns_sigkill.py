"""SIGKILL the scheduler and the workers mid-campaign, start them again: nothing lost, nothing doubled.

Interrupted runs are resumed from their last checkpoint on their channel (the protocols'
default ``on_interrupt: resume``); every committed sample is kept exactly once (checked by
sample id and by test time).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from labctl.cli import app
from labctl.db import Database
from labctl.db import campaigns as q
from labctl.db.schema import SAMPLE_ID_BITS, samples

DATA = Path(__file__).parent / "data" / "campaigns"
SIM4 = DATA / "sim4.yaml"
PROTOS = DATA / "protocols"
#: virtual seconds per wall second for the workers: a short protocol (8.5 h) takes about a second
SPEED = "30000"


def _labctl(*args: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "labctl.cli", *args], stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env
    )


def _campaign(tmp_path: Path, name: str, start: str | None = None) -> Path:
    at = f"start: '{start}'\n" if start else ""
    p = tmp_path / f"{name}.yaml"
    p.write_text(
        f"name: {name}\nstations: [{SIM4}]\n{at}runs:\n"
        f"  - {{key: coat, protocol: dip-coat, preset: br-mg, channel: ch1, priority: 10}}\n"
        f"  - {{key: sym, protocol: {PROTOS / 'symmetric-short.yaml'}, preset: br-mg, replicates: 3, after: [coat]}}\n"
        f"  - {{key: ce, protocol: {PROTOS / 'ce-short.yaml'}, preset: bare-mg, replicates: 3, seed: 5}}\n"
    )
    return p


def _wait(pred, timeout: float = 60.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _check_nothing_lost_nothing_doubled(db: Database) -> dict[str, int]:
    rows = q.queue(db)
    assert rows and all(r["state"] == "done" for r in rows), [(r["key"], r["state"], r["reason"]) for r in rows]
    run_ids = [int(r["run_id"]) for r in rows]
    assert len(set(run_ids)) == len(rows)
    assert sorted(r["id"] for r in db.runs()) == sorted(run_ids)  # no run row outside the plan
    resumed = 0
    for rid in run_ids:
        run = db.run(rid)
        assert run["status"] == "completed", run
        with db.transaction() as conn:
            n, lo, hi = conn.execute(
                sa.select(sa.func.count(), sa.func.min(samples.c.id), sa.func.max(samples.c.id)).where(
                    samples.c.run_id == rid
                )
            ).one()
        if n:  # sample ids: one contiguous range from 0, no gap, no duplicate
            assert lo == rid << SAMPLE_ID_BITS and hi - lo + 1 == n == run["n_samples"]
            t = db.samples(rid)["t"]
            assert np.all(np.diff(t) >= 0)  # test time goes on across the gap
        kinds = [e["kind"] for e in db.events(rid)]
        if "gap" in kinds:
            resumed += 1
            assert "resume" in kinds
    return {"runs": len(rows), "resumed": resumed}


def _kill_worker_mid_campaign(tmp_path: Path, name: str, sig: int, rng: random.Random) -> dict[str, int]:
    url = f"sqlite:///{tmp_path / f'{name}.sqlite'}"
    log = tmp_path / f"{name}.log"
    # planning the campaign needs no process of its own (nothing kills it): the typer app in-process
    r = CliRunner().invoke(app, ["schedule", str(_campaign(tmp_path, name)), "--db", url, "--no-wait"])
    assert r.exit_code == 0, r.output
    db = Database(url)
    try:
        w = _labctl("worker", "--station", str(SIM4), "--db", url, "--speed", SPEED, log=log)
        _wait(lambda: any(x["state"] == "running" for x in q.queue(db)), what="a running run")
        time.sleep(rng.uniform(0.1, 1.5))
        w.send_signal(sig)
        code = w.wait(60)
        if sig == signal.SIGTERM:
            assert code == 143  # cells off, runs left resumable
            held = q.queue(db, states=("claimed", "running", "paused"))
            assert held == [], held  # every run it held is interrupted (or ended), none left running
        # the restarted worker only has to finish the campaign: virtual time, no pacing to keep
        w2 = _labctl("worker", "--station", str(SIM4), "--db", url, "--speed", "max", "--until-idle", log=log)
        assert w2.wait(120) == 0, log.read_text()
        return _check_nothing_lost_nothing_doubled(db)
    finally:
        db.close()


def test_sigkill_scheduler_and_worker_mid_campaign_then_restart(tmp_path):
    """The must-show: the scheduler killed before its start times, the worker killed mid-run, both
    restarted: the missed starts (within the misfire limit) start, the waiting runs start, the
    interrupted ones are resumed; every run exactly once."""
    url = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    log = tmp_path / "lab.log"
    path = tmp_path / "timed.yaml"
    path.write_text(
        f"name: timed\nstations: [{SIM4}]\nmisfire_limit: 10 min\nstart: '+8 s'\nruns:\n"
        f"  - {{key: coat, protocol: dip-coat, preset: br-mg, channel: ch1}}\n"
        f"  - {{key: ce, protocol: {PROTOS / 'ce-short.yaml'}, preset: bare-mg, replicates: 3}}\n"
        f"  - {{key: sym, protocol: {PROTOS / 'symmetric-short.yaml'}, preset: br-mg, replicates: 2, after: [coat]}}\n"
        f"  - {{key: aur, protocol: {PROTOS / 'aurbach-short.yaml'}, preset: br-mg}}\n"
    )
    sched = _labctl("schedule", str(path), "--db", url, log=log)
    db = Database(url)
    worker = None
    try:
        _wait(lambda: q.campaigns_list(db) != [] and len(q.queue(db)) == 7, what="the campaign queued")
        sched.send_signal(signal.SIGKILL)
        sched.wait(30)
        rows = q.queue(db)
        if time.time() < rows[0]["not_before_unix"]:
            assert {r["state"] for r in rows} == {"waiting"}  # nothing can start without the scheduler
        worker = _labctl("worker", "--station", str(SIM4), "--db", url, "--speed", SPEED, log=log)
        sched = _labctl("schedule", "--db", url, log=log)  # serves the stored start times again
        _wait(lambda: any(r["state"] == "running" for r in q.queue(db)), what="a running run")
        time.sleep(0.3)
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
        assert any(r["state"] in ("running", "claimed") for r in q.queue(db))  # left behind by the dead worker
        worker = _labctl("worker", "--station", str(SIM4), "--db", url, "--speed", SPEED, "--until-idle", log=log)
        assert worker.wait(120) == 0, log.read_text()
        assert sched.wait(60) == 0, log.read_text()
        counts = _check_nothing_lost_nothing_doubled(db)
        assert counts["runs"] == 7 and counts["resumed"] >= 1
        for r in q.queue(db):  # none started before its time
            assert db.run(r["run_id"])["started_unix"] >= r["not_before_unix"] - 1
    finally:
        for p in (sched, worker):
            if p is not None and p.poll() is None:
                p.kill()
        db.close()


@pytest.mark.slow
def test_five_sigkills_and_a_sigterm_of_a_worker_mid_campaign(tmp_path):
    rng = random.Random(9)
    resumed = 0
    for k in range(5):
        counts = _kill_worker_mid_campaign(tmp_path, f"kill{k}", signal.SIGKILL, rng)
        assert counts["runs"] == 7
        resumed += counts["resumed"]
    counts = _kill_worker_mid_campaign(tmp_path, "term", signal.SIGTERM, rng)
    assert counts["runs"] == 7 and counts["resumed"] >= 1
    assert resumed >= 5  # at least one interrupted run resumed per trial on average
