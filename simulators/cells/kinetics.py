"""Electrode physics shared by the cell kinds: Arrhenius scaling, Butler-Volmer with iR,
Mg plating/stripping hysteresis, R||CPE impedance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labctl.core.constants import FARADAY, GAS_CONSTANT, ZERO_CELSIUS_K
from labctl.simulators.cells.tables import interp_scalar
from labctl.simulators.presets import Table

__all__ = ["arrhenius_exponent", "butler_volmer", "butler_volmer_ir", "bv_factor", "cpe_rc", "hysteresis"]


def arrhenius_exponent(activation_energy: float, temp_c: Any, reference_c: float) -> np.ndarray:
    """Ea/R (1/T - 1/T0), T and T0 in K: a rate scales as exp(-this), a resistance as exp(+this)."""
    t = np.asarray(temp_c, dtype=float) + ZERO_CELSIUS_K
    t0 = reference_c + ZERO_CELSIUS_K
    return activation_energy / GAS_CONSTANT * (1.0 / t - 1.0 / t0)


def bv_factor(electrons: float, temp_c: float, electrodes: float = 2.0) -> float:
    """n F / (electrodes R T) (1/V): the overpotential is shared by ``electrodes`` identical ones."""
    t = float(temp_c) + ZERO_CELSIUS_K
    return electrons * FARADAY / (electrodes * GAS_CONSTANT * t)


def butler_volmer(eta: np.ndarray, i0: float, alpha: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Current I = i0 [exp(a b eta) - exp(-(1-a) b eta)] and dI/d(eta) (exponents clipped at +-200)."""
    ea = np.exp(np.clip(alpha * b * eta, -200, 200))
    ec = np.exp(np.clip(-(1 - alpha) * b * eta, -200, 200))
    return i0 * (ea - ec), i0 * b * (alpha * ea + (1 - alpha) * ec)


def butler_volmer_ir(e: Any, i0: float, alpha: float, b: float, rs: float) -> np.ndarray:
    """Current I solving I = BV(e - I Rs) (Newton from the clipped iR-free current), elementwise."""
    e = np.asarray(e, dtype=float)
    cur = np.clip(butler_volmer(e, i0, alpha, b)[0], -abs(e) / rs, abs(e) / rs)
    for _ in range(60):
        f, df = butler_volmer(e - cur * rs, i0, alpha, b)
        step = (cur - f) / (1.0 + rs * df)
        cur = cur - step
        if np.all(np.abs(step) <= 1e-12 + 1e-10 * np.abs(cur)):
            break
    return cur


def hysteresis(table: Table, growth: float, j: float, cycles: int) -> float:
    """Mg|Mg plateau |V| (both electrodes) at current density ``j``, grown by ``growth`` per cycle."""
    return interp_scalar(table, j) * (1.0 + growth * cycles)


def cpe_rc(r: Any, q: float, alpha: float, omega: np.ndarray) -> np.ndarray:
    """Impedance of R in parallel with a CPE: R / (1 + R Q (j w)^alpha)."""
    return r / (1.0 + r * q * (1j * omega) ** alpha)
