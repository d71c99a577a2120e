"""Campaigns: many runs (protocol x preset x replicate), side by side, one channel each.

On simulated instruments the runs execute in worker processes (one per core), each
with its own database connection; every run is recorded exactly as ``labctl run``
would record it.  Jobs carry only picklable values (paths, names, numbers), the
shape the scheduler needs later for overnight campaigns across lab PCs.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class RunSpec:
    protocol: str  # path to the protocol file, or a library protocol's name
    preset: str  # simulator preset: a name (labctl.simulators.presets.available_presets) or a file
    seed: int = 0
    replicate: int = 0
    channel: str = "sim-1"
    tags: tuple[tuple[str, str], ...] = field(default_factory=tuple)


@dataclass
class RunResult:
    spec: RunSpec
    run_id: int | None
    status: str
    end_reason: str
    duration_s: float
    n_samples: int
    wall_s: float
    results: list[dict] = field(default_factory=list)


def _run_one(spec: RunSpec, db_url: str, analyze: bool = False) -> RunResult:
    import time

    from labctl.db import Database
    from labctl.app.controller import SimSettings, run_protocol

    t0 = time.perf_counter()
    db = Database(db_url)
    try:
        out = run_protocol(
            spec.protocol,
            db=db,
            sim=SimSettings(spec.preset, spec.seed, spec.replicate),
            channel=spec.channel,
            meta={"campaign": dict(spec.tags)},
        )
        results = []
        if analyze and out.run_id is not None:
            from labctl.app.results import analyze_and_store

            results = analyze_and_store(db, out.run_id)
    finally:
        db.close()
    return RunResult(
        spec, out.run_id, out.status, out.end_reason, out.duration, out.n_samples, time.perf_counter() - t0, results
    )


def run_campaign(
    specs: list[RunSpec],
    db_url: str,
    *,
    workers: int | None = None,
    analyze: bool = False,
    on_done: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Run every spec (in parallel processes when ``workers`` > 1); results in the order of ``specs``.

    With ``analyze`` each run is analysed in its worker right after it ends and the results stored.
    Submit the longest runs first (the caller orders ``specs``) to keep every worker busy.
    """
    workers = workers or min(len(specs), os.cpu_count() or 1)
    results: dict[int, RunResult] = {}
    if workers <= 1:
        for k, s in enumerate(specs):
            results[k] = _run_one(s, db_url, analyze)
            if on_done:
                on_done(results[k])
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futs = {pool.submit(_run_one, s, db_url, analyze): k for k, s in enumerate(specs)}
            for f in as_completed(futs):
                r = f.result()
                results[futs[f]] = r
                if on_done:
                    on_done(r)
    return [results[k] for k in range(len(specs))]


def result_dict(r: RunResult) -> dict[str, Any]:
    d = asdict(r)
    d["spec"]["tags"] = dict(r.spec.tags)
    return d
