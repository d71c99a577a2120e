"""Figure styling shared by the plots: figures on the Agg canvas, colours, scales, marker sizes.

Plots use :class:`matplotlib.figure.Figure` with the Agg canvas directly, never pyplot, so a
report changes no global matplotlib state (a notebook keeps its backend) and leaks no figures.
This module imports matplotlib; only the plotting modules import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

DPI = 120
#: one colour per run (and per curve of one run)
RUN_COLOURS = [
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]
#: one colour map per run when a run has several spectra in a comparison
RUN_CMAPS = ["Blues", "Reds", "Greens", "Oranges", "Purples", "Greys", "YlOrBr", "PuRd"]
#: blue (cold) -> purple -> red (hot), no pale middle
TEMPERATURE_CMAP = LinearSegmentedColormap.from_list("labctl_temperature", ["#2166ac", "#7b3294", "#d7191c"])

__all__ = [
    "DPI",
    "RUN_CMAPS",
    "RUN_COLOURS",
    "TEMPERATURE_CMAP",
    "Figure",
    "cycle_colours",
    "marker_size",
    "new_figure",
    "ohm_scale",
    "ohm_text",
    "run_colour",
    "save",
    "series_style",
    "unit_tex",
]


def new_figure(width: float = 9.0, height: float = 5.5) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, format="png")
    fig.clear()
    return path


def run_colour(k: int) -> str:
    return RUN_COLOURS[k % len(RUN_COLOURS)]


def ohm_scale(zmax: float) -> tuple[float, str]:
    if zmax >= 1e6 * 2:
        return 1e6, "MΩ"
    if zmax >= 1e3 * 2:
        return 1e3, "kΩ"
    return 1.0, "Ω"


def ohm_text(r: float) -> str:
    scale, unit = ohm_scale(abs(r) / 2 if abs(r) >= 2e3 else abs(r))
    return f"{r / scale:.3g} {unit}"


def marker_size(n: int) -> float:
    return 5.0 if n <= 60 else 3.0 if n <= 400 else 1.5


def series_style(n: int, marker: str = "o", line: str = "-") -> str:
    """Format of a per-cycle series of ``n`` points: markers joined by lines, dots alone when there are many."""
    return marker + line if n < 400 else "."


def unit_tex(unit: str) -> str:
    return {"mAh/g": "mAh g$^{-1}$", "mAh/cm2": "mAh cm$^{-2}$"}.get(unit, unit)


def cycle_colours(cycles: Sequence[int]) -> dict[int, Any]:
    cmap = matplotlib.colormaps["viridis"]
    n = len(cycles)
    return {c: cmap(0.85 * k / max(n - 1, 1)) for k, c in enumerate(cycles)}
