"""Automatic initial guesses for equivalent-circuit fits (used by :func:`labctl.analysis.fit_circuit`).

A circuit's top-level series terms are sorted into roles:

* **series R**: the first one is the high-frequency resistance, further ones share
  what is left of the low-frequency resistance;
* **RC blocks**: a parallel block with one capacitive branch (C or CPE) and one
  branch holding a resistor (``p(R1,CPE1)``, Randles-like ``p(R2-Wo1,C2)``), and
  ``Zarc``/``K`` elements: each needs a resistance and a time constant;
* **tails**: W, Wo, Ws, G, a series C or CPE (also W/Wo/Ws/G inside an RC block's
  resistive branch): the low-frequency part of the spectrum;
* **inductors**: L, La (high-frequency tail, Z'' > 0).

The spectrum is decomposed greedily into R_inf + k ZARC arcs (R, tau, alpha), for
k = 1 .. (RC blocks + tails + 1): the first arc at the largest -Z'', each further one
where the relative residual of the previous fit is largest, refitting all each time
(weights 1/|Z|).  A candidate guess takes n of the k arcs for the n RC blocks (every
subset, and every order when the blocks differ in structure), gives the slowest arc
left over to the tails (or, without one, seeds them from the low-frequency data), and
sets the inductance from the high-frequency Z''.  Two more candidates split the
largest arc in two and spread the arcs evenly over the measured time constants.
:func:`labctl.analysis.eis.fit_circuit` screens all candidates with a short fit,
polishes the best few and keeps the lowest residual.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .circuit import Circuit, Element, Parallel, Series, parse_circuit

#: at most this many candidates are screened
MAX_CANDIDATES = 28
_TAILS = ("W", "Wo", "Ws", "G")


class Structure:
    """Roles of a circuit's elements for seeding (see the module docstring)."""

    def __init__(self, circuit: Circuit):
        self.series_r: list[Element] = []
        self.blocks: list[tuple[Element, Element | None, list[Element], str]] = []  # (R, cap, extras, signature)
        self.tails: list[Element] = []
        self.inductors: list[Element] = []
        self.other: list[Element] = []
        top = circuit.root.children if isinstance(circuit.root, Series) else [circuit.root]
        for node in top:
            if isinstance(node, Element):
                if node.type == "R":
                    self.series_r.append(node)
                elif node.type in ("L", "La"):
                    self.inductors.append(node)
                elif node.type in ("Zarc", "K"):
                    self.blocks.append((node, None, [], node.type))
                elif node.type in _TAILS or node.type in ("C", "CPE"):
                    self.tails.append(node)
                else:
                    self.other.append(node)
            elif isinstance(node, Parallel) and not self._rc_block(node):
                self.other.extend(_leaves(node))
        self.n_tail_like = len(self.tails) + sum(len(b[2]) for b in self.blocks)

    def _rc_block(self, node: Parallel) -> bool:
        if len(node.children) != 2:
            return False
        for cap, branch in (node.children, node.children[::-1]):
            if not (isinstance(cap, Element) and cap.type in ("C", "CPE")):
                continue
            leaves = (
                [branch]
                if isinstance(branch, Element)
                else (
                    branch.children
                    if isinstance(branch, Series) and all(isinstance(c, Element) for c in branch.children)
                    else None
                )
            )
            if not leaves:
                continue
            rs = [e for e in leaves if e.type == "R"]
            extras = [e for e in leaves if e.type != "R"]
            if len(rs) != 1 or any(e.type not in _TAILS for e in extras):
                continue
            sig = cap.type + "|" + ",".join(sorted(e.type for e in extras))
            self.blocks.append((rs[0], cap, extras, sig))
            return True
        return False


def _leaves(node) -> list[Element]:
    if isinstance(node, Element):
        return [node]
    return [e for c in node.children for e in _leaves(c)]


def zarc_decompositions(
    f: np.ndarray, z: np.ndarray, k_max: int
) -> list[tuple[float, list[tuple[float, float, float]]]]:
    """Greedy R_inf + k ZARC fits for k = 1 .. k_max: [(R_inf, [(R, tau, alpha), ...] by tau), ...]."""
    # the fit machinery, imported here: eis imports this module
    from .eis import FitProblem, solve_fit

    order = np.argsort(f)
    fs, zs = f[order], z[order]
    zmag = np.abs(zs)
    r_hf = max(float(zs.real.min()), 1e-6 * zmag.max())
    r_span = max(float(zs.real[0]) - r_hf, 1e-3 * zmag.max())
    r_cap = 10.0 * float(zmag.max())
    tau_lo, tau_hi = 0.01 / (2 * np.pi * fs[-1]), 100.0 / (2 * np.pi * fs[0])
    k = int(np.argmax(-zs.imag)) if np.any(zs.imag < 0) else fs.size // 2
    seeds = [(r_span, 1.0 / (2 * np.pi * fs[k]), 0.8)]
    r_inf = r_hf
    out = []
    while True:
        text = "R0" + "".join(f"-p(R{i},CPE{i})" for i in range(1, len(seeds) + 1))
        c = parse_circuit(text)
        p0 = [r_inf]
        for R, tau, a in seeds:
            p0 += [R, tau**a / R, a]
        prob = FitProblem(c, fs, zs, "modulus")
        try:
            s = solve_fit(prob, np.asarray(p0), 60 + 40 * len(seeds), 1e-8)
            p = prob.to_p(s.x)
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            p = np.asarray(p0)
        if not np.all(np.isfinite(p)) or np.any(p <= 0):
            p = np.asarray(p0)
        r_inf = float(p[0])
        seeds = []
        for i in range(len(p0) // 3):
            R, Q, a = p[1 + 3 * i : 4 + 3 * i]
            # an arc that ran off to R -> infinity is a capacitive tail: keep its Q, alpha
            # with a finite R, and its time constant within reach of the data
            R = min(float(R), r_cap)
            a = float(min(max(a, 0.4), 1.0))
            tau = float(np.clip((R * Q) ** (1.0 / a), tau_lo, tau_hi))
            seeds.append((R, tau, a))
        out.append((r_inf, sorted(seeds, key=lambda s: s[1])))
        if len(seeds) >= k_max:
            break
        rel = np.abs(c.impedance(p, fs) - zs) / zmag
        if rel.size >= 3:
            rel = np.convolve(rel, np.ones(3) / 3, mode="same")
        j = int(np.argmax(rel))
        R_new = max(2.0 * float(np.abs(c.impedance(p, fs[j : j + 1])[0] - zs[j])), 1e-3 * r_span)
        seeds.append((R_new, 1.0 / (2 * np.pi * fs[j]), 0.8))
    return out


def _set_cap(p: np.ndarray, cap: Element, R: float, tau: float, alpha: float) -> None:
    if cap.type == "C":
        p[cap.index] = tau / R
    else:
        p[cap.index] = tau**alpha / R
        p[cap.index + 1] = alpha


def _seed_tail(p: np.ndarray, e: Element, arc, lf: dict) -> None:
    """Seed a low-frequency element from a ZARC arc (R, tau, alpha) or, without one, the data."""
    w_min = lf["w_min"]
    if arc is not None:
        R, tau, alpha = arc
    else:
        R, tau, alpha = lf["r_lf"], 1.0 / w_min, 0.5
    if e.type == "W":
        # |Z_W| = sigma sqrt(2/omega): half the arc's R at omega = 1/tau
        p[e.index] = R / (2.0 * math.sqrt(2.0 * tau)) if arc is not None else lf["sigma"]
    elif e.type in ("Wo", "Ws", "G"):
        p[e.index] = R
        p[e.index + 1] = tau
    elif e.type == "C":
        p[e.index] = tau / R if arc is not None else lf["c"]
    elif e.type == "CPE":
        if arc is not None:
            p[e.index] = tau**alpha / R
            p[e.index + 1] = min(max(alpha, 0.4), 1.0)
        else:
            p[e.index] = lf["q"]
            p[e.index + 1] = lf["alpha"]


def auto_initial_guesses(circuit: Circuit, f: np.ndarray, z: np.ndarray) -> list[np.ndarray]:
    """Candidate initial guesses for ``circuit`` from the spectrum, most plausible first."""
    f = np.asarray(f, float)
    z = np.asarray(z, complex)
    st = Structure(circuit)
    order = np.argsort(f)
    fs, zs = f[order], z[order]
    zmag = np.abs(zs)
    w_min, w_max = 2 * np.pi * float(fs[0]), 2 * np.pi * float(fs[-1])
    floor = 1e-6 * float(zmag.max())
    n_rc = len(st.blocks)
    k_max = min(max(n_rc + st.n_tail_like + 1, 1), 5)
    with np.errstate(all="ignore"):
        decs = zarc_decompositions(f, z, k_max)
    r_hf = max(float(zs.real.min()), floor)
    r_inf = decs[0][0] if decs[0][0] > 0 else r_hf
    r_lf = max(float(zs.real[0]) - r_hf, 1e-3 * float(zmag.max()))
    # low-frequency data for tails seeded without an arc
    m = max(3, fs.size // 10)
    lw, lzi = np.log(2 * np.pi * fs[:m]), np.log(np.maximum(np.abs(zs.imag[:m]), floor))
    slope = -float(np.polyfit(lw, lzi, 1)[0]) if np.ptp(lw) > 0 else 0.8
    a_lf = min(max(slope, 0.3), 1.0)
    zi0 = max(float(-zs.imag[0]), 1e-3 * float(zmag.max()))
    lf = {
        "w_min": w_min,
        "r_lf": r_lf / 2.0,
        "sigma": zi0 * math.sqrt(w_min) / 2.0,
        "c": 1.0 / (w_min * zi0),
        "alpha": a_lf,
        "q": 1.0 / (zi0 * w_min**a_lf * math.sin(a_lf * math.pi / 2)),
    }
    zi_hf = float(zs.imag[-1])
    l_hf = zi_hf / w_max if zi_hf > 0 else 1e-3 * float(zmag[-1]) / w_max

    def base(r0: float) -> np.ndarray:
        p = np.zeros(circuit.n_params)
        for i, e in enumerate(st.series_r):
            p[e.index] = r0 if i == 0 else r_lf / max(len(st.series_r) - 1, 1)
        for e in st.inductors:
            if e.type == "L":
                p[e.index] = l_hf
            else:  # La: (j w L)^alpha
                p[e.index + 1] = 0.95
                p[e.index] = (l_hf * w_max) ** (1 / 0.95) / w_max
        t_mid = 1.0 / math.sqrt(w_min * w_max)
        for e in st.other:  # elements in nested blocks: scale-based values
            kinds = {
                "R": [r_lf / 2],
                "C": [t_mid / r_lf],
                "L": [l_hf],
                "CPE": [t_mid**0.8 / r_lf, 0.8],
                "W": [lf["sigma"]],
                "La": [l_hf, 0.95],
                "Zarc": [r_lf / 2, t_mid, 0.8],
                "K": [r_lf / 2, t_mid],
            }
            vals = kinds.get(e.type, [r_lf / 2, 1.0 / w_min])
            p[e.index : e.index + len(vals)] = vals
        return p

    sigs = [b[3] for b in st.blocks]
    perms = list(itertools.permutations(range(n_rc))) if len(set(sigs)) > 1 else [tuple(range(n_rc))]
    cands: list[np.ndarray] = []

    def add(r0, arcs, tail_arcs):
        p = base(r0)
        for (r, cap, extras, _), (R, tau, alpha) in zip(st.blocks, arcs):
            R = max(R, floor)
            if cap is None:  # Zarc, K
                p[r.index] = R
                p[r.index + 1] = tau
                if r.type == "Zarc":
                    p[r.index + 2] = alpha
            else:
                p[r.index] = R
                _set_cap(p, cap, R, tau, alpha)
        tail_elems = [e for b in st.blocks for e in b[2]] + st.tails
        for e, arc in itertools.zip_longest(tail_elems, tail_arcs[::-1]):
            if e is not None:
                _seed_tail(p, e, arc, lf)
        cands.append(p)

    for r0, arcs in decs:
        if len(arcs) < n_rc:
            continue
        for subset in itertools.combinations(range(len(arcs)), n_rc):
            left = [arcs[i] for i in range(len(arcs)) if i not in subset]
            chosen = [arcs[i] for i in subset]
            for perm in perms:
                add(r0, [chosen[i] for i in perm], left if st.n_tail_like else [])
                if st.n_tail_like and left:
                    add(r0, [chosen[i] for i in perm], [])
    if n_rc >= 2:
        # the largest arc of the (n-1)-arc decomposition split in two
        r0, arcs = decs[min(n_rc - 2, len(decs) - 1)]
        big = max(range(len(arcs)), key=lambda i: arcs[i][0])
        R, tau, alpha = arcs[big]
        split = sorted(
            arcs[:big] + arcs[big + 1 :] + [(R / 2, tau / 3, alpha), (R / 2, tau * 3, alpha)], key=lambda a: a[1]
        )
        for perm in perms:
            add(r0, [split[i] for i in perm][:n_rc], [])
    spread = np.logspace(math.log10(1 / w_max), math.log10(1 / w_min), n_rc + 2)[1:-1]
    add(r_hf, [(r_lf / max(n_rc, 1), float(t), 0.8) for t in spread], [])
    if not cands:
        add(r_inf, [], [])
    # drop duplicates, keep the order
    out: list[np.ndarray] = []
    for p in cands:
        if not any(np.allclose(p, q, rtol=1e-9) for q in out):
            out.append(p)
    return out[:MAX_CANDIDATES] if len(out) > MAX_CANDIDATES else out
