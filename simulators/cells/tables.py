"""Interpolation of the preset tables ((x, y) points): power law, piecewise linear, mixed.

The preset gives observables at a few current densities or cycle counts; the cells
read them between and beyond those points with these functions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from labctl.simulators.presets import Table

__all__ = ["interp_fraction", "interp_scalar", "interp_table", "linear_table"]


def interp_table(table: Table, x: Any, *, extrapolate: bool = True) -> np.ndarray:
    """Power-law (log-log linear) interpolation of ``table`` at ``x`` (> 0).

    Beyond the table ends the end segment's power law continues (``extrapolate``) or
    the end value holds.  One point: a constant.
    """
    xs = np.array([p[0] for p in table], dtype=float)
    ys = np.array([p[1] for p in table], dtype=float)
    x = np.asarray(x, dtype=float)
    if len(xs) == 1:
        return np.full_like(x, ys[0])
    lx = np.log(np.maximum(x, 1e-300))
    lxs, lys = np.log(xs), np.log(np.maximum(ys, 1e-300))
    y = np.interp(lx, lxs, lys)
    if extrapolate:
        lo = (lys[1] - lys[0]) / (lxs[1] - lxs[0])
        hi = (lys[-1] - lys[-2]) / (lxs[-1] - lxs[-2])
        y = np.where(lx < lxs[0], lys[0] + lo * (lx - lxs[0]), y)
        y = np.where(lx > lxs[-1], lys[-1] + hi * (lx - lxs[-1]), y)
    return np.exp(y)


def interp_scalar(table: Table, x: float, *, extrapolate: bool = True) -> float:
    """:func:`interp_table` for one value (pure Python: the tables are tiny and this is hot)."""
    if len(table) == 1:
        return table[0][1]
    lx = math.log(max(x, 1e-300))
    if lx <= math.log(table[0][0]):
        (x0, y0), (x1, y1) = table[0], table[1]
        if not extrapolate:
            return y0
    elif lx >= math.log(table[-1][0]):
        (x0, y0), (x1, y1) = table[-2], table[-1]
        if not extrapolate:
            return y1
    else:
        i = 1
        while math.log(table[i][0]) < lx:
            i += 1
        (x0, y0), (x1, y1) = table[i - 1], table[i]
    l0, l1 = math.log(x0), math.log(x1)
    ly0, ly1 = math.log(max(y0, 1e-300)), math.log(max(y1, 1e-300))
    return math.exp(ly0 + (ly1 - ly0) * (lx - l0) / (l1 - l0))


def linear_table(table: Table, x: float) -> float:
    """Piecewise-linear interpolation, linear extrapolation beyond the ends, never below 0."""
    xs = [p[0] for p in table]
    ys = [p[1] for p in table]
    if len(xs) == 1:
        return max(ys[0], 0.0)
    if x <= xs[0]:
        s = (ys[1] - ys[0]) / (xs[1] - xs[0])
        y = ys[0] + s * (x - xs[0])
    elif x >= xs[-1]:
        s = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        y = ys[-1] + s * (x - xs[-1])
    else:
        y = float(np.interp(x, xs, ys))
    return max(float(y), 0.0)


def interp_fraction(table: Table, x: float) -> float:
    """A table of fractions that may hold zeros: power law in x between the points when all
    are positive, else linear in log x; the end values hold beyond the ends."""
    if all(f > 0 for _, f in table):
        return interp_scalar(table, x, extrapolate=False)
    xs = [p[0] for p in table]
    ys = [p[1] for p in table]
    return float(np.interp(math.log(x), np.log(xs), ys))
