"""The dashboard in a real browser (Debian's headless chromium under playwright) against a server on
loopback, while 16 simulated channels record in scaled real time into the same database.

Screenshots are kept in out/test-artifacts/ (the CI keeps that folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from tests.web_support import browser, chromium_path, serve

pytest.importorskip("fastapi")
pytest.importorskip("playwright")

if chromium_path() is None:  # CI installs it (.ci/run): there a missing browser is a failure
    if os.environ.get("CI"):
        raise RuntimeError("chromium is missing: apt-get install -y chromium")
    pytest.skip("no chromium (apt-get install -y chromium)", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "web"
ARTIFACTS = ROOT / "out" / "test-artifacts"
TOKEN = "correct horse battery staple"
N_CHANNELS = 16
SPEED = 30.0  # each live channel records 30 samples per wall second


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from labctl.app.control import ControlError, request_control
    from labctl.app.controller import SimSettings, run_protocol
    from labctl.app.results import analyze_and_store
    from labctl.core.clock import ScaledClock
    from labctl.db import Database
    from labctl.web import create_app

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('web') / 'lab.sqlite'}")
    done = run_protocol(str(DATA / "finished.yaml"), db=db, sim=SimSettings("br-mg", 7), channel="bench-1")
    analyze_and_store(db, done.run_id)

    # a worker that stopped reporting (its process, this one, alive) and one that is gone
    import sqlalchemy as sa

    from labctl.db.liveness import owner_id
    from labctl.db.schema import runs

    for ch, owner in (("stuck", owner_id()), ("gone", "another-pc:4242")):
        rec = db.open_run(protocol_name="quiet", protocol_text="name: quiet", channel=ch, simulated=True)
        rec.close()
        with db.transaction(write=True) as conn:
            conn.execute(
                sa.update(runs)
                .where(runs.c.id == rec.run_id)
                .values(
                    status="running", ended_unix=None, end_reason=None, owner=owner, heartbeat_unix=time.time() - 600
                )
            )

    started: dict[str, int] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def one(k: int) -> None:
        ch = f"ch{k}"

        def on_start(run_id: int | None) -> None:
            with lock:
                started[ch] = int(run_id or 0)

        try:
            run_protocol(
                str(DATA / "live.yaml"),
                db=db,
                sim=SimSettings("br-mg", k),
                clock=ScaledClock(SPEED),
                channel=ch,
                meta={"station": "rig-A"},
                on_start=on_start,
            )
        except BaseException as e:  # reported by the test
            errors.append(e)

    threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(1, N_CHANNELS + 1)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(started) < N_CHANNELS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(started) == N_CHANNELS, errors
    app = create_app(db, token=TOKEN, poll_interval=0.25)
    with serve(app) as url, browser() as b:
        yield {"db": db, "url": url, "browser": b, "live": started, "done": done.run_id, "errors": errors}
    for run_id in started.values():  # end the live runs the way the dashboard would
        with contextlib.suppress(ControlError):  # already ended (the control test cancels one)
            request_control(db, run_id, "cancel", source="test teardown")
    for t in threads:
        t.join(20)
    db.close()
    assert not errors, errors


def _page(lab, path: str):
    page = lab["browser"].new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(lab["url"] + path)
    return page, problems


def _shown_counts(page) -> dict[str, int]:
    return page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('tr.ch')]"
        ".map(r => [r.dataset.station + '/' + r.dataset.channel, Number(r.dataset.n)]))"
    )


def test_grid_shows_every_channel_updating_within_2s_of_commit(lab):
    from labctl.app.grid import channel_grid

    page, problems = _page(lab, "/")
    page.wait_for_function(f"() => document.querySelectorAll('tr.ch[data-station=\"rig-A\"]').length === {N_CHANNELS}")
    lags = []
    previous: dict[str, int] = {}
    for _round in range(3):
        time.sleep(1.2)  # let every channel commit something new
        committed = {f"{r.station}/{r.channel}": r.n_samples for r in channel_grid(lab["db"]) if r.station == "rig-A"}
        t0 = time.monotonic()
        assert len(committed) == N_CHANNELS
        assert all(n > previous.get(k, 0) for k, n in committed.items()), "every channel records"
        while True:
            shown = _shown_counts(page)
            if all(shown.get(k, -1) >= n for k, n in committed.items()):
                break
            assert time.monotonic() - t0 < 2.0, {k: (shown.get(k), n) for k, n in committed.items()}
            time.sleep(0.05)
        lags.append(time.monotonic() - t0)
        previous = committed
    rows = page.query_selector_all("tr.ch[data-station='rig-A']")
    assert {r.get_attribute("data-status") for r in rows} == {"running"}
    assert page.get_attribute("tr.ch[data-channel=stuck]", "data-status") == "stalled"
    assert page.get_attribute("tr.ch[data-channel=gone]", "data-status") == "interrupted"
    assert "silent" in page.inner_text("tr.ch[data-channel=stuck]")
    text = page.inner_text("#grid")
    assert "dashboard-live" in text and " V" in text and "µA" in text  # 0.5 mA/cm2 x 1.267 cm2 = 633 µA
    page.screenshot(path=str(ARTIFACTS / "dashboard-grid-16-channels.png"), full_page=True)
    (ARTIFACTS / "dashboard-grid-lags.json").write_text(json.dumps({"lag_s": lags, "channels": N_CHANNELS}))
    assert max(lags) < 2.0
    assert not problems, problems


def test_live_run_page_trace_grows_without_reload(lab):
    run_id = lab["live"]["ch3"]
    page, problems = _page(lab, f"/runs/{run_id}")
    page.wait_for_selector("body[data-plotted]")
    page.wait_for_selector("#trace canvas")
    first = int(page.get_attribute("body", "data-trace-n"))
    page.evaluate("() => { window.__sameDocument = true; }")
    page.wait_for_function(f"() => Number(document.body.dataset.traceN) > {first}", timeout=8000)
    assert page.evaluate("() => window.__sameDocument === true"), "updated in place, not reloaded"
    assert "running" in page.inner_text("#title")
    page.screenshot(path=str(ARTIFACTS / "dashboard-run-live.png"), full_page=True)
    assert not problems, problems


def test_finished_run_page_plots_eis_tafel_cycles_and_tables(lab):
    page, problems = _page(lab, f"/runs/{lab['done']}")
    page.wait_for_selector("body[data-plotted]")
    for sel in ("#nyquist canvas", "#bode canvas", "#tafel canvas", "#hyst canvas"):
        page.wait_for_selector(sel, timeout=8000)
    assert "fit R0-p(R1,CPE1)-p(R2,CPE2)" in page.inner_text("#eis-note") or "fit " in page.inner_text("#eis-note")
    results = page.inner_text("#results")
    assert "Rct" in results and "j0" in results and "hysteresis" in results
    assert len(page.query_selector_all("#steps tbody tr")) >= 8
    href = page.get_attribute("#exports a", "href")
    csv = page.request.get(lab["url"] + href)
    assert csv.status == 200 and "Voltage / V" in csv.text()
    assert page.is_hidden("#control-sec"), "no control for a finished run"
    page.screenshot(path=str(ARTIFACTS / "dashboard-run-finished.png"), full_page=True)
    assert not problems, problems


def test_control_from_the_page_needs_the_token(lab):
    db = lab["db"]
    run_id = lab["live"]["ch16"]
    page, problems = _page(lab, f"/runs/{run_id}")
    page.wait_for_selector("body[data-plotted]")
    n_events = len(db.events(run_id))
    page.click("#control button[value=cancel]")  # no token
    page.wait_for_function("() => document.getElementById('control-msg').textContent.startsWith('401')")
    page.fill("#token", "wrong token")
    page.click("#control button[value=cancel]")
    page.wait_for_function("() => document.getElementById('control-msg').textContent.startsWith('403')")
    assert TOKEN not in page.content()
    time.sleep(1.0)
    assert db.run(run_id)["status"] == "running" and len(db.events(run_id)) == n_events, "nothing changed"
    page.fill("#token", TOKEN)
    page.click("#control button[value=cancel]")
    page.wait_for_function("() => document.getElementById('control-msg').textContent.includes('requested')")
    deadline = time.monotonic() + 10
    while db.run(run_id)["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert db.run(run_id)["status"] == "aborted"
    kinds = [e["kind"] for e in db.events(run_id)]
    assert "control" in kinds and "control_applied" in kinds
    page.wait_for_function("() => document.querySelector('#title .st').textContent === 'aborted'", timeout=5000)
    page.screenshot(path=str(ARTIFACTS / "dashboard-run-cancelled.png"), full_page=True)
    assert not problems, problems


def test_campaign_page_without_campaign_tables(lab):
    page, problems = _page(lab, "/campaigns")
    page.wait_for_selector("#campaigns .none")
    assert page.inner_text("#campaigns") == "no campaigns"
    page.screenshot(path=str(ARTIFACTS / "dashboard-campaigns.png"), full_page=True)
    assert not problems, problems
