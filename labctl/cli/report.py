"""``labctl report`` and ``labctl compare``: the CLI side of :mod:`labctl.reports`.

``register(app)`` adds both commands to a Typer app.  A missing run, a bad
``--cycles`` list or an unreachable database prints one message on stderr and exits
with code 2.  Output on stdout: the path of index.html, or with ``--json`` the list
of files written.  matplotlib is imported when a report is drawn, not before.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from labctl.cli.common import RUN_ID_MAX, fail, get_run, open_db, print_json, user_errors


def parse_cycles(text: str | None) -> list[int] | None:
    """``"1,2,3"`` or ranges ``"1-3,98-100"`` -> sorted cycle numbers (>= 1); ValueError when malformed."""
    if text is None or not text.strip():
        return None
    cycles: set[int] = set()
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
        cycles.update(range(a, b + 1))
    return sorted(cycles) or None


def _cycles_option(text: str | None) -> list[int] | None:
    try:
        return parse_cycles(text)
    except ValueError as e:
        fail(f"--cycles: {e}")


def _emit(report: Any, as_json: bool) -> None:
    if as_json:
        print_json([str(p) for p in report.files])
    else:
        typer.echo(str(report.index))
    for note in report.notes:
        typer.echo(f"note: {note}", err=True)


@user_errors
def report(
    run_id: int = typer.Argument(..., min=1, max=RUN_ID_MAX, help="Run id."),
    out: Path = typer.Option(..., "--out", help="Output directory (created; index.html and PNG plots)."),
    cycles: str | None = typer.Option(
        None,
        "--cycles",
        help="Cycles to enlarge under the voltage-time plot, e.g. 1,2,3 or "
        "1-3,98-100 (default: cycles 1-3 and the last 3).",
    ),
    db: str | None = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL."),
    as_json: bool = typer.Option(False, "--json", help="Print the list of files written as JSON."),
) -> None:
    """Write a run's report: plots (PNG) and index.html with its summary and results."""
    from labctl.reports import build_report

    zoom = _cycles_option(cycles)
    database = open_db(db)
    get_run(database, run_id)
    try:
        written = build_report(database, run_id, out, zoom_cycles=zoom)
    except OSError as e:
        fail(f"cannot write the report to {out}: {e}")
    _emit(written, as_json)


@user_errors
def compare(
    run_ids: list[int] = typer.Argument(..., min=1, max=RUN_ID_MAX, help="Run ids to overlay (two or more)."),
    out: Path = typer.Option(..., "--out", help="Output directory (created; index.html and PNG plots)."),
    label: list[str] = typer.Option(
        [], "--label", help="Label of each run, in order (repeat; default: preset / cell)."
    ),
    cycles: str | None = typer.Option(None, "--cycles", help="Cycles of the overlaid voltage profiles (default 1-3)."),
    db: str | None = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL."),
    as_json: bool = typer.Option(False, "--json", help="Print the list of files written as JSON."),
) -> None:
    """Overlay runs like the panels of a paper figure (voltage, Nyquist, CE, hysteresis...)."""
    from labctl.reports import build_comparison

    if label and len(label) != len(run_ids):
        fail(f"{len(label)} --label for {len(run_ids)} runs: give one label per run, or none")
    profiles = _cycles_option(cycles)
    database = open_db(db)
    for r in run_ids:
        get_run(database, r)
    try:
        written = build_comparison(database, run_ids, out, labels=label or None, cycles=profiles)
    except OSError as e:
        fail(f"cannot write the comparison to {out}: {e}")
    _emit(written, as_json)


def register(app: typer.Typer) -> None:
    """Add ``report`` and ``compare`` to ``app``."""
    app.command()(report)
    app.command()(compare)
