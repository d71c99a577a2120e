"""labctl.analysis: pure functions, arrays in, results with uncertainties out.

No database, no plotting: every function takes arrays (SI units; current density
A/cm2 where stated) and returns :class:`Result` s (value, unit, 1-sigma uncertainty,
method, details) or raises :class:`AnalysisError` with a message saying what is wrong.

Modules: :mod:`.tafel`, :mod:`.eis` (+ :mod:`.circuit`), :mod:`.arrhenius`,
:mod:`.cycling`, :mod:`.io` (external files), :mod:`.dispatch` (``analyze_run``),
:mod:`.cli` (``fit-eis``, ``fit-tafel``).
"""

from ._core import ANALYSIS_VERSION, AnalysisError, Result
from .arrhenius import fit_arrhenius
from .circuit import Circuit, parse_circuit
from .cycling import (
    aurbach_ce,
    ce_results,
    cycle_table,
    dqdv,
    full_cell_results,
    full_cell_table,
    half_cycles,
    hysteresis_results,
    short_circuit_time,
)
from .dispatch import analyze_run
from .eis import EISFit, LinKK, fit_circuit, linkk
from .io import read_eis_file, read_tafel_file
from .tafel import analyze_tafel, estimate_e_eq, fit_micropolarisation, fit_tafel

__all__ = [
    "ANALYSIS_VERSION",
    "AnalysisError",
    "Result",
    "fit_tafel",
    "fit_micropolarisation",
    "analyze_tafel",
    "estimate_e_eq",
    "parse_circuit",
    "Circuit",
    "fit_circuit",
    "EISFit",
    "linkk",
    "LinKK",
    "fit_arrhenius",
    "half_cycles",
    "cycle_table",
    "ce_results",
    "hysteresis_results",
    "short_circuit_time",
    "aurbach_ce",
    "full_cell_table",
    "full_cell_results",
    "dqdv",
    "analyze_run",
    "read_eis_file",
    "read_tafel_file",
]
