"""Several runs overlaid like the panels of a paper figure: voltage, profiles, spectra, Tafel, Arrhenius, per cycle.

Runs are told apart by colour (and marker for spectra) and labelled as stored (preset / cell id)
unless the caller gives labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labctl.reports.arrhenius import arrhenius_axes, draw_arrhenius
from labctl.reports.cycling import ce_window, draw_ce
from labctl.reports.downsample import voltage_trace
from labctl.reports.eis import (
    SpecStyle,
    bode_figure,
    nyquist_figure,
    spectra_mode,
    spectrum_colours,
    step_label,
)
from labctl.reports.full_cell import draw_voltage_capacity, is_full_cycling
from labctl.reports.html_index import (
    Report,
    comparison_table,
    draw_figures,
    esc,
    figures_html,
    notes_html,
    write_index,
)
from labctl.reports.runview import TRACE_KINDS, CycleSeries, RunView, time_span
from labctl.reports.series import (
    arrhenius_data,
    capacity_series,
    ce_series,
    hysteresis_series,
)
from labctl.reports.style import (
    RUN_CMAPS,
    marker_size,
    new_figure,
    run_colour,
    save,
    series_style,
    unit_tex,
)
from labctl.reports.tafel import draw_tafel, tafel_axes
from labctl.reports.text import cycles_text, fmt_duration, time_unit

__all__ = ["build_comparison", "compare_runs", "run_labels"]

#: a run of the comparison: its view, its label and its index (which picks its colour)
Row = tuple[RunView, str, int]


def run_labels(views: Sequence[RunView], labels: Sequence[str] | None) -> list[str]:
    """``labels`` (one per run), else each run's stored label, made unique with the run id."""
    if labels is not None:
        labels = [str(x) for x in labels]
        if len(labels) != len(views):
            raise ValueError(f"{len(labels)} labels for {len(views)} runs")
        return labels
    base = [v.label() for v in views]
    return [f"{b} (run {v.run_id})" if base.count(b) > 1 else b for b, v in zip(base, views)]


def _rows(
    views: Sequence[RunView], labels: Sequence[str], keep: Callable[[RunView], bool] = lambda v: True
) -> list[Row]:
    return [(v, lab, k) for k, (v, lab) in enumerate(zip(views, labels)) if keep(v)]


def _cycle_steps(view: RunView, cycles: Sequence[int]) -> list[dict]:
    return [s for s in view.steps_of(*TRACE_KINDS) if int(s.get("cycle") or 0) in cycles]


def _voltage_time(views: Sequence[RunView], labels: Sequence[str], path: Path) -> Path | None:
    sel = _rows(views, labels, RunView.is_cycling)
    if not sel:
        return None
    span = max(v.duration for v, _, _ in sel)
    unit, div = time_unit(span)
    fig = new_figure(10.0, 1.2 + 2.3 * len(sel))
    axes = fig.subplots(len(sel), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for ax, (v, lab, k) in zip(axes, sel):
        x, y, env = voltage_trace(v, v.steps_of(*TRACE_KINDS), div, 0.0, span / div)
        ax.plot(x, y, lw=0.6 if env else 0.9, color=run_colour(k), label=lab)
        sc = v.short_time()
        if sc is not None:
            ax.axvline(sc[0] / div, color="black", ls="--", lw=1.0, label=f"short circuit at {sc[0] / div:.4g} {unit}")
        ax.set_ylabel("Voltage / V")
        ax.grid(alpha=0.3)
        ax.axhline(0, color="0.6", lw=0.5, zorder=0)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel(f"Time / {unit}")
    axes[-1].set_xlim(0, span / div)
    axes[0].set_title("Voltage vs time", fontsize=11)
    return save(fig, path)


def _profiles(views: Sequence[RunView], labels: Sequence[str], path: Path, cycles: Sequence[int] | None) -> Path | None:
    """Voltage of the same cycles of every run, against time since the first of them."""
    want = list(cycles) if cycles else [1, 2, 3]
    sel = [
        (v, lab, k, steps) for v, lab, k in _rows(views, labels, RunView.is_cycling) if (steps := _cycle_steps(v, want))
    ]
    if not sel:
        return None
    spans = [time_span(steps) for _, _, _, steps in sel]
    unit, div = time_unit(max(t1 - t0 for t0, t1 in spans))
    fig = new_figure(9.0, 5.0)
    ax = fig.add_subplot()
    for (v, lab, k, steps), (t0, t1) in zip(sel, spans):
        x, y, _ = voltage_trace(v, steps, div, t0 / div, t1 / div, bins=1500)
        ax.plot(x - t0 / div, y, lw=1.0, color=run_colour(k), label=lab)
    ax.set_xlabel(f"Time since the start of cycle {min(want)} / {unit}")
    ax.set_ylabel("Voltage / V")
    ax.axhline(0, color="0.6", lw=0.5, zorder=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Voltage profiles, {cycles_text(want)}", fontsize=11)
    return save(fig, path)


def _spectrum_styles(views: Sequence[RunView], labels: Sequence[str]) -> tuple[list[SpecStyle], str]:
    """Each run's spectra in shades of its own colour map (one spectrum: the run's colour), a marker per run."""
    styles: list[SpecStyle] = []
    all_sp = [sp for v in views for sp in v.nonempty_spectra()]
    mode = spectra_mode(all_sp) if all_sp else "step"
    markers = "osD^v<>p"
    for v, lab, k in _rows(views, labels):
        sps = v.nonempty_spectra()
        if not sps:
            continue
        cols = spectrum_colours(sps, mode if len(sps) > 1 else "step", RUN_CMAPS[k % len(RUN_CMAPS)])
        for sp, c in zip(sps, cols):
            suffix = "" if len(sps) == 1 else f", {step_label(sp, mode)}"
            styles.append(SpecStyle(sp, c if len(sps) > 1 else run_colour(k), lab + suffix, markers[k % len(markers)]))
    return styles, mode


def _nyquist(views: Sequence[RunView], labels: Sequence[str], path: Path) -> Path | None:
    styles, mode = _spectrum_styles(views, labels)
    return nyquist_figure(styles, mode, path, "Nyquist plots") if styles else None


def _bode(views: Sequence[RunView], labels: Sequence[str], path: Path) -> Path | None:
    styles, mode = _spectrum_styles(views, labels)
    return bode_figure(styles, mode, path, "Bode plots") if styles else None


def _series(
    views: Sequence[RunView],
    labels: Sequence[str],
    get: Callable[[RunView], CycleSeries | None],
    path: Path,
    ylabel: str,
    title: str,
) -> Path | None:
    rows = [(get(v), lab, k) for v, lab, k in _rows(views, labels)]
    drawn = [(s, lab, k) for s, lab, k in rows if s is not None and np.any(np.isfinite(s.values))]
    if not drawn:
        return None
    fig = new_figure(8.5, 5.0)
    ax = fig.add_subplot()
    for s, lab, k in drawn:
        ok = np.isfinite(s.values)
        n = int(ok.sum())
        ax.plot(s.cycles[ok], s.values[ok], series_style(n), ms=marker_size(n), lw=0.6, color=run_colour(k), label=lab)
    ax.set_xlabel("Cycle")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=11)
    return save(fig, path)


def _ce(views: Sequence[RunView], labels: Sequence[str], path: Path) -> Path | None:
    rows = [(ce_series(v), v, lab, k) for v, lab, k in _rows(views, labels)]
    drawn = [(s, v, lab, k) for s, v, lab, k in rows if s is not None and np.any(np.isfinite(s.values))]
    if not drawn:
        return None
    fails = [v.failed_cycle() for _, v, _, _ in drawn]
    window = ce_window([s for s, _, _, _ in drawn], fails)
    fig = new_figure(8.5, 5.0)
    ax = fig.add_subplot()
    for (s, v, lab, k), fail in zip(drawn, fails):
        r = v.result_value("ce_mean")
        mean = f", mean {100 * float(r['value']):.2f} %" if r is not None and r.get("value") is not None else ""
        draw_ce(ax, s, run_colour(k), lab + mean, window)
        if fail:
            ax.axvline(fail, color=run_colour(k), ls=":", lw=1.0)
    ax.set_ylim(*window)
    ax.set_xlabel("Cycle")
    ax.set_ylabel("Coulombic efficiency / %")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Coulombic efficiency per cycle (dotted: failure)", fontsize=11)
    return save(fig, path)


def _capacity(views: Sequence[RunView], labels: Sequence[str], path: Path) -> Path | None:
    rows = [(capacity_series(v), lab, k) for v, lab, k in _rows(views, labels)]
    drawn = [(c, lab, k) for c, lab, k in rows if c is not None]
    if not drawn:
        return None
    units = {c[0].unit for c, _, _ in drawn}
    fig = new_figure(8.5, 5.0)
    ax = fig.add_subplot()
    for (ch, dis), lab, k in drawn:
        col = run_colour(k)
        n = ch.cycles.size
        ax.plot(
            dis.cycles,
            dis.values,
            series_style(n, "s"),
            ms=marker_size(n),
            lw=0.6,
            color=col,
            label=f"{lab}: {dis.label}",
        )
        ax.plot(
            ch.cycles,
            ch.values,
            series_style(n, "o", "--"),
            ms=marker_size(n),
            mfc="none",
            lw=0.6,
            color=col,
            label=f"{lab}: {ch.label}",
        )
    ax.set_xlabel("Cycle")
    ax.set_ylabel("Capacity / " + " or ".join(unit_tex(u) for u in sorted(units)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Capacity per cycle", fontsize=11)
    return save(fig, path)


def _tafel(views: Sequence[RunView], labels: Sequence[str], path: Path) -> Path | None:
    rows = [(v.tafel_curves(), lab, k) for v, lab, k in _rows(views, labels)]
    drawn = [(c, lab, k) for c, lab, k in rows if c]
    if not drawn:
        return None
    fig = new_figure(8.0, 5.8)
    ax = fig.add_subplot()
    for curves, lab, k in drawn:
        for c in curves:
            draw_tafel(
                ax, c, run_colour(k), lab + ("" if len(curves) == 1 else f" step {c.step_index}"), mark_fit=False
            )
    tafel_axes(ax, shaded=False)
    ax.set_title("Tafel plots", fontsize=11)
    return save(fig, path)


def _arrhenius(views: Sequence[RunView], labels: Sequence[str], path: Path) -> Path | None:
    rows = [(arrhenius_data(v), lab, k) for v, lab, k in _rows(views, labels)]
    drawn = [(a, lab, k) for a, lab, k in rows if a is not None]
    if not drawn:
        return None
    fig = new_figure(7.5, 5.5)
    ax = fig.add_subplot()
    for a, lab, k in drawn:
        draw_arrhenius(ax, a, run_colour(k), f"{lab}: ")
    arrhenius_axes(ax)
    ax.set_title("Arrhenius plots of 1/Rct", fontsize=11)
    return save(fig, path)


def _voltage_capacity(views: Sequence[RunView], labels: Sequence[str], path: Path) -> Path | None:
    """Voltage against specific capacity of the full cells at one cycle they all have (20, else the last common)."""
    rows = _rows(views, labels, is_full_cycling)
    if not rows:
        return None
    common = set.intersection(*(set(v.cycles()) for v, _, _ in rows))
    cyc = 20 if 20 in common else (max(common) if common else None)
    fig = new_figure(8.0, 5.8)
    ax = fig.add_subplot()
    for v, lab, k in rows:
        c = cyc if cyc is not None else v.cycles()[-1]
        steps = v.cycling_steps_by_cycle([c]).get(c, [])
        if steps:
            draw_voltage_capacity(ax, v, steps, run_colour(k), f"{lab}, cycle {c}")
    ax.set_xlabel("Specific capacity / mAh g$^{-1}$")
    ax.set_ylabel("Cell voltage / V")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="solid: discharge, dashed: charge", title_fontsize=8)
    ax.set_title("Voltage vs capacity", fontsize=11)
    return save(fig, path)


def _plots(
    views: Sequence[RunView], labs: Sequence[str], cycles: Sequence[int] | None
) -> list[tuple[str, str, Callable[[Path], Path | None]]]:
    def on_runs(fn: Callable[[Sequence[RunView], Sequence[str], Path], Path | None]) -> Callable[[Path], Path | None]:
        return lambda p: fn(views, labs, p)

    return [
        (
            "voltage_time.png",
            "Voltage against time of each run (one panel per run, same axes).",
            on_runs(_voltage_time),
        ),
        (
            "voltage_profiles.png",
            "Voltage profiles of the same cycles of each run, overlaid.",
            lambda p: _profiles(views, labs, p, cycles),
        ),
        (
            "nyquist.png",
            "Nyquist plots of the runs' spectra (points) with their fitted circuits (lines).",
            on_runs(_nyquist),
        ),
        ("bode.png", "Bode plots of the runs' spectra with their fits.", on_runs(_bode)),
        ("tafel.png", "Tafel plots with Butler-Volmer fits and j0 (stars).", on_runs(_tafel)),
        ("arrhenius.png", "Arrhenius plots of 1/Rct with the activation energies.", on_runs(_arrhenius)),
        ("ce.png", "Coulombic efficiency per cycle (failed cycles below the axis as triangles).", on_runs(_ce)),
        ("capacity.png", "Capacity per cycle (filled: discharge/plated, open: charge/stripped).", on_runs(_capacity)),
        (
            "hysteresis.png",
            "Voltage hysteresis (plateau) per cycle.",
            lambda p: _series(
                views, labs, hysteresis_series, p, "Voltage hysteresis / mV", "Voltage hysteresis per cycle"
            ),
        ),
        ("voltage_capacity.png", "Voltage against specific capacity at the same cycle.", on_runs(_voltage_capacity)),
    ]


def build_comparison(
    db: Any,
    run_ids: Sequence[int],
    out_dir: str | Path,
    *,
    labels: Sequence[str] | None = None,
    cycles: Sequence[int] | None = None,
) -> Report:
    """Overlay plots and index.html comparing ``run_ids``; KeyError when a run does not exist."""
    if not run_ids:
        raise ValueError("compare needs at least one run")
    views = [RunView(db, int(r)) for r in run_ids]
    labs = run_labels(views, labels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    figures = draw_figures(out, _plots(views, labs, cycles), notes)
    for v in views:
        notes += [f"run {v.run_id}: {n}" for n in v.notes]
    body = [
        f"<h1>Comparison of runs {', '.join(str(v.run_id) for v in views)}</h1>",
        "<h2>Runs</h2>",
        (
            "<table><tr><th>label</th><th>run</th><th>protocol</th><th>cell</th><th>status</th><th>end reason</th>"
            "<th>duration</th><th>samples</th></tr>"
        ),
    ]
    for v, lab in zip(views, labs):
        body.append(
            f"<tr><td>{esc(lab)}</td><td>{v.run_id}</td><td>{esc(v.run.get('protocol'))}</td>"
            f"<td>{esc(v.cell_title())}</td><td>{esc(v.run.get('status'))}</td><td>{esc(v.run.get('end_reason'))}</td>"
            f'<td>{esc(fmt_duration(v.duration))}</td><td class="num">{v.n_samples:,}</td></tr>'
        )
    body.append("</table>")
    body.append(
        '<h2>Results</h2><p class="small">First value of each result per run (per-step results: the first '
        "step); the run reports list all.</p>"
    )
    body.append(comparison_table(views, labs))
    body += figures_html(figures, "Nothing to overlay: the runs have no plottable data in common.")
    body += notes_html(notes)
    index = write_index(out, "Comparison of runs", body)
    return Report(index, [index] + [p for p, _ in figures], notes)


def compare_runs(
    db: Any,
    run_ids: Sequence[int],
    out_dir: str | Path,
    *,
    labels: Sequence[str] | None = None,
    cycles: Sequence[int] | None = None,
) -> Path:
    """Overlay several runs (voltage vs time, profiles of the same cycles, Nyquist/Bode, Tafel, Arrhenius,
    CE, capacity and hysteresis per cycle) and write ``index.html``; returns its path.

    Runs are labelled by preset / cell as stored (``labels`` overrides); ``cycles`` chooses the overlaid
    voltage profiles (default 1-3).  KeyError for a missing run.
    """
    return build_comparison(db, run_ids, out_dir, labels=labels, cycles=cycles).index
