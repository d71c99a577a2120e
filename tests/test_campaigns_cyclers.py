"""Battery-cycler channels in campaigns: the overnight campaign with its cycling runs on an emulated
Neware BTS and its EIS and Tafel runs on emulated EmStat potentiostats (one station file), cycler
refusals at `labctl schedule` time, pause refused and cancel stopping the job, and a worker killed
mid-harvest that finds its cycler jobs again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl.app.emulate import emulate_station
from labctl.app.grid import channel_grid
from labctl.app.lab.campaign import load_campaign
from labctl.app.lab.scheduler import schedule_campaign
from labctl.app.lab.worker import Worker
from labctl.app.station import load_station, load_station_text
from labctl.cli.application import app
from labctl.core.clock import ScaledClock
from labctl.db import Database
from labctl.db import campaigns as q

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "campaigns"
PROTOS = DATA / "protocols"
SPEED = 8000.0  # fast time: 1 h of cell life in 0.45 s


def _lab(tmp: Path, clock: object, *, text: str | None = None) -> tuple[object, Path]:
    """Serve the lab station (tests/data/campaigns/lab-cyclers.yaml) with its emulators; the emulated
    station file is written to tmp/lab-cyclers.yaml."""
    text = text or (DATA / "lab-cyclers.yaml").read_text().replace("step_folder: steps", f"step_folder: '{tmp}/steps'")
    em = emulate_station(load_station_text(text, "lab-cyclers.yaml"), clock, preset="br-mg", seed=3)
    path = tmp / "lab-cyclers.yaml"
    path.write_text(em.to_yaml())
    return em, path


def _campaign(tmp: Path, text: str) -> Path:
    p = tmp / "campaign.yaml"
    p.write_text(text.replace("protocols/", f"{PROTOS}/"))
    return p


def test_the_overnight_campaign_runs_on_an_emulated_neware_and_emulated_potentiostats(tmp_path: Path) -> None:
    clock = ScaledClock(SPEED)
    em, station_path = _lab(tmp_path, clock)
    db = Database(f"sqlite:///{tmp_path / 'lab.sqlite'}", commit_interval=0.05)
    url = db.url
    try:
        camp = load_campaign(_campaign(tmp_path, (DATA / "overnight-cyclers.yaml").read_text()))
        schedule_campaign(db, camp)
        station = load_station(station_path)
        w = Worker(db, [station], clock=clock, until_idle=True, poll=0.05)
        t = threading.Thread(target=w.run)
        t.start()
        seen: dict[str, set[str]] = {}
        refused_cli = None
        refused_worker = None
        try:
            end = time.monotonic() + 90
            while t.is_alive() and time.monotonic() < end:
                for g in channel_grid(db):
                    seen.setdefault(g.channel, set()).add(g.status)
                if refused_cli is None:
                    for r in q.queue(db):
                        if r["state"] == "running" and (r["channel"] or "").startswith("N"):
                            res = CliRunner().invoke(app, ["pause", f"{r['campaign']}:{r['key']}", "--db", url])
                            refused_cli = (res.exit_code, res.output)
                            q.set_control(db, int(r["id"]), "pause")  # as if asked before the run started
                            refused_worker = int(r["id"])
                            break
                time.sleep(0.2)
        finally:
            t.join(120)
        assert not t.is_alive()
    finally:
        em.close()
    rows = {r["key"]: r for r in q.queue(db)}
    assert len(rows) == 20
    assert all(r["state"] == "done" for r in rows.values()), [(k, r["state"], r["reason"]) for k, r in rows.items()]
    runs = db.runs()
    assert len(runs) == 20 and len({r["run_id"] for r in rows.values()}) == 20  # every run exactly once
    full = [db.run(int(r["run_id"])) for r in rows.values()]
    span = max(r["ended_unix"] for r in full) - min(r["started_unix"] for r in full)
    assert span > 12 * 3600  # an overnight of cell time (18 cycling runs on 8 channels), in seconds of wall time
    for key, r in rows.items():
        run = db.run(int(r["run_id"]))
        assert run["status"] == "completed", (key, run["end_reason"])
        on_cycler = key.split("-")[0] in ("sym", "aurbach", "ce")
        assert r["channel"].startswith("N" if on_cycler else "P"), (key, r["channel"])
        assert ("cycler" in (run["meta"] or {})) == on_cycler
        assert run["n_samples"] > 0
    # each cycler run is one job, started once on the emulated BTS, harvested to its end
    jobs = [j for r in rows.values() for j in db.cycler_jobs(run_id=int(r["run_id"]))]
    assert len(jobs) == 18 and all(j["state"] == "completed" for j in jobs)
    bts = em.servers["bts"].emulator
    assert len(bts.starts) == 18
    # the status grid showed the cycler channels while they ran
    assert {f"N{k}" for k in range(1, 9)} <= set(seen) and any("running" in seen[f"N{k}"] for k in range(1, 9))
    assert {"P1", "P2"} & set(seen)
    grid = {g.channel: g for g in channel_grid(db)}
    assert grid["N1"].planned.startswith("overnight-cyclers:") and grid["N1"].status == "completed"
    # pause on a cycler channel: refused up front by `labctl pause`, and by the worker if asked anyway
    assert refused_cli is not None and refused_cli[0] == 2, refused_cli
    assert "no pause" in refused_cli[1] and "labctl cancel" in refused_cli[1]
    pr = q.planned(db, refused_worker)
    events = db.events(int(pr["run_id"]))
    assert any(e["kind"] == "control" and "pause refused" in e["message"] for e in events), events
    db.close()


def test_a_step_a_cycler_cannot_run_is_refused_at_schedule_time(tmp_path: Path) -> None:
    station = DATA / "lab-cyclers.yaml"
    path = tmp_path / "c.yaml"
    path.write_text(
        f"name: bad\nstations: [{station}]\nruns:\n"
        f"  - {{key: ok, protocol: {PROTOS}/ce-short.yaml, channel: N2}}\n"
        f"  - key: eis-on-cycler\n    protocol: {PROTOS}/eis-short.yaml\n    channel: N1\n"
        f"  - {{key: tafel, protocol: {PROTOS}/tafel-short.yaml, pool: [P1, N3]}}\n"
        f"  - {{key: tafel-ok, protocol: {PROTOS}/tafel-short.yaml, pool: [P1, P2]}}\n"
    )
    url = f"sqlite:///{tmp_path / 'q.sqlite'}"
    r = CliRunner().invoke(app, ["schedule", str(path), "--db", url, "--no-wait"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert (
        f"{path}:6:15: runs[1].protocol: channel N1 of station lab is a battery-cycler channel (bts), "
        "which cannot run step eis (eis-short.yaml:14:5)"
    ) in r.output
    assert f"{path}:8:28: runs[2].protocol" in r.output and "cannot run step tafel (tafel-short.yaml:14:5)" in r.output
    assert "pin it to a potentiostat channel (channel: P1, or pool: [P1, P2])" in r.output
    assert "runs[0]" not in r.output and "runs[3]" not in r.output  # what a cycler can run passes
    with Database(url) as db:
        assert q.queue(db) == []  # nothing queued


def test_cancel_stops_the_cycler_job(tmp_path: Path) -> None:
    clock = ScaledClock(SPEED)
    em, station_path = _lab(tmp_path, clock)
    db = Database(f"sqlite:///{tmp_path / 'lab.sqlite'}", commit_interval=0.05)
    try:
        camp = load_campaign(
            _campaign(
                tmp_path,
                f"name: cc\nstations: [{station_path}]\nruns:\n"
                "  - {key: long, protocol: ce-longterm-0.5mA, channel: N4}\n",
            )
        )
        schedule_campaign(db, camp)
        w = Worker(db, [load_station(station_path)], clock=clock, until_idle=True, poll=0.05)
        t = threading.Thread(target=w.run)
        t.start()
        try:
            end = time.monotonic() + 30
            while time.monotonic() < end:
                row = q.find(db, "long")
                if row["state"] == "running" and db.run(int(row["run_id"]))["n_samples"] > 0:
                    break
                time.sleep(0.05)
            from labctl.app.control import ControlError, request_control

            with pytest.raises(ControlError, match="battery-cycler channel bts 27-1-4, whose vendor API has no pause"):
                request_control(db, int(row["run_id"]), "pause")  # the dashboard's way
            r = CliRunner().invoke(app, ["cancel", "cc:long", "--db", db.url])
            assert r.exit_code == 0 and "cancel requested" in r.output, r.output
        finally:
            t.join(30)
        assert not t.is_alive()
        bts = em.servers["bts"].emulator
        assert bts.chl[4].state == "stop"  # the job was stopped on the cycler
    finally:
        em.close()
    row = q.find(db, "long")
    assert row["state"] == "cancelled"
    run = db.run(int(row["run_id"]))
    assert run["status"] == "aborted" and "cancelled by the user" in run["end_reason"]
    (job,) = db.cycler_jobs(run_id=int(row["run_id"]))
    assert job["state"] == "stopped"
    assert any(e["kind"] == "abort" and "stopped job" in e["message"] for e in db.events(int(row["run_id"])))
    steps = db.steps(int(row["run_id"]))
    assert steps[-1]["t_end"] is not None and steps[-1]["end_reason"] == "aborted"
    db.close()


def _committed(url: str) -> int:
    import sqlalchemy as sa

    try:
        with Database(url) as db, db.engine.connect() as c:
            return int(c.execute(sa.text("select coalesce(sum(n_samples), 0) from runs")).scalar() or 0)
    except Exception:
        return 0


def test_a_worker_killed_mid_harvest_continues_its_cycler_jobs_from_their_cursors(tmp_path: Path) -> None:
    """SIGKILL the worker while it harvests two cycler runs; a new worker finds both jobs (no second
    start) and harvests on from the cursors: no sample lost, none doubled."""
    from labctl.drivers.neware import BtsClient

    station = tmp_path / "station.yaml"
    station.write_text(
        f"name: bts-lab\ninstruments:\n  bts: {{driver: neware, step_folder: '{tmp_path / 'steps'}', page_size: 150, "
        "poll: 0.01}\nchannels:\n  N1: {cycler: bts, address: 27-1-1}\n  N2: {cycler: bts, address: 27-1-2}\n"
    )
    emulated = tmp_path / "emulated.yaml"
    proto = tmp_path / "ce.yaml"
    proto.write_text((PROTOS / "ce-short.yaml").read_text().replace("times: 5", "times: 12"))
    camp = tmp_path / "c.yaml"
    camp.write_text(
        f"name: kill\nstations: [{emulated}]\nruns:\n"
        f"  - {{key: ce, protocol: {proto}, preset: br-mg, replicates: 2, pool: [N1, N2]}}\n"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    emu = subprocess.Popen(
        [sys.executable, "-m", "labctl.cli", "emulate", "--station", str(station), "--preset", "br-mg", "--seed",
         "3", "--speed", "max", "--write", str(emulated), "--seconds", "120"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=env,
    )  # fmt: skip
    url = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    worker = [sys.executable, "-m", "labctl.cli", "worker", "--station", str(emulated), "--db", url, "--poll", "0.1"]
    got: dict[str, tuple[int, dict]] = {}
    try:
        deadline = time.time() + 30
        while not emulated.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert emulated.exists()
        r = CliRunner().invoke(app, ["schedule", str(camp), "--db", url, "--no-wait"])
        assert r.exit_code == 0, r.output
        w = subprocess.Popen(worker, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=env)
        deadline = time.time() + 40
        while _committed(url) < 1200 and time.time() < deadline and w.poll() is None:
            time.sleep(0.02)
        assert w.poll() is None, "the worker ended before it could be killed"
        os.kill(w.pid, signal.SIGKILL)
        w.wait(timeout=10)
        before = _committed(url)
        r2 = subprocess.run([*worker, "--until-idle"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
        assert r2.returncode == 0, r2.stderr
        port = int(load_station(emulated).instruments["bts"].options["port"])
        client = BtsClient("127.0.0.1", port, timeout=5)
        client.connect()
        for addr in client.getdevinfo():
            if addr.name in ("27-1-1", "27-1-2"):
                testid, count = client.inquiredf(addr)
                got[addr.name] = (testid, client.download(addr, testid, 1, count)[1])
        client.close()
    finally:
        emu.send_signal(signal.SIGINT)
        emu.wait(timeout=20)
    import numpy as np

    with Database(url) as db:
        rows = q.queue(db)
        assert [r["state"] for r in rows] == ["done", "done"], [(r["key"], r["state"], r["reason"]) for r in rows]
        assert len(db.runs()) == 2  # nothing started anew
        total = 0
        for r in rows:
            rid = int(r["run_id"])
            run = db.run(rid)
            assert run["status"] == "completed", run["end_reason"]
            (job,) = db.cycler_jobs(run_id=rid)
            testid, everything = got[job["channel"]]
            assert testid == 1  # one start on each channel, never a second
            s = db.samples(rid)
            assert len(s["t"]) == len(everything["testtime"]) and job["cursor"] == str(len(s["t"]))
            np.testing.assert_array_equal(s["t"], everything["testtime"])  # nothing lost, nothing doubled
            np.testing.assert_array_equal(s["voltage"], everything["volt"])
            assert any(e["kind"] == "resume" for e in db.events(rid))
            total += len(s["t"])
        assert 0 < before < total  # killed mid-harvest


def test_a_stopped_worker_leaves_the_cycler_job_running_and_the_next_worker_harvests_it(tmp_path: Path) -> None:
    """SIGTERM of a worker (Worker.stop): labctl stops watching, the job goes on on the cycler, the run
    is left interrupted; the next worker continues the same job to its end (one start)."""
    clock = ScaledClock(SPEED)
    em, station_path = _lab(tmp_path, clock)
    db = Database(f"sqlite:///{tmp_path / 'lab.sqlite'}", commit_interval=0.05)
    try:
        text = (
            f"name: st\nstations: [{station_path}]\nruns:\n"
            "  - {key: ce, protocol: protocols/ce-short.yaml, channel: N3}\n"
        )
        schedule_campaign(db, load_campaign(_campaign(tmp_path, text)))
        station = load_station(station_path)
        w = Worker(db, [station], clock=clock, poll=0.05)
        t = threading.Thread(target=w.run)
        t.start()
        end = time.monotonic() + 30
        while time.monotonic() < end:
            row = q.find(db, "ce")
            if row["run_id"] is not None and db.run(int(row["run_id"]))["n_samples"] > 0:
                break
            time.sleep(0.05)
        w.stop()
        t.join(30)
        assert not t.is_alive() and w.report.stopped
        row = q.find(db, "ce")
        run_id = int(row["run_id"])
        assert row["state"] == "interrupted" and db.run(run_id)["status"] == "interrupted"
        bts = em.servers["bts"].emulator
        assert bts.chl[3].state in ("working", "finish")  # not stopped: the cycler goes on
        (job,) = db.cycler_jobs(run_id=run_id)
        assert job["state"] == "running"
        Worker(db, [station], clock=clock, until_idle=True, poll=0.05).run()
    finally:
        em.close()
    row = q.find(db, "ce")
    assert row["state"] == "done" and int(row["run_id"]) == run_id and len(db.runs()) == 1
    assert len(bts.starts) == 1
    (job,) = db.cycler_jobs(run_id=run_id)
    assert job["state"] == "completed" and job["cursor"] == str(db.run(run_id)["n_samples"])
    kinds = [e["kind"] for e in db.events(run_id)]
    assert "interrupted" in kinds and "resume" in kinds
    db.close()


@pytest.mark.postgres
def test_cycler_runs_of_a_campaign_on_the_shared_lab_postgresql(pg_url: str, tmp_path: Path) -> None:
    """procrastinate's worker dispatches cycler channels the same way (execute_planned)."""
    from labctl.core.clock import VirtualClock

    em, station_path = _lab(tmp_path, VirtualClock())  # the emulated BTS runs each test at CPU speed
    try:
        text = (
            f"name: pgcyc\nstations: [{station_path}]\nruns:\n"
            "  - {key: ce, protocol: protocols/ce-short.yaml, channel: N1}\n"
            "  - {key: sym, protocol: protocols/symmetric-short.yaml, channel: N2}\n"
        )
        cli = CliRunner()
        r = cli.invoke(app, ["schedule", str(_campaign(tmp_path, text)), "--db", pg_url, "--no-wait"])
        assert r.exit_code == 0, r.output
        w = subprocess.run(
            [sys.executable, "-m", "labctl.cli", "worker", "--station", str(station_path), "--db", pg_url,
             "--until-idle", "--heartbeat", "1", "--poll", "0.1"],
            capture_output=True, text=True, cwd=ROOT, timeout=90,
        )  # fmt: skip
        assert w.returncode == 0, w.stderr
        assert len(em.servers["bts"].emulator.starts) == 2
    finally:
        em.close()
    with Database(pg_url) as db:
        rows = {r["key"]: r for r in q.queue(db)}
        assert {k: r["state"] for k, r in rows.items()} == {"ce": "done", "sym": "done"}
        for r in rows.values():
            run = db.run(int(r["run_id"]))
            assert run["status"] == "completed" and run["meta"]["cycler"]["address"] in ("27-1-1", "27-1-2")
            (job,) = db.cycler_jobs(run_id=int(r["run_id"]))
            assert job["state"] == "completed" and job["cursor"] == str(run["n_samples"])


def test_pause_and_resume_reach_a_cycler_whose_vendor_has_them(tmp_path: Path, monkeypatch) -> None:
    """A cycler with ``supports_pause`` (the Neware driver patched to say so): pause and resume go to the
    job, the planned run shows paused meanwhile, and the run completes."""
    from labctl.drivers.neware import NewareCycler

    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(NewareCycler, "supports_pause", True)
    monkeypatch.setattr(NewareCycler, "pause", lambda self, job: calls.append(("pause", job)))
    monkeypatch.setattr(NewareCycler, "resume", lambda self, job: calls.append(("resume", job)))
    clock = ScaledClock(SPEED)
    em, station_path = _lab(tmp_path, clock)
    db = Database(f"sqlite:///{tmp_path / 'lab.sqlite'}", commit_interval=0.05)
    try:
        text = (
            f"name: pz\nstations: [{station_path}]\nruns:\n"
            "  - {key: s, protocol: protocols/symmetric-short.yaml, channel: N5}\n"
        )
        schedule_campaign(db, load_campaign(_campaign(tmp_path, text)))
        w = Worker(db, [load_station(station_path)], clock=clock, until_idle=True, poll=0.05)
        t = threading.Thread(target=w.run)
        t.start()
        cli = CliRunner()
        states = []
        try:
            end = time.monotonic() + 30
            while q.find(db, "s")["state"] != "running" and time.monotonic() < end:
                time.sleep(0.02)
            r = cli.invoke(app, ["pause", "pz:s", "--db", db.url])
            assert r.exit_code == 0, r.output
            end = time.monotonic() + 10
            while q.find(db, "s")["state"] != "paused" and time.monotonic() < end:
                time.sleep(0.02)
            states.append(q.find(db, "s")["state"])
            assert cli.invoke(app, ["resume", "pz:s", "--db", db.url]).exit_code == 0
        finally:
            t.join(60)
        assert not t.is_alive()
    finally:
        em.close()
    row = q.find(db, "s")
    assert states == ["paused"] and row["state"] == "done"
    assert [c[0] for c in calls] == ["pause", "resume"]
    kinds = [e["kind"] for e in db.events(int(row["run_id"]))]
    assert kinds.index("pause") < kinds.index("resume")
    db.close()
