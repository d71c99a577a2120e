"""The dashboard's JSON API in-process (FastAPI TestClient): grid, decimated trace, control and its
token, campaigns by reflection, no secrets; ``labctl serve`` as a real process on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from labctl.app.control import ControlError, ControlWatcher, pending_control, request_control
from labctl.app.grid import channel_grid
from labctl.db import Database
from labctl.web import create_app
from labctl.web.trace import bucket_size, voltage_trace

TOKEN = "s3cret-token-for-tests"
PROTO = """\
name: api-test
cell: {kind: symmetric, working: Mg, counter: Mg, area: 1 cm2}
safety: {voltage: [-2.5 V, 2.5 V], current: 20 mA}
steps:
  - rest: {duration: 1 h, record_every: 1 s}
"""


def _run(db: Database, n: int, *, channel: str = "ch1", spike_at: int | None = None, dip_at: int | None = None):
    rec = db.open_run(protocol_name="api-test", protocol_text=PROTO, cell_label="c1", channel=channel, simulated=True)
    rec.step_started(0, path="1", kind="rest", label=None, cycle=0, params={}, t=0.0)
    t = np.arange(n, dtype=float)
    v = 0.1 + 1e-3 * np.sin(t / 50.0)
    if spike_at is not None:
        v[spike_at] = 2.4
    if dip_at is not None:
        v[dip_at] = -1.3
    rec.samples(0, 0, t, v, np.zeros(n), np.zeros(n))
    rec.flush()
    return rec, t, v


@pytest.fixture
def db(tmp_path):
    d = Database(f"sqlite:///{tmp_path / 'api.sqlite'}")
    yield d
    d.close()


def test_trace_keeps_every_spike_and_matches_a_bucket_envelope(db):
    n = 200_003
    rec, t, v = _run(db, n, spike_at=123_457, dip_at=7)
    tr = voltage_trace(db, rec.run_id, bins=1000)
    assert tr.envelope and tr.n_samples == n and tr.bucket == bucket_size(n, 1000) == 256
    assert len(tr.t) == len(tr.voltage) <= 2 * 1000
    assert max(tr.voltage) == pytest.approx(2.4) and min(tr.voltage) == pytest.approx(-1.3)
    # exactly the min/max of each run of `bucket` samples, at its first and last sample's time
    b = tr.bucket
    k = (n + b - 1) // b
    lo = [v[j * b : (j + 1) * b].min() for j in range(k)]
    hi = [v[j * b : (j + 1) * b].max() for j in range(k)]
    assert np.allclose(tr.voltage[0::2], lo) and np.allclose(tr.voltage[1::2], hi)
    assert tr.t[0] == 0.0 and tr.t[-1] == t[-1]
    # a few samples: every one
    rec2, t2, v2 = _run(db, 500, channel="ch2")
    small = voltage_trace(db, rec2.run_id)
    assert not small.envelope and small.t == list(t2) and np.allclose(small.voltage, v2)
    rec.close()
    rec2.close()


def test_trace_of_a_growing_run_reuses_full_buckets_and_sees_new_samples(db):
    from labctl.web.trace import TraceCache

    rec, _, _ = _run(db, 100_000)
    cache = TraceCache()
    first = voltage_trace(db, rec.run_id, bins=500, cache=cache)
    t_more = np.arange(100_000, 110_000, dtype=float)
    v_more = np.full(t_more.size, 0.1)
    v_more[-1] = -2.0  # a short at the very end
    rec.samples(0, 0, t_more, v_more, np.zeros(t_more.size), np.zeros(t_more.size))
    rec.flush()
    second = voltage_trace(db, rec.run_id, bins=500, cache=cache)
    assert second.n_samples == 110_000 and second.t[-1] == 109_999.0
    assert min(second.voltage) == pytest.approx(-2.0) and min(first.voltage) > 0
    rec.close()


def test_a_warmed_cache_serves_any_width_without_scanning_again(db):
    from labctl.web.trace import FINE_BINS, TraceCache, warm

    rec, _, _ = _run(db, 300_000, spike_at=299_000)
    rec.finish("completed", "complete", time.time())
    cache = TraceCache()
    warm(db, cache, [rec.run_id])
    fine = bucket_size(300_000, FINE_BINS)
    assert len(cache.get((rec.run_id, fine))) == 300_000 // fine  # every full bucket
    before = cache.scanned
    for bins in (300, 700, 1300, 2000):
        tr = voltage_trace(db, rec.run_id, bins=bins, cache=cache)
        assert max(tr.voltage) == pytest.approx(2.4) and len(tr.t) <= 2 * bins
    assert cache.scanned - before <= 4  # at most the last, partial bucket each time
    # the app warms the latest run of each channel at start
    app = create_app(db)
    assert app.state.warmed.wait(10)
    assert len(app.state.trace_cache.get((rec.run_id, fine))) == 300_000 // fine


def _envelope(v: np.ndarray, b: int) -> tuple[list[float], list[float]]:
    k = (v.size + b - 1) // b
    return [v[j * b : (j + 1) * b].min() for j in range(k)], [v[j * b : (j + 1) * b].max() for j in range(k)]


def _no_scan(monkeypatch) -> None:
    from labctl.db import envelope

    def scan(*a, **k):
        raise AssertionError("the samples were scanned")

    monkeypatch.setattr(envelope, "scan", scan)


def test_a_long_trace_comes_from_the_stored_envelope_and_follows_a_live_run(db, monkeypatch):
    """No sample is read for a long run's trace: the writer stored its envelope; the last, partly
    filled bucket grows as a live run records, and a short at its very end is drawn."""
    rec, t, v = _run(db, 300_000, spike_at=150_001, dip_at=5)
    _no_scan(monkeypatch)
    tr = voltage_trace(db, rec.run_id, bins=100)
    assert tr.envelope and tr.bucket == 4096 and len(tr.t) == 2 * 74
    lo, hi = _envelope(v, tr.bucket)
    assert tr.voltage[0::2] == lo and tr.voltage[1::2] == hi
    assert max(tr.voltage) == 2.4 and min(tr.voltage) == -1.3 and tr.t[0] == 0.0 and tr.t[-1] == t[-1]
    t_more = np.arange(300_000, 303_000, dtype=float)
    v_more = np.full(t_more.size, 0.1)
    v_more[-1] = -2.0  # a short at the very end
    rec.samples(0, 0, t_more, v_more, np.zeros(t_more.size), np.zeros(t_more.size))
    rec.flush()
    live = voltage_trace(db, rec.run_id, bins=100)
    lo, hi = _envelope(np.concatenate([v, v_more]), live.bucket)
    assert live.n_samples == 303_000 and live.t[-1] == 302_999.0 and live.voltage[-2] == -2.0
    assert live.voltage[0::2] == lo and live.voltage[1::2] == hi
    rec.close()


def test_a_run_recorded_before_the_envelope_is_drawn_from_its_samples_once(db, tmp_path, monkeypatch):
    """A run without stored buckets (recorded before migration 0006): its first trace scans the
    samples and stores the buckets, later ones read them; a read-only archive is scanned, unchanged."""
    from labctl.db.schema import trace_buckets

    rec, _, v = _run(db, 200_000, spike_at=77_777)
    rec.finish("completed", "complete", time.time())
    with db.transaction(write=True) as conn:
        conn.execute(trace_buckets.delete())
    ro = Database(f"sqlite:///file:{tmp_path / 'api.sqlite'}?mode=ro&uri=true")
    try:
        assert ro.read_only
        tr = voltage_trace(ro, rec.run_id, bins=100)
        assert max(tr.voltage) == 2.4 and tr.voltage[1::2] == _envelope(v, tr.bucket)[1]
        with ro.transaction() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(trace_buckets)).scalar() == 0
    finally:
        ro.close()
    first = voltage_trace(db, rec.run_id, bins=100)
    with db.transaction() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(trace_buckets)).scalar() == 196
    _no_scan(monkeypatch)
    again = voltage_trace(db, rec.run_id, bins=100)
    assert again == first and again.voltage[1::2] == _envelope(v, again.bucket)[1]


def test_grid_and_run_endpoints(db):
    rec, _, _ = _run(db, 1000)
    c = TestClient(create_app(db))
    g = c.get("/api/grid").json()
    assert [ch["run_id"] for ch in g["channels"]] == [r.run_id for r in channel_grid(db)]
    row = g["channels"][0]
    assert row["status"] == "running" and row["n_samples"] == 1000 and row["cell"] == "c1"
    d = c.get(f"/api/runs/{rec.run_id}").json()
    assert d["run"]["id"] == rec.run_id and d["steps"][0]["kind"] == "rest"
    assert d["exports"]["csv"] == f"/api/runs/{rec.run_id}/export.csv"
    assert c.get("/api/runs/999").status_code == 404
    assert c.get("/api/runs/999/trace").status_code == 404
    csv = c.get(f"/api/runs/{rec.run_id}/export.csv")
    assert csv.status_code == 200 and csv.text.count("\n") > 1000
    spec = c.get("/api/openapi.json").json()
    assert "/api/grid" in spec["paths"] and "/api/runs/{run_id}/control" in spec["paths"]
    rec.close()


def _snapshot(db: Database, run_id: int):
    return db.run(run_id)["meta"], [(e["kind"], e["message"]) for e in db.events(run_id)]


@pytest.mark.parametrize("configured", [TOKEN, None])
def test_control_without_or_with_a_wrong_token_is_refused_and_changes_nothing(db, configured):
    rec, _, _ = _run(db, 10)
    c = TestClient(create_app(db, token=configured))
    before = _snapshot(db, rec.run_id)
    url = f"/api/runs/{rec.run_id}/control"
    r = c.post(url, json={"action": "cancel"})
    assert r.status_code == 401 and TOKEN not in r.text
    for headers in ({"X-Labctl-Token": "wrong"}, {"Authorization": "Bearer wrong"}, {"X-Labctl-Token": TOKEN[:-1]}):
        r = c.post(url, json={"action": "pause"}, headers=headers)
        assert r.status_code == 403, r.text
        assert TOKEN not in r.text and TOKEN[:-1] not in r.text
    # the token in a cookie or the query string does not count
    c.cookies.set("X-Labctl-Token", TOKEN)
    assert c.post(url + f"?token={TOKEN}", json={"action": "cancel"}).status_code == 401
    assert _snapshot(db, rec.run_id) == before
    assert db.run(rec.run_id)["status"] == "running"
    rec.close()


def test_control_with_the_token_writes_a_request_the_worker_applies(db):
    rec, _, _ = _run(db, 10)
    c = TestClient(create_app(db, token=TOKEN))
    url = f"/api/runs/{rec.run_id}/control"
    r = c.post(url, json={"action": "pause"}, headers={"X-Labctl-Token": TOKEN})
    assert r.status_code == 200 and r.json()["seq"] == 1
    r = c.post(url, json={"action": "resume"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.json()["seq"] == 2
    assert pending_control(db, rec.run_id).action == "resume"
    ev = [e for e in db.events(rec.run_id) if e["kind"] == "control"]
    assert [e["data"]["action"] for e in ev] == ["pause", "resume"]
    assert c.post(url, json={"action": "explode"}, headers={"X-Labctl-Token": TOKEN}).status_code == 422
    assert (
        c.post("/api/runs/4242/control", json={"action": "pause"}, headers={"X-Labctl-Token": TOKEN}).status_code == 404
    )
    rec.finish("completed", "complete", time.time())
    r = c.post(url, json={"action": "cancel"}, headers={"X-Labctl-Token": TOKEN})
    assert r.status_code == 409 and "completed" in r.json()["detail"]


class _Engine:
    def __init__(self):
        self.calls: list[str] = []

    def pause(self):
        self.calls.append("pause")

    def resume(self):
        self.calls.append("resume")

    def abort(self, reason):
        self.calls.append(f"abort: {reason}")


def test_control_watcher_applies_each_request_once(db):
    rec, _, _ = _run(db, 10)
    request_control(db, rec.run_id, "pause")  # made before the worker watched: not replayed
    eng = _Engine()
    applied = []
    w = ControlWatcher(db, rec.run_id, eng, on_applied=applied.append)
    assert w.poll() is None
    request_control(db, rec.run_id, "pause")
    request_control(db, rec.run_id, "resume")  # only the latest request counts
    assert w.poll().action == "resume" and w.poll() is None
    request_control(db, rec.run_id, "cancel")
    with w:
        deadline = time.monotonic() + 5
        while len(eng.calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert eng.calls == ["resume", "abort: cancelled from the dashboard"]
    assert [r.action for r in applied] == ["resume", "cancel"]
    with pytest.raises(ControlError):
        request_control(db, rec.run_id, "explode")
    rec.close()


def test_campaigns_say_none_before_any_and_list_the_queue_with_them(db):
    c = TestClient(create_app(db))
    assert c.get("/api/campaigns").json() == {"available": True, "campaigns": [], "queue": []}
    rec, _, _ = _run(db, 10)
    now = time.time()
    with db.transaction(write=True) as conn:
        conn.execute(
            sa.text(
                "INSERT INTO campaigns VALUES (1, 'night-42', 'x', 'abc', NULL, :now, 600)",
            ),
            {"now": now},
        )
        for i, (state, run_id) in enumerate([("running", rec.run_id), ("waiting", None), ("done", None)]):
            conn.execute(
                sa.text(
                    "INSERT INTO planned_runs (id, campaign_id, key, spec, station, channel, state, run_id, "
                    "start_ok, after, created_unix) VALUES (:i, 1, :k, '{}', 'rig-A', :ch, :s, :r, 1, '[]', :now)"
                ),
                {"i": i + 1, "k": f"job-{i}", "ch": f"ch{i}", "s": state, "r": run_id, "now": now},
            )
    d = c.get("/api/campaigns").json()
    assert d["available"] and d["campaigns"][0]["name"] == "night-42"
    assert d["campaigns"][0]["states"] == {"running": 1, "waiting": 1, "done": 1}
    assert [q["key"] for q in d["queue"]] == ["job-0", "job-1"] and d["queue"][0]["campaign"] == "night-42"
    # a control request also lands in the planned run's control column
    request_control(db, rec.run_id, "pause")
    with db.transaction() as conn:
        assert conn.execute(sa.text("SELECT control FROM planned_runs WHERE id = 1")).scalar() == "pause"
    assert c.get("/api/campaigns").json()["queue"][0]["control"] == "pause"
    rec.close()


def test_pages_and_static_files_carry_no_secret_and_load_only_local_scripts(db):
    _run(db, 10)[0].close()
    c = TestClient(create_app(db, token=TOKEN))
    for path in ("/", "/runs/1", "/campaigns", "/static/run.js", "/static/common.js", "/api/grid", "/api/runs/1"):
        r = c.get(path)
        assert r.status_code == 200 and TOKEN not in r.text
        assert "script-src 'self'" in r.headers["content-security-policy"]
    page = c.get("/runs/1").text
    assert "http://" not in page and "https://" not in page  # no CDN
    assert c.get("/static/vendor/uplot/uPlot.iife.min.js").status_code == 200
    assert "MIT" in c.get("/static/vendor/uplot/LICENSE").text


@pytest.mark.postgres
def test_grid_trace_and_control_on_postgresql(pg_url):
    db = Database(pg_url)
    try:
        rec, _, _ = _run(db, 50_000, spike_at=31_000)
        c = TestClient(create_app(db, token=TOKEN))
        g = c.get("/api/grid").json()["channels"]
        assert g[0]["run_id"] == rec.run_id and g[0]["n_samples"] == 50_000
        tr = c.get(f"/api/runs/{rec.run_id}/trace?bins=500").json()
        assert tr["envelope"] and max(tr["voltage"]) == pytest.approx(2.4)
        assert c.post(f"/api/runs/{rec.run_id}/control", json={"action": "pause"}).status_code == 401
        r = c.post(f"/api/runs/{rec.run_id}/control", json={"action": "pause"}, headers={"X-Labctl-Token": TOKEN})
        assert r.status_code == 200 and pending_control(db, rec.run_id).action == "pause"
        assert c.get("/api/campaigns").json() == {"available": True, "campaigns": [], "queue": []}
        rec.close()
    finally:
        db.close()


@pytest.mark.postgres
def test_stored_and_rebuilt_envelope_on_postgresql(pg_url, monkeypatch):
    from labctl.db.schema import trace_buckets

    db = Database(pg_url)
    try:
        rec, _, v = _run(db, 50_000, spike_at=31_000, dip_at=49_999)
        stored = voltage_trace(db, rec.run_id, bins=20)
        lo, hi = _envelope(v, 4096)
        assert stored.bucket == 4096 and stored.voltage[0::2] == lo and stored.voltage[1::2] == hi
        assert max(stored.voltage) == 2.4 and min(stored.voltage) == -1.3
        with db.transaction(write=True) as conn:
            conn.execute(trace_buckets.delete())
        assert voltage_trace(db, rec.run_id, bins=20) == stored  # rebuilt from the samples
        _no_scan(monkeypatch)
        assert voltage_trace(db, rec.run_id, bins=20) == stored  # and kept
        rec.close()
    finally:
        db.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_labctl_serve_runs_on_loopback_with_the_config_token(tmp_path):
    import httpx

    url = f"sqlite:///{tmp_path / 'serve.sqlite'}"
    d = Database(url)
    rec, _, _ = _run(d, 10)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"dashboard:\n  token: {TOKEN}\n")
    port = _free_port()
    exe = Path(sys.executable).with_name("labctl")
    env = {**os.environ, "LABCTL_CONFIG": ""}
    p = subprocess.Popen(
        [str(exe), "serve", "--db", url, "--port", str(port), "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(base + "/api/health", timeout=1)
                break
            except httpx.HTTPError:
                assert p.poll() is None, p.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert r.json()["status"] == "ok"
        u = f"{base}/api/runs/{rec.run_id}/control"
        assert httpx.post(u, json={"action": "pause"}, headers={"X-Labctl-Token": "nope"}).status_code == 403
        assert httpx.post(u, json={"action": "pause"}, headers={"X-Labctl-Token": TOKEN}).status_code == 200
    finally:
        p.terminate()
        _out, err = p.communicate(timeout=10)
    assert "127.0.0.1" in err and "enabled" in err and TOKEN not in err
    rec.close()
    d.close()


def test_labctl_serve_user_errors_exit_2(tmp_path):
    from typer.testing import CliRunner

    from labctl.cli.application import app

    r = CliRunner().invoke(app, ["serve", "--config", str(tmp_path / "missing.yaml")])
    assert r.exit_code == 2 and "no such config file" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("dashboard:\n  port: 99999\n")
    r = CliRunner().invoke(app, ["serve", "--config", str(bad)])
    assert r.exit_code == 2 and "bad.yaml:2" in r.output and "port" in r.output


def test_pause_and_resume_reach_a_real_run_through_the_database(tmp_path):
    """The whole path: the API writes the request, run_protocol's watcher pauses the engine at the
    next step boundary (cell off), then resumes it; the run completes."""
    import threading

    from labctl.app.controller import SimSettings, run_protocol
    from labctl.core.clock import ScaledClock

    proto = tmp_path / "steps.yaml"
    proto.write_text(
        "name: pause-test\n"
        "cell: {kind: symmetric, working: Br-Mg, counter: Br-Mg, area: 1 cm2}\n"
        "safety: {voltage: [-2.5 V, 2.5 V], current: 20 mA}\n"
        "steps:\n" + "".join("  - rest: {duration: 10 s, record_every: 1 s}\n" for _ in range(6))
    )
    d = Database(f"sqlite:///{tmp_path / 'p.sqlite'}")
    started: list[int] = []
    out: list = []
    th = threading.Thread(
        target=lambda: out.append(
            run_protocol(
                str(proto), db=d, sim=SimSettings("br-mg", 1), clock=ScaledClock(20.0), on_start=started.append
            )
        ),
        daemon=True,
    )
    th.start()
    deadline = time.monotonic() + 20
    while not started and time.monotonic() < deadline:
        time.sleep(0.02)
    run_id = started[0]
    c = TestClient(create_app(d, token=TOKEN, warm=False))
    h = {"X-Labctl-Token": TOKEN}
    assert c.post(f"/api/runs/{run_id}/control", json={"action": "pause"}, headers=h).status_code == 200

    def kinds() -> list[str]:
        return [e["kind"] for e in d.events(run_id)]

    deadline = time.monotonic() + 10
    while "pause" not in kinds() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "pause" in kinds() and "control_applied" in kinds()
    n_paused = d.n_samples(run_id)
    time.sleep(1.5)  # 30 s of test time would have passed: nothing is recorded while paused
    assert d.n_samples(run_id) == n_paused and d.run(run_id)["status"] == "running"
    assert c.post(f"/api/runs/{run_id}/control", json={"action": "resume"}, headers=h).status_code == 200
    th.join(30)
    assert out and out[0].status == "completed"
    assert d.n_samples(run_id) > n_paused
    d.close()


def test_no_page_of_the_app_loads_anything_from_another_host(db):
    c = TestClient(create_app(db, warm=False))
    assert c.get("/api/docs").status_code == 404  # Swagger UI would come from a CDN
    for path in ("/", "/runs/1", "/campaigns"):
        html = c.get(path).text
        assert "//" not in html.replace("<!doctype html>", ""), path
