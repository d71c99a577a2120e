"""Analyse a stored run and store its results (what ``labctl analyze`` does)."""

from __future__ import annotations

from typing import Any


def analyze_and_store(database: Any, run_id: int) -> list[dict]:
    """Compute what fits the run's steps and store each result (replacing an earlier analysis).

    A read-only database (an archive, ``database.read_only``) is analysed all the same; the
    results are returned and not stored.
    """
    from labctl.analysis import ANALYSIS_VERSION, analyze_run

    r = database.run(run_id)
    steps = database.steps(run_id)
    samples = database.samples(run_id)
    cell = dict((r.get("meta") or {}).get("cell") or r.get("cell_attrs") or {})
    cell.setdefault("kind", r.get("cell_kind"))
    cell.setdefault("label", r.get("cell"))
    if r.get("preset"):
        cell.setdefault("preset", r.get("preset"))
    results = analyze_run(steps, samples, cell)
    rows = []
    for res in results:
        d = res.to_dict()
        rows.append(
            {
                "name": d["name"],
                "value": d["value"],
                "unit": d.get("unit"),
                "uncertainty": d.get("uncertainty"),
                "method": d.get("method"),
                "step_index": d.get("details", {}).get("step_index"),
                "data": d.get("details", {}),
                "analysis_version": ANALYSIS_VERSION,
            }
        )
    if not getattr(database, "read_only", False):
        database.add_results(run_id, rows)
    return rows
