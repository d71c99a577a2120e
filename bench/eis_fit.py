"""Benchmark: labctl's EIS fit against impedance.py on the same real spectrum, same run.

    .venv/bin/pip install impedance pandas   # bench only; not a labctl dependency
    .venv/bin/python bench/eis_fit.py [--repeats 30]

Fits R0-p(R1,CPE1)-p(R2,CPE2) to tests/data/eis_li_ion_pyDRTtools.txt (points with
Z'' > 0 dropped), initial guess [0.11, 0.01, 1, 0.8, 0.02, 100, 0.7], with both
libraries, alternating, ``--repeats`` times each; prints the median times, their
ratio, and both parameter sets (labctl's must lie inside impedance.py's 1-sigma
bands; arcs compared after sorting by tau).  Exit code 1 if labctl is slower than a
quarter of impedance.py's time or lands outside the bands.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    try:
        from impedance.models.circuits import CustomCircuit
    except ImportError as exc:
        print(f"impedance.py is not installed ({exc}): pip install impedance pandas", file=sys.stderr)
        return 2

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
    print(f"median fit time: impedance.py {1e3 * m_ref:.1f} ms, labctl {1e3 * m_ours:.1f} ms "
          f"(labctl nfev {ours.nfev})")
    print(f"ratio labctl / impedance.py: {ratio:.3f} (required <= 0.25); inside 1-sigma bands: {inside}")
    return 0 if (ratio <= 0.25 and inside and ours.rel_rms <= 0.0078) else 1


if __name__ == "__main__":
    sys.exit(main())
