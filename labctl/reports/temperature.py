"""The temperature stage against time, with its set points and the EIS spectra taken."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from labctl.reports.runview import RunView
from labctl.reports.style import new_figure, save
from labctl.reports.text import time_unit

__all__ = ["plot_temperature"]


def plot_temperature(view: RunView, path: Path) -> Path | None:
    steps = view.steps_of("temperature")
    if not steps:
        return None
    d = view.samples([s["step_index"] for s in steps], ["t", "temperature"])
    span = max(view.duration, 1.0)
    unit, div = time_unit(span)
    fig = new_figure(8.5, 4.2)
    ax = fig.add_subplot()
    ok = np.isfinite(d["temperature"])
    ax.plot(d["t"][ok] / div, d["temperature"][ok], ".", ms=2, color="#b2182b", label="stage temperature")
    for k, s in enumerate(steps):
        sp = (s.get("params") or {}).get("setpoint")
        if sp is not None and s.get("t_end") is not None:
            ax.hlines(
                sp,
                s["t_start"] / div,
                s["t_end"] / div,
                color="black",
                lw=1.0,
                ls="--",
                label="set point" if k == 0 else "_nolegend_",
            )
    for k, spec in enumerate(view.spectra):
        st = next((s for s in view.steps if s["step_index"] == spec.step_index), None)
        if st is not None and math.isfinite(spec.temperature):
            ax.plot(st["t_start"] / div, spec.temperature, "v", color="#2166ac", ms=7, label="EIS" if k == 0 else None)
    ax.set_xlim(0, span / div)
    ax.set_xlabel(f"Time / {unit}")
    ax.set_ylabel("Temperature / °C")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(view.title("temperature stage"), fontsize=11)
    return save(fig, path)
