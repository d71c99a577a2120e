"""Per-cycle plots of cycling runs: capacity and coulombic efficiency, voltage hysteresis, polarisation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labctl.reports.runview import CycleSeries, RunView
from labctl.reports.series import (
    capacity_series,
    ce_series,
    de_series,
    hysteresis_series,
)
from labctl.reports.style import marker_size, new_figure, save, series_style, unit_tex
from labctl.reports.text import fmt

__all__ = ["ce_window", "draw_ce", "plot_ce", "plot_hysteresis", "plot_polarisation"]


def ce_window(series: Sequence[CycleSeries], fails: Sequence[int | None]) -> tuple[float, float]:
    """CE axis range (%) that shows the working cycles in detail: from the cycles before failure."""
    core = []
    for s, fail in zip(series, fails):
        ok = np.isfinite(s.values)
        if fail:
            ok &= s.cycles < fail
        core.append(s.values[ok])
    v = np.concatenate(core) if core else np.array([])
    if v.size == 0:
        allv = np.concatenate([s.values[np.isfinite(s.values)] for s in series]) if series else np.array([])
        v = allv if allv.size else np.array([90.0, 100.0])
    lo = max(min(float(np.percentile(v, 1)), 99.0) - 0.5, 0.0)
    hi = min(max(float(np.max(v)), 100.0) + 0.3, 110.0)
    return lo, hi


def draw_ce(ax: Any, s: CycleSeries, colour: Any, label: str, window: tuple[float, float]) -> None:
    """CE points; points below the window (failed cycles) as triangles on the bottom edge."""
    ok = np.isfinite(s.values)
    n = int(ok.sum())
    inside = ok & (s.values >= window[0])
    ax.plot(s.cycles[inside], s.values[inside], series_style(n), ms=marker_size(n), lw=0.6, color=colour, label=label)
    below = ok & (s.values < window[0])
    if below.any():
        y = window[0] + 0.015 * (window[1] - window[0])
        ax.plot(
            s.cycles[below],
            np.full(int(below.sum()), y),
            "v",
            ms=3.5,
            color=colour,
            alpha=0.7,
            label=f"{label}: {int(below.sum())} cycles below the axis (min {np.min(s.values[below]):.1f} %)",
        )


def plot_ce(view: RunView, path: Path) -> Path | None:
    """CE and capacity per cycle (asymmetric and full cells)."""
    ce = ce_series(view)
    cap = capacity_series(view)
    if ce is None and cap is None:
        return None
    full = cap is not None and cap[0].unit == "mAh/g"
    fig = new_figure(9.0, 6.8)
    a1, a2 = fig.subplots(2, 1, sharex=True)
    if cap is not None:
        for s, style in zip(cap, ({"marker": "o", "mfc": "none"}, {"marker": "s"})):
            a1.plot(
                s.cycles,
                s.values,
                ls="-" if s.cycles.size < 400 else "none",
                lw=0.6,
                ms=marker_size(s.cycles.size),
                label=s.label,
                **style,
            )
        a1.set_ylabel(f"{'Specific capacity' if full else 'Capacity'} / {unit_tex(cap[0].unit)}")
        a1.legend(fontsize=8)
    a1.grid(alpha=0.3)
    a1.set_title(view.title(("capacity" if full else "plated/stripped charge") + " and CE per cycle"), fontsize=11)
    if ce is not None:
        life = view.result_data("cycle_life")
        fail = view.failed_cycle()
        window = ce_window([ce], [fail])
        draw_ce(a2, ce, "#2a7f62", "CE per cycle", window)
        r = view.result_value("ce_mean")
        if r is not None and r.get("value") is not None:
            mean = 100 * float(r["value"])
            se = r.get("uncertainty")
            n = (r.get("data") or {}).get("n_cycles")
            a2.axhline(
                mean,
                color="black",
                ls="--",
                lw=0.9,
                label=f"mean CE {mean:.2f} %"
                + (f" ± {fmt(100 * se, 2)} % (s.e.)" if se else "")
                + (f", {n} cycles" if n else ""),
            )
        if fail:
            a2.axvline(
                fail,
                color="red",
                ls=":",
                lw=1.2,
                label=f"failure (CE < {100 * life.get('ce_threshold', 0.8):.0f} %) at cycle {fail}",
            )
        a2.set_ylim(*window)
        a2.legend(fontsize=8, loc="lower left")
    a2.set_ylabel("Coulombic efficiency / %")
    a2.set_xlabel("Cycle")
    a2.grid(alpha=0.3)
    return save(fig, path)


def plot_hysteresis(view: RunView, path: Path) -> Path | None:
    h = hysteresis_series(view)
    if h is None or not np.any(np.isfinite(h.values)):
        return None
    fig = new_figure(8.5, 5.0)
    ax = fig.add_subplot()
    ax.plot(
        h.cycles,
        h.values,
        series_style(h.cycles.size),
        ms=marker_size(h.cycles.size),
        lw=0.6,
        color="#8c2d04",
        label="± hysteresis per cycle (plateau, 25-75 % of each half-cycle)",
    )
    r = view.result_value("hysteresis")
    if r is not None and r.get("value") is not None:
        ax.axhline(1e3 * r["value"], color="black", ls="--", lw=0.9, label=f"median ±{1e3 * r['value']:.1f} mV")
    sc = view.short_time()
    if sc is not None and sc[1]:
        ax.axvline(sc[1], color="red", ls="--", lw=1.2, label=f"short circuit (cycle {sc[1]})")
    ax.set_xlabel("Cycle")
    ax.set_ylabel("Voltage hysteresis / mV")
    ax.set_ylim(0, 1.15 * float(np.nanmax(h.values)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(view.title(f"voltage hysteresis per cycle, {view.cell_title()}"), fontsize=11)
    return save(fig, path)


def plot_polarisation(view: RunView, path: Path) -> Path | None:
    de = de_series(view)
    if de is None or not np.any(np.isfinite(de.values)):
        return None
    fig = new_figure(8.0, 4.5)
    ax = fig.add_subplot()
    ax.plot(
        de.cycles,
        1e3 * de.values,
        "o-",
        ms=marker_size(de.cycles.size),
        lw=0.6,
        color="#6a3d9a",
        label="ΔE at 50 % capacity (charge − discharge)",
    )
    ax.set_xlabel("Cycle")
    ax.set_ylabel("Polarisation ΔE / mV")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(view.title("polarisation per cycle"), fontsize=11)
    return save(fig, path)


def per_cycle_table_html(results: Sequence[dict[str, Any]]) -> str:
    """The per-cycle charge/discharge/CE table of a cycler record (the ``cycles`` result), always,
    whatever the values, headed by the cycle definition and where the charge came from; '' without one."""
    from html import escape

    res = next((r for r in results if r.get("name") == "cycles"), None)
    if res is None:
        return ""
    d = res.get("data") or res.get("details") or {}
    per = d.get("per_cycle") or {}
    cycles = per.get("cycle") or []
    if not cycles:
        return ""
    rows = []
    for k, cy in enumerate(cycles):
        ce = per.get("ce", [None] * len(cycles))[k]
        rows.append(
            f"<tr><td>{int(cy)}</td><td>{per['charge_mAh'][k]:.4f}</td><td>{per['discharge_mAh'][k]:.4f}</td>"
            f"<td>{'-' if ce is None else f'{100 * ce:.3f}'}</td></tr>"
        )
    head = (
        f'<p class="small">Cycle definition: {escape(str(d.get("cycle_definition", "")))}. '
        f"Charge from: {escape(str(d.get('charge_source', '')))}. "
        f"CE = {escape(str(d.get('ce_definition', '')))}.</p>"
    )
    return (
        "<h2>Per cycle</h2>"
        + head
        + "<table><tr><th>cycle</th><th>charge / mAh</th><th>discharge / mAh</th><th>CE / %</th></tr>"
        + "".join(rows)
        + "</table>"
    )
