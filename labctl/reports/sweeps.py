"""Linear and cyclic sweeps (LSV, CV) that are not Tafel scans: current density against voltage."""

from __future__ import annotations

from pathlib import Path

from labctl.reports.runview import RunView
from labctl.reports.style import new_figure, run_colour, save

__all__ = ["plot_sweeps"]


def plot_sweeps(view: RunView, path: Path) -> Path | None:
    tafel = {s["step_index"] for s in view.tafel_steps()}
    steps = [s for s in view.steps_of("lsv", "cv") if s["step_index"] not in tafel]
    if not steps:
        return None
    area = view.area_cm2 or 1.0
    d = view.samples([s["step_index"] for s in steps], ["step_index", "voltage", "current"])
    fig = new_figure(8.0, 5.5)
    ax = fig.add_subplot()
    for k, s in enumerate(steps):
        sel = d["step_index"] == s["step_index"]
        ax.plot(
            d["voltage"][sel],
            1e3 * d["current"][sel] / area,
            lw=1.0,
            color=run_colour(k),
            label=f"step {s['step_index']} {s['kind']}" + (f" ({s['label']})" if s.get("label") else ""),
        )
    ax.set_xlabel("Voltage / V")
    ax.set_ylabel("j / mA cm$^{-2}$" if view.area_cm2 else "I / mA")
    ax.axhline(0, color="0.6", lw=0.6)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(view.title("sweeps"), fontsize=11)
    return save(fig, path)
