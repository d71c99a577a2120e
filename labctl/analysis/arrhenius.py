"""Activation energy from the charge-transfer resistance at several temperatures.

1/Rct = A exp(-Ea / (R T)): a straight line ln(1/Rct) = ln A - (Ea/R) (1/T), T in K.
Ea = -R * slope, with the standard error of the regression slope as its 1-sigma
uncertainty (needs at least 3 temperatures; with 2 the line is exact and no
uncertainty is given).  The pre-factor A (S, i.e. 1/ohm) and R^2 are reported too.
"""

from __future__ import annotations

import math

import numpy as np

from labctl.core.constants import GAS_CONSTANT, ZERO_CELSIUS_K

from ._core import AnalysisError, Result, as_1d, linregress, sigma_or_none


def fit_arrhenius(temperature_c, rct, *, method: str = "arrhenius-1/Rct") -> list[Result]:
    """[Ea (kJ/mol), A (S)] from Rct (ohm) measured at ``temperature_c`` (degC)."""
    t = as_1d("temperature", temperature_c)
    r = as_1d("Rct", rct)
    if t.shape != r.shape:
        raise AnalysisError(f"{t.size} temperatures but {r.size} Rct values")
    ok = np.isfinite(t) & np.isfinite(r)
    t, r = t[ok], r[ok]
    if np.any(r <= 0):
        raise AnalysisError("Rct values must be positive (ohm)")
    tk = t + ZERO_CELSIUS_K
    if np.any(tk <= 0):
        raise AnalysisError("a temperature is below absolute zero: temperatures are in degC")
    distinct = np.unique(np.round(tk, 6))
    if distinct.size < 2:
        raise AnalysisError(
            f"an Arrhenius fit needs at least 2 different temperatures (3 for an uncertainty); got {distinct.size}"
        )
    x = 1.0 / tk
    y = np.log(1.0 / r)
    lr = linregress(x, y)
    ea = -GAS_CONSTANT * lr["slope"] / 1e3
    s_ea = GAS_CONSTANT * lr["se_slope"] / 1e3
    a = math.exp(lr["intercept"])
    s_a = a * lr["se_intercept"]
    details = {
        "temperatures_C": t.tolist(),
        "rct_ohm": r.tolist(),
        "r2": lr["r2"],
        "n_temperatures": int(distinct.size),
        "residual": {"rms_ln": lr["s_res"], "dof": int(t.size - 2), "n_points": int(t.size)},
        "model": "ln(1/Rct) = ln(A) - Ea/(R T)",
    }
    if distinct.size < 3:
        details["note"] = "2 temperatures: the line is exact, no uncertainty"
    return [
        Result("Ea", ea, "kJ/mol", sigma_or_none(s_ea), method, details),
        Result("arrhenius_A", a, "S", sigma_or_none(s_a), method, dict(details)),
    ]
