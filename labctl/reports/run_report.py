"""The report of one run: every plot its data allow, the summary, the results table, ``index.html``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from labctl.reports.arrhenius import plot_arrhenius
from labctl.reports.cycling import per_cycle_table_html, plot_ce, plot_hysteresis, plot_polarisation
from labctl.reports.eis import plot_bode, plot_nyquist
from labctl.reports.full_cell import plot_dqdv, plot_voltage_capacity
from labctl.reports.html_index import (
    Report,
    analysis_errors,
    draw_figures,
    esc,
    figures_html,
    notes_html,
    results_table,
    summary_rows,
    write_index,
    write_json,
)
from labctl.reports.runview import RunView
from labctl.reports.sweeps import plot_sweeps
from labctl.reports.tafel import plot_tafel
from labctl.reports.temperature import plot_temperature
from labctl.reports.text import fmt_duration
from labctl.reports.voltage_time import plot_voltage_time

__all__ = ["PLOTS", "build_report", "write_report"]

#: (file, plot(view, path), caption) in the order of the page; the voltage-time plot also takes the zoom cycles
PLOTS: list[tuple[str, Callable[[RunView, Path], Path | None], str]] = [
    (
        "voltage_time.png",
        plot_voltage_time,
        (
            "Voltage against test time for the whole run (a min/max envelope per pixel column when the run is long); "
            "the shaded ranges are shown enlarged below."
        ),
    ),
    (
        "nyquist.png",
        plot_nyquist,
        "Nyquist plot of every impedance spectrum (points) with the fitted equivalent circuit (lines); equal axes.",
    ),
    ("bode.png", plot_bode, "Bode plot: |Z| and phase against frequency, data (points) and fits (lines)."),
    (
        "tafel.png",
        plot_tafel,
        (
            "Tafel plot: |j| against overpotential, with the Butler-Volmer fit over the fit window, the Tafel lines "
            "extrapolated to η = 0 and the exchange current density j0 (star)."
        ),
    ),
    (
        "arrhenius.png",
        plot_arrhenius,
        (
            "Arrhenius plot of 1/Rct (charge-transfer resistance from the EIS fits) against 1000/T, with the "
            "straight-line fit that gives the activation energy."
        ),
    ),
    ("temperature.png", plot_temperature, "Temperature of the stage against time, with set points and EIS spectra."),
    ("ce_capacity.png", plot_ce, "Capacity (or plated/stripped charge) and coulombic efficiency per cycle."),
    (
        "hysteresis.png",
        plot_hysteresis,
        (
            "Voltage hysteresis per cycle: half the difference of the plateau voltages (central 50 % of each "
            "half-cycle) of stripping and plating."
        ),
    ),
    ("polarisation.png", plot_polarisation, "Polarisation ΔE at 50 % capacity per cycle."),
    ("voltage_capacity.png", plot_voltage_capacity, "Voltage against specific capacity for selected cycles."),
    ("dqdv.png", plot_dqdv, "Differential capacity dQ/dV for selected cycles (discharge negative)."),
    ("sweeps.png", plot_sweeps, "Current density against voltage of the linear and cyclic sweeps."),
]


def _drawer(
    fn: Callable[..., Path | None], view: RunView, zoom_cycles: Sequence[int] | None
) -> Callable[[Path], Path | None]:
    if fn is plot_voltage_time:
        return lambda p: plot_voltage_time(view, p, zoom_cycles)
    return lambda p: fn(view, p)


def build_report(db: Any, run_id: int, out_dir: str | Path, *, zoom_cycles: Sequence[int] | None = None) -> Report:
    """Write the plots and index.html of run ``run_id`` into ``out_dir``; KeyError when there is no such run."""
    out = Path(out_dir)
    view = RunView(db, run_id)
    out.mkdir(parents=True, exist_ok=True)
    figures = draw_figures(
        out, [(name, caption, _drawer(fn, view, zoom_cycles)) for name, fn, caption in PLOTS], view.notes
    )
    results = view.results
    body = [
        f"<h1>Run {run_id}: {esc(view.run.get('protocol'))}</h1>",
        f"<p>{esc(view.cell_title())}</p>",
        "<h2>Summary</h2><table>",
    ]
    for k, v in summary_rows(view):
        body.append(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>")
    body.append("</table>")
    body.append(
        f'<h2>Results</h2><p class="small">Source: {esc(view.results_source)}; '
        "hover a value for the stored SI value.</p>"
    )
    body.append(results_table(results))
    body.append(per_cycle_table_html(results))
    imported = (view.run.get("meta") or {}).get("imported")
    if imported:
        rows = [
            ("file", imported.get("source_file")),
            ("sha256", imported.get("sha256")),
            ("format", imported.get("format")),
            ("reader", imported.get("reader")),
        ]
        rows += [(f"mapping: {k}", v) for k, v in (imported.get("mapping") or {}).items()]
        body.append(
            "<h2>Imported file</h2><table>"
            + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
            + "</table>"
        )
    errs = analysis_errors(results)
    if errs:
        body.append(
            '<p class="note">Analyses that gave no result:</p><ul>'
            + "".join(f'<li class="note">{esc(x)}</li>' for x in errs)
            + "</ul>"
        )
    body += figures_html(figures, "Nothing to plot: the run has no samples of a plottable kind.")
    body += notes_html(view.notes)
    events = view.db.events(run_id) if hasattr(view.db, "events") else []
    if events:
        body.append(
            f"<h2>Events</h2><details><summary>{len(events)} events</summary><table>"
            "<tr><th>t</th><th>kind</th><th>message</th></tr>"
            + "".join(
                f"<tr><td>{esc(fmt_duration(e.get('t')))}</td><td>{esc(e.get('kind'))}</td>"
                f"<td>{esc(e.get('message'))}</td></tr>"
                for e in events[-200:]
            )
            + "</table></details>"
        )
    if view.run.get("protocol_text"):
        body.append(
            f"<h2>Protocol</h2><details><summary>protocol text</summary><pre>{esc(view.run['protocol_text'])}"
            "</pre></details>"
        )
    index = write_index(out, f"Run {run_id} report", body)
    res_json = write_json(out / "results.json", results)
    return Report(index, [index, res_json] + [p for p, _ in figures], list(view.notes))


def write_report(db: Any, run_id: int, out_dir: str | Path, *, zoom_cycles: Sequence[int] | None = None) -> Path:
    """Plots (PNG) and ``index.html`` of one run in ``out_dir``; returns the path of index.html.

    Results come from ``db.results``; when the run has none they are computed by
    :func:`labctl.analysis.analyze_run` for the report (not stored).  ``zoom_cycles``
    chooses the cycles enlarged under the voltage-time plot (default: cycles 1-3 and
    the last 3 before the end or the short circuit).  KeyError for a missing run.
    """
    return build_report(db, run_id, out_dir, zoom_cycles=zoom_cycles).index
