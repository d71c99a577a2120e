"""Equivalent circuits in impedance.py's string syntax: parser, impedance and Jacobian.

Syntax (as in impedance.py): elements in series are joined with ``-``; elements in
parallel are written ``p(a, b, ...)``; both nest, e.g. ``R0-p(R1,CPE1)-p(R2,CPE2)``
or ``R0-p(R1-Wo1,CPE1)``.  An element is its type followed by a label that makes
it unique (``R0``, ``CPE1``, ``Wo_diff``).  Whitespace is ignored.

Elements (``omega = 2 pi f``):

============ ================ ======================================================
type         parameters       impedance
============ ================ ======================================================
R            R (ohm)          R
C            C (F)            1 / (j omega C)
L            L (H)            j omega L
CPE          Q (F s^(a-1)),   1 / (Q (j omega)^alpha), 0 < alpha <= 1
             alpha
W            sigma            sigma (1 - j) / sqrt(omega)   (semi-infinite Warburg)
             (ohm s^-1/2)
Wo           R (ohm), tau (s) R coth(sqrt(j omega tau)) / sqrt(j omega tau)  (finite, open)
Ws           R (ohm), tau (s) R tanh(sqrt(j omega tau)) / sqrt(j omega tau)  (finite, short)
La           L, alpha         (j omega L)^alpha, 0 < alpha <= 1 (modified inductance)
G            R (ohm), tau (s) R / sqrt(1 + j omega tau)     (Gerischer)
K            R (ohm), tau (s) R / (1 + j omega tau)         (RC element, as in Lin-KK)
Zarc         R (ohm), tau (s) R / (1 + (j omega tau)^gamma), 0 < gamma <= 1
             gamma
============ ================ ======================================================

These are the same definitions, parameter order and bounds impedance.py (1.7) uses
(``impedance/models/circuits/elements.py``), so parameters can be compared: there
Wo and Ws are ``Z0 / (sqrt(j w tau) tanh(sqrt(j w tau)))`` and
``Z0 tanh(sqrt(j w tau)) / sqrt(j w tau)`` with p = [Z0, tau], W is
``A_W (1 - j) / sqrt(w)``, CPE is ``1 / (Q (j w)^alpha)`` with p = [Q, alpha] and La
is ``(L j w)^alpha`` with p = [L, alpha] (the exponent applies to L too).  impedance.py
names the parameters ``CPE1_0``, ``CPE1_1``, ``Wo1_0``, ``Wo1_1``; labctl names them
``CPE1_Q``, ``CPE1_alpha``, ``Wo1_R``, ``Wo1_tau`` (same order), and accepts
impedance.py's names wherever a parameter is named (``constants`` of
:func:`labctl.analysis.fit_circuit`).
:meth:`Circuit.impedance_jacobian` returns the analytic derivative of Z with respect
to every parameter, which makes fits fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ._core import AnalysisError

# type -> (parameter names, units, kinds) ; kind 'pos' = positive (fitted in log space),
# 'frac' = exponent in (0, 1]
ELEMENTS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "R": (("R",), ("ohm",), ("pos",)),
    "C": (("C",), ("F",), ("pos",)),
    "L": (("L",), ("H",), ("pos",)),
    "CPE": (("Q", "alpha"), ("F s^(alpha-1)", ""), ("pos", "frac")),
    "W": (("sigma",), ("ohm s^-1/2",), ("pos",)),
    "Wo": (("R", "tau"), ("ohm", "s"), ("pos", "pos")),
    "Ws": (("R", "tau"), ("ohm", "s"), ("pos", "pos")),
    "La": (("L", "alpha"), ("ohm^(1/alpha) s", ""), ("pos", "frac")),
    "G": (("R", "tau"), ("ohm", "s"), ("pos", "pos")),
    "K": (("R", "tau"), ("ohm", "s"), ("pos", "pos")),
    "Zarc": (("R", "tau", "gamma"), ("ohm", "s", ""), ("pos", "pos", "frac")),
}

_NAME = re.compile(r"([A-Za-z]+)([0-9][0-9A-Za-z_]*|_[0-9A-Za-z_]+)?")


def _tanh_pos(s: np.ndarray) -> np.ndarray:
    """tanh(s) for Re(s) >= 0 without overflow."""
    e = np.exp(-2.0 * s)
    return (1.0 - e) / (1.0 + e)


@dataclass
class Element:
    type: str
    name: str
    index: int  # index of its first parameter in the circuit's parameter vector
    pos: int  # 0-based position in the circuit string

    @property
    def n_params(self) -> int:
        return len(ELEMENTS[self.type][0])

    def impedance_jacobian(
        self, p: np.ndarray, w: np.ndarray, jw_log: np.ndarray
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Z(omega) and [dZ/dp_k] for this element's own parameters."""
        t = self.type
        if t == "R":
            z = np.full(w.shape, p[0], dtype=complex)
            return z, [np.ones(w.shape, dtype=complex)]
        if t == "C":
            z = 1.0 / (1j * w * p[0])
            return z, [-z / p[0]]
        if t == "L":
            z = 1j * w * p[0]
            return z, [z / p[0]]
        if t == "CPE":
            q, a = p[0], p[1]
            z = np.exp(-a * jw_log) / q  # 1/(Q (j w)^a)
            return z, [-z / q, -z * jw_log]
        if t == "W":
            z = p[0] * (1.0 - 1j) / np.sqrt(w)
            return z, [z / p[0]]
        if t == "La":
            lg = np.log(p[0]) + jw_log  # log(j omega L)
            z = np.exp(p[1] * lg)
            return z, [p[1] * z / p[0], z * lg]
        if t == "G":
            r, tau = p[0], p[1]
            x = 1.0 + 1j * w * tau
            z = r / np.sqrt(x)
            return z, [z / r, -0.5 * z * 1j * w / x]
        if t == "K":
            r, tau = p[0], p[1]
            x = 1.0 + 1j * w * tau
            z = r / x
            return z, [z / r, -z * 1j * w / x]
        if t == "Zarc":
            r, tau, g = p[0], p[1], p[2]
            lg = jw_log + np.log(tau)  # log(j omega tau)
            s = np.exp(g * lg)
            x = 1.0 + s
            z = r / x
            dz_ds = -z / x
            return z, [z / r, dz_ds * g * s / tau, dz_ds * s * lg]
        r, tau = p[0], p[1]
        s = np.sqrt(1j * w * tau)
        th = _tanh_pos(s)
        if t == "Wo":
            coth = 1.0 / th
            z = r * coth / s
            dtau = -0.5 * r * (coth * coth - 1.0 + coth / s) / tau
            return z, [z / r, dtau]
        # Ws
        z = r * th / s
        dtau = 0.5 * r * ((1.0 - th * th) - th / s) / tau
        return z, [z / r, dtau]


@dataclass
class Series:
    children: list
    pos: int = 0


@dataclass
class Parallel:
    children: list
    pos: int = 0


@dataclass
class Circuit:
    """A parsed circuit: evaluate with :meth:`impedance` / :meth:`impedance_jacobian`."""

    text: str
    root: object
    elements: list[Element] = field(default_factory=list)

    @property
    def n_params(self) -> int:
        return sum(e.n_params for e in self.elements)

    @property
    def param_names(self) -> list[str]:
        out = []
        for e in self.elements:
            names = ELEMENTS[e.type][0]
            if len(names) == 1:
                out.append(e.name)
            else:
                out.extend(f"{e.name}_{n}" for n in names)
        return out

    @property
    def param_units(self) -> list[str]:
        return [u for e in self.elements for u in ELEMENTS[e.type][1]]

    @property
    def param_kinds(self) -> list[str]:
        return [k for e in self.elements for k in ELEMENTS[e.type][2]]

    def param_index(self, name: str) -> int:
        """Index of a parameter named as labctl does (``Wo1_tau``) or as impedance.py does (``Wo1_1``)."""
        for e in self.elements:
            names = ELEMENTS[e.type][0]
            for k, pn in enumerate(names):
                aliases = {f"{e.name}_{pn}", f"{e.name}_{k}"}
                if len(names) == 1:
                    aliases.add(e.name)
                if name in aliases:
                    return e.index + k
        raise AnalysisError(
            f"circuit {self.text} has no parameter {name!r} (parameters: {', '.join(self.param_names)}; "
            "impedance.py's names such as CPE1_0, CPE1_1 are accepted too)"
        )

    def __str__(self) -> str:
        return self.text

    def impedance(self, params, frequency) -> np.ndarray:
        """Complex impedance at ``frequency`` (Hz) for parameter vector ``params``."""
        z, _ = self._eval(np.asarray(params, float), np.asarray(frequency, float), jac=False)
        return z

    def impedance_jacobian(self, params, frequency) -> tuple[np.ndarray, np.ndarray]:
        """(Z, dZ/dp) with dZ/dp of shape (len(frequency), n_params), complex."""
        return self._eval(np.asarray(params, float), np.asarray(frequency, float), jac=True)

    def _eval(self, p: np.ndarray, f: np.ndarray, jac: bool):
        if p.shape != (self.n_params,):
            raise AnalysisError(
                f"circuit {self.text} has {self.n_params} parameters ({', '.join(self.param_names)}), got {p.size}"
            )
        w = 2.0 * np.pi * f
        jw_log = np.log(w) + 0.5j * np.pi  # log(j omega)
        J = np.zeros((f.size, self.n_params), dtype=complex) if jac else None

        def ev(node):
            if isinstance(node, Element):
                i = node.index
                z, d = node.impedance_jacobian(p[i : i + node.n_params], w, jw_log)
                if jac:
                    for k, dk in enumerate(d):
                        J[:, i + k] = dk
                return z, [(i, i + node.n_params)]
            if isinstance(node, Series):
                z = 0.0
                spans = []
                for c in node.children:
                    zc, sc = ev(c)
                    z = z + zc
                    spans += sc
                return z, spans
            # parallel: Z = 1 / sum(1/Z_i); dZ/dp(in child i) = (Z/Z_i)^2 dZ_i/dp
            parts = [ev(c) for c in node.children]
            y = sum(1.0 / zc for zc, _ in parts)
            z = 1.0 / y
            spans = []
            for zc, sc in parts:
                if jac:
                    fac = (z / zc) ** 2
                    for a, b in sc:
                        J[:, a:b] *= fac[:, None]
                spans += sc
            return z, spans

        z, _ = ev(self.root)
        z = np.asarray(z, dtype=complex) * np.ones(f.shape)
        return z, J

    # -- arcs ---------------------------------------------------------------------------------
    def arcs(self) -> list[tuple[Element, Element]]:
        """Top-level series blocks of the form p(R, CPE) or p(R, C), as (R, capacitive) pairs."""
        top = self.root.children if isinstance(self.root, Series) else [self.root]
        out = []
        for node in top:
            if (
                isinstance(node, Parallel)
                and len(node.children) == 2
                and all(isinstance(c, Element) for c in node.children)
            ):
                types = {c.type: c for c in node.children}
                if "R" in types and ("CPE" in types or "C" in types) and len(types) == 2:
                    cap = types.get("CPE") or types.get("C")
                    out.append((types["R"], cap))
        return out


def arc_tau(r: Element, cap: Element, p: np.ndarray) -> float:
    """Time constant of a p(R, CPE) arc, (R Q)^(1/alpha), or R C for p(R, C)."""
    rv = p[r.index]
    if cap.type == "C":
        return float(rv * p[cap.index])
    q, a = p[cap.index], p[cap.index + 1]
    return float((rv * q) ** (1.0 / a))


def _err(text: str, pos: int, what: str) -> AnalysisError:
    caret = " " * pos + "^"
    return AnalysisError(f"circuit {text!r}: {what} at position {pos + 1}\n  {text}\n  {caret}", position=pos)


def parse_circuit(text: str) -> Circuit:
    """Parse a circuit string; AnalysisError (with position) on any syntax error."""
    if not isinstance(text, str) or not text.strip():
        raise AnalysisError("circuit string is empty: write e.g. 'R0-p(R1,CPE1)'", position=0)
    n = len(text)
    i = 0
    elements: list[Element] = []
    names: dict[str, int] = {}
    nparam = 0

    def skip():
        nonlocal i
        while i < n and text[i].isspace():
            i += 1

    def parse_series():
        nonlocal i
        skip()
        start = i
        children = [parse_term()]
        skip()
        while i < n and text[i] == "-":
            i += 1
            children.append(parse_term())
            skip()
        return children[0] if len(children) == 1 else Series(children, start)

    def parse_term():
        nonlocal i, nparam
        skip()
        if i >= n:
            raise _err(text, min(i, n), "expected an element or p(...) but the string ends")
        start = i
        if text[i] == "p" and text[i + 1 : i + 2] == "(" or (text[i] == "p" and text[i + 1 :].lstrip().startswith("(")):
            i += 1
            skip()
            open_pos = i
            i += 1  # '('
            children = [parse_series()]
            skip()
            while i < n and text[i] == ",":
                i += 1
                children.append(parse_series())
                skip()
            if i >= n:
                raise _err(text, open_pos, "unbalanced parentheses: this '(' is never closed")
            if text[i] != ")":
                raise _err(text, i, f"expected ',' or ')' but found {text[i]!r}")
            i += 1
            if len(children) < 2:
                raise _err(text, start, "p(...) needs at least two branches separated by ','")
            return Parallel(children, start)
        if text[i] in "(),-":
            if text[i] == ")":
                raise _err(text, i, "unbalanced parentheses: ')' without a matching 'p('")
            if text[i] == "(":
                raise _err(text, i, "'(' must follow 'p' (parallel block p(a,b))")
            raise _err(text, i, f"expected an element but found {text[i]!r}")
        m = _NAME.match(text, i)
        if not m:
            raise _err(text, i, f"unexpected character {text[i]!r}")
        typ = m.group(1)
        name = m.group(0)
        if typ not in ELEMENTS:
            known = ", ".join(ELEMENTS)
            raise _err(text, i, f"unknown element {name!r} (type {typ!r}; known types: {known})")
        if name in names:
            raise _err(text, i, f"duplicate element name {name!r} (first at position {names[name] + 1})")
        names[name] = i
        el = Element(typ, name, nparam, i)
        nparam += el.n_params
        elements.append(el)
        i = m.end()
        return el

    root = parse_series()
    skip()
    if i < n:
        if text[i] == ")":
            raise _err(text, i, "unbalanced parentheses: ')' without a matching 'p('")
        raise _err(text, i, f"unexpected {text[i]!r}: join elements with '-' (series) or p(a,b) (parallel)")
    return Circuit(text.strip(), root, elements)
