"""The paper's reference table: the observables of bare Mg and Br-Mg the study reports.

Each :class:`Quantity` names the library experiment that measures it, the analysis
result that holds it, the unit it is shown in and the paper's value per preset.
``labctl demo`` (:mod:`.demo`) compares labctl's simulated runs with these numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

# preset name -> how the table names the anode
ANODES = {"bare-mg": "bare Mg", "br-mg": "Br-Mg"}


@dataclass(frozen=True)
class Quantity:
    label: str
    protocol: str  # library file stem
    result: str  # analysis result name
    unit: str  # unit shown in the table
    scale: float  # result value x scale -> shown unit
    paper: dict[str, float]  # preset -> paper value (shown unit)
    higher_is_better: bool
    pick: str = "last"  # first | last | cycle=N (details.cycle) | per_cycle=N (details.per_cycle)
    ce: bool = False  # compared in percentage points


QUANTITIES: list[Quantity] = [
    Quantity("exchange current density j0", "tafel", "j0", "uA/cm2", 1e6, {"bare-mg": 0.08, "br-mg": 0.66}, True),
    Quantity("Rs (EIS, RT)", "eis-rt", "Rs", "ohm", 1.0, {"bare-mg": 46.55, "br-mg": 5.56}, False, "first"),
    Quantity("Rct (EIS, RT)", "eis-rt", "Rct", "ohm", 1.0, {"bare-mg": 8.40e5, "br-mg": 3.34e5}, False, "first"),
    Quantity(
        "Ea (Arrhenius of Rct, 25-60 C)",
        "eis-temperature",
        "Ea",
        "kJ/mol",
        1.0,
        {"bare-mg": 49.20, "br-mg": 36.65},
        False,
    ),
    Quantity(
        "R_SEI after 10 cycles", "eis-cycling", "R_SEI", "ohm", 1.0, {"bare-mg": 3.39, "br-mg": 2.16}, False, "cycle=10"
    ),
    Quantity(
        "R_SEI after 200 cycles",
        "eis-cycling",
        "R_SEI",
        "ohm",
        1.0,
        {"bare-mg": 9.14, "br-mg": 2.96},
        False,
        "cycle=200",
    ),
    Quantity(
        "life at 0.5 mA/cm2 (short)", "symmetric-0.5mA", "t_short", "h", 1 / 3600, {"bare-mg": 796, "br-mg": 1610}, True
    ),
    Quantity(
        "hysteresis at 0.5 mA/cm2", "symmetric-0.5mA", "hysteresis", "mV", 1e3, {"bare-mg": 145, "br-mg": 68}, False
    ),
    Quantity(
        "life at 5 mA/cm2 (short)", "symmetric-5mA", "t_short", "h", 1 / 3600, {"bare-mg": 194, "br-mg": 263}, True
    ),
    Quantity("hysteresis at 5 mA/cm2", "symmetric-5mA", "hysteresis", "mV", 1e3, {"bare-mg": 225, "br-mg": 170}, False),
    Quantity("Aurbach CE", "aurbach-ce", "ce_aurbach", "%", 100, {"bare-mg": 94.81, "br-mg": 98.13}, True, ce=True),
    Quantity(
        "mean CE, 0.5 mA/cm2",
        "ce-longterm-0.5mA",
        "ce_mean",
        "%",
        100,
        {"bare-mg": 96.47, "br-mg": 99.50},
        True,
        ce=True,
    ),
    Quantity(
        "cycle life, 0.5 mA/cm2", "ce-longterm-0.5mA", "cycle_life", "cycles", 1, {"bare-mg": 380, "br-mg": 1630}, True
    ),
    Quantity(
        "mean CE, 3 mA/cm2", "ce-longterm-3mA", "ce_mean", "%", 100, {"bare-mg": 98.52, "br-mg": 99.20}, True, ce=True
    ),
    Quantity(
        "cycle life, 3 mA/cm2", "ce-longterm-3mA", "cycle_life", "cycles", 1, {"bare-mg": 116, "br-mg": 234}, True
    ),
    Quantity(
        "full cell first capacity",
        "full-cell-0.1C",
        "capacity_discharge_first",
        "mAh/g",
        1,
        {"bare-mg": 38.37, "br-mg": 54.01},
        True,
    ),
    Quantity(
        "full cell best capacity",
        "full-cell-0.1C",
        "capacity_discharge_best",
        "mAh/g",
        1,
        {"bare-mg": 74.91, "br-mg": 98.40},
        True,
    ),
    Quantity(
        "full cell dE at 50 % (cycle 20)",
        "full-cell-0.1C",
        "dE_50",
        "V",
        1,
        {"bare-mg": 0.74, "br-mg": 0.15},
        False,
        "per_cycle=20",
    ),
]
