"""Text shared by the plots and the HTML: numbers, units, cycle ranges, run titles, result values.

No matplotlib here: the HTML side and :class:`~labctl.reports.runview.RunView` use it too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from labctl.core.formatting import fmt_duration

__all__ = [
    "cell_title",
    "cycle_groups",
    "cycles_text",
    "display_value",
    "electrodes",
    "fmt",
    "fmt_duration",
    "group_label",
    "result_note",
    "run_title",
    "time_unit",
]


def fmt(v: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; integers as they are; ``-`` for None/NaN/inf."""
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


def time_unit(span_s: float) -> tuple[str, float]:
    """Axis unit for a time span: (label, divisor)."""
    if span_s >= 3 * 3600:
        return "h", 3600.0
    if span_s >= 600:
        return "min", 60.0
    return "s", 1.0


def cycle_groups(cycles: Sequence[int]) -> list[list[int]]:
    """Sorted cycles split into runs of consecutive numbers: [1,2,3,9,10] -> [[1,2,3],[9,10]]."""
    out: list[list[int]] = []
    for c in sorted({int(c) for c in cycles}):
        if out and c == out[-1][-1] + 1:
            out[-1].append(c)
        else:
            out.append([c])
    return out


def group_label(g: Sequence[int]) -> str:
    return f"cycle {g[0]}" if len(g) == 1 else f"cycles {g[0]}-{g[-1]}"


def cycles_text(cycles: Sequence[int]) -> str:
    """[1, 2, 3, 10] -> 'cycles 1-3, 10'."""
    groups = cycle_groups(cycles)
    parts = [str(g[0]) if len(g) == 1 else f"{g[0]}-{g[-1]}" for g in groups]
    return ("cycle " if len(groups) == 1 and len(groups[0]) == 1 else "cycles ") + ", ".join(parts)


def electrodes(cell: dict) -> str | None:
    """'working | counter' of a cell description (counter = working when not given), None without a working electrode."""
    if not cell.get("working"):
        return None
    return f"{cell['working']} | {cell.get('counter') or cell['working']}"


def cell_title(cell: dict) -> str:
    """'symmetric cell, Mg | Mg, S1': kind, electrodes and id as stored for the run."""
    parts = []
    if cell.get("kind"):
        parts.append(f"{cell['kind']} cell")
    el = electrodes(cell)
    if el:
        parts.append(el)
    if cell.get("id"):
        parts.append(str(cell["id"]))
    return ", ".join(parts)


def run_title(run_id: int, protocol: Any, what: str) -> str:
    return f"Run {run_id} ({protocol or ''}): {what}"


def display_value(r: dict) -> tuple[str, str, str]:
    """(value, uncertainty, unit) in the units a researcher reads: uA/cm2, %, mV, h."""
    name = str(r.get("name") or "")
    unit = r.get("unit") or ""
    v, u = r.get("value"), r.get("uncertainty")
    factor, shown = 1.0, unit
    if unit == "A/cm2" and v is not None and abs(float(v)) < 1e-3:
        factor, shown = 1e6, "µA/cm2"
    elif unit == "" and name.startswith("ce"):
        factor, shown = 100.0, "%"
    elif unit == "V" and name in ("hysteresis", "dE_50"):
        factor, shown = 1e3, "mV"
    elif unit == "s" and name in ("t_short", "cycling_time"):
        factor, shown = 1 / 3600.0, "h"
    vs = fmt(None if v is None else float(v) * factor, 5)
    us = "" if u is None else fmt(float(u) * factor, 2)
    return vs, us, shown


def result_note(r: dict) -> str:
    """The details of a result worth a table column: temperature, cycle, circuit, errors, fit residual."""
    d = r.get("data") or {}
    bits = []
    for key, f in (
        ("temperature_C", "{:.1f} °C"),
        ("cycle", "cycle {}"),
        ("circuit", "{}"),
        ("n_cycles", "{} cycles"),
        ("error", "{}"),
        ("warning", "{}"),
    ):
        if d.get(key) is not None and d.get(key) != "":
            try:
                bits.append(f.format(d[key]))
            except (ValueError, TypeError):
                bits.append(str(d[key]))
    if isinstance(d.get("residual"), dict) and d["residual"].get("rel_rms") is not None:
        bits.append(f"rel. rms {100 * d['residual']['rel_rms']:.2g} %")
    return "; ".join(bits)
