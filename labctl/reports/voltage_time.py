"""Voltage against test time of a run, with zooms on chosen cycles and the short circuit marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from labctl.reports.downsample import voltage_trace
from labctl.reports.runview import TRACE_KINDS, RunView, time_span
from labctl.reports.style import new_figure, save
from labctl.reports.text import cycle_groups, group_label, time_unit

__all__ = ["current_steps", "default_zoom", "plot_voltage_time", "zoom_groups"]


def default_zoom(cycles: Sequence[int], short_cycle: int | None) -> list[list[int]]:
    """Cycles enlarged by default: the first 3 and the last 3 up to the short circuit (all when 6 or fewer)."""
    if not cycles:
        return []
    last = short_cycle if short_cycle is not None and short_cycle in cycles else cycles[-1]
    upto = [c for c in cycles if c <= last]
    if len(upto) <= 6:
        return [upto]
    return [upto[:3], upto[-3:]]


def zoom_groups(view: RunView, zoom_cycles: Sequence[int] | None) -> list[list[int]]:
    """The cycle ranges to enlarge: the asked cycles the run has (at most 4 ranges), else :func:`default_zoom`."""
    cycles = view.cycles()
    if zoom_cycles:
        have = set(cycles)
        chosen = [int(c) for c in zoom_cycles if int(c) in have]
        missing = sorted({int(c) for c in zoom_cycles} - have)
        if missing:
            view.notes.append(
                f"zoom: run {view.run_id} has no cycle {', '.join(map(str, missing))} (cycles {cycles[0]}-{cycles[-1]})"
                if cycles
                else f"zoom: run {view.run_id} has no cycles"
            )
        groups = cycle_groups(chosen)
        if len(groups) > 4:
            view.notes.append(f"zoom: {len(groups)} separate cycle ranges asked; the first 4 are shown")
            groups = groups[:4]
        return groups
    sc = view.short_time()
    return default_zoom(cycles, int(sc[1]) if sc is not None and sc[1] else None)


def current_steps(view: RunView) -> tuple[np.ndarray, np.ndarray] | None:
    """Step-wise current density (mA/cm2) from the steps' set currents, when it changes during the run."""
    xs, ys = [], []
    area = view.area_cm2 or 1.0
    for s in view.cycling_steps():
        i = (s.get("params") or {}).get("current")
        if i is None or s.get("t_end") is None:
            continue
        xs += [s["t_start"], s["t_end"]]
        ys += [1e3 * float(i) / area] * 2
    mags = {round(abs(y), 6) for y in ys}
    if len(mags) < 2:
        return None
    return np.asarray(xs, float), np.asarray(ys, float)


def plot_voltage_time(view: RunView, path: Path, zoom_cycles: Sequence[int] | None = None) -> Path | None:
    steps = view.steps_of(*TRACE_KINDS)
    if not any(s["kind"] != "rest" for s in steps):
        return None
    span = max(view.duration, 1.0)
    unit, div = time_unit(span)
    cycling = view.is_cycling()
    groups = zoom_groups(view, zoom_cycles) if cycling else []
    cur = current_steps(view) if cycling else None
    ng = max(len(groups), 1)
    fig = new_figure(10.0, 7.5 if groups else 5.0)
    rows = (2 if groups else 1) + (1 if cur is not None else 0)
    ratios = ([1.6] if groups else [1.0]) + ([0.45] if cur is not None else []) + ([1.25] if groups else [])
    gs = fig.add_gridspec(rows, ng, height_ratios=ratios)
    ax = fig.add_subplot(gs[0, :])
    x, y, env = voltage_trace(view, steps, div, 0.0, span / div)
    ax.plot(x, y, lw=0.6 if env else 0.9, color="#1f4e79")
    ax.set_xlim(0, span / div)
    ax.set_ylabel("Voltage / V")
    ax.set_xlabel(f"Time / {unit}")
    ax.axhline(0, color="0.6", lw=0.5, zorder=0)
    ax.grid(alpha=0.3)
    ax.set_title(view.title(f"voltage vs time, {view.cell_title()}"), fontsize=11)
    sc = view.short_time()
    if sc is not None:
        ts, cyc = sc
        ax.axvline(
            ts / div,
            color="red",
            ls="--",
            lw=1.2,
            label=f"short circuit at {ts / div:.4g} {unit}" + (f" (cycle {cyc})" if cyc else ""),
        )
    by_cycle: dict[int, list[dict]] = {}
    for s in steps:
        by_cycle.setdefault(int(s.get("cycle") or 0), []).append(s)
    spans = []
    for k, g in enumerate(groups):
        gsteps = [s for c in g for s in by_cycle.get(c, [])]
        if not gsteps:
            continue
        t0, t1 = time_span(gsteps)
        spans.append((g, gsteps, t0, t1))
        ax.axvspan(t0 / div, t1 / div, color="orange", alpha=0.25, lw=0)
        xm = min(max(0.5 * (t0 + t1) / div, 0.015 * span / div), 0.985 * span / div)
        ax.annotate(
            chr(ord("A") + k),
            (xm, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, -3),
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize=9,
            color="#b35900",
            fontweight="bold",
        )
    aur = view.result_value("ce_aurbach")
    if aur is not None and aur.get("value") is not None:
        ax.text(
            0.01,
            0.97,
            f"Aurbach CE$_{{avg}}$ = {100 * float(aur['value']):.2f} %",
            transform=ax.transAxes,
            ha="left",
            va="top",
            fontsize=9,
            bbox={"boxstyle": "round", "fc": "white", "ec": "0.7", "alpha": 0.9},
        )
    if sc is not None:
        ax.legend(loc="best", fontsize=8)
    if cur is not None:
        axc = fig.add_subplot(gs[1, :], sharex=ax)
        axc.plot(cur[0] / div, cur[1], color="#555555", lw=1.0, drawstyle="default")
        axc.set_ylabel("j / mA cm$^{-2}$", fontsize=9)
        axc.set_xlabel(f"Time / {unit}")
        axc.grid(alpha=0.3)
        ax.set_xlabel("")
    for k, (g, gsteps, t0, t1) in enumerate(spans):
        az = fig.add_subplot(gs[rows - 1, k])
        xz, yz, _ = voltage_trace(view, gsteps, div, t0 / div, t1 / div, bins=1200)
        az.plot(xz, yz, lw=0.8, color="#1f4e79")
        if sc is not None and t0 <= sc[0] <= t1:
            az.axvline(sc[0] / div, color="red", ls="--", lw=1.0)
        az.set_xlim(t0 / div, t1 / div)
        az.set_title(f"{chr(ord('A') + k)}: {group_label(g)}", fontsize=10)
        az.set_xlabel(f"Time / {unit}")
        if k == 0:
            az.set_ylabel("Voltage / V")
        az.axhline(0, color="0.6", lw=0.5, zorder=0)
        az.grid(alpha=0.3)
    return save(fig, path)
