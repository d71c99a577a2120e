"""Run reports: PNG plots (matplotlib, Agg, no display) and an ``index.html`` per report.

:func:`write_report` plots what one run contains (voltage vs time with zooms on chosen
cycles, Nyquist and Bode plots with the fitted circuits, Tafel, Arrhenius, CE, capacity
and hysteresis per cycle, voltage vs capacity and dQ/dV of full cells) and writes the
run's summary and results table.  :func:`compare_runs` overlays several runs like the
panels of a paper figure (bare Mg vs Br-Mg).

Plots use :class:`matplotlib.figure.Figure` with the Agg canvas directly, never pyplot,
so a report changes no global matplotlib state (a notebook keeps its backend) and
leaks no figures.  Long runs are drawn as a min/max envelope per pixel column, built
chunk by chunk from the samples, so a run of millions of samples plots in seconds and
is never held in memory whole.  Numbers come from ``labctl.analysis``; this module
only draws them.
"""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: pixel columns of the envelope of long traces (a little more than a figure is wide)
ENVELOPE_BINS = 2400
#: traces with fewer points than this are drawn point by point
RAW_POINT_LIMIT = 20000
DPI = 120
#: step kinds whose voltage is a time trace (not a spectrum, not a stage log)
TRACE_KINDS = ("rest", "galvanostatic", "potentiostatic", "tafel", "lsv", "cv")
F_FARADAY = 96485.33212
MO6S8_MAH_PER_G = 128.8


# =========================================================================== small helpers
def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(x):
        return "-"
    return f"{x:.{digits}g}"


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _time_unit(span_s: float) -> tuple[str, float]:
    """Axis unit for a time span: (label, divisor)."""
    if span_s >= 3 * 3600:
        return "h", 3600.0
    if span_s >= 600:
        return "min", 60.0
    return "s", 1.0


def _new_figure(width: float = 9.0, height: float = 5.5) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, format="png")
    fig.clear()
    return path


def _cycle_groups(cycles: Sequence[int]) -> list[list[int]]:
    """Sorted cycles split into runs of consecutive numbers: [1,2,3,9,10] -> [[1,2,3],[9,10]]."""
    out: list[list[int]] = []
    for c in sorted(set(int(c) for c in cycles)):
        if out and c == out[-1][-1] + 1:
            out[-1].append(c)
        else:
            out.append([c])
    return out


def _group_label(g: Sequence[int]) -> str:
    return f"cycle {g[0]}" if len(g) == 1 else f"cycles {g[0]}-{g[-1]}"


# =========================================================================== envelope
class Envelope:
    """Min/max of y per column of a fixed x grid, filled chunk by chunk.

    ``add`` accepts chunks in any order; columns that got no point stay NaN, so gaps
    (EIS, temperature steps) show as gaps.  :meth:`polyline` returns the vertices of a
    line that visits the minimum and the maximum of every column, which rasterises
    exactly like the full data at the figure's resolution.
    """

    def __init__(self, x0: float, x1: float, bins: int = ENVELOPE_BINS) -> None:
        if not (math.isfinite(x0) and math.isfinite(x1)) or x1 <= x0:
            x1 = x0 + 1.0
        self.x0, self.x1, self.bins = float(x0), float(x1), int(bins)
        self.lo = np.full(self.bins, np.nan)
        self.hi = np.full(self.bins, np.nan)
        self.count = np.zeros(self.bins, dtype=np.int64)
        self.n = 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        ok = np.isfinite(x) & np.isfinite(y)
        if not ok.all():
            x, y = x[ok], y[ok]
        if x.size == 0:
            return
        self.n += x.size
        b = ((x - self.x0) * (self.bins / (self.x1 - self.x0))).astype(np.int64)
        np.clip(b, 0, self.bins - 1, out=b)
        if b.size > 1 and not np.all(b[1:] >= b[:-1]):
            order = np.argsort(b, kind="stable")
            b, y = b[order], y[order]
        starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
        cols = b[starts]
        self.lo[cols] = np.fmin(self.lo[cols], np.minimum.reduceat(y, starts))
        self.hi[cols] = np.fmax(self.hi[cols], np.maximum.reduceat(y, starts))
        self.count[cols] += np.diff(np.r_[starts, b.size])

    def polyline(self) -> tuple[np.ndarray, np.ndarray]:
        """x, y vertices (NaN-separated at empty columns) of the min/max zig-zag."""
        w = (self.x1 - self.x0) / self.bins
        xc = self.x0 + (np.arange(self.bins) + 0.5) * w
        x = np.repeat(xc, 2)
        y = np.empty(2 * self.bins)
        # alternate the order so the line between columns joins nearest ends
        flip = np.arange(self.bins) % 2 == 1
        y[0::2] = np.where(flip, self.hi, self.lo)
        y[1::2] = np.where(flip, self.lo, self.hi)
        return x, y


# =========================================================================== data access
def _as_dict(r: Any) -> dict:
    if isinstance(r, dict):
        return r
    if hasattr(r, "to_dict"):
        return r.to_dict()
    return dict(vars(r))
