"""The shared lab on PostgreSQL: three worker processes, three stations, one campaign, procrastinate.

Real PostgreSQL (a throw-away schema of the session's test database), real processes
(`labctl worker`), simulated channels in virtual time.  Exactly once is checked on the
rows: one run per planned run, recorded by the worker process of the station that owns
its channel; a worker SIGKILLed in the middle of a run and started again resumes that
run (same run id, gap on record) instead of running it a second time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from labctl.cli.application import app as cli_app
from labctl.db import Database
from tests.test_cli import SHORT

ROOT = Path(__file__).resolve().parent.parent
LABCTL = [sys.executable, "-m", "labctl.cli"]

#: three stations of two simulated channels each (queue = station name)
STATIONS = {
    "bench-a": ("a1", "a2"),
    "bench-b": ("b1", "b2"),
    "bench-c": ("c1", "c2"),
}

TINY = SHORT.replace("times: 3", "times: 1").replace("rest: {duration: 1 h", "rest: {duration: 10 min")
LONG = SHORT.replace("times: 3", "times: 20")  # 41 h: ~2 s of wall time at --speed 20000


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


def worker_cmd(url: str, station: Path, speed: str) -> list[str]:
    return [*LABCTL, "worker", "--station", str(station), "--db", url, "--speed", speed, "--heartbeat", "1"]


def start_worker(url: str, station: Path, *, speed: str = "max", log: Path | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        worker_cmd(url, station, speed),
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


def write_campaign(folder: Path, *, name: str = "shared") -> Path:
    """Nine runs over three stations: a pinned run on every channel (b1's a long one), a pooled
    pair on bench-a, and one run on bench-c after b1's long run (a prerequisite on another PC)."""
    write_stations(folder)
    (folder / "tiny.yaml").write_text(TINY)
    (folder / "long.yaml").write_text(LONG)
    runs = []
    for st, chans in STATIONS.items():
        for ch in chans:
            proto, key = ("long.yaml", "b1-long") if ch == "b1" else ("tiny.yaml", f"{ch}-pinned")
            runs.append(f"{{key: {key}, protocol: {proto}, preset: br-mg, station: {st}, channel: {ch}}}")
    runs.append("{key: a-pool, protocol: tiny.yaml, preset: br-mg, station: bench-a, pool: [a1, a2], replicates: 2}")
    runs.append(
        "{key: c-after, protocol: tiny.yaml, preset: br-mg, station: bench-c, channel: c2, after: [b1-long, c2-pinned]}"
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


@pytest.mark.postgres
def test_three_workers_share_a_campaign_exactly_once_and_a_killed_worker_resumes(pg_url: str, tmp_path: Path):
    """Three `labctl worker` processes, one per station, against one PostgreSQL database.  The
    worker of bench-b is SIGKILLed in the middle of its long run and started again: that run is
    resumed (same run, gap and OCV on record), the run after it on bench-c starts when it is done,
    and every planned run is executed exactly once, by the worker of the station that owns its channel."""
    from labctl.app import pgqueue

    stations = write_stations(tmp_path)
    r = CliRunner().invoke(cli_app, ["schedule", str(write_campaign(tmp_path)), "--db", pg_url, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) | {"backend": "procrastinate", "planned": 9, "deferred": 8} == json.loads(r.output)
    speed = {"bench-a": "max", "bench-b": "20000", "bench-c": "max"}  # b1's long run takes ~4 s of wall time
    procs = {n: start_worker(pg_url, p, speed=speed[n], log=tmp_path / f"{n}.log") for n, p in stations.items()}
    killed_pid = procs["bench-b"].pid
    try:
        with Database(pg_url) as db:

            def long_run() -> dict:
                return next(r for r in planned(db) if r["key"] == "b1-long")

            def long_run_recording() -> bool:
                r = long_run()
                return r["run_id"] is not None and db.run(r["run_id"])["n_samples"] > 100

            wait_for(long_run_recording, 120, "b1's long run to record samples")
            run_id = long_run()["run_id"]
            procs["bench-b"].send_signal(signal.SIGKILL)  # mid-run: no chance to clean up
            procs["bench-b"].wait(10)
            n_before = db.run(run_id)["n_samples"]
            assert db.run(run_id)["status"] == "interrupted"  # its owner is gone
            procs["bench-b"] = start_worker(pg_url, stations["bench-b"], speed="max", log=tmp_path / "bench-b.log")
            wait_for(lambda: all(r["state"] in pgqueue.FINAL for r in planned(db)), 120, "every planned run to end")
            rows = planned(db)
            runs = {r["id"]: r for r in run_rows(db)}
            events = [e["kind"] for e in db.events(run_id)]
    finally:
        stop_workers(list(procs.values()))
    logs = {n: (tmp_path / f"{n}.log").read_text() for n in stations}
    assert {n: p.returncode for n, p in procs.items()} == dict.fromkeys(stations, 143), logs  # SIGTERM: 143
    assert [r["state"] for r in rows] == ["done"] * 9, (rows, logs)
    # exactly once: one run per planned run, and no run that no planned run knows
    assert sorted(r["run_id"] for r in rows) == sorted(runs), runs
    pids = {n: {str(p.pid)} for n, p in procs.items()}
    pids["bench-b"].add(str(killed_pid))
    for r in rows:
        run = runs[r["run_id"]]
        assert run["status"] == "completed", run
        assert run["meta"]["planned_id"] == r["id"] and run["meta"]["station"] == r["station"]
        # recorded by the worker process of the station that owns the channel
        assert run["owner"].rpartition(":")[2] in pids[r["station"]], (r, run)
        assert run["channel"] == r["channel"] and r["channel"] in STATIONS[r["station"]]
        assert r["attempts"] == (2 if r["key"] == "b1-long" else 1), r
    # the killed run was resumed, not run again: same run, samples kept, the gap and the OCV on record
    long = next(r for r in rows if r["key"] == "b1-long")
    assert long["run_id"] == run_id and runs[run_id]["n_samples"] > n_before
    assert {"interrupted", "gap", "resume"} <= set(events), events
    assert runs[run_id]["owner"].rpartition(":")[2] == str(procs["bench-b"].pid)  # the restarted worker
    # the pooled pair ran on the two channels of bench-a
    pool = sorted(r["channel"] for r in rows if r["key"].startswith("a-pool"))
    assert set(pool) <= {"a1", "a2"}


@pytest.mark.postgres
def test_schedule_then_duplicate_and_orphaned_jobs_never_run_a_planned_run_twice(pg_url: str, tmp_path: Path):
    """`schedule` defers the due runs on their station's queue, pinned ones with their channel's lock,
    the `after:` run only later.  Then exactly once is decided by the planned_runs row: two jobs for one
    run at once, a job for a run that is done, a run claimed by a worker that died before it began, and
    a run that ended while its worker died before saying so: one run each, never a second."""
    import threading

    from labctl.app import pgqueue
    from labctl.app.lab.campaign import load_campaign
    from labctl.app.station import load_station

    summary = pgqueue.schedule_campaign(pg_url, load_campaign(write_campaign(tmp_path)))
    assert summary["planned"] == 9 and summary["deferred"] == 8 and summary["waiting"] == 1
    app = pgqueue.make_app(pg_url)
    with Database(pg_url) as db, app.open():
        rows = {r["key"]: r for r in planned(db)}
        js = {int(j["args"]["planned_id"]): j for j in jobs(db)}
        assert rows["c-after"]["state"] == "waiting" and rows["c-after"]["id"] not in js  # after b1-long
        for key, r in rows.items():
            if key != "c-after":
                j = js[r["id"]]
                assert j["queue_name"] == r["station"] and j["status"] == "todo"
                assert j["queueing_lock"] == f"planned-{r['id']}"
                assert j["lock"] == (None if key.startswith("a-pool") else f"{r['station']}/{r['channel']}")
        assert pgqueue.release(db, app).deferred == []  # releasing again defers nothing twice
        assert len(jobs(db)) == 8

        lab = pgqueue.StationWorker(db, load_station(tmp_path / "bench-a.yaml"), app, speed="max")
        ids = {r["key"]: r["id"] for r in planned(db)}
        # two jobs of one pooled run at the same moment: one runs it, the other stands aside
        results: list[str] = []

        def job() -> None:
            try:
                results.append(lab.run_job(ids["a-pool-r1"]))
            except pgqueue.ChannelBusy as e:
                results.append(f"busy: {e}")

        threads = [threading.Thread(target=job) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sum("completed" in r for r in results) == 1, results
        # a job for a run that is done: nothing happens
        assert "is done" in lab.run_job(ids["a-pool-r1"])
        # claimed by a worker on another PC that died before the run began: run here, once
        with db.engine.begin() as c:
            c.execute(
                sa.text(
                    "UPDATE planned_runs SET state='claimed', claimed_by='gone-pc:1', heartbeat_unix=0, "
                    "channel='a1', attempts=1 WHERE id=:i"
                ),
                {"i": ids["a1-pinned"]},
            )
        assert "completed" in lab.run_job(ids["a1-pinned"])
        # its run ended, its worker died before marking the planned run: marked done, not run again
        with db.engine.begin() as c:
            c.execute(sa.text("UPDATE planned_runs SET state='running' WHERE id=:i"), {"i": ids["a1-pinned"]})
        assert "already ended" in lab.run_job(ids["a1-pinned"])
        # not this station's run: refused, not run
        with pytest.raises(pgqueue.NotMine):
            lab.run_job(ids["b2-pinned"])
        rows = {r["key"]: r for r in planned(db)}
        runs = run_rows(db)
    assert rows["a-pool-r1"]["state"] == "done" and rows["a1-pinned"]["state"] == "done"
    assert rows["a1-pinned"]["attempts"] == 2 and rows["b2-pinned"]["state"] == "due"
    assert sorted(r["meta"]["planned_id"] for r in runs) == sorted([ids["a-pool-r1"], ids["a1-pinned"]])


@pytest.mark.postgres
def test_sigterm_leaves_the_run_resumable_and_its_job_queued(pg_url: str, tmp_path: Path):
    """SIGTERM to a worker: the run ends at its next block, interrupted (cell off), its job goes back
    to the queue; the next worker of the station resumes that run (same run id), once."""
    import threading

    from labctl.app import pgqueue
    from labctl.app.lab.campaign import load_campaign

    stations = write_stations(tmp_path)
    (tmp_path / "long.yaml").write_text(LONG)
    (tmp_path / "one.yaml").write_text(
        "name: one\nstations: [bench-a.yaml]\n"
        "runs:\n  - {key: long, protocol: long.yaml, preset: br-mg, station: bench-a, channel: a1}\n"
    )
    pgqueue.schedule_campaign(pg_url, load_campaign(tmp_path / "one.yaml"))
    with Database(pg_url) as db:

        def recording() -> bool:
            (r,) = planned(db)
            return r["run_id"] is not None and db.run(r["run_id"])["n_samples"] > 100

        def terminate() -> None:
            wait_for(recording, 120, "the run to record samples")
            os.kill(os.getpid(), signal.SIGTERM)

        t = threading.Thread(target=terminate)
        t.start()
        assert pgqueue.run_worker(pg_url, stations["bench-a"], speed="20000", heartbeat=0.5) is True
        t.join()
        (r,) = planned(db)
        run = db.run(r["run_id"])
        assert r["state"] == "interrupted" and run["status"] == "interrupted", (r, run)
        assert [j["status"] for j in jobs(db) if j["queue_name"] == "bench-a"] == ["todo"]
        # the station's next worker: the same run resumed to its end, nothing run twice
        assert pgqueue.run_worker(pg_url, stations["bench-a"], speed="max", heartbeat=0.5, until_idle=True) is False
        (r2,) = planned(db)
        assert r2["state"] == "done" and r2["run_id"] == r["run_id"] and r2["attempts"] == 2
        assert db.run(r["run_id"])["status"] == "completed" and len(run_rows(db)) == 1
        assert "resume" in {e["kind"] for e in db.events(r["run_id"])}


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--backend", "procrastinate"], "keeps its queue in PostgreSQL"),
        (["--backend", "rabbit"], "use auto, procrastinate or embedded"),
    ],
)
def test_backend_errors_exit_2_and_queue_nothing(tmp_path: Path, args: list[str], needle: str):
    url = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    r = CliRunner().invoke(cli_app, ["schedule", str(write_campaign(tmp_path)), "--db", url, "--no-wait", *args])
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "lab.sqlite").exists()  # nothing queued, no database made


@pytest.mark.postgres
def test_a_campaign_queued_twice_on_postgresql_is_refused(pg_url: str, tmp_path: Path):
    camp = write_campaign(tmp_path)
    assert CliRunner().invoke(cli_app, ["schedule", str(camp), "--db", pg_url]).exit_code == 0
    r = CliRunner().invoke(cli_app, ["schedule", str(camp), "--db", pg_url])
    assert r.exit_code == 2 and "already queued" in r.output, r.output
    with Database(pg_url) as db:
        assert len(planned(db)) == 9 and len(jobs(db)) == 8


@pytest.mark.postgres
def test_timed_runs_are_released_when_their_time_comes_or_fail_past_the_misfire_limit(pg_url: str, tmp_path: Path):
    """`at:` runs wait in planned_runs (no job) until the periodic release finds their time has come;
    one whose start was missed by more than the campaign's misfire limit fails with the reason."""
    from labctl.app import pgqueue
    from labctl.app.lab.campaign import load_campaign

    write_stations(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY)
    (tmp_path / "timed.yaml").write_text(
        "name: timed\nstations: [bench-a.yaml]\nmisfire_limit: 10 min\nruns:\n"
        "  - {key: missed, protocol: tiny.yaml, preset: br-mg, station: bench-a, channel: a1, at: '+1 h'}\n"
        "  - {key: soon, protocol: tiny.yaml, preset: br-mg, station: bench-a, channel: a2, at: '+2 h'}\n"
    )
    camp = load_campaign(tmp_path / "timed.yaml")
    at = {p.key: p.at for p in camp.expand()}
    summary = pgqueue.schedule_campaign(pg_url, camp)
    assert summary["deferred"] == 0 and summary["waiting"] == 2
    app = pgqueue.make_app(pg_url)
    with Database(pg_url) as db, app.open():
        assert pgqueue.release(db, app, now=at["missed"] - 1).deferred == []  # not yet
        # (the PCs were off) `soon` came 5 min ago, within the limit: due, one job;
        # `missed` came 65 min ago, beyond the 10 min limit: failed with the reason, never silently
        rel = pgqueue.release(db, app, now=at["soon"] + 5 * 60)
        rows = {r["key"]: r for r in planned(db)}
        assert rel.deferred == [rows["soon"]["id"]] and rel.missed == [rows["missed"]["id"]]
        assert [int(j["args"]["planned_id"]) for j in jobs(db)] == [rows["soon"]["id"]]
    assert rows["soon"]["state"] == "due" and rows["missed"]["state"] == "failed"
    assert "misfire limit" in rows["missed"]["reason"]
