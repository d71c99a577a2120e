"""The common result type, the error type and small numeric helpers of labctl.analysis."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Version of the analysis code; stored with every result so a re-analysis can be told apart.
ANALYSIS_VERSION = "1.0.0"


class AnalysisError(ValueError):
    """The data cannot give the requested result; the message says why and what to change."""

    def __init__(self, message: str, *, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: 0-based character position in an input string (circuit parser), when relevant.
        self.position = position

    def __str__(self) -> str:  # keep str(e) == message even with keyword attributes
        return self.message


def _jsonable(x: Any) -> Any:
    """Plain-Python, JSON-serialisable copy of ``x`` (numpy scalars/arrays, NaN -> None)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()]
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return None if not math.isfinite(v) else v
    if isinstance(x, (np.complexfloating, complex)):
        return [_jsonable(x.real), _jsonable(x.imag)]
    return x


@dataclass(frozen=True)
class Result:
    """One analysed quantity.

    ``uncertainty`` is a 1-sigma standard uncertainty in the same unit as ``value``
    (None when the method cannot give one).  ``method`` names how the value was
    obtained; ``details`` carries the rest (window, residual statistics, step index,
    circuit, ...), all JSON-serialisable via :meth:`to_dict`.
    """

    name: str
    value: float
    unit: str
    uncertainty: float | None
    method: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "value": _jsonable(self.value),
            "unit": self.unit,
            "uncertainty": _jsonable(self.uncertainty),
            "method": self.method,
            "details": _jsonable(self.details),
            "analysis_version": ANALYSIS_VERSION,
        }


def sigma_or_none(s: float) -> float | None:
    """A 1-sigma value, or None when it is not finite."""
    s = float(s)
    return s if math.isfinite(s) else None


def as_1d(name: str, x: Any) -> np.ndarray:
    """``x`` as a float 1-D array, or AnalysisError naming the argument."""
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"{name}: expected numbers, got {type(x).__name__} ({exc})") from None
    if a.ndim != 1:
        a = a.ravel()
    return a


def linregress(x: np.ndarray, y: np.ndarray) -> dict:
    """Ordinary least-squares line y = a + b x with standard errors (needs >= 2 points).

    Returns slope, intercept, their standard errors (NaN with only 2 points), r2 and
    the residual standard deviation.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    n = len(x)
    xm, ym = x.mean(), y.mean()
    sxx = float(np.sum((x - xm) ** 2))
    if sxx == 0.0:
        raise AnalysisError("all x values are equal: a straight line cannot be fitted")
    slope = float(np.sum((x - xm) * (y - ym)) / sxx)
    intercept = float(ym - slope * xm)
    res = y - (intercept + slope * x)
    ssr = float(np.sum(res**2))
    sst = float(np.sum((y - ym) ** 2))
    r2 = 1.0 - ssr / sst if sst > 0 else 1.0
    if n > 2:
        s2 = ssr / (n - 2)
        se_slope = math.sqrt(s2 / sxx)
        se_intercept = math.sqrt(s2 * (1.0 / n + xm**2 / sxx))
        cov = -xm * s2 / sxx
        s_res = math.sqrt(s2)
    else:
        se_slope = se_intercept = cov = s_res = float("nan")
    return {
        "slope": slope,
        "intercept": intercept,
        "se_slope": se_slope,
        "se_intercept": se_intercept,
        "cov_slope_intercept": cov,
        "r2": r2,
        "s_res": s_res,
        "n": n,
    }


def covariance_from_jacobian(jac: np.ndarray, residuals: np.ndarray) -> tuple[np.ndarray, float]:
    """Parameter covariance as curve_fit (absolute_sigma=False) computes it.

    cov = (J^T J)^-1 * SSR / (m - n), via an SVD pseudo-inverse; directions the data
    does not determine get infinite variance.  Returns (cov, residual variance).
    """
    m, n = jac.shape
    dof = m - n
    ssr = float(residuals @ residuals)
    s2 = ssr / dof if dof > 0 else float("inf")
    _, s, vt = np.linalg.svd(jac, full_matrices=False)
    tol = np.finfo(float).eps * max(jac.shape) * (s[0] if s.size else 0.0)
    keep = s > tol
    vt_k = vt[keep]
    cov = (vt_k.T / s[keep] ** 2) @ vt_k
    if not np.all(keep):
        cov = cov.copy()
        bad = np.any(np.abs(vt[~keep]) > 1e-8, axis=0)
        cov[bad, :] = np.inf
        cov[:, bad] = np.inf
    return cov * s2, s2
