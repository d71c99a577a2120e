"""Long traces at the figure's resolution: a min/max envelope per pixel column, built chunk by chunk.

A run of millions of samples plots in seconds and is never held in memory whole.  No matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from labctl.reports.runview import RunView

#: columns of the envelope of long traces (twice the pixel columns of the widest plot)
ENVELOPE_BINS = 2400
#: traces with fewer points than this are drawn point by point
RAW_POINT_LIMIT = 20000

__all__ = ["ENVELOPE_BINS", "RAW_POINT_LIMIT", "Envelope", "voltage_trace"]


class Envelope:
    """Min/max of y per column of a fixed x grid, filled chunk by chunk.

    ``add`` accepts chunks in any order; columns that got no point stay NaN, so gaps
    (EIS, temperature steps) show as gaps.  :meth:`polyline` returns the vertices of a
    line that visits the minimum and the maximum of every column, which looks like the
    full data at the figure's resolution.
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


def voltage_trace(
    view: RunView, steps: Sequence[dict], div: float, x0: float, x1: float, bins: int = ENVELOPE_BINS
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Voltage against time/div of ``steps``: every point when there are few, else the min/max
    envelope on a grid of ``bins`` columns between x0 and x1 (streamed in chunks).
    Returns x, y and whether it is an envelope."""
    if not steps:
        return np.array([]), np.array([]), False
    total = sum(int(s.get("n_samples") or 0) for s in steps)
    if total <= RAW_POINT_LIMIT:
        d = view.samples([s["step_index"] for s in steps], ["step_index", "t", "voltage"])
        t, v, si = d["t"], d["voltage"], d["step_index"]
        order = np.argsort(t, kind="stable")
        t, v, si = t[order], v[order], si[order]
        # break the line where steps that are not drawn (EIS, stage) lie in between
        all_idx = [int(s["step_index"]) for s in view.steps]
        prev_of = dict(zip(all_idx[1:], all_idx))
        cut = np.flatnonzero(si[1:] != si[:-1]) + 1
        breaks = [k for k in cut if prev_of.get(int(si[k])) != int(si[k - 1])]
        x = t / div
        if breaks:
            x = np.insert(x, breaks, np.nan)
            v = np.insert(v, breaks, np.nan)
        return x, v, False
    env = Envelope(x0, x1, bins)
    for chunk in view.iter_step_chunks(steps, ["t", "voltage"]):
        env.add(chunk["t"] / div, chunk["voltage"])
    x, y = env.polyline()
    return x, y, True
