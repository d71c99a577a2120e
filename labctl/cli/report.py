"""``labctl report`` and ``labctl compare``: the CLI side of :mod:`labctl.reports`.

``register(app)`` adds both commands to labctl's Typer app.  A missing run, a bad
``--cycles`` list or an unreachable database prints one message on stderr and exits
with code 2.  Output on stdout: the path of index.html, or with ``--json`` the list
of files written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

import typer

EXIT_USER = 2


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USER)


def parse_cycles(text: str | None) -> list[int] | None:
    """``"1,2,3"`` or ranges ``"1-3,98-100"`` -> sorted cycle numbers (>= 1); ValueError when malformed."""
    if text is None or not text.strip():
        return None
    out: set[int] = set()
    for tok in (t.strip() for t in text.split(",")):
        if not tok:
            continue
        m = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", tok)
        if m is None:
            raise ValueError(f"{tok!r} is not a cycle number or a range like 98-100")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else a
        if a < 1 or b < a:
            raise ValueError(f"{tok!r}: cycles count from 1 and a range goes up (e.g. 98-100)")
        if b - a > 100_000:
            raise ValueError(f"{tok!r}: range too long")
        out.update(range(a, b + 1))
    return sorted(out) or None


def _open_db(url: str | None) -> Any:
    from labctl.db import Database

    try:
        return Database(url)
    except Exception as e:  # noqa: BLE001 - a bad URL or an unreachable server is the user's to fix
        _fail(f"cannot open database {url or '(default)'}: {e}\n  hint: check --db / LABCTL_DB")


def _require_run(database: Any, run_id: int) -> None:
    try:
        database.run(run_id)
    except KeyError:
        _fail(f"no run {run_id} in {database.url}; `labctl runs` lists them")


def _emit(report: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([str(p) for p in report.files], indent=2))
    else:
        typer.echo(str(report.index))
    for note in report.notes:
        typer.echo(f"note: {note}", err=True)


def register(app: typer.Typer) -> None:
    """Add ``report`` and ``compare`` to ``app``."""

    @app.command("report")
    def report_cmd(
        run_id: int = typer.Argument(..., help="Run id."),
        out: Path = typer.Option(..., "--out", help="Output directory (created; index.html and PNG plots)."),
        cycles: Optional[str] = typer.Option(None, "--cycles",
                                             help="Cycles to enlarge under the voltage-time plot, e.g. 1,2,3 or "
                                                  "1-3,98-100 (default: cycles 1-3 and the last 3)."),
        db: Optional[str] = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL."),
        as_json: bool = typer.Option(False, "--json", help="Print the list of files written as JSON."),
    ) -> None:
        """Write a run's report: plots (PNG) and index.html with its summary and results."""
        from labctl.reports import build_report

        try:
            zoom = parse_cycles(cycles)
        except ValueError as e:
            _fail(f"--cycles: {e}")
        database = _open_db(db)
        _require_run(database, run_id)
        try:
            report = build_report(database, run_id, out, zoom_cycles=zoom)
        except OSError as e:
            _fail(f"cannot write the report to {out}: {e}")
        _emit(report, as_json)

    @app.command("compare")
    def compare_cmd(
        run_ids: list[int] = typer.Argument(..., help="Run ids to overlay (two or more)."),
        out: Path = typer.Option(..., "--out", help="Output directory (created; index.html and PNG plots)."),
        label: list[str] = typer.Option([], "--label", help="Label of each run, in order (repeat; default: preset / cell)."),
        cycles: Optional[str] = typer.Option(None, "--cycles", help="Cycles of the overlaid voltage profiles (default 1-3)."),
        db: Optional[str] = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL."),
        as_json: bool = typer.Option(False, "--json", help="Print the list of files written as JSON."),
    ) -> None:
        """Overlay runs like the panels of a paper figure (voltage, Nyquist, CE, hysteresis...)."""
        from labctl.reports import build_comparison

        if label and len(label) != len(run_ids):
            _fail(f"{len(label)} --label for {len(run_ids)} runs: give one label per run, or none")
        try:
            prof = parse_cycles(cycles)
        except ValueError as e:
            _fail(f"--cycles: {e}")
        database = _open_db(db)
        for r in run_ids:
            _require_run(database, r)
        try:
            report = build_comparison(database, run_ids, out, labels=label or None, cycles=prof)
        except OSError as e:
            _fail(f"cannot write the comparison to {out}: {e}")
        _emit(report, as_json)
