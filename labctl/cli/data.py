"""``labctl runs``, ``labctl show`` and ``labctl export``: what the database holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from labctl.cli.common import (
    COUNT_MAX,
    RUN_ID_MAX,
    err,
    fail,
    fmt_duration,
    get_run,
    open_db,
    out,
    print_json,
    user_errors,
)


def _duration(r: dict[str, Any]) -> float | None:
    return (r["ended"] - r["started"]) if r.get("ended") and r.get("started") else None


@user_errors
def runs(
    db: str | None = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL."),
    limit: int = typer.Option(50, min=1, max=COUNT_MAX, help="Newest N runs."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List runs, newest first."""
    from rich.table import Table

    rows = open_db(db).runs(limit=limit)
    if as_json:
        print_json(rows)
        return
    t = Table(
        "run", "status", "protocol", "cell", "channel", "sim", "preset", "seed", "duration", "samples", "end reason"
    )
    for r in rows:
        t.add_row(
            str(r["id"]),
            r["status"],
            r.get("protocol") or "",
            r.get("cell") or "",
            r.get("channel") or "",
            "yes" if r.get("simulated") else "no",
            r.get("preset") or "",
            str(r.get("seed") if r.get("seed") is not None else ""),
            fmt_duration(_duration(r)),
            f"{r.get('n_samples') or 0:,}",
            (r.get("end_reason") or "")[:60],
        )
    out.print(t)


@user_errors
def show(
    run_id: int = typer.Argument(..., min=1, max=RUN_ID_MAX, help="Run id."),
    db: str | None = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL."),
    steps: int = typer.Option(20, min=0, max=COUNT_MAX, help="How many steps to list (first and last half)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show a run: status, cell, protocol, steps with end reasons, events, results."""
    from rich.table import Table

    database = open_db(db)
    r = get_run(database, run_id)
    st = database.steps(run_id)
    ev = database.events(run_id)
    n = database.n_samples(run_id)
    res = database.results(run_id)
    coat = database.coatings(r["cell"]) if r.get("cell") else []
    if as_json:
        print_json({"run": r, "steps": st, "events": ev, "n_samples": n, "results": res, "coatings": coat})
        return
    out.print(f"[bold]run {run_id}[/]: {r['status']} - {r.get('end_reason') or ''}")
    where = f"simulated (preset {r.get('preset')}, seed {r.get('seed')})" if r.get("simulated") else "hardware"
    out.print(
        f"protocol {r.get('protocol') or ''} ({(r.get('protocol_hash') or '')[:12]}), cell {r.get('cell') or '-'}, "
        f"channel {r.get('channel')}, {where}"
    )
    out.print(f"{len(st)} steps, {n:,} samples, {fmt_duration(_duration(r))}")
    meta = r.get("meta") or {}
    if meta.get("instruments"):
        out.print(f"station {meta.get('station')}, channel {meta.get('channel')}:")
        for role, info in meta["instruments"].items():
            out.print(f"  {role}: {info.get('name')} ({info.get('driver')}) - {info.get('identity')}", markup=False)
    for c in coat:
        minutes = ((c.get("immersion_end") or 0) - (c.get("immersion_start") or 0)) / 60
        out.print(
            f"coating: {c.get('concentration')} {c.get('solution')}, immersion {minutes:.1f} min "
            f"(run {c.get('run_id')}, operator {c.get('operator')}, {len(c.get('deviations') or [])} deviations)"
        )
    t = Table("step", "path", "kind", "label", "cycle", "start", "end", "samples", "charge / mAh", "end reason")
    shown = st if len(st) <= steps else [*st[: steps // 2], None, *st[-(steps - steps // 2) :]]
    for s in shown:
        if s is None:
            t.add_row("...", f"({len(st) - steps} more)", "", "", "", "", "", "", "", "")
            continue
        reason = (s.get("end_reason") or "") + (f" ({s['end_detail']})" if s.get("end_detail") else "")
        t.add_row(
            str(s["step_index"]),
            s.get("path") or "",
            s["kind"],
            s.get("label") or "",
            str(s.get("cycle")),
            fmt_duration(s.get("t_start")),
            fmt_duration(s.get("t_end")),
            str(s.get("n_samples") or 0),
            f"{(s.get('charge') or 0) / 3.6:.4g}",
            reason,
        )
    out.print(t)
    if ev:
        te = Table("t", "event", "message")
        for e in ev[-15:]:
            te.add_row(fmt_duration(e["t"]), e["kind"], e["message"])
        out.print(te)
    if res:
        tr = Table("result", "value", "uncertainty", "unit", "method", "step")
        for x in res:
            tr.add_row(
                x["name"],
                "-" if x["value"] is None else f"{x['value']:.6g}",
                "" if x.get("uncertainty") is None else f"{x['uncertainty']:.3g}",
                x.get("unit") or "",
                x.get("method") or "",
                "" if x.get("step_index") is None else str(x["step_index"]),
            )
        out.print(tr)


@user_errors
def export(
    run_id: int = typer.Argument(..., min=1, max=RUN_ID_MAX, help="Run id."),
    fmt: str = typer.Option("csv", "--format", help="csv or parquet."),
    out_file: Path = typer.Option(..., "--out", help="Output file."),
    db: str | None = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Export a run's samples with Battery Data Format column names (streamed)."""
    from labctl.app.export import export_run

    if fmt not in ("csv", "parquet"):
        fail(f"--format {fmt!r}: use csv or parquet")
    if not out_file.parent.is_dir():
        fail(f"--out {out_file}: folder {out_file.parent} does not exist (hint: create it first)")
    database = open_db(db)
    get_run(database, run_id)
    try:
        with err.status(f"exporting run {run_id} to {out_file} ..."):
            n = export_run(database, run_id, out_file, fmt)
    except OSError as e:
        fail(f"--out {out_file}: cannot write ({e.strerror or e}); nothing was written")
    if as_json:
        print_json({"run_id": run_id, "file": str(out_file), "format": fmt, "rows": n}, indent=None)
    else:
        out.print(f"wrote {n:,} rows of run {run_id} to {out_file}")


def register(app: typer.Typer) -> None:
    """Add ``runs``, ``show`` and ``export`` to ``app``."""
    app.command()(runs)
    app.command()(show)
    app.command()(export)
