"""Full cells (cathode mass known): voltage against specific capacity and dQ/dV of selected cycles."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.lines import Line2D

from labctl.reports.runview import RunView
from labctl.reports.style import cycle_colours, new_figure, save

__all__ = ["draw_voltage_capacity", "is_full_cycling", "pick_cycles", "plot_dqdv", "plot_voltage_capacity"]


def is_full_cycling(view: RunView) -> bool:
    """A full cell with a cathode mass, cycled: what the capacity plots need."""
    return view.kind == "full" and bool(view.cathode_mass_g) and view.is_cycling()


def pick_cycles(cycles: Sequence[int], n: int = 5) -> list[int]:
    """At most ``n`` cycles worth showing: 1, 2, 5, 10, 20, 50 ... of those the run has, and its last."""
    if not cycles:
        return []
    want = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
    have = set(cycles)
    out = [c for c in want if c in have]
    last = max(cycles)
    out = sorted(set(out[: n - 1] + [last] + ([min(cycles)] if not out else [])))
    return out[-n:] if len(out) > n else out


def draw_voltage_capacity(ax: Any, view: RunView, steps: Sequence[dict], colour: Any, label: str) -> None:
    """Voltage against specific capacity of ``steps`` (one cycle): discharge solid, charge dashed, one legend entry."""
    mass = view.cathode_mass_g or 1.0
    d = view.samples([s["step_index"] for s in steps], ["step_index", "voltage", "charge"])
    for k, s in enumerate(steps):
        sel = d["step_index"] == s["step_index"]
        cur = float((s.get("params") or {}).get("current") or 0.0)
        ax.plot(
            np.abs(d["charge"][sel]) / 3.6 / mass,
            d["voltage"][sel],
            "-" if cur < 0 else "--",
            color=colour,
            lw=1.3,
            label=label if k == 0 else None,
        )


def plot_voltage_capacity(view: RunView, path: Path) -> Path | None:
    if not is_full_cycling(view):
        return None
    by_cycle = view.cycling_steps_by_cycle(pick_cycles(view.cycles()))
    if not by_cycle:
        return None
    cols = cycle_colours(sorted(by_cycle))
    fig = new_figure(8.0, 5.8)
    ax = fig.add_subplot()
    for c in sorted(by_cycle):
        draw_voltage_capacity(ax, view, by_cycle[c], cols[c], f"cycle {c}")
    h, lab = ax.get_legend_handles_labels()
    h += [Line2D([], [], color="0.3", ls="-"), Line2D([], [], color="0.3", ls="--")]
    lab += ["discharge (I < 0)", "charge (I > 0)"]
    ax.legend(h, lab, fontsize=8)
    ax.set_xlabel("Specific capacity / mAh g$^{-1}$")
    ax.set_ylabel("Cell voltage / V")
    ax.grid(alpha=0.3)
    mass = view.cathode_mass_g or 0.0
    ax.set_title(view.title(f"voltage vs capacity (cathode mass {mass * 1e3:.3g} mg)"), fontsize=11)
    return save(fig, path)


def plot_dqdv(view: RunView, path: Path) -> Path | None:
    if not is_full_cycling(view):
        return None
    from labctl.analysis.cycling import dqdv

    by_cycle = view.cycling_steps_by_cycle(pick_cycles(view.cycles(), 4))
    if not by_cycle:
        return None
    idx = [s["step_index"] for c in by_cycle for s in by_cycle[c]]
    d = view.samples(idx, ["step_index", "voltage", "charge", "current"])
    mass = view.cathode_mass_g or 1.0
    cols = cycle_colours(sorted(by_cycle))
    fig = new_figure(8.0, 5.8)
    ax = fig.add_subplot()
    drawn = False
    for c in sorted(by_cycle):
        first = True
        for s in by_cycle[c]:
            sel = d["step_index"] == s["step_index"]
            v, q, i = d["voltage"][sel], d["charge"][sel], d["current"][sel]
            if v.size < 10:
                continue
            try:
                vc, h = dqdv(v, charge=q, bin_width=0.01, smooth=1.5)
            except Exception as e:
                view.notes.append(f"dQ/dV of step {s['step_index']}: {e}")
                continue
            sign = 1.0 if np.nanmean(i) > 0 else -1.0
            ax.plot(vc, sign * h / 3.6 / mass, color=cols[c], lw=1.2, label=f"cycle {c}" if first else None)
            first = False
            drawn = True
    if not drawn:
        return None
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_xlabel("Cell voltage / V")
    ax.set_ylabel("dQ/dV / mAh g$^{-1}$ V$^{-1}$  (charge > 0, discharge < 0)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(view.title("differential capacity dQ/dV"), fontsize=11)
    return save(fig, path)
