"""``labctl`` command line (typer + rich).  Thin: every command calls the Python API.

User mistakes (bad protocol, unknown run, missing file) print a clear message on
stderr and exit with code 2, without a traceback.  ``--json`` writes machine-readable
output on stdout; progress and messages go to stderr.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from labctl.app.controller import SimSettings, UserError
from labctl.core.formatting import fmt_duration as _fmt_duration

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Run electrochemistry protocols on instruments or simulators, store every sample in SQL.")
out = Console()
err = Console(stderr=True, soft_wrap=True)  # messages stay one line each: greppable file:line:col

EXIT_USER = 2


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the user's mistakes into a message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from labctl.core.errors import ProtocolError

        try:
            return fn(*args, **kwargs)
        except ProtocolError as e:
            err.print(str(e), markup=False, highlight=False)
            raise typer.Exit(EXIT_USER) from None
        except UserError as e:
            err.print(f"error: {e}", markup=False, highlight=False)
            raise typer.Exit(EXIT_USER) from None
        except _analysis_error() as e:
            err.print(f"error: {e}", markup=False, highlight=False)
            raise typer.Exit(EXIT_USER) from None

    return wrapper


def _analysis_error() -> type[Exception]:
    try:
        from labctl.analysis import AnalysisError

        return AnalysisError
    except ImportError:  # pragma: no cover - analysis is part of labctl
        return UserError


def _open_db(url: Optional[str]) -> Any:
    from labctl.db import Database

    try:
        return Database(url)
    except Exception as e:  # noqa: BLE001 - a bad URL or an unreachable server is the user's to fix
        raise UserError(f"cannot open database {url or '(default)'}: {e}\n  hint: check --db / LABCTL_DB") from None


def _get_run(db: Any, run_id: int) -> dict:
    try:
        return db.run(run_id)
    except KeyError:
        raise UserError(f"no run {run_id} in {db.url}; `labctl runs` lists them") from None


# --------------------------------------------------------------------------- validate / schema
@app.command()
@user_errors
def validate(files: list[Path] = typer.Argument(..., help="Protocol files to check."),
             as_json: bool = typer.Option(False, "--json", help="Print results as JSON.")) -> None:
    """Check protocol files: every error with file:line:col, field, message and a hint."""
    from labctl.protocols import load_protocol
    from labctl.core.errors import ProtocolError

    results = []
    failed = False
    for f in files:
        try:
            p = load_protocol(f)
            results.append({"file": str(f), "ok": True, "name": p.name, "steps": len(p.steps)})
            if not as_json:
                out.print(f"[green]ok[/]  {f}  ({p.name}, {len(p.steps)} top-level steps)")
        except ProtocolError as e:
            failed = True
            results.append({"file": str(f), "ok": False, "errors": [vars(i) for i in e.issues]})
            if not as_json:
                err.print(str(e), markup=False, highlight=False)
    if as_json:
        print(json.dumps(results, indent=2, default=str))
    if failed:
        raise typer.Exit(EXIT_USER)


@app.command()
def schema(preset: bool = typer.Option(False, "--preset", help="The schema of simulator preset files instead.")) -> None:
    """Print the JSON Schema of protocol files (or preset files) for editor autocompletion."""
    if preset:
        from labctl.simulators.presets import preset_json_schema

        print(json.dumps(preset_json_schema(), indent=2))
        return
    from labctl.protocols import json_schema

    print(json.dumps(json_schema(), indent=2))


# --------------------------------------------------------------------------- run
def _parse_opts(pairs: list[str]) -> dict[str, str]:
    opts = {}
    for p in pairs:
        if "=" not in p:
            raise UserError(f"--driver-opt {p!r}: expected KEY=VALUE")
        k, v = p.split("=", 1)
        opts[k.strip()] = v.strip()
    return opts


@app.command()
@user_errors
def run(
    protocol: Optional[Path] = typer.Argument(None, help="Protocol YAML file."),
    sim: bool = typer.Option(False, "--sim", help="Run on simulated instruments."),
    preset: Optional[str] = typer.Option(None, help="Simulator preset: bare-mg, br-mg, or a preset YAML file."),
    seed: Optional[int] = typer.Option(None, help="Random seed of the simulation (default 0)."),
    replicate: int = typer.Option(0, help="Replicate cell number (a different simulated cell of the same kind)."),
    speed: str = typer.Option("max", help="Simulation speed: max, or a factor of wall time (e.g. 100)."),
    db: Optional[str] = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL (default: embedded SQLite)."),
    channel: Optional[str] = typer.Option(None, help="Channel name recorded with the run."),
    from_run: Optional[int] = typer.Option(None, "--from-run", help="Re-run the exact protocol text of an earlier run."),
    driver: Optional[str] = typer.Option(None, help="Potentiostat driver name (entry point) for hardware runs."),
    driver_opt: list[str] = typer.Option([], "--driver-opt", help="Driver option KEY=VALUE (repeatable)."),
    operator: Optional[str] = typer.Option(None, help="Who runs the manual steps (recorded with dip-coat logs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Run a protocol; prints the run id, shows progress, records every sample."""
    from labctl.core.clock import WallClock, clock_for_speed
    from labctl.app.controller import build_driver_channel, build_sim_channel, run_protocol
    from labctl.protocols import load_protocol, load_protocol_text

    if sim == bool(driver):
        raise UserError("choose where to run: --sim for simulated instruments, or --driver NAME for hardware")
    if sim:
        try:
            clock = clock_for_speed(speed)
        except ValueError:
            raise UserError(f"--speed {speed!r}: use 'max' or a positive number such as 100") from None
    else:
        if speed != "max":
            raise UserError("--speed is for simulated runs; hardware runs in real time")
        clock = WallClock()
    database = None
    prior: dict = {}
    if from_run is not None:
        if protocol is not None:
            raise UserError("give either a protocol file or --from-run, not both")
        database = _open_db(db)
        prior = _get_run(database, from_run)
        proto = load_protocol_text(prior["protocol_text"], source=f"run-{from_run}:{prior.get('protocol_source') or 'protocol'}")
    elif protocol is None:
        raise UserError("missing protocol file (or --from-run RUN)")
    else:
        proto = load_protocol(protocol)
    settings = None
    if sim:
        settings = SimSettings(preset=preset or prior.get("preset") or "br-mg",
                               seed=seed if seed is not None else (prior.get("seed") or 0), replicate=replicate)
        devices = build_sim_channel(proto, clock, settings)  # validates the preset before anything is written
    else:
        devices = build_driver_channel(proto, clock, driver, _parse_opts(driver_opt))
    if database is None:
        database = _open_db(db)
    state: dict[str, Any] = {}
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    cols = [SpinnerColumn(), TextColumn("{task.description}"), TextColumn("cycle {task.fields[cycle]}"),
            TextColumn("t = {task.fields[t]}"), TextColumn("{task.fields[n]:,} samples"), TimeElapsedColumn()]
    with Progress(*cols, console=err, transient=False, disable=as_json) as bar:
        task = bar.add_task("starting", cycle=0, t="0 s", n=0)

        def on_start(run_id: int | None) -> None:
            state["run_id"] = run_id
            bar.console.print(f"run [bold]{run_id}[/] started ({proto.name}"
                              f"{', simulated, preset ' + str(settings.preset) + ', seed ' + str(settings.seed) if settings else ''})"
                              f" in {database.url}")

        def on_progress(p: Any) -> None:
            bar.update(task, description=f"step {p.step_index} {p.kind}{' ' + p.label if p.label else ''}",
                       cycle=p.cycle, t=_fmt_duration(p.t_test), n=p.n_samples)

        op = None
        if not sim:
            from labctl.app.operator import ConsoleOperator

            op = ConsoleOperator(clock, name=operator)
        elif operator:
            from labctl.app.operator import SimulatedOperator

            op = SimulatedOperator(clock, name=operator, seed=settings.seed)
        outcome = run_protocol(proto, db=database, sim=settings, devices=devices, clock=clock, operator=op,
                               channel=channel or ("sim-1" if sim else driver), on_progress=on_progress,
                               on_start=on_start, meta={"from_run": from_run} if from_run else None)
    summary = {"run_id": outcome.run_id, "status": outcome.status, "end_reason": outcome.end_reason,
               "duration_s": outcome.duration, "duration_h": outcome.duration / 3600, "samples": outcome.n_samples,
               "steps": len(outcome.steps), "db": str(database.url)}
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        colour = {"completed": "green", "aborted": "yellow"}.get(outcome.status, "red")
        out.print(f"run {outcome.run_id}: [{colour}]{outcome.status}[/] - {outcome.end_reason}; "
                  f"{_fmt_duration(outcome.duration)} of test time, {outcome.n_samples:,} samples")
    if outcome.status == "aborted":
        raise typer.Exit(130)
    if outcome.status != "completed":
        raise typer.Exit(1)


# --------------------------------------------------------------------------- runs / show
@app.command()
@user_errors
def runs(db: Optional[str] = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL."),
         limit: int = typer.Option(50, help="Newest N runs."),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """List runs, newest first."""
    rows = _open_db(db).runs(limit=limit)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    t = Table("run", "status", "protocol", "cell", "channel", "sim", "preset", "seed", "duration", "samples", "end reason")
    for r in rows:
        dur = (r["ended"] - r["started"]) if r.get("ended") and r.get("started") else None
        t.add_row(str(r["id"]), r["status"], r.get("protocol") or "", r.get("cell") or "", r.get("channel") or "",
                  "yes" if r.get("simulated") else "no", r.get("preset") or "", str(r.get("seed") if r.get("seed") is not None else ""),
                  _fmt_duration(dur), f"{r.get('n_samples') or 0:,}", (r.get("end_reason") or "")[:60])
    out.print(t)


@app.command()
@user_errors
def show(run_id: int = typer.Argument(..., help="Run id."),
         db: Optional[str] = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL."),
         steps: int = typer.Option(20, help="How many steps to list (first and last half)."),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """Show a run: status, cell, protocol, steps with end reasons, events, results."""
    database = _open_db(db)
    r = _get_run(database, run_id)
    st = database.steps(run_id)
    ev = database.events(run_id)
    n = database.n_samples(run_id)
    res = database.results(run_id)
    coat = database.coatings(r["cell"]) if r.get("cell") else []
    if as_json:
        print(json.dumps({"run": r, "steps": st, "events": ev, "n_samples": n, "results": res, "coatings": coat},
                         indent=2, default=str))
        return
    out.print(f"[bold]run {run_id}[/]: {r['status']} - {r.get('end_reason') or ''}")
    out.print(f"protocol {r.get('protocol') or ''} ({(r.get('protocol_hash') or '')[:12]}), cell {r.get('cell') or '-'}, "
              f"channel {r.get('channel')}, {'simulated (preset ' + str(r.get('preset')) + ', seed ' + str(r.get('seed')) + ')' if r.get('simulated') else 'hardware'}")
    dur = (r["ended"] - r["started"]) if r.get("ended") and r.get("started") else None
    out.print(f"{len(st)} steps, {n:,} samples, {_fmt_duration(dur)}")
    for c in coat:
        out.print(f"coating: {c.get('concentration')} {c.get('solution')}, immersion "
                  f"{((c.get('immersion_end') or 0) - (c.get('immersion_start') or 0)) / 60:.1f} min "
                  f"(run {c.get('run_id')}, operator {c.get('operator')}, {len(c.get('deviations') or [])} deviations)")
    t = Table("step", "path", "kind", "label", "cycle", "start", "end", "samples", "charge / mAh", "end reason")
    shown = st if len(st) <= steps else st[: steps // 2] + [None] + st[-(steps - steps // 2):]
    for s in shown:
        if s is None:
            t.add_row("...", f"({len(st) - steps} more)", "", "", "", "", "", "", "", "")
            continue
        t.add_row(str(s["step_index"]), s.get("path") or "", s["kind"], s.get("label") or "", str(s.get("cycle")),
                  _fmt_duration(s.get("t_start")), _fmt_duration(s.get("t_end")), str(s.get("n_samples") or 0),
                  f"{(s.get('charge') or 0) / 3.6:.4g}", (s.get("end_reason") or "") + (f" ({s['end_detail']})" if s.get("end_detail") else ""))
    out.print(t)
    if ev:
        te = Table("t", "event", "message")
        for e in ev[-15:]:
            te.add_row(_fmt_duration(e["t"]), e["kind"], e["message"])
        out.print(te)
    if res:
        tr = Table("result", "value", "uncertainty", "unit", "method", "step")
        for x in res:
            tr.add_row(x["name"], "-" if x["value"] is None else f"{x['value']:.6g}", "" if x.get("uncertainty") is None else f"{x['uncertainty']:.3g}",
                       x.get("unit") or "", x.get("method") or "", "" if x.get("step_index") is None else str(x["step_index"]))
        out.print(tr)


# --------------------------------------------------------------------------- export
@app.command()
@user_errors
def export(run_id: int = typer.Argument(..., help="Run id."),
           fmt: str = typer.Option("csv", "--format", help="csv or parquet."),
           out_file: Path = typer.Option(..., "--out", help="Output file."),
           db: Optional[str] = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL."),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Export a run's samples with Battery Data Format column names (streamed)."""
    from labctl.app.export import export_run

    if fmt not in ("csv", "parquet"):
        raise UserError(f"--format {fmt!r}: use csv or parquet")
    if not out_file.parent.is_dir():
        raise UserError(f"--out {out_file}: folder {out_file.parent} does not exist (hint: create it first)")
    database = _open_db(db)
    _get_run(database, run_id)
    try:
        with err.status(f"exporting run {run_id} to {out_file} ..."):
            n = export_run(database, run_id, out_file, fmt)
    except OSError as e:
        raise UserError(f"--out {out_file}: cannot write ({e.strerror or e}); nothing was written") from None
    if as_json:
        print(json.dumps({"run_id": run_id, "file": str(out_file), "format": fmt, "rows": n}))
    else:
        out.print(f"wrote {n:,} rows of run {run_id} to {out_file}")


@app.command()
@user_errors
def analyze(run_id: int = typer.Argument(..., help="Run id."),
            db: Optional[str] = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL."),
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Compute what fits the run's steps (Tafel, EIS, Arrhenius, CE, hysteresis...) and store the results."""
    from labctl.app.results import analyze_and_store

    database = _open_db(db)
    _get_run(database, run_id)
    with err.status(f"analysing run {run_id} ..."):
        rows = analyze_and_store(database, run_id)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    t = Table("result", "value", "uncertainty", "unit", "method", "step")
    for x in rows:
        value = "-" if x["value"] is None else f"{x['value']:.6g}"
        if x["name"] == "analysis_error":
            value = str((x.get("data") or {}).get("error", ""))[:60]
        t.add_row(x["name"], value, "" if x.get("uncertainty") is None else f"{x['uncertainty']:.3g}",
                  x.get("unit") or "", x.get("method") or "", "" if x.get("step_index") is None else str(x["step_index"]))
    out.print(t)
    out.print(f"{len(rows)} results stored for run {run_id}")


def _register_commands() -> None:
    """Commands that live with their packages: fit-eis/fit-tafel, report/compare, demo."""
    from labctl.cli import analysis as analysis_cli
    from labctl.cli import report as report_cli
    from labctl.studies.mg_anode import demo

    for m in (analysis_cli, report_cli, demo):
        m.register(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
