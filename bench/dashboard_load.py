"""The dashboard's run page for the 1,610 h Br-Mg symmetric run recorded every 1 s (~5.8 M samples):
time to first plot in headless chromium, and the API's decimated trace alone.

    python bench/dashboard_load.py [--keep]

The run is simulated once (`symmetric-0.5mA` with every step recording every 1 s, as in
bench/symmetric_1s.py) into out/bench/dashboard-5.8M.sqlite (kept with --keep and reused).
The run writer stores the run's voltage envelope (a row per 1,024 samples, table
trace_buckets) as it commits the samples.  Then, against a server on 127.0.0.1 (uvicorn in a
thread):

* page: navigation start -> the voltage plot drawn (uPlot): cold (a fresh app: nothing cached,
  the page reads the stored envelope), reload (the same app again), and on an app as `labctl
  serve` starts it (measured after its start-up warm-up);
* API: GET /api/runs/{id}/trace?bins=1300 alone, cold and warm;
* a run recorded before the envelope was stored (its trace_buckets rows deleted): the page's
  first plot, which computes the envelope from every sample and stores it, then the API again.

Floor, measured in the same run: one raw SQLite `SELECT min(voltage), max(voltage)` over the
run's whole key range, the least work an envelope computed from the samples needs (every
voltage read once).  Target: time to first plot under 1 s (cold), cold API trace <= 2x the floor.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DB_PATH = ROOT / "out" / "bench" / "dashboard-5.8M.sqlite"


def make_run(path: Path) -> int:
    """The 1 s symmetric run in ``path`` (simulated in a child process); its run id."""
    from labctl.db import Database, envelope

    if path.exists():
        db = Database(f"sqlite:///{path}")
        try:
            runs = [r for r in db.runs() if r["n_samples"] > 5_000_000 and r["status"] != "running"]
            if runs:
                run_id = int(runs[0]["id"])
                with db.transaction() as conn:
                    stored = envelope.read(conn, run_id, int(runs[0]["n_samples"]))
                if stored is None:  # a file kept by an older labctl
                    with db.transaction(write=True) as conn:
                        envelope.rebuild(conn, run_id)
                return run_id
        finally:
            db.close()
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "symmetric_1s.py"), "--child", f"sqlite:///{path}"],
        capture_output=True,
        text=True,
        check=True,
    )
    res = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"simulated {res['samples']:,} samples in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return int(res["run_id"])


def floor_scan(path: Path, run_id: int) -> float:
    con = sqlite3.connect(path)
    n = con.execute("SELECT n_samples FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
    base = run_id << 40
    t0 = time.perf_counter()
    con.execute(
        "SELECT min(voltage), max(voltage) FROM samples WHERE id BETWEEN ? AND ?", (base, base + n - 1)
    ).fetchone()
    dt = time.perf_counter() - t0
    con.close()
    return dt


def page_load(browser, url: str) -> tuple[float, int]:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url, wait_until="commit")
    page.wait_for_selector("body[data-plotted]", timeout=60_000)
    ms = page.evaluate("() => window.labFirstPlotMs")  # performance.now() at the first draw: since navigation start
    n = int(page.get_attribute("body", "data-plotted"))
    page.close()
    return ms / 1000.0, n


def main() -> None:
    import httpx

    from labctl.db import Database
    from labctl.db.schema import trace_buckets
    from labctl.web import create_app
    from tests.web_support import browser, serve

    keep = "--keep" in sys.argv
    run_id = make_run(DB_PATH)
    floor = min(floor_scan(DB_PATH, run_id) for _ in range(3))
    db = Database(f"sqlite:///{DB_PATH}")
    n = db.n_samples(run_id)
    results = {}
    with browser() as b:
        with serve(create_app(db, warm=False)) as base:  # nothing cached: the stored envelope is read
            warm_browser = b.new_page()  # a browser already running (its first page pays its own start)
            warm_browser.goto(f"{base}/campaigns")
            warm_browser.close()
            results["page_cold"] = page_load(b, f"{base}/runs/{run_id}")[0]
            results["page_reload"] = page_load(b, f"{base}/runs/{run_id}")[0]
        app = create_app(db)  # as `labctl serve` starts: the latest run of each channel scanned at once
        t0 = time.perf_counter()
        app.state.warmed.wait(120)
        results["warm_up"] = time.perf_counter() - t0
        with serve(app) as base:
            results["page_warm"] = page_load(b, f"{base}/runs/{run_id}")[0]
        with serve(create_app(db, warm=False)) as base:  # the API alone
            for phase in ("cold", "warm"):
                t0 = time.perf_counter()
                r = httpx.get(f"{base}/api/runs/{run_id}/trace?bins=1300", timeout=60)
                results[f"api_{phase}"] = time.perf_counter() - t0
                tr = r.json()
        with db.transaction(write=True) as conn:  # as if recorded before migration 0006
            conn.execute(trace_buckets.delete().where(trace_buckets.c.run_id == run_id))
        with serve(create_app(db, warm=False)) as base:
            results["page_legacy"] = page_load(b, f"{base}/runs/{run_id}")[0]  # computed and stored
            t0 = time.perf_counter()
            httpx.get(f"{base}/api/runs/{run_id}/trace?bins=1300", timeout=60)
            results["api_legacy_after"] = time.perf_counter() - t0
    db.close()
    points = len(tr["t"])
    print(f"run {run_id}: {n:,} samples; {os.cpu_count()} cores; trace {points} points, bucket {tr['bucket']}")
    print(f"floor: raw SQLite min/max over the run's key range: {floor * 1e3:.0f} ms; load average {os.getloadavg()}")
    print(f"API trace: cold {results['api_cold'] * 1e3:.0f} ms, warm {results['api_warm'] * 1e3:.0f} ms")
    print(
        f"page, time to first plot: cold {results['page_cold'] * 1e3:.0f} ms, "
        f"reload {results['page_reload'] * 1e3:.0f} ms, "
        f"after the start-up warm-up ({results['warm_up']:.1f} s) {results['page_warm'] * 1e3:.0f} ms"
    )
    print(
        f"a run recorded before the stored envelope: first plot {results['page_legacy'] * 1e3:.0f} ms "
        f"(envelope computed from the samples and stored), then API {results['api_legacy_after'] * 1e3:.0f} ms"
    )
    ratio = results["api_cold"] / floor
    print(f"ratio cold API / floor: {ratio:.2f} (target <= 2)")
    print(
        f"first plot < 1 s: cold {results['page_cold'] < 1.0}, served as labctl serve does {results['page_warm'] < 1.0}"
    )
    if not keep:
        for suffix in ("", "-wal", "-shm"):
            Path(str(DB_PATH) + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
