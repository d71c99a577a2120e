"""Physical constants and fixed unit factors: the one place labctl defines them.

Core layer: imports nothing of labctl.  Values are CODATA 2018 exact SI values where
the SI fixes them (F = N_A e, R = N_A k); every module that needs one imports it from
here, so the simulators, the analysis and the reports cannot drift apart.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "COULOMBS_PER_MAH",
    "FARADAY",
    "GAS_CONSTANT",
    "MO6S8_THEORETICAL_CAPACITY_MAH_G",
    "SECONDS_PER_HOUR",
    "ZERO_CELSIUS_K",
]

FARADAY: Final = 96485.33212
"""Faraday constant, C/mol."""

GAS_CONSTANT: Final = 8.314462618
"""Molar gas constant, J/(mol K)."""

ZERO_CELSIUS_K: Final = 273.15
"""0 degC in kelvin (T/K = t/degC + ZERO_CELSIUS_K)."""

SECONDS_PER_HOUR: Final = 3600.0
"""Seconds in one hour."""

COULOMBS_PER_MAH: Final = 3.6
"""Coulombs in one mAh (1e-3 A x 3600 s)."""

MO6S8_THEORETICAL_CAPACITY_MAH_G: Final = 128.8
"""Theoretical specific capacity of Chevrel-phase Mo6S8, mAh/g (Mg2Mo6S8: 4 e- per formula unit); defines 1C."""
