"""Impedance spectra: equivalent-circuit fits and the Lin-KK validity check.

Fitting (:func:`fit_circuit`)
    Complex nonlinear least squares (``scipy.optimize.least_squares``, trust-region
    reflective) of a circuit (:mod:`labctl.analysis.circuit` syntax) to Z(f), with the
    analytic Jacobian.  Positive parameters (R, C, L, Q, sigma, tau) are fitted as
    their logarithms, so they stay positive (each may move 12 decades from its start);
    CPE exponents are fitted directly within 0 <= alpha <= 1.

    The residual vector is ``[w_re (Z'_fit - Z'), w_im (Z''_fit - Z'')]`` with weights

    * ``'unit'`` (default): w = 1, as impedance.py (large |Z| dominates; with it the
      reference fit of the real Li-ion spectrum in tests/data is reproduced),
    * ``'modulus'``: w = 1/|Z| at each frequency, which minimises the relative
      error, so a spectrum spanning several decades of |Z| is fitted everywhere
      (use it for Mg cells: |Z| spans 1e1..1e6 ohm; :func:`analyze_run` does),
    * ``'proportional'``: w_re = 1/|Z'|, w_im = 1/|Z''| (each floored at 1 % of |Z|).

    1-sigma uncertainties: covariance (J^T J)^-1 scaled by the residual variance
    SSR/(2N - n_params), as scipy's curve_fit computes it (absolute_sigma=False),
    transformed back from log parameters.  Residual statistics: relative RMS of
    |Z_fit - Z|/|Z|, its maximum, weighted SSR, reduced chi-square, AIC.

    Arcs: top-level blocks p(R, CPE) (or p(R, C)) are returned in order of their time
    constant tau = (R Q)^(1/alpha) (R C): the labels are re-assigned so that the first
    block in the circuit string (e.g. R1, CPE1) is the fastest arc.

    Initial guess: the user's, or (``initial=None``) automatic: a greedy search fits R0 + p(R, CPE) arcs one at a time (1/|Z| weights), adding the
    next arc where the relative residual is largest; its (R, tau, alpha) seed the
    circuit's arcs.  That candidate and one with arcs spread evenly over the measured
    time constants are both fitted and the better kept.

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

    @property
    def params(self) -> dict[str, float]:
        return dict(zip(self.names, map(float, self.values)))

    @property
    def rel_rms(self) -> float:
        """Relative RMS error: sqrt(mean(|Z_fit - Z|^2 / |Z|^2))."""
        return self.stats["rel_rms"]

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
        }
        if details:
            common.update(details)
        for name, unit, v, s in zip(self.names, self.units, self.values, self.sigmas):
            d = dict(common)
            d["parameter"] = name
            out.append(Result(rename.get(name, name), float(v), unit, sigma_or_none(s), "eis-cnls", d))
        return out

    def to_dict(self) -> dict:
        return {
            "circuit": self.circuit.text,
            "parameters": [r.to_dict() for r in self.results()],
            "residual": dict(self.stats),
            "weighting": self.weighting,
            "arc_taus": list(self.arc_taus),
        }


# ------------------------------------------------------------------------------------------
# the fit
# ------------------------------------------------------------------------------------------
class _Problem:
    """Residuals and Jacobian in the fit variables u (log p for positive parameters)."""

    def __init__(self, circuit: Circuit, f: np.ndarray, z: np.ndarray, weighting: str):
        self.c = circuit
        self.f = f
        self.z = z
        self.wr, self.wi = _weights(z, weighting)
        self.log = np.array([k == "pos" for k in circuit.param_kinds])

    def to_p(self, u: np.ndarray) -> np.ndarray:
        return np.where(self.log, np.exp(np.where(self.log, u, 0.0)), u)

    def to_u(self, p: np.ndarray) -> np.ndarray:
        return np.where(self.log, np.log(np.where(self.log, p, 1.0)), p)

    def dp_du(self, p: np.ndarray) -> np.ndarray:
        return np.where(self.log, p, 1.0)

    def fun(self, u):
        zm = self.c.impedance(self.to_p(u), self.f)
        d = zm - self.z
        return np.concatenate((self.wr * d.real, self.wi * d.imag))

    def jac(self, u):
        p = self.to_p(u)
        _, J = self.c.impedance_jacobian(p, self.f)
        J = J * self.dp_du(p)
        return np.concatenate((self.wr[:, None] * J.real, self.wi[:, None] * J.imag))



def _check_initial(circuit: Circuit, initial) -> np.ndarray:
    p0 = np.asarray(initial, dtype=float).ravel()
    names = circuit.param_names
    if p0.size != circuit.n_params:
        raise AnalysisError(
            f"circuit {circuit.text} has {circuit.n_params} parameters ({', '.join(names)}); "
            f"the initial guess has {p0.size} values"
        )
    for name, kind, v in zip(names, circuit.param_kinds, p0):
        if not math.isfinite(v):
            raise AnalysisError(f"initial guess for {name} is not a finite number")
        if kind == "pos" and v <= 0:
            raise AnalysisError(f"initial guess for {name} must be positive, got {v}")
        if kind == "frac" and not (0 < v <= 1):
            raise AnalysisError(f"initial guess for {name} must be in (0, 1], got {v}")
    return p0


def _solve(prob: _Problem, p0: np.ndarray, max_nfev: int | None, tol: float):
    """least_squares from p0; log parameters may move 12 decades either way."""
    u0 = prob.to_u(np.asarray(p0, float))
    span = 12 * math.log(10.0)
    lb = np.where(prob.log, u0 - span, 0.0)
    ub = np.where(prob.log, u0 + span, 1.0)
    # a start exactly on a bound is not allowed by trf
    u0 = np.where(prob.log, u0, np.clip(u0, 1e-9, 1.0 - 1e-9))
    with np.errstate(all="ignore"):
        return least_squares(
            prob.fun, u0, jac=prob.jac, bounds=(lb, ub), method="trf", x_scale="jac",
            ftol=tol, xtol=tol, gtol=tol, max_nfev=max_nfev,
        )


def _sort_arcs(circuit: Circuit, p: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Permute parameters so that arcs of the same structure are in order of tau."""
    arcs = circuit.arcs()
    groups: dict[str, list] = {}
    for r, cap in arcs:
        groups.setdefault(cap.type, []).append((r, cap))
    perm = np.arange(p.size)
    for members in groups.values():
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


def fit_circuit(
    frequency,
    z,
    circuit: str | Circuit,
    initial=None,
    *,
    weighting: str = DEFAULT_WEIGHTING,
    sort_arcs: bool = True,
    drop_inductive: bool = False,
    max_nfev: int | None = 2000,
    tol: float = 1e-10,
) -> EISFit:
    """Fit ``circuit`` to the spectrum ``z`` (complex, ohm) measured at ``frequency`` (Hz).

    ``initial``: parameter values in :attr:`Circuit.param_names` order, or None for an
    automatic guess.  ``drop_inductive`` removes points with Z'' > 0 first.
    Raises AnalysisError for too few points, a bad initial guess, a fit that does not
    converge.
    """
    c = parse_circuit(circuit) if isinstance(circuit, str) else circuit
    f, zz = prepare_spectrum(frequency, z, drop_inductive=drop_inductive)
    n = c.n_params
    if f.size < n or 2 * f.size <= n:
        raise AnalysisError(
            f"too few points: {f.size} frequencies for {n} parameters of {c.text} "
            f"(need at least {max(n, n // 2 + 1)})"
        )
    if weighting not in WEIGHTINGS:
        raise AnalysisError(f"unknown weighting {weighting!r}: use one of {', '.join(WEIGHTINGS)}")
    prob = _Problem(c, f, zz, weighting)
    if initial is not None:
        p0 = _check_initial(c, initial)
        sol = _solve(prob, p0, max_nfev, tol)
        source = "user"
    else:
        best = None
        for k, cand in enumerate(auto_initial_guesses(c, f, zz)):
            s = _solve(prob, cand, max_nfev, tol)
            if s.status > 0 and np.all(np.isfinite(s.fun)) and (best is None or s.cost < best[1].cost):
                best = (cand, s, k)
        if best is None:
            raise AnalysisError(f"the fit of {c.text} did not converge from any automatic initial guess; give one")
        p0, sol, k = best
        source = f"automatic (candidate {k})"
    if sol.status <= 0 or not np.all(np.isfinite(sol.fun)):
        raise AnalysisError(
            f"the fit of {c.text} did not converge ({sol.message}); try another initial guess or circuit"
        )
    p = prob.to_p(sol.x)
    cov_u, s2 = covariance_from_jacobian(sol.jac, sol.fun)
    d = prob.dp_du(p)
    cov = cov_u * np.outer(d, d)
    taus: list[float] = []
    if sort_arcs:
        p, cov, taus = _sort_arcs(c, p, cov)
    with np.errstate(invalid="ignore"):
        sig = np.sqrt(np.diag(cov))
    zf = c.impedance(p, f)
    rel = np.abs(zf - zz) / np.abs(zz)
    m = 2 * f.size
    ssr = float(sol.fun @ sol.fun)
    stats = {
        "rel_rms": float(np.sqrt(np.mean(rel**2))),
        "rel_max": float(rel.max()),
        "ssr": ssr,
        "dof": m - n,
        "reduced_chi2": s2,
        "aic": float(m * math.log(max(ssr, 1e-300) / m) + 2 * n),
        "n_points": int(f.size),
    }
    return EISFit(
        circuit=c, names=c.param_names, units=c.param_units, values=p, sigmas=sig, cov=cov,
        frequency=f, z=zz, z_fit=zf, weighting=weighting, initial=np.asarray(p0, float),
        initial_source=source, nfev=int(sol.nfev), message=str(sol.message), stats=stats,
        arc_taus=taus,
    )


# ------------------------------------------------------------------------------------------
# automatic initial guess
# ------------------------------------------------------------------------------------------
def _zarc_seeds(f: np.ndarray, z: np.ndarray, n_arcs: int) -> tuple[float, list[tuple[float, float, float]]]:
    """Greedy arc finding: (R_inf, [(R, tau, alpha), ...] fastest first).

    Fits R0 + one ZARC (p(R, CPE)) with 1/|Z| weights, then adds one arc at a time
    where the relative residual |Z_fit - Z|/|Z| is largest, refitting all each time.
    """
    order = np.argsort(f)
    fs, zs = f[order], z[order]
    zmag = np.abs(zs)
    r_hf = max(float(zs.real.min()), 1e-6 * zmag.max())
    r_span = max(float(zs.real[0]) - r_hf, 1e-3 * zmag.max())
    # first arc at the frequency of the largest -Z'' (or mid-range)
    k = int(np.argmax(-zs.imag)) if np.any(zs.imag < 0) else fs.size // 2
    seeds = [(r_span, 1.0 / (2 * np.pi * fs[k]), 0.8)]
    r_inf = r_hf
    while True:
        text = "R0" + "".join(f"-p(R{i},CPE{i})" for i in range(1, len(seeds) + 1))
        c = parse_circuit(text)
        p0 = [r_inf]
        for R, tau, a in seeds:
            p0 += [R, tau**a / R, a]
        prob = _Problem(c, fs, zs, "modulus")
        try:
            s = _solve(prob, np.asarray(p0), 400, 1e-8)
            p = prob.to_p(s.x)
        except (ValueError, FloatingPointError):
            p = np.asarray(p0)
        r_inf = float(p[0])
        seeds = []
        for i in range(len(p0) // 3):
            R, Q, a = p[1 + 3 * i : 4 + 3 * i]
            seeds.append((float(R), float((R * Q) ** (1.0 / max(a, 1e-3))), float(min(max(a, 0.3), 1.0))))
        if len(seeds) >= n_arcs:
            break
        rel = np.abs(c.impedance(p, fs) - zs) / zmag
        if rel.size >= 3:
            rel = np.convolve(rel, np.ones(3) / 3, mode="same")
        j = int(np.argmax(rel))
        R_new = max(2.0 * float(np.abs(c.impedance(p, fs[j : j + 1])[0] - zs[j])), 1e-3 * r_span)
        seeds.append((R_new, 1.0 / (2 * np.pi * fs[j]), 0.8))
    return r_inf, sorted(seeds, key=lambda s: s[1])


def auto_initial_guesses(circuit: Circuit, f: np.ndarray, z: np.ndarray) -> list[np.ndarray]:
    """A few candidate initial guesses for ``circuit`` from the data (best first).

    Arcs p(R, CPE)/p(R, C) are seeded by :func:`_zarc_seeds` (and, as a second
    candidate, spread evenly over the measured time constants); the first series
    resistance gets the high-frequency resistance; other elements get scale-based
    values (L from an inductive high-frequency tail, W from the low-frequency Z'',
    Wo/Ws with R a share of the low-frequency resistance and tau about 1/omega_min).
    """
    order = np.argsort(f)
    f_min, f_max = float(f[order[0]]), float(f[order[-1]])
    w_min, w_max = 2 * np.pi * f_min, 2 * np.pi * f_max
    zmag = np.abs(z)
    arcs = circuit.arcs()
    arc_ids = {id(e) for pair in arcs for e in pair}
    others = [e for e in circuit.elements if id(e) not in arc_ids]
    with np.errstate(all="ignore"):
        r_inf, zarcs = _zarc_seeds(f, z, max(len(arcs), 1))
    r_hf = max(min(r_inf, float(z.real.min())) if r_inf > 0 else float(z.real.min()), 1e-6 * zmag.max())
    r_span = max(float(z.real[order[0]]) - r_hf, 1e-3 * zmag.max())
    t_mid = 1.0 / math.sqrt(w_min * w_max)
    spread = np.logspace(math.log10(1 / w_max), math.log10(1 / w_min), len(arcs) + 2)[1:-1]
    variants = [
        [(R, t, a) for R, t, a in zarcs[: len(arcs)]],
        [(r_span / max(len(arcs), 1), float(t), 0.8) for t in spread],
    ]
    cands = []
    for v, arc_seed in enumerate(variants):
        p = np.zeros(circuit.n_params)
        for (r, cap), (R, tau, alpha) in zip(arcs, arc_seed):
            R = max(R, 1e-6 * zmag.max())
            p[r.index] = R
            if cap.type == "C":
                p[cap.index] = tau / R
            else:
                p[cap.index] = tau**alpha / R
                p[cap.index + 1] = alpha
        n_r = 0
        n_r_other = max(sum(e.type == "R" for e in others) - 1, 1)
        for e in others:
            i = e.index
            if e.type == "R":
                p[i] = (r_inf if v == 0 and r_inf > 0 else r_hf) if n_r == 0 else r_span / n_r_other
                n_r += 1
            elif e.type == "L":
                zi = float(z.imag[order[-1]])
                p[i] = zi / w_max if zi > 0 else 1e-3 * float(zmag[order[-1]]) / w_max
            elif e.type == "C":
                p[i] = 1.0 / (w_min * max(float(-z.imag[order[0]]), 1e-3 * zmag.max())) / 10.0
            elif e.type == "CPE":
                p[i] = t_mid**0.8 / r_span
                p[i + 1] = 0.8
            elif e.type == "W":
                p[i] = max(float(-z.imag[order[0]]), 1e-3 * r_span) * math.sqrt(w_min) / 2.0
            else:  # Wo, Ws
                p[i] = r_span / 2.0
                p[i + 1] = 1.0 / w_min / (10.0 if v else 1.0)
        cands.append(p)
    return cands


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

    def result(self) -> Result:
        return Result(
            "linkk_residual_rms", self.rms, "", None, "lin-kk",
            {"passed": self.passed, "statement": self.statement, "M": self.M, "mu": self.mu,
             "c": self.c, "threshold": self.threshold, "max_abs_residual": self.max_abs},
        )


def linkk(
    frequency, z, *, c: float = 0.85, max_M: int = 80, threshold: float = 0.01,
    add_inductance: bool = True, add_capacitance: bool = False,
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
    mu_txt = (f"mu = {mu:.3f} <= c = {c}" if mu_met
              else f"mu = {mu:.3f}, no converged M with mu <= c = {c}")
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
