"""``labctl demo``: the study's campaign on simulated instruments, analysed and reported.

Both anodes (bare Mg, Br-Mg), three replicate cells each, every experiment of the
paper's table; each run is recorded, analysed (results stored) and the table of
paper value vs labctl mean +- sd is printed.  What ``make demo`` runs.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from labctl.studies.mg_anode import LIBRARY_DIR as LIBRARY
from labctl.studies.mg_anode.paper import ANODES, QUANTITIES, Quantity

__all__ = [
    "ANODES",
    "QUANTITIES",
    "DemoOutcome",
    "Quantity",
    "build_table",
    "format_sd",
    "plan_demo",
    "quantity_values",
    "run_demo",
]


def quantity_values(q: Quantity, results: list[dict]) -> float:
    """The value of quantity ``q`` among a run's stored results (NaN when absent)."""
    rows = [r for r in results if r["name"] == q.result and r["value"] is not None]
    if not rows:
        return math.nan
    if q.pick == "first":
        v = rows[0]["value"]
    elif q.pick == "last":
        v = rows[-1]["value"]
    elif q.pick.startswith("cycle="):
        want = int(q.pick.split("=")[1])
        hits = [r["value"] for r in rows if (r.get("data") or {}).get("cycle") == want]
        if not hits:
            return math.nan
        v = hits[-1]
    elif q.pick.startswith("per_cycle="):
        want = int(q.pick.split("=")[1])
        per = (rows[-1].get("data") or {}).get("per_cycle") or {}
        cycles = per.get("cycle") or []
        values = next((per[k] for k in per if k != "cycle"), [])
        if want not in cycles:
            return math.nan
        v = values[cycles.index(want)]
    else:
        raise ValueError(q.pick)
    return float(v) * q.scale


def build_table(runs: dict[tuple[str, str], list[int]], results: dict[int, list[dict]]) -> list[dict]:
    """One row per quantity and anode: paper, mean, sd over replicates, difference."""
    rows = []
    for q in QUANTITIES:
        for preset in ANODES:
            ids = runs.get((q.protocol, preset), [])
            vals = np.array([quantity_values(q, results.get(i, [])) for i in ids], dtype=float)
            ok = vals[np.isfinite(vals)]
            mean = float(ok.mean()) if ok.size else math.nan
            sd = float(ok.std(ddof=1)) if ok.size > 1 else math.nan
            paper = q.paper[preset]
            if q.ce:
                diff, diff_unit, within = mean - paper, "pp", abs(mean - paper) <= 0.3
            else:
                diff, diff_unit = (mean - paper) / paper * 100, "%"
                within = abs(diff) <= 10
            rows.append(
                {
                    "quantity": q.label,
                    "anode": ANODES[preset],
                    "preset": preset,
                    "unit": q.unit,
                    "paper": paper,
                    "mean": mean,
                    "sd": sd,
                    "n": int(ok.size),
                    "diff": diff,
                    "diff_unit": diff_unit,
                    "within_tolerance": bool(within) if ok.size else False,
                    "runs": ids,
                    "values": [float(v) for v in vals],
                }
            )
    return rows


@dataclass
class DemoOutcome:
    """What :func:`run_demo` did: the table, every run, the summary written to ``demo.json``."""

    table: list[dict]
    done: list[Any]  # labctl.app.campaign.RunResult, in the order of the specs
    summary: dict[str, Any]
    report_paths: list[Path]
    t_sim: float  # s: simulate, store and analyse
    t_total: float  # s: and the reports


def plan_demo(replicates: int = 3) -> list[Any]:
    """The campaign's runs (labctl.app.campaign.RunSpec): every experiment x both anodes x replicates, longest first."""
    from labctl.app.campaign import RunSpec

    protocols = sorted({q.protocol for q in QUANTITIES})
    specs = [
        RunSpec(
            str(LIBRARY / f"{p}.yaml"),
            preset,
            seed=1000 * r + k,
            replicate=r,
            channel=f"sim-{preset}-{r + 1}",
            tags=(("campaign", "demo"), ("protocol", p)),
        )
        for k, p in enumerate(protocols)
        for preset in ANODES
        for r in range(replicates)
    ]
    specs.sort(key=lambda s: -_EXPECTED_COST.get(Path(s.protocol).stem, 1.0))
    return specs


def run_demo(
    db: Any,
    out: Path,
    *,
    specs: list[Any] | None = None,
    replicates: int = 3,
    workers: int = 0,
    on_done: Callable[[Any], None] | None = None,
) -> DemoOutcome:
    """Run the campaign (``specs``, default :func:`plan_demo`) into ``db`` (a Database, a URL or None for
    the default database), analyse every run, write the reports, ``index.html`` and ``demo.json`` in ``out``."""
    from labctl.app.campaign import run_campaign
    from labctl.db import Database

    t_start = time.perf_counter()
    database = db if isinstance(db, Database) else Database(db)
    url = str(database.url)
    specs = plan_demo(replicates) if specs is None else specs
    done = run_campaign(specs, url, workers=workers or None, analyze=True, on_done=on_done)
    t_sim = time.perf_counter() - t_start
    results: dict[int, list[dict]] = {r.run_id: r.results for r in done if r.run_id is not None}
    runs: dict[tuple[str, str], list[int]] = {}
    for r in done:
        runs.setdefault((Path(r.spec.protocol).stem, r.spec.preset), []).append(r.run_id)
    table = build_table(runs, results)

    out.mkdir(parents=True, exist_ok=True)
    report_paths = _reports(database, runs, out, table)
    t_total = time.perf_counter() - t_start
    n_ok = sum(r["within_tolerance"] for r in table)
    summary = {
        "rows": table,
        "runs": [
            {
                "run_id": r.run_id,
                "protocol": Path(r.spec.protocol).stem,
                "preset": r.spec.preset,
                "replicate": r.spec.replicate,
                "status": r.status,
                "end_reason": r.end_reason,
                "samples": r.n_samples,
                "wall_s": r.wall_s,
            }
            for r in done
        ],
        "db": url,
        "out": str(out.resolve()),
        "reports": [str(p) for p in report_paths],
        "timing_s": {"simulate_store_analyse": t_sim, "reports": t_total - t_sim, "total": t_total},
        "within_tolerance": n_ok,
        "quantities": len(table),
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2, default=str))
    return DemoOutcome(table, done, summary, report_paths, t_sim, t_total)


# Relative wall time of each experiment on the simulator: longest first keeps both cores busy.
_EXPECTED_COST = {
    "ce-longterm-0.5mA": 12,
    "ce-longterm-3mA": 8,
    "symmetric-0.5mA": 5,
    "full-cell-0.1C": 3,
    "eis-cycling": 2,
    "tafel": 1.5,
    "symmetric-5mA": 1,
}


def format_sd(sd: float) -> str:
    """The sd of a table row: ``-`` for a single replicate."""
    return "-" if not math.isfinite(sd) else f"{sd:.2g}"


def _table_html(table: list[dict]) -> str:
    import html

    head = "<tr><th>quantity</th><th>anode</th><th>paper</th><th>labctl mean</th><th>sd</th><th>n</th><th>diff</th><th>ok</th></tr>"
    rows = []
    for r in table:
        ok = "yes" if r["within_tolerance"] else "<b>NO</b>"
        rows.append(
            f"<tr><td>{html.escape(r['quantity'])}</td><td>{r['anode']}</td><td>{r['paper']:.4g} {r['unit']}</td>"
            f"<td>{r['mean']:.4g} {r['unit']}</td><td>{format_sd(r['sd'])}</td><td>{r['n']}</td>"
            f"<td>{r['diff']:+.2f} {r['diff_unit']}</td><td>{ok}</td></tr>"
        )
    return "<table border='1' cellpadding='4' cellspacing='0'>" + head + "".join(rows) + "</table>"


def _reports(database: Any, runs: dict[tuple[str, str], list[int]], out: Path, table: list[dict]) -> list[Path]:
    """bare Mg vs Br-Mg overlays per experiment (first replicate) and an index page."""
    from labctl.reports import compare_runs

    paths = []
    links = []
    for (proto, preset), ids in sorted(runs.items()):
        if preset != "bare-mg":
            continue
        other = runs.get((proto, "br-mg"), [])
        if not ids or not other:
            continue
        d = out / proto
        p = compare_runs(database, [ids[0], other[0]], d, labels=["bare Mg", "Br-Mg"])
        paths.append(p)
        pngs = "".join(
            f'<a href="{proto}/{Path(p).name}"><img src="{proto}/{png.name}" width="420" alt="{proto} {png.stem}"></a>'
            for png in sorted(d.glob("*.png"))[:3]
        )
        links.append(
            f'<li><a href="{proto}/{Path(p).name}">{proto}</a>: bare Mg (run {ids[0]}) vs Br-Mg '
            f"(run {other[0]})<br>{pngs}</li>"
        )
    (out / "index.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>labctl demo</title></head><body>"
        "<h1>labctl demo: bare Mg vs Br-Mg on simulated instruments</h1>"
        "<p>Paper value vs labctl (mean and sd over replicate cells); tolerance 10 %, CE 0.3 percentage points. "
        "Machine-readable: <a href='demo.json'>demo.json</a></p>"
        + _table_html(table)
        + "<h2>bare Mg vs Br-Mg, per experiment</h2><ul>"
        + "\n".join(links)
        + "</ul></body></html>"
    )
    return paths
