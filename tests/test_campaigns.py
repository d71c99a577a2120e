"""Campaigns: files, the queue's transitions, the scheduler's misfire policy, rehearsals, pause/cancel."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl.app.lab.campaign import load_campaign, load_campaign_text
from labctl.app.lab.locks import LockHeld, StoreLock
from labctl.app.lab.rehearsal import rehearse
from labctl.cli.application import app
from labctl.db import Database
from labctl.db import campaigns as q

DATA = Path(__file__).parent / "data" / "campaigns"
STATION = DATA / "sim16.yaml"


@pytest.fixture
def db(tmp_path: Path):
    d = Database(f"sqlite:///{tmp_path / 'lab.sqlite'}")
    yield d
    d.close()


def _campaign(tmp_path: Path, body: str, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(body.replace("STATION", str(STATION)).replace("PROTOS", str(DATA / "protocols")))
    return p


# ------------------------------------------------------------------------------------------ files
def test_the_overnight_campaign_expands_into_its_planned_runs():
    c = load_campaign(DATA / "overnight.yaml")
    runs = c.expand()
    keys = [p.key for p in runs]
    assert len(runs) == 19 and len(set(keys)) == 19  # 18 cycling runs and the dip coat
    assert sum(p.protocol == "symmetric-0.5mA" for p in runs) == 6
    assert sum(p.protocol == "aurbach-ce" for p in runs) == 6
    assert sum(p.protocol == "ce-longterm-0.5mA" for p in runs) == 6
    by = {p.key: p for p in runs}
    assert by["sym-br-r2"].after == ["coat-br"] and by["sym-br-r2"].cell == "BrMg-S2"
    assert by["sym-br-r2"].preset == "br-mg" and by["sym-bare-r1"].preset == "bare-mg"
    assert by["coat-br"].channel == "ch16" and by["coat-br"].pool is None
    assert len(by["ce-br-r3"].pool or []) == 16
    assert [by[f"aurbach-br-r{k}"].seed for k in (1, 2, 3)] == [20, 21, 22]
    assert all(p.at is not None and p.at > time.time() for p in runs)


BAD = {
    "unknown protocol": (
        "  - {key: a, protocol: symmetric-0.5mAA, preset: bare-mg}\n",
        ":6:",
        "unknown protocol 'symmetric-0.5mAA'",
    ),
    "unknown cell": (
        "  - {key: a, protocol: aurbach-ce, cell: Mg-S9}\n",
        ":6:",
        "unknown cell 'Mg-S9'",
    ),
    "unknown station": (
        "  - {key: a, protocol: aurbach-ce, preset: bare-mg, station: bench-7}\n",
        ":6:",
        "unknown station 'bench-7'",
    ),
    "unknown channel": (
        "  - {key: a, protocol: aurbach-ce, preset: bare-mg, channel: ch17}\n",
        ":6:",
        "has no channel 'ch17'",
    ),
    "unknown pool channel": (
        "  - {key: a, protocol: aurbach-ce, preset: bare-mg, pool: [ch1, chX]}\n",
        ":6:",
        "has no channel 'chX'",
    ),
    "unknown preset": (
        "  - {key: a, protocol: aurbach-ce, preset: no-such-preset}\n",
        ":6:",
        "no-such-preset",
    ),
    "two runs pinned to one channel at one time": (
        "  - {key: a, protocol: aurbach-ce, preset: bare-mg, channel: ch3}\n"
        "  - {key: b, protocol: aurbach-ce, preset: br-mg, channel: ch3}\n",
        ":7:",
        "both pinned to channel ch3",
    ),
    "an after: cycle": (
        "  - {key: a, protocol: aurbach-ce, preset: bare-mg, after: [b]}\n"
        "  - {key: b, protocol: aurbach-ce, preset: bare-mg, after: [a]}\n",
        ":6:",
        "after: makes a cycle",
    ),
    "a start in the past beyond the misfire limit": (
        "  - {key: a, protocol: aurbach-ce, preset: bare-mg, at: '2020-01-01T19:00'}\n",
        ":6:",
        "beyond the misfire limit",
    ),
    "a protocol the channel cannot run (preflight)": (
        "  - {key: a, protocol: eis-temperature, preset: bare-mg}\n",
        ":6:",
        "no temperature stage",
    ),
    "after: names no run": (
        "  - {key: a, protocol: aurbach-ce, preset: bare-mg, after: [coat]}\n",
        ":6:",
        "no run 'coat'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_campaigns_exit_2_with_file_line_col_and_queue_nothing(tmp_path, case):
    runs, where, message = BAD[case]
    path = _campaign(
        tmp_path,
        "name: bad\nstations: [STATION]\nmisfire_limit: 30 min\ncells: {Mg-S1: {preset: bare-mg}}\nruns:\n" + runs,
    )
    url = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    r = CliRunner().invoke(app, ["schedule", str(path), "--db", url, "--no-wait"])
    assert r.exit_code == 2, r.output
    assert f"{path}{where}" in r.output and message in r.output, r.output
    assert "Traceback" not in r.output
    with Database(url) as d:
        assert q.campaigns_list(d) == [] and q.queue(d) == []


def test_the_same_campaign_is_not_queued_twice(tmp_path):
    path = _campaign(
        tmp_path, "name: twice\nstations: [STATION]\nruns:\n  - {key: a, protocol: dip-coat, preset: br-mg}\n"
    )
    url = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    assert CliRunner().invoke(app, ["schedule", str(path), "--db", url, "--no-wait"]).exit_code == 0
    r = CliRunner().invoke(app, ["schedule", str(path), "--db", url, "--no-wait"])
    assert r.exit_code == 2 and "already queued" in r.output
    with Database(url) as d:
        assert len(q.queue(d)) == 1


def test_campaign_json_schema_is_printed():
    import json

    r = CliRunner().invoke(app, ["schema", "--campaign"])
    assert r.exit_code == 0
    schema = json.loads(r.output)
    assert schema["title"] == "labctl campaign" and "runs" in schema["properties"]


# ------------------------------------------------------------------------------------------ the queue
def _queue_one(db, tmp_path, body: str):
    from labctl.app.lab.scheduler import schedule_campaign

    return schedule_campaign(db, load_campaign(_campaign(tmp_path, body)))


def test_only_one_claimer_wins_a_due_run(db, tmp_path):
    _queue_one(db, tmp_path, "name: c\nstations: [STATION]\nruns:\n  - {key: a, protocol: dip-coat, preset: br-mg}\n")
    pid = q.queue(db)[0]["id"]
    wins: list[str] = []
    barrier = threading.Barrier(8)

    def claim(k: int) -> None:
        barrier.wait()
        if q.claim(db, pid, f"ch{k + 1}", f"host:{k}"):
            wins.append(f"ch{k + 1}")

    threads = [threading.Thread(target=claim, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    row = q.planned(db, pid)
    assert row["state"] == "claimed" and row["channel"] == wins[0] and row["attempts"] == 1


@pytest.mark.postgres
def test_only_one_claimer_wins_on_postgresql(pg_url, tmp_path):
    with Database(pg_url) as d:
        _queue_one(
            d, tmp_path, "name: c\nstations: [STATION]\nruns:\n  - {key: a, protocol: dip-coat, preset: br-mg}\n"
        )
        pid = q.queue(d)[0]["id"]
        results: list[bool] = []
        barrier = threading.Barrier(6)

        def claim(k: int) -> None:
            barrier.wait()
            results.append(q.claim(d, pid, f"ch{k + 1}", f"host:{k}"))

        threads = [threading.Thread(target=claim, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [False] * 5 + [True]


def test_a_failed_dependency_fails_its_dependants_with_the_reason(db, tmp_path):
    _queue_one(
        db,
        tmp_path,
        "name: c\nstations: [STATION]\nruns:\n"
        "  - {key: a, protocol: dip-coat, preset: br-mg}\n"
        "  - {key: b, protocol: dip-coat, preset: br-mg, after: [a]}\n"
        "  - {key: c, protocol: dip-coat, preset: br-mg, after: [b]}\n",
    )
    rows = {r["key"]: r for r in q.queue(db)}
    assert [rows[k]["state"] for k in "abc"] == ["due", "waiting", "waiting"]
    assert q.cancel(db, rows["a"]["id"]) == "cancelled"
    rows = {r["key"]: r for r in q.queue(db)}
    assert rows["b"]["state"] == "failed" and "after: a ended cancelled" in rows["b"]["reason"]
    assert rows["c"]["state"] == "failed" and "after: b ended failed" in rows["c"]["reason"]


def test_two_schedulers_never_share_one_store(db):
    with StoreLock(db, "scheduler"), pytest.raises(LockHeld, match="another scheduler"):
        StoreLock(db, "scheduler").acquire()
    with StoreLock(db, "scheduler"):  # released on exit: the next one gets it
        pass


# ------------------------------------------------------------------------------------------ misfires
def test_a_start_missed_while_off_runs_late_within_the_limit_and_fails_beyond(db, tmp_path):
    """The scheduler was off at the start time: within misfire_limit the run starts when it returns;
    older, it fails with the reason (never dropped silently)."""
    from labctl.app.lab.scheduler import JOBS_TABLE, schedule_campaign, serve

    now = time.time()
    for name, limit in (("strict", "1 s"), ("lenient", "1 min")):
        text = (
            f"name: {name}\nstations: [{STATION}]\nmisfire_limit: {limit}\nruns:\n"
            f"  - {{key: {name}, protocol: dip-coat, preset: br-mg, at: '+0.3 s'}}\n"
        )
        schedule_campaign(db, load_campaign_text(text, source=f"{name}.yaml", now=now), now=now)
    import sqlalchemy as sa

    with db.transaction() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {JOBS_TABLE}")).scalar() == 2
    time.sleep(max(0.0, now + 2.5 - time.time()))  # the scheduler (the PC) is off at the start time
    assert serve(db, poll=0.05) == 2
    rows = {r["key"]: r for r in q.queue(db)}
    assert rows["lenient"]["state"] == "due"  # 2 s late, within 1 min: starts now
    assert rows["strict"]["state"] == "failed"  # beyond 1 s: failed, with the reason
    assert "missed its start" in rows["strict"]["reason"] and "misfire limit is 1 s" in rows["strict"]["reason"]


def test_a_job_lost_between_queuing_and_storing_is_recreated_or_failed(db, tmp_path):
    from labctl.app.lab.scheduler import JOBS_TABLE, reconcile, schedule_campaign

    now = time.time()
    text = (
        f"name: lost\nstations: [{STATION}]\nmisfire_limit: 1 min\nruns:\n"
        "  - {key: a, protocol: dip-coat, preset: br-mg, at: '+10 min'}\n"
    )
    schedule_campaign(db, load_campaign_text(text, source="lost.yaml", now=now), now=now)
    import sqlalchemy as sa

    with db.transaction(write=True) as conn:
        conn.execute(sa.text(f"DELETE FROM {JOBS_TABLE}"))
    assert [r["key"] for r in reconcile(db, set(), now=now)] == ["a"]  # not yet due: its job is re-created
    assert reconcile(db, set(), now=now + 3600) == []  # an hour later: beyond the limit, failed
    assert q.queue(db)[0]["state"] == "failed"


# ------------------------------------------------------------------------------------------ rehearsal
def _check_campaign_ran_once_in_order(db, reh, planned_count: int) -> None:
    tl = {r.key: r for r in reh.timeline}
    assert len(tl) == planned_count
    assert all(r.state == "done" and r.status == "completed" for r in tl.values()), [
        (r.key, r.state, r.reason) for r in tl.values()
    ]
    run_ids = [r.run_id for r in tl.values()]
    assert len(set(run_ids)) == planned_count  # every planned run has its own run ...
    assert len(db.runs()) == planned_count  # ... and there is no other run: nothing doubled
    for r in tl.values():
        assert r.at is None or r.start_unix >= r.at - 1e-6  # not before its start time
        for dep in r.after:
            assert r.start_unix >= tl[dep].end_unix - 1e-6  # after: respected
    by_channel: dict[str, list] = {}
    for r in tl.values():
        by_channel.setdefault(r.channel, []).append((r.start_unix, r.end_unix))
    for spans in by_channel.values():  # one run at a time per channel
        spans.sort()
        for (_, e1), (s2, _) in itertools.pairwise(spans):
            assert s2 >= e1 - 1e-6


def test_the_overnight_campaign_rehearses_in_virtual_time_every_run_once(db):
    """18 runs + the dip coat on 16 channels (short protocol variants): two runs wait for a channel."""
    camp = load_campaign(DATA / "overnight-short.yaml")
    t0 = time.perf_counter()
    reh = rehearse(camp, db)
    wall = time.perf_counter() - t0
    _check_campaign_ran_once_in_order(db, reh, 19)
    tl = {r.key: r for r in reh.timeline}
    waited = [r for r in tl.values() if r.start_unix > min(x.start_unix for x in tl.values()) + 1 and not r.after]
    waited += [r for r in tl.values() if r.after and r.start_unix > tl["coat-br"].end_unix + 1]
    assert len(waited) == 2  # 19 runs, 16 channels: the dip coat frees one, two wait for others
    assert reh.end_unix - reh.start_unix > 12 * 3600  # an overnight plan ...
    assert wall < 60  # ... checked in seconds
    events = {e.kind for e in reh.report.events}
    assert events == {"started", "ended"}


def test_rehearse_command_prints_the_timeline(tmp_path):
    path = _campaign(
        tmp_path,
        "name: tiny\nstations: [STATION]\nstart: '+5 min'\nruns:\n"
        "  - {key: coat, protocol: dip-coat, preset: br-mg, channel: ch1}\n"
        "  - {key: cyc, protocol: PROTOS/symmetric-short.yaml, preset: br-mg, after: [coat], replicates: 2}\n",
    )
    r = CliRunner().invoke(app, ["schedule", str(path), "--rehearse"])
    assert r.exit_code == 0, r.output
    assert "3 of 3 runs done" in r.output and "cyc-r2" in r.output and "rehearsal timeline" in r.output


# ------------------------------------------------------------------------------------------ control
PAUSABLE = """name: pausable
description: many short steps, so step boundaries come often
cell: {kind: symmetric, working: Mg, counter: Mg, area: 1.267 cm2, electrolyte: x}
safety: {voltage: [-2.5 V, 2.5 V], current: 20 mA, max_duration: 50 h}
steps:
  - repeat:
      times: 400
      steps:
        - galvanostatic: {label: plate, current_density: -0.5 mA/cm2, duration: 30 s, record_every: 10 s}
        - galvanostatic: {label: strip, current_density: 0.5 mA/cm2, duration: 30 s, record_every: 10 s}
"""


def test_pause_status_resume_and_cancel_at_step_boundaries(db, tmp_path):
    from labctl.app.grid import channel_grid
    from labctl.app.lab.worker import Worker
    from labctl.app.station import load_station
    from labctl.core.clock import ScaledClock

    (tmp_path / "pausable.yaml").write_text(PAUSABLE)
    path = _campaign(
        tmp_path,
        "name: ctl\nstations: [STATION]\nruns:\n"
        f"  - {{key: p, protocol: {tmp_path / 'pausable.yaml'}, preset: bare-mg, channel: ch1}}\n"
        f"  - {{key: x, protocol: {tmp_path / 'pausable.yaml'}, preset: bare-mg, channel: ch2}}\n",
    )
    url = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    cli = CliRunner()
    assert cli.invoke(app, ["schedule", str(path), "--db", url, "--no-wait"]).exit_code == 0
    assert cli.invoke(app, ["pause", "ctl:p", "--db", url]).exit_code == 2  # not running yet
    w = Worker(db, [load_station(STATION)], clock=ScaledClock(600.0), until_idle=True, poll=0.05)
    t = threading.Thread(target=w.run)
    t.start()
    try:

        def wait_state(key: str, state: str, timeout: float = 30) -> dict:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                row = q.find(db, key)
                if row["state"] == state:
                    return row
                time.sleep(0.05)
            raise AssertionError(f"{key} never became {state}: {q.find(db, key)['state']}")

        wait_state("p", "running")
        r = cli.invoke(app, ["pause", "p", "--db", url])
        assert r.exit_code == 0, r.output
        row = wait_state("p", "paused")
        end = time.monotonic() + 20
        while True:  # the writers commit every second: wait for ch2's first samples
            grid = {g.channel: g for g in channel_grid(db)}
            if grid["ch2"].voltage is not None or time.monotonic() > end:
                break
            time.sleep(0.1)
        assert grid["ch1"].status == "paused" and grid["ch1"].run_id == row["run_id"]
        assert grid["ch2"].status == "running" and grid["ch2"].voltage is not None and grid["ch2"].cycle >= 1
        assert grid["ch2"].estimated_end_unix is not None and grid["ch2"].planned == "ctl:x"
        r = cli.invoke(app, ["status", "--db", url, "--json"])
        assert r.exit_code == 0 and '"ch1"' in r.output
        assert cli.invoke(app, ["resume", "ctl:p", "--db", url]).exit_code == 0
        wait_state("p", "running")
        assert cli.invoke(app, ["cancel", str(row["run_id"]), "--db", url]).exit_code == 0
        wait_state("p", "cancelled")
        assert cli.invoke(app, ["cancel", "x", "--db", url]).exit_code == 0
        wait_state("x", "cancelled")
    finally:
        w.stop()
        t.join(30)
    run = db.run(row["run_id"])
    assert run["status"] == "aborted" and "cancelled by the user" in run["end_reason"]
    kinds = [e["kind"] for e in db.events(row["run_id"])]
    assert kinds.index("pause") < kinds.index("resume") < kinds.index("abort")
    steps = db.steps(row["run_id"])
    assert steps[-1]["t_end"] is not None  # the cut step is closed; the cell was turned off (abort)
    r = cli.invoke(app, ["queue", "--db", url, "--json"])
    assert r.exit_code == 0 and r.output.count('"cancelled"') == 2


def test_an_interrupted_dip_coat_is_resumed_with_a_simulated_operator(db, tmp_path):
    """Found by the SIGKILL trials: resuming a simulated manual dip coat failed ("needs an operator")."""
    from labctl.app.lab.execute import execute_planned, resume_planned
    from labctl.app.station import load_station
    from labctl.core.clock import ScaledClock

    _queue_one(
        db, tmp_path, "name: c\nstations: [STATION]\nruns:\n  - {key: coat, protocol: dip-coat, preset: br-mg}\n"
    )
    pid = q.queue(db)[0]["id"]
    st = load_station(STATION)
    assert q.claim(db, pid, "ch1", "me:1")
    stop = threading.Event()
    stop.set()  # the worker is stopping as the run starts: it ends at the first step boundary
    out = execute_planned(db, pid, st, "ch1", clock=ScaledClock(3600.0), stop=stop, owner="me:1")
    assert out.status == "interrupted" and q.planned(db, pid)["state"] == "interrupted"
    assert q.take_over(db, pid, "me:2", ("interrupted",))
    out = resume_planned(db, pid, st, "ch1", clock=ScaledClock(3600.0), owner="me:2")
    assert out.status == "completed", out.end_reason
    assert q.planned(db, pid)["state"] == "done"
    assert [c["run_id"] for c in db.coatings("BrMg-S2")] == [out.run_id]  # the coating is on record


@pytest.mark.postgres
def test_a_campaign_rehearses_on_postgresql(pg_url, tmp_path):
    """The same queue, job store and worker on PostgreSQL: every run once, after: kept."""
    path = _campaign(
        tmp_path,
        "name: pg\nstations: [STATION]\nstart: '+1 min'\nruns:\n"
        "  - {key: coat, protocol: dip-coat, preset: br-mg, channel: ch1}\n"
        "  - {key: cyc, protocol: PROTOS/symmetric-short.yaml, preset: br-mg, after: [coat], replicates: 2}\n"
        "  - {key: ce, protocol: PROTOS/ce-short.yaml, preset: bare-mg, replicates: 2}\n",
    )
    with Database(pg_url) as d:
        reh = rehearse(load_campaign(path), d)
        _check_campaign_ran_once_in_order(d, reh, 5)


def test_cancelling_an_interrupted_run_ends_its_run_row(db, tmp_path):
    from labctl.app.lab.execute import execute_planned
    from labctl.app.station import load_station
    from labctl.core.clock import ScaledClock

    _queue_one(
        db, tmp_path, "name: c\nstations: [STATION]\nruns:\n  - {key: coat, protocol: dip-coat, preset: br-mg}\n"
    )
    pid = q.queue(db)[0]["id"]
    assert q.claim(db, pid, "ch1", "me:1")
    stop = threading.Event()
    stop.set()
    out = execute_planned(db, pid, load_station(STATION), "ch1", clock=ScaledClock(3600.0), stop=stop, owner="me:1")
    assert db.run(out.run_id)["status"] == "interrupted"
    r = CliRunner().invoke(app, ["cancel", "c:coat", "--db", db.engine.url.render_as_string(hide_password=False)])
    assert r.exit_code == 0 and "cancelled" in r.output, r.output
    run = db.run(out.run_id)
    assert run["status"] == "aborted" and "cancelled by the user (not resumed)" in run["end_reason"]
    assert q.planned(db, pid)["state"] == "cancelled"


def test_the_worker_tells_the_config_s_webhook_how_each_run_ended(tmp_path, monkeypatch):
    """A worker started with a config file's notify: section posts one message per finished run."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(
            f"notify:\n  on: all\n  backoff: 0\n  webhooks:\n    - url: http://127.0.0.1:{server.server_address[1]}/hook\n"
        )
        monkeypatch.setenv("LABCTL_CONFIG", str(cfg))
        path = _campaign(
            tmp_path,
            "name: told\nstations: [STATION]\nruns:\n"
            "  - {key: a, protocol: dip-coat, preset: br-mg, channel: ch1}\n"
            "  - {key: b, protocol: dip-coat, preset: br-mg, channel: ch2}\n",
        )
        url = f"sqlite:///{tmp_path / 'lab.sqlite'}"
        cli = CliRunner()
        assert cli.invoke(app, ["schedule", str(path), "--db", url, "--no-wait"]).exit_code == 0
        r = cli.invoke(app, ["worker", "--station", str(STATION), "--db", url, "--speed", "max", "--until-idle"])
        assert r.exit_code == 0, r.output
        runs = sorted(p["run_id"] for p in got)
        d = Database(url)
        try:
            assert runs == sorted(row["run_id"] for row in q.queue(d)) and len(runs) == 2
        finally:
            d.close()
        assert {p["status"] for p in got} == {"completed"}
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("width", [80, 140])
def test_status_grid_is_readable_on_an_80_column_terminal(width):
    """Every value the grid promises (channel, cell, run, status, step, cycle, V, I, elapsed, end) is
    printed whole within the terminal's width; the protocol column comes with a wide terminal."""
    import io

    from rich.console import Console

    from labctl.app.grid import ChannelRow
    from labctl.cli.campaign import _grid_table

    now = time.time()
    row = ChannelRow(
        station="sim16",
        channel="ch12",
        cell="BrMg-S3",
        run_id=1234,
        protocol="ce-longterm-0.5mA",
        status="running",
        step="strip",
        step_index=17,
        cycle=482,
        voltage=0.06851,
        current=-5.0e-4,
        elapsed_s=3 * 3600.0,
        estimated_end_unix=now + 600,
        heartbeat_age_s=1.0,
    )
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(_grid_table([row], width=width))
    text = buf.getvalue()
    assert max(len(line) for line in text.splitlines()) <= width
    line = next(x for x in text.splitlines() if "1234" in x)
    for value in ("sim16/ch12", "BrMg-S3", "1234", "482", "0.069" if width == 80 else "0.0685", "-0.5", "3.00 h"):
        assert value in line, (value, line)
    assert time.strftime("%H:%M", time.localtime(now + 600)) in line
    assert ("ce-longterm-0.5mA" in line) == (width >= 118)
