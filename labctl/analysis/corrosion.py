"""Polarisation curves read as corrosion scientists read them (mixed-potential curves).

Inputs: potential ``E`` (V vs. the reference) and current ``I`` (A, positive = anodic) of
one sweep; an electrode area (cm2) turns currents into densities (A/cm2).  Definitions:

* **E_corr**: where the current changes sign (linear interpolation between the two points
  around the sign change closest to the smallest |I|); a curve whose current never changes
  sign is not a mixed-potential curve and has no E_corr.
* **iR correction**: ``E - I * R`` with the uncompensated resistance R (ohm).
* **Single-branch Tafel fit** (:func:`tafel_line`): least squares of log10|i| on E over an
  absolute window [E1, E2] of one branch; Tafel slope b = 1 / slope (V/decade, negative on
  the cathodic branch) and i_corr = 10^(slope * E_corr + intercept), the line extrapolated to
  E_corr.
* **Activation fit** (:func:`activation_fit`): both branches under activation control around
  E_corr, i = i_corr (10^((E - E_corr)/b_a) - 10^(-(E - E_corr)/b_c)), least squares on the
  current in a window relative to E_corr (the objective PolCurveFit's ``active_pol_fit``
  uses, so the two agree where the model applies).
* **Stern-Geary**: B = b_a b_c / (ln 10 (b_a + b_c)) (|b| in V/decade); with the polarisation
  resistance R_p = dE/di at E_corr (a straight line through the points within +-10 mV),
  i_corr = B / R_p.

A window whose data are not Tafel-shaped is refused with the reason (the straightness of
log|i| against E, R^2 below ``min_r2``) and the straightest window of the same width on that
branch, so the caller can try it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from ._core import AnalysisError, Result, as_1d

LN10 = math.log(10.0)


@dataclass
class Curve:
    e: np.ndarray  # V (iR corrected when R was given)
    i: np.ndarray  # A/cm2 when an area is given, else A
    unit: str  # 'A/cm2' or 'A'
    notes: list[str] = field(default_factory=list)


def prepare(potential, current, *, area_cm2: float | None = None, r_ohm: float = 0.0, branch: str = "forward") -> Curve:
    """The sweep as (E, i): the forward branch of a cyclic scan, iR corrected, per area."""
    e = as_1d("potential", potential)
    i = as_1d("current", current)
    if e.size != i.size:
        raise AnalysisError(f"potential has {e.size} values, current {i.size}")
    ok = np.isfinite(e) & np.isfinite(i)
    e, i = e[ok], i[ok]
    if e.size < 5:
        raise AnalysisError(f"only {e.size} points: a polarisation curve needs at least 5")
    notes = []
    if branch == "forward" and e.size > 2:
        k = int(np.argmax(e)) if e[0] < e[-1] or np.argmax(e) not in (0, e.size - 1) else e.size - 1
        if e[0] < e[min(k, e.size - 1)] and k < e.size - 1 and (e.size - 1 - k) > 3:
            notes.append(f"forward branch only: the {e.size - 1 - k} points after the apex at {e[k]:.4g} V left out")
            e, i = e[: k + 1], i[: k + 1]
    if r_ohm:
        e = e - i * float(r_ohm)
        notes.append(f"iR corrected with R = {r_ohm:g} ohm")
    if area_cm2 is not None:
        if not area_cm2 > 0:
            raise AnalysisError(f"electrode area must be positive (cm2), got {area_cm2}")
        return Curve(e, i / area_cm2, "A/cm2", notes)
    return Curve(e, i, "A", notes)


def corrosion_potential(c: Curve) -> float:
    """E_corr: the interpolated sign change of the current nearest its smallest |i|."""
    s = np.sign(c.i)
    idx = np.nonzero(s[1:] * s[:-1] < 0)[0]
    if idx.size == 0:
        raise AnalysisError(
            "the current never changes sign: not a mixed-potential (corrosion) curve, so there is no E_corr; "
            "for a single-reaction curve use fit-tafel with --e-eq"
        )
    k0 = int(np.argmin(np.abs(c.i)))
    k = int(idx[np.argmin(np.abs(idx - k0))])
    e1, e2, i1, i2 = c.e[k], c.e[k + 1], c.i[k], c.i[k + 1]
    return float(e1 - i1 * (e2 - e1) / (i2 - i1))


def _line(e: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """slope, intercept, R^2, standard error of the slope."""
    a = np.vstack([e, np.ones_like(e)]).T
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    res = y - a @ coef
    ss = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(res**2)) / ss if ss > 0 else 0.0
    n = e.size
    se = math.sqrt(float(np.sum(res**2)) / (n - 2) / float(np.sum((e - e.mean()) ** 2))) if n > 2 else math.nan
    return float(coef[0]), float(coef[1]), r2, se


def straightest_window(
    c: Curve, width: float, branch: str, e_corr: float, *, min_gap: float = 0.03
) -> tuple[float, float, float] | None:
    """(E1, E2, R^2) of the straightest log|i| window of ``width`` V on a branch (|E - E_corr| >= min_gap)."""
    sel = (c.e >= e_corr + min_gap) if branch == "anodic" else (c.e <= e_corr - min_gap)
    e, i = c.e[sel & (c.i != 0)], c.i[sel & (c.i != 0)]
    if e.size < 5:
        return None
    best = None
    lo, hi = float(e.min()), float(e.max())
    for a in np.arange(lo, hi - width + 1e-12, max(width / 5, 0.005)):
        m = (e >= a) & (e <= a + width)
        if m.sum() < 5:
            continue
        _, _, r2, _ = _line(e[m], np.log10(np.abs(i[m])))
        if best is None or r2 > best[2]:
            best = (float(a), float(a + width), r2)
    return best


def _refuse(c: Curve, why: str, width: float, branch: str, e_corr: float, how: str = "the window") -> AnalysisError:
    alt = straightest_window(c, width, branch, e_corr)
    hint = f"; try {how} {alt[0]:.3f},{alt[1]:.3f} V (R^2 = {alt[2]:.4f} on the {branch} branch)" if alt else ""
    return AnalysisError(f"not Tafel-shaped: {why}{hint}")


def tafel_line(
    c: Curve, window: tuple[float, float], *, e_corr: float | None = None, min_r2: float = 0.98
) -> list[Result]:
    """Single-branch Tafel fit in the absolute window [E1, E2] (see the module docstring)."""
    e1, e2 = sorted(map(float, window))
    ec = corrosion_potential(c) if e_corr is None else float(e_corr)
    m = (c.e >= e1) & (c.e <= e2) & (c.i != 0)
    if m.sum() < 5:
        raise AnalysisError(f"only {int(m.sum())} points in the window {e1:.3f}..{e2:.3f} V: need at least 5")
    branch = "anodic" if float(np.median(c.e[m])) > ec else "cathodic"
    signs = np.sign(c.i[m])
    if np.any(signs != (1 if branch == "anodic" else -1)):
        raise _refuse(
            c,
            f"the window {e1:.3f}..{e2:.3f} V holds currents of both signs (it spans E_corr {ec:.4f} V)",
            e2 - e1,
            branch,
            ec,
        )
    slope, icpt, r2, se = _line(c.e[m], np.log10(np.abs(c.i[m])))
    if r2 < min_r2 or slope == 0:
        raise _refuse(
            c,
            f"log|i| against E in {e1:.3f}..{e2:.3f} V is not a straight line (R^2 = {r2:.4f} < {min_r2})",
            e2 - e1,
            branch,
            ec,
        )
    b = 1.0 / slope
    i_corr = 10.0 ** (slope * ec + icpt)
    details = {
        "window_V": [e1, e2],
        "branch": branch,
        "r2": r2,
        "n_points": int(m.sum()),
        "E_corr_V": ec,
        "notes": c.notes,
    }
    return [
        Result("E_corr", ec, "V", None, "current sign change", {"notes": c.notes}),
        Result(
            f"b_{'a' if branch == 'anodic' else 'c'}",
            b,
            "V/decade",
            abs(se / slope**2),
            "single-branch Tafel line",
            details,
        ),
        Result("i_corr", i_corr, c.unit, None, f"{branch} Tafel line extrapolated to E_corr", details),
    ]


def _model(p, e, ec):
    lg, ba, bc = p
    return 10.0**lg * (10.0 ** ((e - ec) / ba) - 10.0 ** (-(e - ec) / bc))


def activation_fit(
    c: Curve, window: tuple[float, float], *, e_corr: float | None = None, min_r2: float = 0.98
) -> list[Result]:
    """Both branches under activation control, window relative to E_corr (see the module docstring)."""
    ec = corrosion_potential(c) if e_corr is None else float(e_corr)
    w1, w2 = sorted(map(float, window))
    m = (c.e - ec >= w1) & (c.e - ec <= w2)
    e, i = c.e[m], c.i[m]
    if e.size < 6 or not (np.any(i > 0) and np.any(i < 0)):
        raise AnalysisError(f"the window {w1:+.3f}..{w2:+.3f} V around E_corr needs points on both branches")
    imin = float(np.min(np.abs(i[i != 0])))
    imax = float(np.max(np.abs(i)))
    p0 = [math.log10(max(imin, min(imax, float(np.mean(np.abs(i)))))), 0.06, 0.1]
    fit = least_squares(
        lambda p: _model(p, e, ec) - i,
        p0,
        bounds=([math.log10(imin) - 3, 1e-3, 1e-3], [math.log10(imax) + 1, 1.0, 1.0]),
        x_scale=[1.0, 0.05, 0.05],
        xtol=1e-12,
        ftol=1e-12,
    )
    lg, ba, bc = fit.x
    pred = _model(fit.x, e, ec)
    ss = float(np.sum((i - i.mean()) ** 2))
    r2 = 1 - float(np.sum((i - pred) ** 2)) / ss if ss > 0 else 0.0
    at_bound = [n for n, v in (("b_a", ba), ("b_c", bc)) if v > 0.999 or v < 1.001e-3]
    if at_bound or r2 < min_r2:
        why = (
            f"{' and '.join(at_bound)} ran to the bound (1 V/decade): no exponential branch in the window"
            if at_bound
            else f"the activation model leaves R^2 = {r2:.4f} < {min_r2}"
        )
        branch = "anodic" if "b_a" in at_bound else "cathodic"
        raise _refuse(c, why, 0.1, branch, ec, how="a single-branch line fit (method 'line') in the window")
    try:
        jac = fit.jac
        cov = np.linalg.inv(jac.T @ jac) * float(np.sum(fit.fun**2)) / max(e.size - 3, 1)
        sd = np.sqrt(np.diag(cov))
    except np.linalg.LinAlgError:
        sd = np.full(3, np.nan)
    i_corr = 10.0**lg
    bsg = ba * bc / (LN10 * (ba + bc))
    details = {"window_rel_V": [w1, w2], "r2": r2, "n_points": int(e.size), "E_corr_V": ec, "notes": c.notes}
    out = [
        Result("E_corr", ec, "V", None, "current sign change", {"notes": c.notes}),
        Result("i_corr", i_corr, c.unit, float(i_corr * LN10 * sd[0]), "activation fit (both branches)", details),
        Result("b_a", ba, "V/decade", float(sd[1]), "activation fit", details),
        Result("b_c", bc, "V/decade", float(sd[2]), "activation fit", details),
        Result("stern_geary_B", bsg, "V", None, "b_a b_c / (ln10 (b_a + b_c))", {}),
    ]
    rp = polarisation_resistance(c, ec)
    if rp is not None:
        out.append(
            Result("R_p", rp, "ohm cm2" if c.unit == "A/cm2" else "ohm", None, "dE/di within +-10 mV of E_corr", {})
        )
        out.append(Result("i_corr_stern_geary", bsg / rp, c.unit, None, "B / R_p", {"B_V": bsg, "R_p": rp}))
    return out


def polarisation_resistance(c: Curve, e_corr: float, half_width: float = 0.010) -> float | None:
    m = np.abs(c.e - e_corr) <= half_width
    if m.sum() < 3:
        return None
    slope, _, _, _ = _line(c.i[m], c.e[m])
    return float(slope) if slope > 0 else None


def _mixed_model(p, e, ec):
    lg, ba, bc, lgl, gamma = p
    ia = 10.0**lg * 10.0 ** ((e - ec) / ba)
    ic = 10.0**lg * 10.0 ** (-(e - ec) / bc)
    il = 10.0**lgl
    return ia - (ic**gamma / (1.0 + (ic / il) ** gamma)) ** (1.0 / gamma)


def _resid_mixed(p, e, ec, i):
    with np.errstate(over="ignore", invalid="ignore"):
        r = _mixed_model(p, e, ec) - i
    big = 1e6 * float(np.max(np.abs(i)))
    return np.clip(np.where(np.isfinite(r), r, big), -big, big)


def mixed_fit(
    c: Curve, window: tuple[float, float], *, e_corr: float | None = None, min_r2: float = 0.98
) -> list[Result]:
    """Anodic activation, cathodic activation-diffusion with a limiting current i_L (window relative
    to E_corr): i = i_corr 10^((E-E_corr)/b_a) - (i_c^g / (1 + (i_c/i_L)^g))^(1/g), i_c = i_corr
    10^(-(E-E_corr)/b_c), the exponent g in [2, 4] (PolCurveFit's ``mixed_pol_fit`` model and bounds)."""
    ec = corrosion_potential(c) if e_corr is None else float(e_corr)
    w1, w2 = sorted(map(float, window))
    m = (c.e - ec >= w1) & (c.e - ec <= w2)
    e, i = c.e[m], c.i[m]
    if e.size < 8 or not (np.any(i > 0) and np.any(i < 0)):
        raise AnalysisError(f"the window {w1:+.3f}..{w2:+.3f} V around E_corr needs points on both branches")
    nz = np.abs(c.i[c.i != 0])
    lo, hi = math.log10(float(nz.min())), math.log10(float(nz.max()))
    best = None
    for lg0 in (lo + 0.25 * (hi - lo), lo + 0.5 * (hi - lo)):
        p0 = [lg0, 0.06, 0.1, math.log10(float(np.max(np.abs(i[i < 0])))), 3.0]
        p0 = [min(max(p0[0], lo + 1e-6), hi - 1e-6), 0.06, 0.1, min(max(p0[3], lo + 1e-6), hi + 1 - 1e-6), 3.0]
        fit = least_squares(
            lambda p: _resid_mixed(p, e, ec, i),
            p0,
            bounds=([lo, 1e-4, 1e-4, lo, 2.0], [hi, 1.0, 1.0, hi + 1.0, 4.0]),
            x_scale=[1.0, 0.05, 0.05, 1.0, 1.0],
            xtol=1e-12,
            ftol=1e-12,
            max_nfev=4000,
        )
        if best is None or fit.cost < best.cost:
            best = fit
    assert best is not None
    lg, ba, bc, lgl, gamma = best.x
    pred = _mixed_model(best.x, e, ec)
    ss = float(np.sum((i - i.mean()) ** 2))
    r2 = 1 - float(np.sum((i - pred) ** 2)) / ss if ss > 0 else 0.0
    at_bound = [n for n, v in (("b_a", ba), ("b_c", bc)) if v > 0.999]
    if at_bound or r2 < min_r2:
        why = (
            f"{' and '.join(at_bound)} ran to the bound (1 V/decade): no exponential branch in the window"
            if at_bound
            else f"the activation-diffusion model leaves R^2 = {r2:.4f} < {min_r2}"
        )
        raise _refuse(
            c,
            why,
            0.1,
            "anodic" if "b_a" in at_bound else "cathodic",
            ec,
            how="a single-branch line fit (method 'line') in the window",
        )
    details = {
        "window_rel_V": [w1, w2],
        "r2": r2,
        "n_points": int(e.size),
        "E_corr_V": ec,
        "gamma": gamma,
        "notes": c.notes,
    }
    bsg = ba * bc / (LN10 * (ba + bc))
    return [
        Result("E_corr", ec, "V", None, "current sign change", {"notes": c.notes}),
        Result("i_corr", 10.0**lg, c.unit, None, "activation-diffusion fit", details),
        Result("b_a", ba, "V/decade", None, "activation-diffusion fit", details),
        Result("b_c", bc, "V/decade", None, "activation-diffusion fit", details),
        Result("i_L", 10.0**lgl, c.unit, None, "limiting current of the cathodic branch", details),
        Result("stern_geary_B", bsg, "V", None, "b_a b_c / (ln10 (b_a + b_c))", {}),
    ]


AUTO_BAND = (0.050, 0.150)  # V beyond E_corr on each branch
AUTO_MAX_B = 0.5  # V/decade: a steeper "Tafel line" is a limiting current or an ohmic drop


def _auto_branch(c: Curve, ec: float, branch: str, band: tuple[float, float], min_r2: float) -> dict:
    """The Tafel line of one branch in the band beyond E_corr, or the reason it is not one."""
    sgn = 1 if branch == "anodic" else -1
    lo, hi = band
    e1, e2 = sorted((ec + sgn * lo, ec + sgn * hi))
    out: dict = {"branch": branch, "window_V": [e1, e2]}
    reach = float(np.max(c.e) - ec) if sgn > 0 else float(ec - np.min(c.e))
    if reach < hi - 0.005:
        out["reason"] = (
            f"the sweep reaches only {1e3 * max(reach, 0.0):.0f} mV {'above' if sgn > 0 else 'below'} E_corr "
            f"(the band is {1e3 * lo:.0f}-{1e3 * hi:.0f} mV)"
        )
        return out
    m = (c.e >= e1) & (c.e <= e2) & (c.i != 0)
    if m.sum() < 5:
        out["reason"] = f"only {int(m.sum())} points in {e1:.3f}..{e2:.3f} V (need 5)"
        return out
    if np.any(np.sign(c.i[m]) != sgn):
        out["reason"] = f"currents of both signs in {e1:.3f}..{e2:.3f} V (the curve crosses zero again)"
        return out
    slope, icpt, r2, se = _line(c.e[m], np.log10(np.abs(c.i[m])))
    out.update(r2=r2, n_points=int(m.sum()))
    if slope * sgn <= 0:
        out["reason"] = f"|i| falls as the overpotential grows in {e1:.3f}..{e2:.3f} V (passivation, not a Tafel line)"
        return out
    if r2 < min_r2:
        out["reason"] = f"log|i| against E in {e1:.3f}..{e2:.3f} V is not a straight line (R^2 = {r2:.4f} < {min_r2})"
        return out
    b = 1.0 / slope
    if abs(b) > AUTO_MAX_B:
        out["reason"] = (
            f"|i| grows only {abs(slope) * (hi - lo):.2f} decade over {1e3 * (hi - lo):.0f} mV in {e1:.3f}..{e2:.3f} V "
            f"(|b| = {abs(b):.3f} V/decade > {AUTO_MAX_B}): a limiting current or an ohmic drop, not activation control"
        )
        return out
    out.update(slope=slope, intercept=icpt, b=b, b_sd=abs(se / slope**2), i_at_e_corr=10.0 ** (slope * ec + icpt))
    return out


def auto_corrosion(c: Curve, *, band: tuple[float, float] = AUTO_BAND, min_r2: float = 0.98) -> list[Result]:
    """E_corr, Tafel slopes, i_corr and Stern-Geary with the window chosen automatically.

    On each branch, the band ``band`` (V) of overpotential beyond E_corr (50-150 mV by default:
    far enough from E_corr that the other reaction's current is negligible, near enough that
    mass transport and ohmic drop have not yet bent the line) is fitted with a Tafel line
    (:func:`tafel_line`'s least squares); a branch is accepted when the band is covered by the
    sweep with at least 5 points of the branch's sign, log|i| rises with the overpotential,
    R^2 >= ``min_r2`` and |b| <= 0.5 V/decade.  Both branches accepted: i_corr where the two
    lines intersect, Stern-Geary B from b_a and b_c, R_p within +-10 mV and B / R_p.  One
    branch: i_corr from that line at E_corr (the details give why the other was refused).
    Neither: AnalysisError with each branch's reason and the straightest window to try.
    ``b_c`` is negative (the cathodic line's dE / dlog10|i|), as in :func:`tafel_line`.
    """
    ec = corrosion_potential(c)
    lo, hi = band
    fits = {br: _auto_branch(c, ec, br, band, min_r2) for br in ("anodic", "cathodic")}
    ok = [br for br in ("anodic", "cathodic") if "reason" not in fits[br]]
    how = f"automatic window: {1e3 * lo:.0f}-{1e3 * hi:.0f} mV beyond E_corr on each branch"
    if not ok:
        hints = []
        for br in ("anodic", "cathodic"):
            alt = straightest_window(c, hi - lo, br, ec)
            if alt:
                hints.append(f"{alt[0]:.3f},{alt[1]:.3f} V (R^2 = {alt[2]:.4f}, {br})")
        raise AnalysisError(
            f"not Tafel-shaped in the {how}: anodic: {fits['anodic']['reason']}; cathodic: "
            f"{fits['cathodic']['reason']}"
            + (f"; try labctl fit-corrosion --window {' or '.join(hints)}" if hints else "")
        )
    branches = {br: {k: v for k, v in f.items() if k not in ("slope", "intercept")} for br, f in fits.items()}
    details = {"E_corr_V": ec, "window": how, "branches": branches, "notes": c.notes}
    out = [Result("E_corr", ec, "V", None, "current sign change", {"notes": c.notes})]
    for br in ok:
        f = fits[br]
        out.append(Result(f"b_{br[0]}", f["b"], "V/decade", f["b_sd"], f"Tafel line, {how}", {**details, "branch": br}))
    if len(ok) == 2:
        a, k = fits["anodic"], fits["cathodic"]
        e_x = (k["intercept"] - a["intercept"]) / (a["slope"] - k["slope"])
        i_corr = 10.0 ** (a["slope"] * e_x + a["intercept"])
        out.append(
            Result(
                "i_corr",
                i_corr,
                c.unit,
                None,
                f"intersection of the anodic and cathodic Tafel lines ({how})",
                {**details, "E_intersection_V": e_x},
            )
        )
        ba, bc = abs(a["b"]), abs(k["b"])
        bsg = ba * bc / (LN10 * (ba + bc))
        out.append(Result("stern_geary_B", bsg, "V", None, "|b_a| |b_c| / (ln10 (|b_a| + |b_c|))", {}))
        rp = polarisation_resistance(c, ec)
        if rp is not None:
            out.append(
                Result("R_p", rp, "ohm cm2" if c.unit == "A/cm2" else "ohm", None, "dE/di within +-10 mV of E_corr", {})
            )
            out.append(Result("i_corr_stern_geary", bsg / rp, c.unit, None, "B / R_p", {"B_V": bsg, "R_p": rp}))
    else:
        br = ok[0]
        other = "cathodic" if br == "anodic" else "anodic"
        out.append(
            Result(
                "i_corr",
                fits[br]["i_at_e_corr"],
                c.unit,
                None,
                f"{br} Tafel line extrapolated to E_corr ({how}); the {other} branch: {fits[other]['reason']}",
                details,
            )
        )
    return out
