"""Exchange current density and Tafel slopes from a slow potential sweep.

Input: potential E (V), current I (A; positive = anodic at the working electrode),
electrode area (cm2), equilibrium/open-circuit potential E_eq (V; estimated from the
zero crossing of the current when not given), temperature (degC), electrons n
(2 for Mg).  Overpotential eta = E - E_eq, current density j = I / area (A/cm2).

Two methods, each stating its window in the result:

``tafel-extrapolation`` (:func:`fit_tafel`)
    Points with window[0] <= |eta| <= window[1] (default 60 mV up to the sweep
    limit) on both branches.  A straight line log10|j| against eta per branch gives
    the starting slopes; then the Butler-Volmer equation

        j = j0 [exp(alpha_a n F eta / RT) - exp(-alpha_c n F eta / RT)]

    is fitted to log10|j| of the same points (least squares in log10 space), which
    is the Tafel extrapolation without the bias of the neglected back reaction near
    the start of the window.  Reported: j0 (A/cm2), anodic and cathodic Tafel slopes
    b = ln(10) RT / (alpha n F) in mV/dec, transfer coefficients alpha_a, alpha_c.

``micro-polarisation`` (:func:`fit_micropolarisation`)
    Points with |eta| <= 10 mV: j(eta) is fitted with a cubic polynomial (a line
    when there are fewer than 8 points) and its slope at eta = 0 gives
    j0 = RT / ((alpha_a + alpha_c) n F) * dj/deta, with alpha_a + alpha_c = 1 by
    default (parameter ``alpha_sum``); :func:`analyze_tafel` with both methods uses the
    Tafel fit's alpha_a + alpha_c (2 alpha for the symmetric form), so the two j0 agree
    when the slopes are known.

Symmetric cells (Mg|Mg)
    A sweep of a symmetric cell is a sweep of the cell voltage, which is shared by
    two electrodes carrying the same current in opposite directions.  By default the
    curve is treated as one electrode's Butler-Volmer curve (eta = cell voltage minus
    its open-circuit value).  With ``symmetric=True`` the cell form for two identical
    electrodes with alpha_a = alpha_c = 0.5 is fitted instead:

        j = 2 j0 sinh(alpha n F eta_cell / (2 R T))

    with j0 and an effective alpha (0.5 for the ideal case) as parameters; the cell
    Tafel slope b_cell = ln(10) 2 R T / (alpha n F) is reported in mV/dec, and the
    micro-polarisation j0 is twice that of one electrode for the same slope
    (the two charge-transfer resistances are in series).  Note that 2 j0 sinh(k V)
    is the one-electrode form with alpha_a = alpha_c: the Tafel-extrapolated j0 is
    the same either way; what changes is the reading of the slopes (per electrode,
    alpha_a = alpha_c = alpha/2 in the one-electrode reading) and the
    micro-polarisation j0 (factor 2).  labctl's analyze_run uses the one-electrode
    reading unless the step or the cell says ``symmetric``.

Errors (AnalysisError): no Tafel region (the sweep does not reach the window or has
too few points in it), too noisy (points of the wrong sign in the window, a poor
straight line, or relative uncertainties above ``max_rel_uncertainty``), no zero
crossing to estimate E_eq.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from labctl.core.constants import FARADAY, GAS_CONSTANT, ZERO_CELSIUS_K

from ._core import AnalysisError, Result, as_1d, covariance_from_jacobian, linregress, sigma_or_none

LN10 = math.log(10.0)


def _f_over_rt(temperature_c: float) -> float:
    t = float(temperature_c) + ZERO_CELSIUS_K
    if not t > 0:
        raise AnalysisError(f"temperature {temperature_c} degC is below absolute zero")
    return FARADAY / (GAS_CONSTANT * t)


def _inputs(potential, current, area_cm2):
    e = as_1d("potential", potential)
    i = as_1d("current", current)
    if e.shape != i.shape:
        raise AnalysisError(f"potential has {e.size} values but current has {i.size}")
    if not (area_cm2 and float(area_cm2) > 0):
        raise AnalysisError(f"electrode area must be positive (cm2), got {area_cm2}")
    ok = np.isfinite(e) & np.isfinite(i)
    return e[ok], i[ok] / float(area_cm2)


def estimate_e_eq(potential, current) -> float:
    """Equilibrium potential from the zero crossings of the current (median of them)."""
    e = as_1d("potential", potential)
    i = as_1d("current", current)
    ok = np.isfinite(e) & np.isfinite(i)
    e, i = e[ok], i[ok]
    zero = e[i == 0]
    s = np.sign(i)
    k = np.nonzero(s[:-1] * s[1:] < 0)[0]
    if k.size == 0 and zero.size == 0:
        raise AnalysisError(
            "the current never changes sign, so the equilibrium (open-circuit) potential cannot be "
            "estimated from a zero crossing: give e_eq explicitly"
        )
    cross = e[k] - i[k] * (e[k + 1] - e[k]) / (i[k + 1] - i[k])
    return float(np.median(np.concatenate((cross, zero))))


@dataclass
class TafelFit:
    """Result of :func:`fit_tafel` or :func:`fit_micropolarisation`."""

    method: str
    symmetric: bool
    values: dict
    sigmas: dict
    window: tuple
    e_eq: float
    e_eq_source: str
    details: dict = field(default_factory=dict)

    _UNITS = {
        "j0": "A/cm2",
        "b_a": "mV/dec",
        "b_c": "mV/dec",
        "alpha_a": "",
        "alpha_c": "",
        "b_cell": "mV/dec",
        "alpha": "",
    }

    def results(self, details: dict | None = None) -> list[Result]:
        d = {
            "window_V": list(self.window),
            "symmetric": self.symmetric,
            "e_eq_V": self.e_eq,
            "e_eq_source": self.e_eq_source,
            **self.details,
        }
        if details:
            d.update(details)
        out = []
        for name, v in self.values.items():
            rname = name if self.method == "tafel-extrapolation" else f"{name}_micro"
            out.append(
                Result(
                    rname,
                    float(v),
                    self._UNITS[name],
                    sigma_or_none(self.sigmas.get(name, float("nan"))),
                    self.method,
                    dict(d),
                )
            )
        if self.method == "tafel-extrapolation":
            out.append(Result("E_eq", self.e_eq, "V", None, self.e_eq_source, dict(d)))
        return out


def _window_points(eta, j, lo, hi, sign):
    sel = (sign * eta >= lo) & (sign * eta <= hi)
    return eta[sel], j[sel]


def fit_tafel(
    potential,
    current,
    *,
    area_cm2: float,
    e_eq: float | None = None,
    temperature_c: float = 22.0,
    n: int = 2,
    window: tuple[float, float | None] = (0.06, None),
    symmetric: bool = False,
    min_points: int = 5,
    max_rel_uncertainty: float = 0.2,
    min_r2: float = 0.9,
) -> TafelFit:
    """Tafel extrapolation; see the module docstring.  ``window`` in V of |eta|."""
    e, j = _inputs(potential, current, area_cm2)
    src = "given"
    if e_eq is None:
        e_eq = estimate_e_eq(e, j)
        src = "zero crossing"
    eta = e - float(e_eq)
    lo = float(window[0])
    if window[1] is not None and not (0 <= lo < float(window[1])):
        raise AnalysisError(f"Tafel window must satisfy 0 <= low < high (V), got {window}")
    hi = float(window[1]) if window[1] is not None else float(np.abs(eta).max())
    f = _f_over_rt(temperature_c)
    reach = f"the sweep reaches {1e3 * eta.min():+.0f} to {1e3 * eta.max():+.0f} mV around E_eq = {e_eq:.4f} V"
    if hi <= lo:
        raise AnalysisError(
            f"no Tafel region: {reach}, but the Tafel window starts at |eta| = {1e3 * lo:.0f} mV. "
            f"Sweep further from E_eq or lower the window start"
        )
    branches = {}
    for name, sign in (("anodic", 1.0), ("cathodic", -1.0)):
        be, bj = _window_points(eta, j, lo, hi, sign)
        if be.size < min_points:
            raise AnalysisError(
                f"no {name} Tafel region: {reach}; only {be.size} points have |eta| in "
                f"{1e3 * lo:.0f}..{1e3 * hi:.0f} mV (need {min_points}). Sweep further from E_eq "
                f"or lower the window start"
            )
        wrong = np.sum(sign * bj <= 0)
        if wrong > 0.1 * be.size:
            raise AnalysisError(
                f"curve too noisy: {wrong} of {be.size} points in the {name} Tafel window have a current "
                f"of the wrong sign"
            )
        keep = sign * bj > 0
        be, bj = be[keep], bj[keep]
        lr = linregress(be, np.log10(np.abs(bj)))
        if lr["r2"] < min_r2:
            alt = _straightest(eta, j, sign, min(hi - lo, 0.1), min_points)
            hint = (
                f"; try --window {alt[0]:.3f},{alt[1]:.3f} (|eta| in V, R^2 = {alt[2]:.3f} on that branch)"
                if alt is not None and alt[2] > lr["r2"]
                else "; no straighter window of that width on this branch: the curve has no Tafel region"
            )
            raise AnalysisError(
                f"not Tafel-shaped: log|j| against eta on the {name} branch is not a straight line in "
                f"|eta| {1e3 * lo:.0f}..{1e3 * hi:.0f} mV (R^2 = {lr['r2']:.2f} < {min_r2}){hint}"
            )
        if sign * lr["slope"] <= 0:
            raise AnalysisError(f"no {name} Tafel region: |j| does not grow with |eta| in the window")
        branches[name] = (be, bj, lr)

    x = np.concatenate([branches["anodic"][0], branches["cathodic"][0]])
    y = np.log10(np.abs(np.concatenate([branches["anodic"][1], branches["cathodic"][1]])))
    la, lc = branches["anodic"][2], branches["cathodic"][2]
    if symmetric:
        s0 = 0.5 * (la["slope"] - lc["slope"])
        u0 = np.array([0.5 * (la["intercept"] + lc["intercept"]) * LN10 - math.log(2.0), s0 * LN10])

        def model(u):
            k = u[1]
            return (u[0] + math.log(2.0) + np.log(np.abs(np.sinh(k * x)))) / LN10

        def jac(u):
            k = u[1]
            return np.column_stack((np.full(x.size, 1.0 / LN10), x / np.tanh(k * x) / LN10))

        lb, ub = [-np.inf, 1e-6], [np.inf, np.inf]
    else:
        u0 = np.array([0.5 * (la["intercept"] + lc["intercept"]) * LN10, la["slope"] * LN10, -lc["slope"] * LN10])

        def model(u):
            a, c = u[1], u[2]
            # log|exp(a x) - exp(-c x)| computed stably for both signs of x
            big = np.where(x > 0, a * x, -c * x)
            small = np.where(x > 0, -c * x, a * x)
            return (u[0] + big + np.log1p(-np.exp(small - big))) / LN10

        def jac(u):
            a, c = u[1], u[2]
            ea, ec = np.exp(a * x), np.exp(-c * x)
            d = ea - ec
            return np.column_stack((np.full(x.size, 1.0 / LN10), x * ea / d / LN10, x * ec / d / LN10))

        lb, ub = [-np.inf, 1e-6, 1e-6], [np.inf, np.inf, np.inf]

    with np.errstate(all="ignore"):
        sol = least_squares(
            lambda u: model(u) - y,
            u0,
            jac=jac,
            bounds=(lb, ub),
            method="trf",
            x_scale="jac",
            ftol=1e-12,
            xtol=1e-12,
            gtol=1e-12,
        )
    if not (sol.status > 0 and np.all(np.isfinite(sol.fun))):
        raise AnalysisError(f"the Butler-Volmer fit in the Tafel window did not converge ({sol.message})")
    cov, s2 = covariance_from_jacobian(sol.jac, sol.fun)
    sig = np.sqrt(np.abs(np.diag(cov)))
    u = sol.x
    j0 = math.exp(u[0])
    values = {"j0": j0}
    sigmas = {"j0": j0 * sig[0]}
    if symmetric:
        k, sk = u[1], sig[1]
        values.update(b_cell=1e3 * LN10 / k, alpha=2 * k / (n * f))
        sigmas.update(b_cell=1e3 * LN10 / k * sk / k, alpha=2 * sk / (n * f))
    else:
        for key, kk, sk in (("a", u[1], sig[1]), ("c", u[2], sig[2])):
            values[f"b_{key}"] = 1e3 * LN10 / kk
            sigmas[f"b_{key}"] = 1e3 * LN10 / kk * sk / kk
            values[f"alpha_{key}"] = kk / (n * f)
            sigmas[f"alpha_{key}"] = sk / (n * f)
    for name, v in values.items():
        rel = sigmas[name] / abs(v) if v else float("inf")
        if not rel <= max_rel_uncertainty:
            raise AnalysisError(
                f"curve too noisy: {name} would have a relative uncertainty of {100 * rel:.0f} % "
                f"(limit {100 * max_rel_uncertainty:.0f} %)"
            )
    details = {
        "n": n,
        "temperature_C": float(temperature_c),
        "n_points_anodic": int(branches["anodic"][0].size),
        "n_points_cathodic": int(branches["cathodic"][0].size),
        "r2_anodic": la["r2"],
        "r2_cathodic": lc["r2"],
        "residual": {
            "rms_log10": float(np.sqrt(np.mean(sol.fun**2))),
            "dof": int(x.size - u.size),
            "n_points": int(x.size),
        },
        "model": "2 j0 sinh(alpha n F eta / 2RT)" if symmetric else "Butler-Volmer",
    }
    return TafelFit("tafel-extrapolation", symmetric, values, sigmas, (lo, hi), float(e_eq), src, details)


def _straightest(eta, j, sign: float, width: float, min_points: int) -> tuple[float, float, float] | None:
    """(low, high, R^2) of the straightest |eta| window of ``width`` V on one branch, or None."""
    sel = (sign * eta > 0) & (sign * j > 0)
    x, y = np.abs(eta[sel]), np.log10(np.abs(j[sel]))
    if x.size < min_points or width <= 0:
        return None
    best = None
    for a in np.arange(float(x.min()), float(x.max()) - width + 1e-12, max(width / 5, 0.005)):
        m = (x >= a) & (x <= a + width)
        if m.sum() < min_points:
            continue
        r2 = linregress(x[m], y[m])["r2"]
        if best is None or r2 > best[2]:
            best = (float(a), float(a + width), float(r2))
    return best


def fit_micropolarisation(
    potential,
    current,
    *,
    area_cm2: float,
    e_eq: float | None = None,
    temperature_c: float = 22.0,
    n: int = 2,
    window: float = 0.010,
    alpha_sum: float = 1.0,
    symmetric: bool = False,
    min_points: int = 5,
    max_rel_uncertainty: float = 0.2,
) -> TafelFit:
    """j0 from the slope dj/deta at eta = 0 within |eta| <= ``window`` (V)."""
    e, j = _inputs(potential, current, area_cm2)
    src = "given"
    if e_eq is None:
        e_eq = estimate_e_eq(e, j)
        src = "zero crossing"
    eta = e - float(e_eq)
    sel = np.abs(eta) <= window
    x, y = eta[sel], j[sel]
    if x.size < min_points or np.sum(x > 0) < 2 or np.sum(x < 0) < 2:
        raise AnalysisError(
            f"no micro-polarisation region: {x.size} points within +-{1e3 * window:.0f} mV of E_eq = {e_eq:.4f} V "
            f"(need {min_points}, at least 2 on each side)"
        )
    deg = 3 if x.size >= 8 else 1
    scale = window
    coef, cov = np.polyfit(x / scale, y, deg, cov="unscaled")
    res = y - np.polyval(coef, x / scale)
    dof = x.size - (deg + 1)
    s2 = float(res @ res) / dof if dof > 0 else float("nan")
    slope = coef[-2] / scale
    s_slope = math.sqrt(max(cov[-2, -2] * s2, 0.0)) / scale if dof > 0 else float("nan")
    rel = s_slope / abs(slope) if slope != 0 else float("inf")
    if slope <= 0 or not rel <= max_rel_uncertainty:
        raise AnalysisError(
            f"curve too noisy near E_eq: the slope dj/deta is {slope:.3g} A/(cm2 V) with a relative uncertainty "
            f"of {100 * rel:.0f} % (limit {100 * max_rel_uncertainty:.0f} %; it must be positive)"
        )
    f = _f_over_rt(temperature_c)
    factor = (2.0 if symmetric else 1.0) / (alpha_sum * n * f)
    j0 = factor * slope
    details = {
        "n": n,
        "temperature_C": float(temperature_c),
        "alpha_sum": alpha_sum,
        "polynomial_degree": deg,
        "slope_A_per_cm2_V": slope,
        "residual": {"rms_A_per_cm2": float(np.sqrt(np.mean(res**2))), "dof": int(dof), "n_points": int(x.size)},
    }
    return TafelFit(
        "micro-polarisation",
        symmetric,
        {"j0": j0},
        {"j0": factor * s_slope},
        (0.0, float(window)),
        float(e_eq),
        src,
        details,
    )


def analyze_tafel(potential, current, *, area_cm2: float, method: str = "both", **kw) -> list[Result]:
    """Results of both methods (``method`` 'both', 'tafel' or 'micro').

    With 'both', a failing micro-polarisation analysis (too few points near E_eq) is
    left out, while a failing Tafel extrapolation raises.
    """
    if method not in ("both", "tafel", "micro"):
        raise AnalysisError(f"unknown Tafel method {method!r}: use 'both', 'tafel' or 'micro'")
    micro_kw = {k: kw[k] for k in ("e_eq", "temperature_c", "n", "symmetric") if k in kw}
    if "micro_window" in kw:
        micro_kw["window"] = kw.pop("micro_window")
    if "alpha_sum" in kw:
        micro_kw["alpha_sum"] = kw.pop("alpha_sum")
    out: list[Result] = []
    if method in ("both", "tafel"):
        tf = fit_tafel(potential, current, area_cm2=area_cm2, **kw)
        out += tf.results()
        if method == "both" and "alpha_sum" not in micro_kw:
            # the slopes are known: the micro-polarisation j0 uses the fitted transfer coefficients
            # (not alpha_a + alpha_c = 1), so the two j0 agree for a Butler-Volmer curve
            v = tf.values
            if tf.symmetric and "alpha" in v:
                micro_kw["alpha_sum"] = 2.0 * float(v["alpha"])
            elif "alpha_a" in v and "alpha_c" in v:
                micro_kw["alpha_sum"] = float(v["alpha_a"]) + float(v["alpha_c"])
    if method in ("both", "micro"):
        try:
            out += fit_micropolarisation(potential, current, area_cm2=area_cm2, **micro_kw).results()
        except AnalysisError:
            if method == "micro":
                raise
    return out
