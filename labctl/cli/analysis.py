"""CLI commands for fitting files measured elsewhere: ``fit-eis`` and ``fit-tafel``.

``register(app)`` adds them to a Typer app (labctl's main CLI calls it).  User errors
(unreadable file, bad circuit, a fit the data cannot support) print one message on
stderr and exit with code 2, without a traceback.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from labctl.analysis._core import ANALYSIS_VERSION, AnalysisError, Result
from labctl.analysis.circuit import parse_circuit
from labctl.analysis.eis import WEIGHTINGS, fit_circuit, linkk
from labctl.analysis.io import read_eis_file, read_tafel_file
from labctl.analysis.tafel import analyze_tafel


def _fail(msg: str) -> None:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {msg}", markup=True)
    raise typer.Exit(code=2)


def _fmt(x) -> str:
    if x is None:
        return "-"
    return f"{x:.6g}"


def _show(title: str, results: list[Result], extra: list[str], as_json: bool, payload: dict) -> None:
    if as_json:
        payload = dict(payload)
        payload["analysis_version"] = ANALYSIS_VERSION
        payload["results"] = [r.to_dict() for r in results]
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table(title=title)
    for col in ("name", "value", "± 1σ", "unit", "method"):
        table.add_column(col, justify="right" if col in ("value", "± 1σ") else "left")
    for r in results:
        table.add_row(r.name, _fmt(r.value), _fmt(r.uncertainty), r.unit, r.method)
    console = Console(soft_wrap=True)
    console.print(table)
    for line in extra:
        console.print(line, markup=False, highlight=False)


def _parse_floats(text: str, what: str) -> list[float]:
    toks = [t for t in re.split(r"[,\s]+", text.strip()) if t]
    try:
        return [float(t) for t in toks]
    except ValueError:
        bad = next(t for t in toks if not _isnum(t))
        raise AnalysisError(f"{what}: {bad!r} is not a number") from None


def _isnum(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


def fit_eis_cmd(
    file: Path = typer.Argument(..., help="Text file: frequency (Hz), Z' (ohm), Z'' (ohm); or BioLogic .mpt/.mpr"),
    circuit: str = typer.Option(..., "--circuit", "-c", help="Circuit, e.g. 'R0-p(R1,CPE1)-p(R2,CPE2)'"),
    initial: Optional[str] = typer.Option(None, "--initial", "-i", help="Initial guess, comma separated, in parameter order"),
    weighting: str = typer.Option("unit", "--weighting", "-w", help=f"Residual weighting: {', '.join(WEIGHTINGS)}"),
    keep_inductive: bool = typer.Option(False, "--keep-inductive", help="Keep points with Z'' > 0"),
    constant: Optional[list[str]] = typer.Option(
        None, "--constant", help="Hold a parameter fixed, NAME=VALUE (repeatable; impedance.py names work too)"),
    strict: bool = typer.Option(False, "--strict", help="Fail (exit 2) on a systematic misfit instead of warning"),
    keep_order: bool = typer.Option(
        False, "--keep-order", help="Keep the arcs as fitted (default: same-structure arcs relabelled fastest first)"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table"),
) -> None:
    """Fit an equivalent circuit to an impedance spectrum from a file."""
    try:
        c = parse_circuit(circuit)
        constants = {}
        for item in constant or []:
            name, eq, value = item.partition("=")
            if not eq:
                raise AnalysisError(f"--constant: expected NAME=VALUE, got {item!r}")
            constants[name.strip()] = _parse_floats(value, f"--constant {name.strip()}")[0]
        p0 = _parse_floats(initial, "--initial") if initial else None
        data = read_eis_file(file, min_points=c.n_params - len(constants))
        fit = fit_circuit(data.frequency, data.z, c, p0, weighting=weighting, drop_inductive=not keep_inductive,
                          constants=constants, on_misfit="raise" if strict else "warn", sort_arcs=not keep_order)
        kk = linkk(fit.frequency, fit.z)
    except AnalysisError as exc:
        _fail(str(exc))
        return
    res = fit.results()
    extra = [
        f"{fit.stats['n_points']} points, weighting {fit.weighting}, initial guess {fit.initial_source}",
        fit.quality,
        kk.statement,
        *(f"warning: {w}" for w in fit.warnings),
        *data.notes,
    ]
    _show(f"{file.name}: {c.text}", res, extra, as_json,
          {"file": str(file), "circuit": c.text, "residual": fit.stats, "quality": fit.quality,
           "warnings": fit.warnings, "initial_guess": fit.initial_source,
           "linkk": {"passed": kk.passed, "statement": kk.statement, "rms": kk.rms}, "notes": data.notes})


def fit_tafel_cmd(
    file: Path = typer.Argument(..., help="Text file: potential (V), current (A); or BioLogic .mpt/.mpr"),
    area: float = typer.Option(1.267, "--area", help="Electrode area, cm2"),
    e_eq: Optional[float] = typer.Option(None, "--e-eq", help="Equilibrium potential, V (default: zero crossing)"),
    temperature: float = typer.Option(22.0, "--temperature", "-T", help="Temperature, degC"),
    n: int = typer.Option(2, "--n", help="Electrons transferred (2 for Mg)"),
    window: str = typer.Option("0.06", "--window", help="Tafel window |eta| in V: 'low' or 'low,high'"),
    symmetric: bool = typer.Option(False, "--symmetric", help="Fit the symmetric-cell form 2 j0 sinh(alpha n F eta/2RT)"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table"),
) -> None:
    """Exchange current density and Tafel slopes from a sweep in a file."""
    try:
        w = _parse_floats(window, "--window")
        if len(w) not in (1, 2):
            raise AnalysisError(f"--window: give 'low' or 'low,high' in V, got {window!r}")
        win = (w[0], w[1] if len(w) == 2 else None)
        data = read_tafel_file(file, min_points=5)
        res = analyze_tafel(data.potential, data.current, area_cm2=area, e_eq=e_eq, temperature_c=temperature,
                            n=n, window=win, symmetric=symmetric)
    except AnalysisError as exc:
        _fail(str(exc))
        return
    _show(f"{file.name}: Tafel analysis", res, list(data.notes), as_json, {"file": str(file), "notes": data.notes})


def register(app: typer.Typer) -> None:
    """Add ``fit-eis`` and ``fit-tafel`` to ``app``."""
    app.command("fit-eis")(fit_eis_cmd)
    app.command("fit-tafel")(fit_tafel_cmd)
