"""``labctl analyze`` (a stored run) and ``labctl fit-eis`` / ``labctl fit-tafel`` (files measured elsewhere).

``register(app)`` adds the three commands to a Typer app.  User errors (unreadable
file, bad circuit, a fit the data cannot support, unknown run) print one message on
stderr and exit with code 2, without a traceback.  The fitting code (numpy, scipy)
is imported when a command runs, not when ``labctl`` starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from labctl.cli.common import RUN_ID_MAX, err, get_run, open_db, out, print_error, print_json, user_errors

if TYPE_CHECKING:
    from labctl.analysis._core import Result

# labctl.analysis.eis.WEIGHTINGS, spelled out so that the help text needs no scipy
# (tests/test_cli_startup.py checks that they agree).
WEIGHTINGS = ("unit", "modulus", "proportional")


@user_errors
def analyze(
    run_id: int = typer.Argument(..., min=1, max=RUN_ID_MAX, help="Run id."),
    db: str | None = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Compute what fits the run's steps (Tafel, EIS, Arrhenius, CE, hysteresis...) and store the results.

    On a read-only database (an archive) the results are printed and not stored.
    """
    from rich.table import Table

    from labctl.app.results import analyze_and_store

    database = open_db(db)
    get_run(database, run_id)
    with err.status(f"analysing run {run_id} ..."):
        rows = analyze_and_store(database, run_id)
    if as_json:
        if database.read_only:
            print_error(f"note: results of run {run_id} not stored: the database is read-only (an archive)")
        print_json(rows)
        return
    t = Table("result", "value", "uncertainty", "unit", "method", "step")
    for x in rows:
        value = "-" if x["value"] is None else f"{x['value']:.6g}"
        if x["name"] == "analysis_error":
            value = str((x.get("data") or {}).get("error", ""))[:60]
        t.add_row(
            x["name"],
            value,
            "" if x.get("uncertainty") is None else f"{x['uncertainty']:.3g}",
            x.get("unit") or "",
            x.get("method") or "",
            "" if x.get("step_index") is None else str(x["step_index"]),
        )
    out.print(t)
    if database.read_only:
        out.print(f"{len(rows)} results for run {run_id}, not stored: the database is read-only (an archive)")
    else:
        out.print(f"{len(rows)} results stored for run {run_id}")


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.6g}"


def _show(title: str, results: list[Result], extra: list[str], as_json: bool, payload: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from labctl.analysis._core import ANALYSIS_VERSION

    if as_json:
        payload = dict(payload)
        payload["analysis_version"] = ANALYSIS_VERSION
        payload["results"] = [r.to_dict() for r in results]
        print_json(payload)
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


def parse_floats(text: str, what: str) -> list[float]:
    """``"0.1, 2e-3 5"`` -> ``[0.1, 0.002, 5.0]``; an AnalysisError naming ``what`` and the bad token."""
    from labctl.analysis._core import AnalysisError

    toks = [t for t in re.split(r"[,\s]+", text.strip()) if t]
    values = []
    for t in toks:
        try:
            values.append(float(t))
        except ValueError:
            raise AnalysisError(f"{what}: {t!r} is not a number") from None
    return values


@user_errors
def fit_eis(
    file: Path = typer.Argument(..., help="Text file: frequency (Hz), Z' (ohm), Z'' (ohm); or BioLogic .mpt/.mpr"),
    circuit: str = typer.Option(..., "--circuit", "-c", help="Circuit, e.g. 'R0-p(R1,CPE1)-p(R2,CPE2)'"),
    initial: str | None = typer.Option(
        None, "--initial", "-i", help="Initial guess, comma separated, in parameter order"
    ),
    weighting: str = typer.Option("unit", "--weighting", "-w", help=f"Residual weighting: {', '.join(WEIGHTINGS)}"),
    keep_inductive: bool = typer.Option(False, "--keep-inductive", help="Keep points with Z'' > 0"),
    constant: list[str] | None = typer.Option(
        None, "--constant", help="Hold a parameter fixed, NAME=VALUE (repeatable; impedance.py names work too)"
    ),
    strict: bool = typer.Option(False, "--strict", help="Fail (exit 2) on a systematic misfit instead of warning"),
    keep_order: bool = typer.Option(
        False, "--keep-order", help="Keep the arcs as fitted (default: same-structure arcs relabelled fastest first)"
    ),
    fmin: float | None = typer.Option(None, "--fmin", help="Lowest frequency fitted, Hz (points below are left out)"),
    fmax: float | None = typer.Option(None, "--fmax", help="Highest frequency fitted, Hz (points above are left out)"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table"),
) -> None:
    """Fit an equivalent circuit to an impedance spectrum from a file."""
    from labctl.analysis._core import AnalysisError
    from labctl.analysis.circuit import parse_circuit
    from labctl.analysis.eis import fit_circuit, linkk_verdict
    from labctl.analysis.io import read_eis_file

    c = parse_circuit(circuit)
    constants = {}
    for item in constant or []:
        name, eq, value = item.partition("=")
        if not eq:
            raise AnalysisError(f"--constant: expected NAME=VALUE, got {item!r}")
        constants[name.strip()] = parse_floats(value, f"--constant {name.strip()}")[0]
    p0 = parse_floats(initial, "--initial") if initial else None
    import numpy as np

    need = c.n_params - len(constants)
    data = read_eis_file(file, min_points=1 if (fmin is not None or fmax is not None) else need)
    if fmin is not None or fmax is not None:
        lo = -np.inf if fmin is None else float(fmin)
        hi = np.inf if fmax is None else float(fmax)
        if not lo < hi:
            raise AnalysisError(f"--fmin {fmin} must be below --fmax {fmax}")
        keep = (data.frequency >= lo) & (data.frequency <= hi)
        n_in = int(keep.sum())
        if n_in < need:
            raise AnalysisError(
                f"{file}: {n_in} points between --fmin {fmin} and --fmax {fmax} Hz; the circuit {c.text} has "
                f"{need} free parameters (the file spans {data.frequency.min():.4g} .. {data.frequency.max():.4g} Hz)"
            )
        data.notes.append(f"{n_in} of {data.frequency.size} points between {fmin} and {fmax} Hz fitted")
        data.frequency, data.z = data.frequency[keep], data.z[keep]
    fit = fit_circuit(
        data.frequency,
        data.z,
        c,
        p0,
        weighting=weighting,
        drop_inductive=not keep_inductive,
        constants=constants,
        on_misfit="raise" if strict else "warn",
        sort_arcs=not keep_order,
    )
    kk = linkk_verdict(fit.frequency, fit.z)
    extra = [
        f"{fit.stats['n_points']} points, weighting {fit.weighting}, initial guess {fit.initial_source}",
        fit.quality,
        kk.statement,
        *(f"warning: {w}" for w in fit.warnings),
        *data.notes,
    ]
    _show(
        f"{file.name}: {c.text}",
        fit.results(),
        extra,
        as_json,
        {
            "file": str(file),
            "circuit": c.text,
            "residual": fit.stats,
            "quality": fit.quality,
            "warnings": fit.warnings,
            "initial_guess": fit.initial_source,
            "linkk": {"passed": kk.passed, "statement": kk.statement, "rms": kk.rms},
            "notes": data.notes,
        },
    )


@user_errors
def fit_tafel(
    file: Path = typer.Argument(..., help="Text file: potential (V), current (A); or BioLogic .mpt/.mpr"),
    area: float | None = typer.Option(
        None, "--area", help="Electrode area, cm2 (required unless the file states it, as Gamry's AREA)"
    ),
    e_eq: float | None = typer.Option(None, "--e-eq", help="Equilibrium potential, V (default: zero crossing)"),
    temperature: float = typer.Option(22.0, "--temperature", "-T", help="Temperature, degC"),
    n: int = typer.Option(2, "--n", help="Electrons transferred (2 for Mg)"),
    window: str = typer.Option("0.06", "--window", help="Tafel window |eta| in V: 'low' or 'low,high'"),
    symmetric: bool = typer.Option(
        False, "--symmetric", help="Fit the symmetric-cell form 2 j0 sinh(alpha n F eta/2RT)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table"),
) -> None:
    """Exchange current density and Tafel slopes from a sweep in a file."""
    from labctl.analysis._core import AnalysisError
    from labctl.analysis.io import read_tafel_file
    from labctl.analysis.tafel import analyze_tafel

    w = parse_floats(window, "--window")
    if len(w) not in (1, 2):
        raise AnalysisError(f"--window: give 'low' or 'low,high' in V, got {window!r}")
    win = (w[0], w[1] if len(w) == 2 else None)
    data = read_tafel_file(file, min_points=5)
    if area is None and file.suffix.lower() == ".dta":
        from labctl.importers import read_file

        area = read_file(file).area_cm2
        if area is not None:
            data.notes.append(f"area {area} cm2 from the file (AREA)")
    if area is None:
        raise AnalysisError(
            f"{file}: fit-tafel gives current densities (j0) and the electrode area is not known: "
            "give --area CM2 (the file does not state it)"
        )
    res = analyze_tafel(
        data.potential,
        data.current,
        area_cm2=area,
        e_eq=e_eq,
        temperature_c=temperature,
        n=n,
        window=win,
        symmetric=symmetric,
    )
    _show(f"{file.name}: Tafel analysis", res, list(data.notes), as_json, {"file": str(file), "notes": data.notes})


@user_errors
def fit_corrosion(
    file: Path = typer.Argument(..., help="Polarisation curve: Gamry .DTA, Nova export, BioLogic .mpt, or E, I text"),
    window: str = typer.Option(
        ..., "--window", help="line: absolute E1,E2 in V on one branch; activation: E-E_corr limits, e.g. -0.1,0.1"
    ),
    method: str = typer.Option(
        "line", "--method", help="line (single-branch Tafel fit), activation (both branches), mixed (with i_L)"
    ),
    area: float | None = typer.Option(
        None, "--area", help="Electrode area, cm2 (else the file's; none: currents in A)"
    ),
    r_ohm: float = typer.Option(0.0, "--ir", help="Uncompensated resistance for iR correction, ohm"),
    e_corr: float | None = typer.Option(
        None, "--e-corr", help="Corrosion potential, V (default: the current's sign change)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table"),
) -> None:
    """E_corr, i_corr, Tafel slopes and Stern-Geary from a mixed-potential (corrosion) curve."""
    from labctl.analysis._core import AnalysisError
    from labctl.analysis.corrosion import activation_fit, mixed_fit, prepare, tafel_line
    from labctl.analysis.io import read_tafel_file

    w = parse_floats(window, "--window")
    if len(w) != 2:
        raise AnalysisError(f"--window: expected two numbers E1,E2, got {window!r}")
    if method not in ("line", "activation", "mixed"):
        raise AnalysisError(f"--method must be 'line', 'activation' or 'mixed', got {method!r}")
    sw = read_tafel_file(file, min_points=5)
    notes = list(sw.notes)
    if area is None and file.suffix.lower() == ".dta":
        from labctl.importers import read_file

        area = read_file(file).area_cm2
        if area is not None:
            notes.append(f"area {area} cm2 from the file (AREA)")
    if area is None:
        notes.append("no electrode area (--area): currents in A, i_corr is a current, not a density")
    c = prepare(sw.potential, sw.current, area_cm2=area, r_ohm=r_ohm)
    fn = {"line": tafel_line, "activation": activation_fit, "mixed": mixed_fit}[method]
    results = fn(c, (w[0], w[1]), e_corr=e_corr)
    _show(
        f"{file.name}: corrosion ({method})",
        results,
        [*c.notes, *notes],
        as_json,
        {"file": str(file), "method": method, "window": w, "area_cm2": area, "iR_ohm": r_ohm},
    )


def register(app: typer.Typer) -> None:
    """Add ``analyze``, ``fit-eis`` and ``fit-tafel`` to ``app``."""
    app.command()(analyze)
    app.command("fit-eis")(fit_eis)
    app.command("fit-tafel")(fit_tafel)
    app.command("fit-corrosion")(fit_corrosion)
