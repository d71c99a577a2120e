"""Benchmark: labctl's EIS fit against impedance.py on the same real spectrum, same run.

    .venv/bin/pip install impedance pandas   # bench only; not a labctl dependency
    .venv/bin/python bench/eis_fit.py [--repeats 30]

Fits R0-p(R1,CPE1)-p(R2,CPE2) to tests/data/eis_li_ion_pyDRTtools.txt (points with
Z'' > 0 dropped), initial guess [0.11, 0.01, 1, 0.8, 0.02, 100, 0.7], with both
libraries, alternating, ``--repeats`` times each; prints the median times, their
ratio, and both parameter sets (labctl's must lie inside impedance.py's 1-sigma
bands; arcs compared after sorting by tau).  Exit code 1 if labctl is slower than a
quarter of impedance.py's time or lands outside the bands.

    .venv/bin/python bench/eis_fit.py --real [--repeats 5]

Every case of tests/test_analysis_eis_real.py (real spectra from impedance.py's and
pyDRTtools' repositories, tests/data/README.md): labctl from the case's initial guess
and without one, impedance.py from the guess; median times, labctl's sum of squares
over the stored references' and whether labctl lies inside their 1-sigma bands.

    .venv/bin/python bench/eis_fit.py --references [CASE ...]

Recomputes the reference fits stored in tests/test_analysis_eis_real.py with
impedance.py: ``user`` = CustomCircuit.fit from the case's guess; ``best`` = the
lowest sum of squares over that fit, 10 starts drawn around the guess (seed 0: each
positive parameter times 10^U(-1, 1), exponents U(0.5, 1), maxfev 3000) and a start
at labctl's automatic result, refitted with impedance.py's defaults.  Prints the
``REF`` dictionary (arcs of the same structure sorted by tau, as labctl returns them).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labctl.analysis import fit_circuit, parse_circuit  # noqa: E402

DATA = ROOT / "tests" / "data" / "eis_li_ion_pyDRTtools.txt"
CIRCUIT = "R0-p(R1,CPE1)-p(R2,CPE2)"
GUESS = [0.11, 0.01, 1, 0.8, 0.02, 100, 0.7]


def by_tau(p):
    arcs = sorted([(p[1], p[2], p[3]), (p[4], p[5], p[6])], key=lambda a: (a[0] * a[1]) ** (1 / a[2]))
    return np.array([p[0], *arcs[0], *arcs[1]])


def _ipy_fit(CustomCircuit, circuit, guess, f, z, constants, **kw):
    """impedance.py's fit; returns (full parameter vector, full sigma vector, SSR)."""
    c = parse_circuit(circuit)
    fixed = {c.param_index(k): v for k, v in (constants or {}).items()}
    free = [i for i in range(c.n_params) if i not in fixed]
    cc = CustomCircuit(circuit, initial_guess=list(map(float, guess)), constants=dict(constants or {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cc.fit(f, z, **kw)
    p, s = np.zeros(c.n_params), np.zeros(c.n_params)
    p[free], s[free] = cc.parameters_, cc.conf_
    for i, v in fixed.items():
        p[i] = v
    d = c.impedance(p, f) - z
    return p, s, float(np.sum(d.real**2 + d.imag**2))


def _canonical(circuit, p, s):
    """Arcs of the same structure sorted by tau, as labctl returns them."""
    from labctl.analysis.eis import _sort_arcs

    q, cov, _ = _sort_arcs(parse_circuit(circuit), np.asarray(p, float), np.diag(np.asarray(s, float) ** 2))
    return q, np.sqrt(np.diag(cov))


def references(CustomCircuit, names) -> int:
    from tests.test_analysis_eis_real import CASES, load

    print("REF = {")
    for name in names or CASES:
        _, _, circuit, guess, constants = CASES[name]
        f, z = load(name)
        c = parse_circuit(circuit)
        fixed = {c.param_index(k) for k in (constants or {})}
        kinds = np.array([k for i, k in enumerate(c.param_kinds) if i not in fixed])
        t0 = time.perf_counter()
        pu, su, ru = _ipy_fit(CustomCircuit, circuit, guess, f, z, constants)
        best = (ru, "user guess", pu)
        rng = np.random.default_rng(0)
        starts = []
        for k in range(10):
            g = np.asarray(guess, float) * 10 ** rng.uniform(-1, 1, len(guess))
            g[kinds == "frac"] = rng.uniform(0.5, 1.0, int((kinds == "frac").sum()))
            starts.append((f"random start {k}", g, {"maxfev": 3000}))
        ours = fit_circuit(f, z, circuit, constants=constants)
        starts.append(("labctl's automatic fit", [v for i, v in enumerate(ours.values) if i not in fixed], {}))
        for label, g, kw in starts:
            try:
                p, s, r = _ipy_fit(CustomCircuit, circuit, g, f, z, constants, **kw)
            except (RuntimeError, ValueError):  # curve_fit gives up: not a candidate
                continue
            if np.all(np.isfinite(p)) and r < best[0] * (1 - 1e-9):
                best = (r, label, p)
        pb, sb, rb = _ipy_fit(
            CustomCircuit, circuit, [v for i, v in enumerate(best[2]) if i not in fixed], f, z, constants
        )
        print(f"    # {circuit}, {f.size} points; best from {best[1]} ({time.perf_counter() - t0:.0f} s)")
        print(f"    {name!r}: {{")
        for key, p, s, r in (("user", pu, su, ru), ("best", pb, sb, rb)):
            p, s = _canonical(circuit, p, s)
            print(f"        {key!r}: ([{', '.join(f'{v:.6g}' for v in p)}],")
            print(f"                 [{', '.join(f'{v:.3g}' for v in s)}], {r:.6g}),")
        print("    },", flush=True)
    print("}")
    return 0


def real(CustomCircuit, repeats: int) -> int:
    from tests.test_analysis_eis_real import CASES, REF, load

    print(
        f"{'case':<22}{'pts':>4}{'ipy ms':>10}{'user ms':>9}{'auto ms':>9}"
        f"{'SSR user/ref':>14}{'SSR auto/best':>15}  inside bands (user, auto)"
    )
    ok_all = True
    for name, (_, _, circuit, guess, constants) in CASES.items():
        f, z = load(name)
        t_ipy, t_user, t_auto = [], [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            _ipy_fit(CustomCircuit, circuit, [g for g in guess], f, z, constants)
            t_ipy.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            user = fit_circuit(f, z, circuit, guess, constants=constants)
            t_user.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            auto = fit_circuit(f, z, circuit, constants=constants)
            t_auto.append(time.perf_counter() - t0)
        ref = REF[name]
        key = "user" if user.initial_source == "user" else "best"
        inside = []
        for fit, k in ((user, key), (auto, "best")):
            p, s, _ = ref[k]
            inside.append(bool(np.all(np.abs(fit.values - np.asarray(p)) <= np.asarray(s) + 1e-9 * np.abs(p))))
        r_user = user.stats["ssr"] / ref["user"][2]
        r_auto = auto.stats["ssr"] / ref["best"][2]
        ok_all &= all(inside) and r_user <= 1 + 1e-6 and r_auto <= 1 + 1e-6
        print(
            f"{name:<22}{f.size:>4}{1e3 * statistics.median(t_ipy):>10.1f}{1e3 * statistics.median(t_user):>9.1f}"
            f"{1e3 * statistics.median(t_auto):>9.1f}{r_user:>14.6f}{r_auto:>15.6f}  {inside[0]}, {inside[1]}"
            + ("" if key == "user" else "  (user fit replaced by the automatic search)")
        )
    return 0 if ok_all else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--real", action="store_true", help="every real-data case of the tests")
    ap.add_argument(
        "--references",
        nargs="*",
        default=None,
        metavar="CASE",
        help="recompute the impedance.py references of the tests",
    )
    args = ap.parse_args()
    try:
        from impedance.models.circuits import CustomCircuit
    except ImportError as exc:
        print(f"impedance.py is not installed ({exc}): pip install impedance pandas", file=sys.stderr)
        return 2
    if args.references is not None:
        return references(CustomCircuit, args.references)
    if args.real:
        return real(CustomCircuit, args.repeats or 5)
    args.repeats = args.repeats or 30

    d = np.loadtxt(DATA)
    f, z = d[:, 0], d[:, 1] + 1j * d[:, 2]
    keep = z.imag <= 0
    f, z = f[keep], z[keep]
    circuit = parse_circuit(CIRCUIT)

    t_ours, t_ref = [], []
    ours = ref = None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ours = fit_circuit(f, z, circuit, GUESS)
        t_ours.append(time.perf_counter() - t0)
        cc = CustomCircuit(CIRCUIT, initial_guess=list(GUESS))
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cc.fit(f, z)
        t_ref.append(time.perf_counter() - t0)
        ref = cc

    m_ours, m_ref = statistics.median(t_ours), statistics.median(t_ref)
    ratio = m_ours / m_ref
    p_ref, s_ref = by_tau(ref.parameters_), by_tau(ref.conf_)
    p_ours, s_ours = by_tau(ours.values), by_tau(ours.sigmas)
    z_ref = ref.predict(f)
    rms_ref = float(np.sqrt(np.mean(np.abs(z_ref - z) ** 2 / np.abs(z) ** 2)))
    inside = bool(np.all(np.abs(p_ours - p_ref) <= s_ref))

    print(f"data: {DATA.name}, {f.size} points, circuit {CIRCUIT}, {args.repeats} repeats each")
    print(f"{'parameter':<12}{'impedance.py':>14}{'+-1 sigma':>12}{'labctl':>14}{'+-1 sigma':>12}")
    for name, a, sa, b, sb in zip(circuit.param_names, p_ref, s_ref, p_ours, s_ours):
        print(f"{name:<12}{a:>14.6g}{sa:>12.3g}{b:>14.6g}{sb:>12.3g}")
    print(f"relative RMS error: impedance.py {100 * rms_ref:.3f} %, labctl {100 * ours.rel_rms:.3f} %")
    print(f"median fit time: impedance.py {1e3 * m_ref:.1f} ms, labctl {1e3 * m_ours:.1f} ms (labctl nfev {ours.nfev})")
    print(f"ratio labctl / impedance.py: {ratio:.3f} (required <= 0.25); inside 1-sigma bands: {inside}")
    return 0 if (ratio <= 0.25 and inside and ours.rel_rms <= 0.0078) else 1


if __name__ == "__main__":
    sys.exit(main())
