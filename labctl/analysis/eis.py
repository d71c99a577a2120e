"""Impedance spectra: equivalent-circuit fits and the Lin-KK validity check.

Fitting (:func:`fit_circuit`)
    Complex nonlinear least squares (``scipy.optimize.least_squares``, trust-region
    reflective) of a circuit (:mod:`labctl.analysis.circuit` syntax; elements and
    parameters as impedance.py defines them) to Z(f), with the analytic Jacobian.
    Positive parameters (R, C, L, Q, sigma, tau) are fitted as their logarithms, so
    they stay positive; each may move 12 decades from where a fit starts, and time
    constants (Wo, Ws, G, K, Zarc tau) stay within 4 decades of the measured
    1/omega range (beyond it an element is indistinguishable from its limit: a Wo
    with tau -> infinity is a W).  Exponents (CPE, La, Zarc) are fitted directly within
    0 <= alpha <= 1, as impedance.py bounds them.  ``constants`` holds parameters fixed.

    The residual vector is ``[w_re (Z'_fit - Z'), w_im (Z''_fit - Z'')]`` with weights

    * ``'unit'`` (default): w = 1, as impedance.py (large |Z| dominates; with it
      impedance.py's fits of the real spectra in tests/data are reproduced),
    * ``'modulus'``: w = 1/|Z| at each frequency, which minimises the relative
      error, so a spectrum spanning several decades of |Z| is fitted everywhere
      (impedance.py's ``weight_by_modulus``; :func:`analyze_run` uses it for Mg
      cells: |Z| spans 1e1..1e6 ohm),
    * ``'proportional'``: w_re = 1/|Z'|, w_im = 1/|Z''| (each floored at 1 % of |Z|).

    1-sigma uncertainties: covariance (J^T J)^-1 scaled by the residual variance
    SSR/(2N - n_params), as scipy's curve_fit computes it (absolute_sigma=False),
    transformed back from log parameters.  Residual statistics: relative RMS of
    |Z_fit - Z|/|Z|, its maximum, weighted SSR, reduced chi-square, AIC, and the
    spectrum's own Lin-KK residual (the smaller of the tests without and with a
    series capacitance) with the ratio of the two: ``EISFit.quality`` says whether
    the fit is within the scatter of the data, ``EISFit.warnings`` lists a
    systematic misfit, parameters run to a limit and parameters whose 1-sigma
    exceeds their value.

    Arcs: top-level blocks p(R, CPE) (or p(R, C)) of the same type are returned in
    order of their time constant tau = (R Q)^(1/alpha) (R C): the labels are
    re-assigned so that the first such block in the circuit string is the fastest
    arc (``sort_arcs=False`` keeps them as fitted).  Blocks of different structure
    (``p(R1,C1)`` and ``p(R2-Wo1,C2)``) keep their labels: when the Wo acts far below
    both arcs, the data can fit it in either block about equally well.

    Initial guess: the user's (a local fit, as impedance.py's; if it runs a parameter
    to its limit, the automatic search is run too and the lower residual kept), or
    (``initial=None``) an automatic multi-start search: candidates from
    :mod:`labctl.analysis.eis_start` (greedy ZARC decompositions of the spectrum
    assigned to the circuit's blocks in every order), a short fit from each, full
    fits from those within 1.5x of the best short fit (3..8 of them); if the best is
    still a systematic misfit, 8 random restarts around it.  The lowest residual wins.

Lin-KK (:func:`linkk`)
    Schoenleitner et al. (2017): M RC elements with time constants log-spaced over
    the measured range plus a series resistance and inductance are fitted linearly
    (weights 1/|Z|); M grows until mu = 1 - sum|R_k<0| / sum|R_k>=0| <= c (c = 0.85).
    mu is not monotonic in M for spectra spanning decades of |Z| (a transient
    negative R_k at too small an M), so a crossing counts only where the fit has
    stopped improving fast (residual RMS at M within 1.5x the best of M+1..M+5); if
    there is no such crossing, the first such M is used and the statement says so.
    The spectrum passes when the RMS of the relative residuals (real and imaginary
    parts, over |Z|) is within ``threshold`` (1 % by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from ._core import AnalysisError, Result, as_1d, covariance_from_jacobian, sigma_or_none
from .circuit import Circuit, arc_tau, parse_circuit
from .eis_start import auto_initial_guesses

WEIGHTINGS = ("unit", "modulus", "proportional")
DEFAULT_WEIGHTING = "unit"


# ------------------------------------------------------------------------------------------
# data checks
# ------------------------------------------------------------------------------------------
def prepare_spectrum(frequency, z_re, z_im=None, *, drop_inductive: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and complex Z from arrays; drops non-finite rows (and Z'' > 0 if asked).

    ``z_re`` may be the complex impedance itself (then ``z_im`` is None).
    """
    f = as_1d("frequency", frequency)
    if z_im is None:
        z = np.asarray(z_re, dtype=complex).ravel()
    else:
        zr, zi = as_1d("z_re", z_re), as_1d("z_im", z_im)
        if zr.shape != zi.shape:
            raise AnalysisError(f"z_re has {zr.size} values but z_im has {zi.size}")
        z = zr + 1j * zi
    if f.shape != z.shape:
        raise AnalysisError(f"frequency has {f.size} values but the impedance has {z.size}")
    ok = np.isfinite(f) & np.isfinite(z.real) & np.isfinite(z.imag)
    if np.any(f[ok] <= 0):
        raise AnalysisError("frequencies must be positive (Hz)")
    if drop_inductive:
        ok &= ~(z.imag > 0)
    return f[ok], z[ok]


def _weights(z: np.ndarray, weighting: str) -> tuple[np.ndarray, np.ndarray]:
    if weighting == "unit":
        one = np.ones(z.size)
        return one, one
    mod = np.abs(z)
    if np.any(mod == 0):
        raise AnalysisError("impedance is exactly zero at some frequency: cannot weight by |Z|")
    if weighting == "modulus":
        return 1.0 / mod, 1.0 / mod
    if weighting == "proportional":
        floor = 0.01 * mod
        return 1.0 / np.maximum(np.abs(z.real), floor), 1.0 / np.maximum(np.abs(z.imag), floor)
    raise AnalysisError(f"unknown weighting {weighting!r}: use one of {', '.join(WEIGHTINGS)}")


# ------------------------------------------------------------------------------------------
# fit result
# ------------------------------------------------------------------------------------------
@dataclass
class EISFit:
    """Result of :func:`fit_circuit`."""

    circuit: Circuit
    names: list[str]
    units: list[str]
    values: np.ndarray
    sigmas: np.ndarray
    cov: np.ndarray
    frequency: np.ndarray
    z: np.ndarray
    z_fit: np.ndarray
    weighting: str
    initial: np.ndarray
    initial_source: str
    nfev: int
    message: str
    stats: dict = field(default_factory=dict)
    arc_taus: list[float] = field(default_factory=list)
    #: what a user should know about this fit (misfit, undetermined parameters, limits)
    warnings: list[str] = field(default_factory=list)
    #: names of parameters held at the value given in ``constants``
    fixed: list[str] = field(default_factory=list)

    @property
    def params(self) -> dict[str, float]:
        return dict(zip(self.names, map(float, self.values)))

    @property
    def rel_rms(self) -> float:
        """Relative RMS error: sqrt(mean(|Z_fit - Z|^2 / |Z|^2))."""
        return self.stats["rel_rms"]

    @property
    def quality(self) -> str:
        """One sentence: the residual against the spectrum's own Lin-KK residual."""
        rel, noise = self.stats["rel_rms"], self.stats.get("kk_rel_rms")
        if noise is None:
            return f"relative RMS residual {100 * rel:.3g} % (no Lin-KK reference: too few points)"
        ratio = self.stats["misfit_ratio"]
        verdict = (
            "within the scatter of the data"
            if ratio <= MISFIT_RATIO or rel <= MISFIT_FLOOR
            else "a systematic misfit: the circuit misses a feature of the spectrum, or the fit is in a local minimum"
        )
        return (
            f"relative RMS residual {100 * rel:.3g} % = {ratio:.3g} x the Lin-KK residual "
            f"{100 * noise:.3g} % of the spectrum: {verdict}"
        )

    def predict(self, frequency) -> np.ndarray:
        return self.circuit.impedance(self.values, np.asarray(frequency, float))

    def results(self, rename: dict[str, str] | None = None, details: dict | None = None) -> list[Result]:
        """One :class:`Result` per parameter (``rename`` maps parameter names to result names)."""
        rename = rename or {}
        out = []
        common = {
            "circuit": self.circuit.text,
            "weighting": self.weighting,
            "residual": dict(self.stats),
            "initial_guess": self.initial_source,
            "n_points": int(self.frequency.size),
            "warnings": list(self.warnings),
        }
        if details:
            common.update(details)
        for name, unit, v, s in zip(self.names, self.units, self.values, self.sigmas):
            d = dict(common)
            d["parameter"] = name
            if name in self.fixed:
                d["fixed"] = True
            out.append(Result(rename.get(name, name), float(v), unit, sigma_or_none(s), "eis-cnls", d))
        return out

    def to_dict(self) -> dict:
        return {
            "circuit": self.circuit.text,
            "parameters": [r.to_dict() for r in self.results()],
            "residual": dict(self.stats),
            "weighting": self.weighting,
            "arc_taus": list(self.arc_taus),
            "initial_guess": self.initial_source,
            "quality": self.quality,
            "warnings": list(self.warnings),
        }


# ------------------------------------------------------------------------------------------
# the fit
# ------------------------------------------------------------------------------------------
#: a fit whose relative RMS residual exceeds this many times the Lin-KK residual of the
#: spectrum (and MISFIT_FLOOR) is reported as a systematic misfit
MISFIT_RATIO = 3.0
MISFIT_FLOOR = 0.005
#: log parameters may move this many decades from where a fit starts
LOG_SPAN_DECADES = 12.0
#: time constants may lie this many decades outside 1/omega_max .. 1/omega_min
TAU_WINDOW = 4.0
#: multi-start: full fits from the starts whose short fit came within this factor of the best
POLISH_RATIO = 1.5
POLISH_MAX = 8


class FitProblem:
    """Residuals and Jacobian in the fit variables u (log p for positive parameters).

    ``fixed`` maps parameter indices to values held constant; u holds the free ones.
    """

    def __init__(
        self, circuit: Circuit, f: np.ndarray, z: np.ndarray, weighting: str, fixed: dict[int, float] | None = None
    ):
        self.c = circuit
        self.f = f
        self.z = z
        self.wr, self.wi = _weights(z, weighting)
        n = circuit.n_params
        self.free = np.ones(n, bool)
        self.p_fixed = np.zeros(n)
        for i, v in (fixed or {}).items():
            self.free[i] = False
            self.p_fixed[i] = v
        kinds = np.array(circuit.param_kinds)
        self.log = (kinds == "pos")[self.free]
        # time constants (Wo, Ws, G, K, Zarc tau) are kept within TAU_WINDOW decades of the
        # measured 1/omega range: beyond it an element is indistinguishable from its limit
        units = np.array(circuit.param_units)
        self.tau = ((units == "s") & (kinds == "pos"))[self.free]
        w = 2 * np.pi * f
        self.tau_range = (math.log(10.0**-TAU_WINDOW / w.max()), math.log(10.0**TAU_WINDOW / w.min()))

    def to_p(self, u: np.ndarray) -> np.ndarray:
        p = self.p_fixed.copy()
        p[self.free] = np.where(self.log, np.exp(np.where(self.log, u, 0.0)), u)
        return p

    def to_u(self, p: np.ndarray) -> np.ndarray:
        pf = np.asarray(p, float)[self.free]
        return np.where(self.log, np.log(np.where(self.log, pf, 1.0)), pf)

    def dp_du(self, p: np.ndarray) -> np.ndarray:
        return np.where(self.log, p[self.free], 1.0)

    def fun(self, u):
        zm = self.c.impedance(self.to_p(u), self.f)
        d = zm - self.z
        return np.concatenate((self.wr * d.real, self.wi * d.imag))

    def jac(self, u):
        p = self.to_p(u)
        _, J = self.c.impedance_jacobian(p, self.f)
        J = J[:, self.free] * self.dp_du(p)
        return np.concatenate((self.wr[:, None] * J.real, self.wi[:, None] * J.imag))


def _check_initial(circuit: Circuit, initial, fixed: dict[int, float]) -> np.ndarray:
    """The initial guess as a full parameter vector (values of fixed parameters filled in).

    Accepts one value per parameter, or (as impedance.py does with ``constants``) one per
    free parameter; ``None`` entries are dropped first.
    """
    vals = [v for v in np.asarray(initial, dtype=object).ravel() if v is not None]
    names = circuit.param_names
    n, n_free = circuit.n_params, circuit.n_params - len(fixed)
    try:
        p0 = np.asarray(vals, dtype=float)
    except (TypeError, ValueError):
        raise AnalysisError("initial guess: expected numbers") from None
    if p0.size == n_free and fixed:
        full = np.zeros(n)
        full[[i for i in range(n) if i not in fixed]] = p0
        p0 = full
    elif p0.size != n:
        more = f" ({n_free} without the constants)" if fixed else ""
        raise AnalysisError(
            f"circuit {circuit.text} has {n} parameters ({', '.join(names)}){more}; "
            f"the initial guess has {p0.size} values"
        )
    for i, v in fixed.items():
        p0[i] = v
    for name, kind, v in zip(names, circuit.param_kinds, p0):
        if not math.isfinite(v):
            raise AnalysisError(f"initial guess for {name} is not a finite number")
        if kind == "pos" and v <= 0:
            raise AnalysisError(f"initial guess for {name} must be positive, got {v}")
        if kind == "frac" and not (0 < v <= 1):
            raise AnalysisError(f"initial guess for {name} must be in (0, 1], got {v}")
    return p0


def _resolve_constants(circuit: Circuit, constants) -> dict[int, float]:
    fixed: dict[int, float] = {}
    for name, v in (constants or {}).items():
        i = circuit.param_index(str(name))
        v = float(v)
        kind = circuit.param_kinds[i]
        if not math.isfinite(v) or (kind == "pos" and v <= 0) or (kind == "frac" and not 0 < v <= 1):
            raise AnalysisError(f"constant {name} = {v} is out of range for {circuit.param_names[i]}")
        fixed[i] = v
    if len(fixed) == circuit.n_params:
        raise AnalysisError(f"every parameter of {circuit.text} is a constant: nothing to fit")
    return fixed


def solve_fit(prob: FitProblem, p0: np.ndarray, max_nfev: int | None, tol: float, *, user: bool = False):
    """least_squares from p0; log parameters may move LOG_SPAN_DECADES either way.

    Time constants stay in the window of :class:`FitProblem` (widened to take in a user's
    start outside it; an automatic start is moved into it).
    """
    u0 = prob.to_u(np.asarray(p0, float))
    lo, hi = prob.tau_range
    if user:
        lo, hi = np.minimum(lo, u0 - 1.0), np.maximum(hi, u0 + 1.0)
    else:
        u0 = np.where(prob.tau, np.clip(u0, lo + 1e-6, hi - 1e-6), u0)
    span = LOG_SPAN_DECADES * math.log(10.0)
    lb = np.where(prob.log, u0 - span, 0.0)
    ub = np.where(prob.log, u0 + span, 1.0)
    lb = np.where(prob.tau, np.maximum(lb, lo), lb)
    ub = np.where(prob.tau, np.minimum(ub, hi), ub)
    # a start exactly on a bound is not allowed by trf
    u0 = np.where(prob.log, u0, np.clip(u0, 1e-9, 1.0 - 1e-9))
    with np.errstate(all="ignore"):
        sol = least_squares(
            prob.fun,
            u0,
            jac=prob.jac,
            bounds=(lb, ub),
            method="trf",
            x_scale="jac",
            ftol=tol,
            xtol=tol,
            gtol=tol,
            max_nfev=max_nfev,
        )
    sol.lb, sol.ub = lb, ub
    return sol


def _good(sol) -> bool:
    return bool(np.all(np.isfinite(sol.fun)) and np.isfinite(sol.cost))


def _at_limit(prob: FitProblem, sol) -> np.ndarray:
    """Free log parameters that ran (within half a decade) to the limit of their range."""
    near = 0.5 * math.log(10.0)
    return prob.log & ((sol.x - sol.lb < near) | (sol.ub - sol.x < near))


def _search(
    prob: FitProblem,
    cands: list[np.ndarray],
    max_nfev,
    tol,
    *,
    screen_nfev: int = 30,
    keep: int = 3,
    perturb: int = 0,
    seed: int = 0,
):
    """Multi-start: a short fit from every candidate, full fits from the best ``keep``.

    With ``perturb`` > 0, that many random restarts around the best (log parameters
    scaled by up to 10x either way, exponents redrawn in 0.4..1) are screened and the
    best of them polished too.  Returns (start, solution, candidate index) or None.
    """
    screened = []
    for k, cand in enumerate(cands):
        try:
            s = solve_fit(prob, cand, screen_nfev, 1e-8)
        except (ValueError, np.linalg.LinAlgError):
            continue
        if _good(s):
            screened.append((s.cost, k, s))
    screened.sort(key=lambda t: t[0])
    best = None
    # short fits rank basins only roughly: polish every start screened within a factor
    # POLISH_RATIO of the best (at least ``keep``, at most POLISH_MAX)
    n_polish = max(keep, sum(1 for t in screened if t[0] <= POLISH_RATIO * screened[0][0])) if screened else 0
    for _, k, s in screened[: min(n_polish, POLISH_MAX)]:
        full = solve_fit(prob, prob.to_p(s.x), max_nfev, tol)
        if full.status > 0 and _good(full) and (best is None or full.cost < best[1].cost):
            best = (cands[k], full, k)
    if best is None or perturb <= 0:
        return best
    rng = np.random.default_rng(seed)
    p_best = prob.to_p(best[1].x)
    kinds = np.array(prob.c.param_kinds)
    trials = []
    for j in range(perturb):
        p = p_best.copy()
        pos = prob.free & (kinds == "pos")
        frac = prob.free & (kinds == "frac")
        p[pos] *= 10.0 ** rng.uniform(-1.0, 1.0, int(pos.sum()))
        p[frac] = rng.uniform(0.4, 1.0, int(frac.sum()))
        s = solve_fit(prob, p, screen_nfev, 1e-8)
        if _good(s):
            trials.append((s.cost, j, p, s))
    trials.sort(key=lambda t: t[0])
    for _, j, p, s in trials[:2]:
        full = solve_fit(prob, prob.to_p(s.x), max_nfev, tol)
        if full.status > 0 and _good(full) and full.cost < best[1].cost * (1 - 1e-9):
            best = (p, full, len(cands) + j)
    return best


def _sort_arcs(
    circuit: Circuit, p: np.ndarray, cov: np.ndarray, fixed=()
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Permute parameters so that arcs of the same structure are in order of tau."""
    arcs = circuit.arcs()
    groups: dict[str, list] = {}
    for r, cap in arcs:
        groups.setdefault(cap.type, []).append((r, cap))
    perm = np.arange(p.size)
    for members in groups.values():
        idx = [i for r, cap in members for i in [r.index, *range(cap.index, cap.index + cap.n_params)]]
        if any(i in fixed for i in idx):
            continue  # a constant must keep its label
        taus = [arc_tau(r, cap, p) for r, cap in members]
        order = np.argsort(taus, kind="stable")
        for slot, src in enumerate(order):
            (rs, cs), (rf, cf) = members[slot], members[src]
            perm[rs.index] = rf.index
            for k in range(cs.n_params):
                perm[cs.index + k] = cf.index + k
    p2 = p[perm]
    cov2 = cov[np.ix_(perm, perm)]
    taus = sorted(arc_tau(r, cap, p2) for r, cap in arcs)
    return p2, cov2, taus


def _kk_noise(f: np.ndarray, z: np.ndarray) -> float | None:
    """The spectrum's Lin-KK residual in the units of rel_rms (|dZ|/|Z|), or None.

    The same test as :func:`linkk_verdict` (with a series capacitance when the spectrum
    is capacitive at its low-frequency end), so the fit's quality sentence and the Lin-KK
    verdict speak of one test.
    """
    try:
        kk = linkk_verdict(f, z)
    except AnalysisError:
        return None
    return float(np.sqrt(np.mean(kk.res_re**2 + kk.res_im**2)))


def capacitive_low_end(frequency, z, n: int = 3) -> bool:
    """True when the spectrum ends capacitive: at its ``n`` lowest frequencies -Z'' is positive and
    still grows as the frequency falls, so Z does not return to a real (DC) resistance within the
    band (a blocking electrode, a diffusion tail): Lin-KK then needs a series capacitance."""
    f, zz = prepare_spectrum(frequency, z)
    if f.size < n + 2:
        return False
    order = np.argsort(f)
    minus_im = -zz[order[:n]].imag  # lowest frequency first
    return bool(np.all(minus_im > 0) and np.all(np.diff(minus_im) < 0))


def linkk_verdict(frequency, z, **kw) -> LinKK:
    """The one Lin-KK verdict of a spectrum: with a series capacitance when it is capacitive at its
    low-frequency end (:func:`capacitive_low_end`, as impedance.py's ``add_cap``), else without."""
    cap = capacitive_low_end(frequency, z)
    kk = linkk(frequency, z, add_capacitance=cap, **kw)
    if cap:
        kk.statement = (
            "with a series capacitance (the spectrum is capacitive at its low-frequency end): " + kk.statement
        )
        kk.series_capacitance = True
    return kk


def fit_circuit(
    frequency,
    z,
    circuit: str | Circuit,
    initial=None,
    *,
    weighting: str = DEFAULT_WEIGHTING,
    sort_arcs: bool = True,
    drop_inductive: bool = False,
    constants: dict | None = None,
    on_misfit: str = "warn",
    max_nfev: int | None = 2000,
    tol: float = 1e-10,
) -> EISFit:
    """Fit ``circuit`` to the spectrum ``z`` (complex, ohm) measured at ``frequency`` (Hz).

    ``initial``: parameter values in :attr:`Circuit.param_names` order (or, with
    ``constants``, only the free ones, as impedance.py takes them), or None for the
    automatic multi-start search.  ``constants`` maps parameter names (labctl's
    ``Wo1_tau`` or impedance.py's ``Wo1_1``) to values held fixed.
    ``drop_inductive`` removes points with Z'' > 0 first.

    From a user's guess the fit is local, like impedance.py's; if it runs a parameter
    to the limit of its range (12 decades) the automatic search is run as well and
    the lower residual kept (``initial_source`` says so).  Every fit is compared with
    the spectrum's Lin-KK residual; ``warnings`` lists a systematic misfit (relative
    RMS residual above MISFIT_RATIO x the Lin-KK residual and above MISFIT_FLOOR),
    parameters the data do not determine and parameters at a limit.  A misfit is
    normal for real spectra and a simple circuit (the reference fits of tests/data
    have 1.5-40 x), so by default it is reported; ``on_misfit='raise'`` turns it into
    an AnalysisError (for data that the circuit should describe to within noise).

    Raises AnalysisError for too few points, a bad initial guess or constant, and a
    fit that does not converge.
    """
    if on_misfit not in ("warn", "raise"):
        raise AnalysisError(f"on_misfit must be 'warn' or 'raise', got {on_misfit!r}")
    c = parse_circuit(circuit) if isinstance(circuit, str) else circuit
    f, zz = prepare_spectrum(frequency, z, drop_inductive=drop_inductive)
    fixed = _resolve_constants(c, constants)
    n = c.n_params - len(fixed)
    if f.size < n or 2 * f.size <= n:
        raise AnalysisError(
            f"too few points: {f.size} frequencies for {n} free parameters of {c.text} "
            f"(need at least {max(n, n // 2 + 1)})"
        )
    if weighting not in WEIGHTINGS:
        raise AnalysisError(f"unknown weighting {weighting!r}: use one of {', '.join(WEIGHTINGS)}")
    prob = FitProblem(c, f, zz, weighting, fixed)
    noise = _kk_noise(f, zz)

    def candidates():
        cands = auto_initial_guesses(c, f, zz)
        for p in cands:
            for i, v in fixed.items():
                p[i] = v
        return cands

    def misfit(sol) -> bool:
        p = prob.to_p(sol.x)
        rel = float(np.sqrt(np.mean(np.abs(c.impedance(p, f) - zz) ** 2 / np.abs(zz) ** 2)))
        return noise is not None and rel > MISFIT_RATIO * noise and rel > MISFIT_FLOOR

    if initial is not None:
        p0 = _check_initial(c, initial, fixed)
        sol = solve_fit(prob, p0, max_nfev, tol, user=True)
        source = "user"
        if sol.status <= 0 or not _good(sol) or np.any(_at_limit(prob, sol)):
            why = (
                "did not converge"
                if sol.status <= 0 or not _good(sol)
                else "ran " + ", ".join(np.array(c.param_names)[prob.free][_at_limit(prob, sol)]) + " to the limit"
            )
            alt = _search(prob, candidates(), max_nfev, tol)
            if alt is not None and (not (sol.status > 0 and _good(sol)) or alt[1].cost < sol.cost * (1 - 1e-6)):
                p0, sol, k = alt
                source = (
                    f"automatic (candidate {k}): the fit from the user's guess {why}, this one has a lower residual"
                )
            else:
                source = f"user (the fit {why}; no automatic start did better)"
    else:
        best = _search(prob, candidates(), max_nfev, tol)
        if best is not None and misfit(best[1]):
            # not within the scatter of the data: look around the best with random restarts
            wider = _search(prob, [prob.to_p(best[1].x)], max_nfev, tol, perturb=8)
            if wider is not None and wider[1].cost < best[1].cost * (1 - 1e-9):
                best = (wider[0], wider[1], f"{best[2]}, then random restart {wider[2]}")
        if best is None:
            raise AnalysisError(f"the fit of {c.text} did not converge from any automatic initial guess; give one")
        p0, sol, k = best
        source = f"automatic (candidate {k})"
    if sol.status <= 0 or not _good(sol):
        raise AnalysisError(
            f"the fit of {c.text} did not converge ({sol.message}); try another initial guess or circuit"
        )
    limit = _at_limit(prob, sol)
    p = prob.to_p(sol.x)
    cov_u, s2 = covariance_from_jacobian(sol.jac, sol.fun)
    d = prob.dp_du(p)
    cov = np.zeros((c.n_params, c.n_params))
    cov[np.ix_(prob.free, prob.free)] = cov_u * np.outer(d, d)
    taus: list[float] = []
    if sort_arcs:
        p, cov, taus = _sort_arcs(c, p, cov, fixed)
    with np.errstate(invalid="ignore"):
        sig = np.sqrt(np.diag(cov))
    zf = c.impedance(p, f)
    rel = np.abs(zf - zz) / np.abs(zz)
    m = 2 * f.size
    ssr = float(sol.fun @ sol.fun)
    rel_rms = float(np.sqrt(np.mean(rel**2)))
    stats = {
        "rel_rms": rel_rms,
        "rel_max": float(rel.max()),
        "ssr": ssr,
        "dof": m - n,
        "reduced_chi2": s2,
        "aic": float(m * math.log(max(ssr, 1e-300) / m) + 2 * n),
        "n_points": int(f.size),
        "kk_rel_rms": noise,
        "misfit_ratio": rel_rms / noise if noise else None,
    }
    names = c.param_names
    warnings: list[str] = []
    bad_fit = noise is not None and rel_rms > MISFIT_RATIO * noise and rel_rms > MISFIT_FLOOR
    if bad_fit:
        warnings.append(
            f"systematic misfit: relative RMS residual {100 * rel_rms:.3g} % is {rel_rms / noise:.3g} x the "
            f"Lin-KK residual {100 * noise:.3g} % of the spectrum: the circuit does not describe every "
            "feature of the data (usual for a simple model of a real cell), or the fit is in a local minimum; "
            "look at the residuals"
        )
    free_names = np.array(names)[prob.free]
    ran = list(free_names[limit])
    if ran:
        warnings.append(
            f"{', '.join(ran)} ran to the limit of its range ({LOG_SPAN_DECADES:g} decades from the start; "
            f"time constants {TAU_WINDOW:g} decades beyond the measured 1/omega): the data do not determine "
            "this element (remove it or give a better initial guess)"
        )
    undetermined = [
        nm
        for nm, v, s, fr in zip(names, p, sig, prob.free)
        if fr and nm not in ran and not (math.isfinite(s) and s <= abs(v))
    ]
    if undetermined:
        warnings.append(f"{', '.join(undetermined)}: 1-sigma larger than the value, not determined by these data")
    if on_misfit == "raise" and bad_fit:
        extra = ""
        if ran:
            extra = f", with {', '.join(ran)} run to the limit of its range"
        elif undetermined:
            extra = f", with {', '.join(undetermined)} not determined (1-sigma > value)"
        start = "from the initial guess" if initial is not None else "from any automatic initial guess"
        raise AnalysisError(
            f"no acceptable fit of {c.text} {start}: the best has a relative RMS residual of "
            f"{100 * rel_rms:.3g} %, {rel_rms / noise:.3g} x the Lin-KK residual {100 * noise:.3g} % of the "
            f"spectrum{extra}. The circuit does not describe these data, or the fit is in a local minimum: "
            "try another circuit or initial guess"
        )
    return EISFit(
        circuit=c,
        names=names,
        units=c.param_units,
        values=p,
        sigmas=sig,
        cov=cov,
        frequency=f,
        z=zz,
        z_fit=zf,
        weighting=weighting,
        initial=np.asarray(p0, float),
        initial_source=source,
        nfev=int(sol.nfev),
        message=str(sol.message),
        stats=stats,
        arc_taus=taus,
        warnings=warnings,
        fixed=[names[i] for i in sorted(fixed)],
    )


# ------------------------------------------------------------------------------------------
# Lin-KK
# ------------------------------------------------------------------------------------------
@dataclass
class LinKK:
    """Result of :func:`linkk`."""

    passed: bool
    statement: str
    M: int
    mu: float
    c: float
    threshold: float
    frequency: np.ndarray
    z_fit: np.ndarray
    res_re: np.ndarray  # (Z' - Z'_fit)/|Z|
    res_im: np.ndarray  # (Z'' - Z''_fit)/|Z|
    rms: float
    max_abs: float
    series_capacitance: bool = False

    def result(self) -> Result:
        return Result(
            "linkk_residual_rms",
            self.rms,
            "",
            None,
            "lin-kk",
            {
                "passed": self.passed,
                "statement": self.statement,
                "M": self.M,
                "mu": self.mu,
                "c": self.c,
                "threshold": self.threshold,
                "max_abs_residual": self.max_abs,
                "series_capacitance": self.series_capacitance,
            },
        )


def linkk(
    frequency,
    z,
    *,
    c: float = 0.85,
    max_M: int = 80,
    threshold: float = 0.01,
    add_inductance: bool = True,
    add_capacitance: bool = False,
) -> LinKK:
    """Lin-KK test of a spectrum (complex ``z`` at ``frequency``); see the module docstring."""
    f, zz = prepare_spectrum(frequency, z)
    if f.size < 5:
        raise AnalysisError(f"too few points for a Lin-KK test: {f.size} (need at least 5)")
    w = 2 * np.pi * f
    wt = 1.0 / np.abs(zz)
    max_M = int(max(1, min(max_M, f.size - 2)))
    bw = np.concatenate((wt * zz.real, wt * zz.imag))
    fits: list[tuple[int, float, np.ndarray, float]] = []

    def fit_M(M: int):
        if M == 1:
            tau = np.array([1.0 / math.sqrt(w.min() * w.max())])
        else:
            tau = np.logspace(math.log10(1 / w.max()), math.log10(1 / w.min()), M)
        cols = [np.ones(f.size, complex)[:, None], 1.0 / (1.0 + 1j * w[:, None] * tau[None, :])]
        if add_inductance:
            cols.append((1j * w)[:, None])
        if add_capacitance:
            cols.append((-1j / w)[:, None])
        A = np.concatenate(cols, axis=1)
        Aw = np.concatenate((wt[:, None] * A.real, wt[:, None] * A.imag))
        x, *_ = np.linalg.lstsq(Aw, bw, rcond=None)
        rk = x[1 : 1 + M]
        pos = np.abs(rk[rk >= 0]).sum()
        neg = np.abs(rk[rk < 0]).sum()
        mu = 1.0 - neg / pos if pos > 0 else -np.inf
        zf = A @ x
        rel = np.concatenate((zz.real - zf.real, zz.imag - zf.imag)) / np.concatenate((np.abs(zz), np.abs(zz)))
        return (M, float(mu), zf, float(np.sqrt(np.mean(rel**2))))

    # mu criterion: the first M at which mu <= c, counting only M at which the fit has
    # stopped improving fast (RMS(M) <= 1.5 x the best RMS of M+1..M+5), so that a
    # transient negative R_k at a too small M does not end the search early.
    def converged(k: int) -> bool:
        ahead = [fr[3] for fr in fits[k + 1 : k + 6]]
        return not ahead or fits[k][3] <= 1.5 * min(ahead)

    chosen = None
    for M in range(1, max_M + 1):
        fits.append(fit_M(M))
        k = len(fits) - 6
        if k >= 0 and fits[k][1] <= c and converged(k):
            chosen = fits[k]
            break
    if chosen is None:
        chosen = next((fr for k, fr in enumerate(fits) if fr[1] <= c and converged(k)), None)
    mu_met = chosen is not None
    if chosen is None:
        chosen = next(fr for k, fr in enumerate(fits) if converged(k))
    M, mu, zf, _ = chosen
    res_re = (zz.real - zf.real) / np.abs(zz)
    res_im = (zz.imag - zf.imag) / np.abs(zz)
    both = np.concatenate((res_re, res_im))
    rms = float(np.sqrt(np.mean(both**2)))
    mx = float(np.abs(both).max())
    passed = rms <= threshold
    mu_txt = f"mu = {mu:.3f} <= c = {c}" if mu_met else f"mu = {mu:.3f}, no converged M with mu <= c = {c}"
    verdict = (
        "consistent with Kramers-Kronig (linear, causal, stable): fit it"
        if passed
        else "NOT consistent with Kramers-Kronig: drift, non-linearity or noise; do not trust a circuit fit"
    )
    statement = (
        f"Lin-KK with M = {M} RC elements ({mu_txt}): residual RMS {100 * rms:.2f} % "
        f"(max {100 * mx:.2f} %) vs threshold {100 * threshold:.2f} %: {verdict}"
    )
    return LinKK(passed, statement, M, mu, c, threshold, f, zf, res_re, res_im, rms, mx)
