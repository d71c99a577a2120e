"""Run reports: PNG plots (matplotlib, Agg, no display) and an ``index.html`` per report.

:func:`write_report` / :func:`build_report` plot what one run contains (voltage vs time with
zooms on chosen cycles, Nyquist and Bode plots with the fitted circuits, Tafel, Arrhenius,
CE, capacity and hysteresis per cycle, voltage vs capacity and dQ/dV of full cells) and
write the run's summary and results table.  :func:`compare_runs` / :func:`build_comparison`
overlay several runs like the panels of a paper figure.  Numbers come from
``labctl.analysis``; this package only draws them.

Modules, by concern:

* :mod:`~labctl.reports.runview` -- :class:`RunView`, what a report reads from one run
  (the cell as stored with the run, passed to the analysis unchanged);
* :mod:`~labctl.reports.series` -- per-cycle series and Arrhenius points from the results;
* :mod:`~labctl.reports.downsample` -- the min/max :class:`Envelope` of long traces;
* :mod:`~labctl.reports.text` -- numbers, units, labels (:func:`display_value`);
* :mod:`~labctl.reports.style` -- figures on the Agg canvas, colours, scales;
* plots by technique: :mod:`~labctl.reports.voltage_time`, :mod:`~labctl.reports.eis`
  (Nyquist, Bode), :mod:`~labctl.reports.tafel`, :mod:`~labctl.reports.arrhenius`,
  :mod:`~labctl.reports.temperature`, :mod:`~labctl.reports.cycling` (CE, capacity,
  hysteresis, polarisation), :mod:`~labctl.reports.full_cell` (voltage vs capacity,
  dQ/dV), :mod:`~labctl.reports.sweeps` (LSV, CV);
* :mod:`~labctl.reports.html_index` -- index.html, tables, :class:`Report`;
* :mod:`~labctl.reports.run_report` (one run) and :mod:`~labctl.reports.compare` (several).

``import labctl.reports`` does not import matplotlib: the plotting names below are
imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from labctl.reports.downsample import ENVELOPE_BINS, RAW_POINT_LIMIT, Envelope
from labctl.reports.html_index import Report
from labctl.reports.runview import (
    TRACE_KINDS,
    CycleSeries,
    RunView,
    Spectrum,
    TafelCurve,
)
from labctl.reports.series import ArrheniusData, arrhenius_data
from labctl.reports.text import display_value

if TYPE_CHECKING:
    from labctl.reports.arrhenius import plot_arrhenius
    from labctl.reports.compare import build_comparison, compare_runs
    from labctl.reports.cycling import plot_ce, plot_hysteresis, plot_polarisation
    from labctl.reports.eis import plot_bode, plot_nyquist
    from labctl.reports.full_cell import plot_dqdv, plot_voltage_capacity
    from labctl.reports.run_report import build_report, write_report
    from labctl.reports.sweeps import plot_sweeps
    from labctl.reports.tafel import plot_tafel
    from labctl.reports.temperature import plot_temperature
    from labctl.reports.voltage_time import plot_voltage_time

#: public name -> module that defines it (imports matplotlib, so imported when first asked for)
_LAZY = {
    "build_report": "run_report",
    "write_report": "run_report",
    "build_comparison": "compare",
    "compare_runs": "compare",
    "plot_voltage_time": "voltage_time",
    "plot_nyquist": "eis",
    "plot_bode": "eis",
    "plot_tafel": "tafel",
    "plot_arrhenius": "arrhenius",
    "plot_temperature": "temperature",
    "plot_ce": "cycling",
    "plot_hysteresis": "cycling",
    "plot_polarisation": "cycling",
    "plot_voltage_capacity": "full_cell",
    "plot_dqdv": "full_cell",
    "plot_sweeps": "sweeps",
}

__all__ = [
    "ENVELOPE_BINS",
    "RAW_POINT_LIMIT",
    "TRACE_KINDS",
    "ArrheniusData",
    "CycleSeries",
    "Envelope",
    "Report",
    "RunView",
    "Spectrum",
    "TafelCurve",
    "arrhenius_data",
    "build_comparison",
    "build_report",
    "compare_runs",
    "display_value",
    "plot_arrhenius",
    "plot_bode",
    "plot_ce",
    "plot_dqdv",
    "plot_hysteresis",
    "plot_nyquist",
    "plot_polarisation",
    "plot_sweeps",
    "plot_tafel",
    "plot_temperature",
    "plot_voltage_capacity",
    "plot_voltage_time",
    "write_report",
]
assert set(__all__) >= set(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
