"""Physics of the simulated cells: symmetric Mg|Mg, asymmetric Mg|Al/C, full Mg|Mo6S8.

A cell model holds the state of one cell (plated inventory, cycle count, damage,
short) and answers, without changing that state, "what is the noise-free voltage
``tau`` seconds from now under current I" as a vectorised numpy function; the
potentiostat finds limit crossings on those arrays and then advances the state
exactly to where the technique ended.  Noise is added by the potentiostat.

Sign convention (labctl-wide): current > 0 is anodic at the working electrode
(stripping Mg from it, charging the full cell), < 0 cathodic (plating onto it,
discharging the full cell).  Voltage = working electrode minus counter.

Model equations and the paper observable each preset field reproduces are in
docs/presets.md.  Build a cell with :func:`simulate_cell`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.optimize import brentq

from labctl.simulators.presets import Preset, Table, load_preset

__all__ = [
    "R_GAS", "FARADAY", "MAH", "CellModel", "SymmetricCell", "AsymmetricCell", "FullCell",
    "simulate_cell", "interp_table", "interp_scalar", "linear_table", "cpe_rc", "calibrate_asymmetric", "KINDS",
]

R_GAS = 8.314462618  # J/(mol K)
FARADAY = 96485.33212  # C/mol
MAH = 3.6  # C per mAh
T_ZERO = 273.15

# full-cell shape constants (modelling choices, documented in docs/presets.md)
_NERNST = 0.015  # V, width of the Nernstian ends of the Mo6S8 curve
_SLOPE = 0.03  # V per unit of state of charge across the plateaus
_STEP_WIDTH = 0.02  # width (in state of charge) of the step between the plateaus
_EPS = 1e-9  # state of charge treated as empty/full
_OVER = 500.0  # V per unit of state of charge driven beyond empty/full (side reactions)
_CATHODE_R = 300.0  # ohm, Mo6S8 charge transfer (full-cell EIS)
_CATHODE_Q, _CATHODE_A = 1e-4, 0.8
_SUBSTRATE_Q, _SUBSTRATE_A = 1e-5, 0.9  # blocking Al/C electrode without plated Mg
_STRIP_OVERSHOOT = 0.5  # V the Al/C electrode rises beyond strip_end.potential when overdrawn


# --------------------------------------------------------------------------- helpers


def interp_table(table: Table, x: Any, *, extrapolate: bool = True) -> np.ndarray:
    """Power-law (log-log linear) interpolation of ``table`` at ``x`` (> 0).

    Beyond the table ends the end segment's power law continues (``extrapolate``) or
    the end value holds.  One point: a constant.
    """
    xs = np.array([p[0] for p in table], dtype=float)
    ys = np.array([p[1] for p in table], dtype=float)
    x = np.asarray(x, dtype=float)
    if len(xs) == 1:
        return np.full_like(x, ys[0])
    lx = np.log(np.maximum(x, 1e-300))
    lxs, lys = np.log(xs), np.log(np.maximum(ys, 1e-300))
    y = np.interp(lx, lxs, lys)
    if extrapolate:
        lo = (lys[1] - lys[0]) / (lxs[1] - lxs[0])
        hi = (lys[-1] - lys[-2]) / (lxs[-1] - lxs[-2])
        y = np.where(lx < lxs[0], lys[0] + lo * (lx - lxs[0]), y)
        y = np.where(lx > lxs[-1], lys[-1] + hi * (lx - lxs[-1]), y)
    return np.exp(y)


def interp_scalar(table: Table, x: float, *, extrapolate: bool = True) -> float:
    """:func:`interp_table` for one value (pure Python: the tables are tiny and this is hot)."""
    if len(table) == 1:
        return table[0][1]
    lx = math.log(max(x, 1e-300))
    if lx <= math.log(table[0][0]):
        (x0, y0), (x1, y1) = table[0], table[1]
        if not extrapolate:
            return y0
    elif lx >= math.log(table[-1][0]):
        (x0, y0), (x1, y1) = table[-2], table[-1]
        if not extrapolate:
            return y1
    else:
        i = 1
        while math.log(table[i][0]) < lx:
            i += 1
        (x0, y0), (x1, y1) = table[i - 1], table[i]
    l0, l1 = math.log(x0), math.log(x1)
    ly0, ly1 = math.log(max(y0, 1e-300)), math.log(max(y1, 1e-300))
    return math.exp(ly0 + (ly1 - ly0) * (lx - l0) / (l1 - l0))


def linear_table(table: Table, x: float) -> float:
    """Piecewise-linear interpolation, linear extrapolation beyond the ends, never below 0."""
    xs = [p[0] for p in table]
    ys = [p[1] for p in table]
    if len(xs) == 1:
        return max(ys[0], 0.0)
    if x <= xs[0]:
        s = (ys[1] - ys[0]) / (xs[1] - xs[0])
        y = ys[0] + s * (x - xs[0])
    elif x >= xs[-1]:
        s = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        y = ys[-1] + s * (x - xs[-1])
    else:
        y = float(np.interp(x, xs, ys))
    return max(float(y), 0.0)


def cpe_rc(r: Any, q: float, alpha: float, omega: np.ndarray) -> np.ndarray:
    """Impedance of R in parallel with a CPE: R / (1 + R Q (j w)^alpha)."""
    return r / (1.0 + r * q * (1j * omega) ** alpha)


def _rng(seed: int, replicate: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(replicate) & 0xFFFFFFFF, stream])


# --------------------------------------------------------------------------- base


class CellModel(ABC):
    """State and physics shared by the three cell kinds.

    The potentiostat calls :meth:`begin` at the start of each technique, uses the
    pure functions (:meth:`v_cp`, :meth:`v_rest`, :meth:`kinetic_current`,
    :meth:`impedance`) on arrays, then advances the state with :meth:`advance_cp`,
    :meth:`advance_rest` or :meth:`pass_charge`.
    """

    kind = ""
    _stream = 2  # random stream of the per-cycle draws (one per kind)

    def __init__(self, preset: "str | Preset", *, area_cm2: float = 1.267, seed: int = 0,
                 replicate: int = 0, cathode_mass_g: float | None = None) -> None:
        self.preset = load_preset(preset)
        if not area_cm2 > 0:
            raise ValueError(f"area_cm2 must be positive, got {area_cm2!r}")
        self.area = float(area_cm2)
        self.seed = int(seed)
        self.replicate = int(replicate)
        self._prng = _rng(seed, replicate, 1)  # cell parameters (replicate spread)
        self._crng = _rng(seed, replicate, self._stream)  # per-cycle draws
        self.age = 0.0  # s of cell time simulated
        self.on_time = 0.0  # s under current
        self.cycles = 0  # completed cycles (definition per kind)
        self.last_sign = 0
        self.continuing = False
        self.seg_time = 0.0  # s since the current segment (half-cycle) began
        self.rest_time = 0.0  # s at open circuit since the last current
        self.v_relax = 0.0  # polarisation left at the last current's end (relaxes at OCP)
        self._tau_relax = self.preset.symmetric.relaxation
        p = self.preset
        self._kin = p.kinetics
        self._imp = p.impedance

    # ---- temperature dependence
    def rct(self, temp_c: Any) -> np.ndarray:
        """Charge-transfer resistance of the symmetric cell at ``temp_c`` (Arrhenius from T0)."""
        imp = self._imp
        t = np.asarray(temp_c, dtype=float) + T_ZERO
        t0 = imp.reference_temperature + T_ZERO
        return imp.rct * np.exp(imp.activation_energy / R_GAS * (1.0 / t - 1.0 / t0))

    def j0(self, temp_c: Any) -> np.ndarray:
        """Exchange current density (A/cm2) at ``temp_c`` (same activation energy as 1/Rct)."""
        k = self._kin
        t = np.asarray(temp_c, dtype=float) + T_ZERO
        t0 = k.j0_temperature + T_ZERO
        return k.j0 * np.exp(-self._imp.activation_energy / R_GAS * (1.0 / t - 1.0 / t0))

    def film_resistance(self) -> float:
        return linear_table(self._imp.film.resistance, float(self.cycles))

    # ---- technique lifecycle
    def begin(self, kind: str, current: float = 0.0) -> None:
        """A technique starts: ``kind`` as in labctl.drivers.techniques, ``current`` for cp."""
        if kind == "cp" and current != 0.0:
            s = 1 if current > 0 else -1
            new = s != self.last_sign or not self.continuing
            self._begin_current(current, new_segment=new, reversal=s != self.last_sign)
            if new:
                self.seg_time = 0.0
            self.last_sign = s
            self.continuing = True
        else:
            if self.continuing:
                self.rest_time = 0.0
            self.continuing = False

    @abstractmethod
    def _begin_current(self, current: float, *, new_segment: bool, reversal: bool) -> None:
        """Defined by each cell kind."""

    # ---- galvanostatic
    @abstractmethod
    def v_cp(self, current: float, tau: Any) -> np.ndarray:
        """Noise-free voltage ``tau`` s from now under constant ``current`` (state unchanged)."""

    def advance_cp(self, current: float, dt: float) -> None:
        if dt <= 0:
            return
        if current == 0.0:
            self.advance_rest(dt)
            return
        v_end = float(self.v_cp(current, np.array([dt]))[0])
        self._advance_cp(current, dt)
        self.seg_time += dt
        self.age += dt
        self.on_time += dt
        self.rest_time = 0.0
        self.v_relax = v_end - self.equilibrium()

    @abstractmethod
    def _advance_cp(self, current: float, dt: float) -> None:
        """Defined by each cell kind."""

    # ---- open circuit
    @abstractmethod
    def equilibrium(self) -> float:
        """Noise-free open-circuit voltage without the relaxing polarisation."""

    def _eq_rest(self, tau: np.ndarray) -> np.ndarray:
        return np.full_like(tau, self.equilibrium())

    def v_rest(self, tau: Any) -> np.ndarray:
        tau = np.asarray(tau, dtype=float)
        return self._eq_rest(tau) + self.v_relax * np.exp(-(self.rest_time + tau) / self._tau_relax)

    def ocv(self) -> float:
        return float(self.v_rest(np.array([0.0]))[0])

    def advance_rest(self, dt: float) -> None:
        if dt <= 0:
            return
        self._advance_rest(dt)
        self.rest_time += dt
        self.age += dt
        self.continuing = False

    def _advance_rest(self, dt: float) -> None:
        pass

    # ---- kinetics (sweeps, potentiostatic holds)
    def kinetic_current(self, voltage: Any, temp_c: float) -> np.ndarray:
        """Current (A) at cell ``voltage`` from Butler-Volmer about the open-circuit voltage, with iR.

        Two identical electrodes each take half the charge-transfer overpotential:
        I = A j0 [exp(a n F e/(2RT)) - exp(-(1-a) n F e/(2RT))], e = E - OCV - I Rs
        (for a = 0.5: I = 2 A j0 sinh(n F e / (4 R T))).
        """
        e = np.asarray(voltage, dtype=float) - self.ocv()
        k = self._kin
        rs = self._imp.rs
        t = float(temp_c) + T_ZERO
        b = k.electrons * FARADAY / (2.0 * R_GAS * t)
        i0 = self.area * float(self.j0(temp_c))
        a = k.alpha

        def bv(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            ea = np.exp(np.clip(a * b * x, -200, 200))
            ec = np.exp(np.clip(-(1 - a) * b * x, -200, 200))
            return i0 * (ea - ec), i0 * b * (a * ea + (1 - a) * ec)

        cur = np.clip(bv(e)[0], -abs(e) / rs, abs(e) / rs)
        for _ in range(60):
            f, df = bv(e - cur * rs)
            step = (cur - f) / (1.0 + rs * df)
            cur = cur - step
            if np.all(np.abs(step) <= 1e-12 + 1e-10 * np.abs(cur)):
                break
        return cur

    def pass_charge(self, charge: float, dt: float) -> None:
        """A sweep or hold passed ``charge`` (C, signed) over ``dt`` s."""
        self.advance_rest(dt)

    # ---- impedance
    @abstractmethod
    def impedance(self, freq: Any, temp_c: Any) -> np.ndarray:
        """Defined by each cell kind."""

    def _mg_series(self, omega: np.ndarray, temp_c: Any, electrodes: float) -> np.ndarray:
        """Rs + film + Mg charge transfer of ``electrodes`` (2 symmetric, 1 a single Mg electrode)."""
        imp = self._imp
        z = np.full(omega.shape, imp.rs, dtype=complex)
        rf = self.film_resistance() * electrodes / 2.0
        if rf > 0:
            z = z + cpe_rc(rf, imp.film.cpe.q * 2.0 / electrodes, imp.film.cpe.alpha, omega)
        rct = self.rct(temp_c) * electrodes / 2.0
        return z + cpe_rc(rct, imp.double_layer.q * 2.0 / electrodes, imp.double_layer.alpha, omega)

    def describe(self) -> dict:
        return {"kind": self.kind, "preset": self.preset.name, "seed": self.seed, "replicate": self.replicate,
                "area_cm2": self.area, "age_s": self.age, "cycles": self.cycles}


# --------------------------------------------------------------------------- symmetric Mg | Mg


class SymmetricCell(CellModel):
    """Mg | Mg: plateau hysteresis (power law in j), nucleation spike, stochastic short.

    Damage D grows at 1/life(j) per hour under current (life a power law in j through
    the preset's points) plus ``rate_step_damage`` per e-fold step-up of the current
    density above the highest one so far (spread over ``rate_step_window``).  The cell
    shorts when D reaches its replicate's threshold exp(N(0, life_spread)).
    """

    kind = "symmetric"

    def __init__(self, preset: "str | Preset", **kw: Any) -> None:
        super().__init__(preset, **kw)
        p = self.preset.symmetric
        self.p = p
        self.life_multiplier = float(np.exp(self._prng.normal(0.0, p.life_spread)))
        self.ocp_offset = float(self._prng.normal(0.0, p.ocp_spread)) if p.ocp_spread > 0 else 0.0
        self.damage = 0.0
        self.half_cycles = 0
        self.j_max = 0.0  # highest current density so far (A/cm2)
        self.shock_remaining = 0.0
        self.shock_rate = 0.0  # damage per second while shock_remaining > 0
        self.shorted = False
        self.short_age: float | None = None  # cell age (s) at the short
        self.spike = False

    # ---- observables as functions
    def plateau(self, j: float) -> float:
        """|V| plateau at current density ``j`` (A/cm2) for the present cycle count."""
        return interp_scalar(self.p.hysteresis, j) * (1.0 + self.p.hysteresis_growth * self.cycles)

    def life_hours(self, j: float) -> float:
        """Nominal hours under current until the short at ``j`` (before the replicate spread)."""
        return interp_scalar(self.p.life, j) / 3600.0

    def _begin_current(self, current: float, *, new_segment: bool, reversal: bool) -> None:
        j = abs(current) / self.area
        if reversal:
            self.half_cycles += 1
            self.cycles = self.half_cycles // 2
        if new_segment:
            self.spike = True
        if self.j_max > 0 and j > self.j_max * (1 + 1e-9):
            extra = self.p.rate_step_damage * math.log(j / self.j_max)
            self.shock_remaining += extra
            self.shock_rate = max(self.shock_rate, self.shock_remaining / self.p.rate_step_window)
        self.j_max = max(self.j_max, j)

    def time_to_short(self, current: float) -> float:
        """Seconds from now until the short under ``current`` (inf if it never comes)."""
        if self.shorted:
            return 0.0
        if current == 0.0:
            return math.inf
        left = self.life_multiplier - self.damage
        if left <= 0:
            return 0.0
        r = 1.0 / (self.life_hours(abs(current) / self.area) * 3600.0)
        if self.shock_remaining > 0 and self.shock_rate > 0:
            t1 = self.shock_remaining / self.shock_rate
            if (r + self.shock_rate) * t1 >= left:
                return left / (r + self.shock_rate)
            return t1 + (left - (r + self.shock_rate) * t1) / r
        return left / r

    def v_cp(self, current: float, tau: Any) -> np.ndarray:
        tau = np.asarray(tau, dtype=float)
        if current == 0.0:
            return self.v_rest(tau)
        short_v = current * self.p.short_resistance
        if self.shorted:
            return np.full_like(tau, short_v)
        j = abs(current) / self.area
        eta = self.plateau(j)
        v = np.full_like(tau, eta)
        if self.spike:
            v = v + eta * self.p.nucleation.amplitude * np.exp(-(self.seg_time + tau) / self.p.nucleation.decay)
        v = math.copysign(1.0, current) * v + self.ocp_offset
        ts = self.time_to_short(current)
        if ts < math.inf:
            v = np.where(tau >= ts, short_v, v)
        return v

    def _advance_cp(self, current: float, dt: float) -> None:
        if self.shorted:
            return
        ts = self.time_to_short(current)
        r = 1.0 / (self.life_hours(abs(current) / self.area) * 3600.0)
        used = min(self.shock_remaining, self.shock_rate * dt)
        self.shock_remaining -= used
        if self.shock_remaining <= 0:
            self.shock_rate = 0.0
        self.damage += r * dt + used
        if dt >= ts:
            self.shorted = True
            self.short_age = self.age + ts
            self.damage = max(self.damage, self.life_multiplier)

    def equilibrium(self) -> float:
        return 0.0 if self.shorted else self.ocp_offset

    def v_rest(self, tau: Any) -> np.ndarray:
        tau = np.asarray(tau, dtype=float)
        if self.shorted:
            return np.zeros_like(tau)
        return super().v_rest(tau)

    def kinetic_current(self, voltage: Any, temp_c: float) -> np.ndarray:
        if self.shorted:
            return np.asarray(voltage, dtype=float) / self.p.short_resistance
        return super().kinetic_current(voltage, temp_c)

    def impedance(self, freq: Any, temp_c: Any) -> np.ndarray:
        omega = 2 * np.pi * np.asarray(freq, dtype=float)
        z = self._mg_series(omega, temp_c, 2.0)
        if self.shorted:
            r = self.p.short_resistance
            z = z * r / (z + r)
        return z

    def describe(self) -> dict:
        d = super().describe()
        d.update(damage=self.damage, life_multiplier=self.life_multiplier, shorted=self.shorted,
                 short_age_s=self.short_age)
        return d


# --------------------------------------------------------------------------- asymmetric Mg | Al/C


@lru_cache(maxsize=64)
def calibrate_asymmetric(preset: Preset) -> tuple[float, Table]:
    """Corrosion rate k (1/s) and per-plating loss fractions f(j) that reproduce the preset.

    Losses: a fraction f(j) of each plating is lost at once (SEI, dead Mg), and the
    plated inventory corrodes at k per second while it sits on the working electrode.
    f at each current density of ``asymmetric.ce`` is solved so that the long-term
    test (plate ``ce_test.plating_time``, strip to ``ce_test.cutoff``) gives that CE at
    steady state; k is solved so that the Aurbach test (reservoir, n strip/plate cycles,
    strip to its cut-off) gives ``aurbach.ce``.  Both tests are simulated here with the
    same noise-free equations the cell uses.
    """
    a = preset.asymmetric
    hyst = preset.symmetric.hysteresis
    w, v_ox = a.strip_end.width, a.strip_end.potential

    def eta(j: float) -> float:
        return interp_scalar(a.overpotential, j) + 0.5 * interp_scalar(hyst, j)

    def x_cut(v_cut: float, j: float) -> float:
        e = eta(j)
        if v_cut <= e:
            return 1.0
        if v_cut >= v_ox:
            return 0.0
        return w * math.log((v_ox - e) / (v_cut - e))

    def plate(q0: float, j: float, f: float, k: float, t: float) -> float:
        src = j * (1 - f)
        if k <= 0:
            return q0 + src * t
        qs = src / k
        return qs + (q0 - qs) * math.exp(-k * t)

    def strip_fixed(q0: float, j: float, k: float, t: float) -> float:
        if k <= 0:
            return q0 - j * t
        return (q0 + j / k) * math.exp(-k * t) - j / k

    def strip_time(q0: float, j: float, k: float, q_end: float) -> float:
        if q0 <= q_end:
            return 0.0
        if k <= 0:
            return (q0 - q_end) / j
        return math.log((q0 + j / k) / (q_end + j / k)) / k

    tp, cut_lt = a.ce_test.plating_time, a.ce_test.cutoff

    def ce_long_term(f: float, k: float, j: float) -> float:
        xc = x_cut(cut_lt, j)
        r = 0.0
        ts = 0.0
        for _ in range(50):
            qp = plate(r, j, f, k, tp)
            q_end = xc * qp
            ts = strip_time(qp, j, k, q_end)
            if abs(q_end - r) <= 1e-15:
                break
            r = q_end
        return ts / tp

    def losses(k: float) -> Table:
        out = []
        for j, ce in a.ce:
            if ce_long_term(0.0, k, j) <= ce:
                f = 0.0
            else:
                f = brentq(lambda f_: ce_long_term(f_, k, j) - ce, 0.0, 1.0 - 1e-12, xtol=1e-14)
            out.append((j, f))
        return tuple(out)

    au = a.aurbach

    def ce_aurbach(k: float) -> float:
        j = au.current_density
        f = loss_at(losses(k), j)
        q = plate(0.0, j, f, k, au.reservoir / j)
        tc = au.cycle_capacity / j
        for _ in range(au.cycles):
            q = strip_fixed(q, j, k, tc)
            q = plate(max(q, 0.0), j, f, k, tc)
        ts = strip_time(q, j, k, x_cut(au.cutoff, j) * q)
        n_qc = au.cycles * au.cycle_capacity
        return (n_qc + j * ts) / (n_qc + au.reservoir)

    target = au.ce
    if ce_aurbach(0.0) <= target:
        return 0.0, losses(0.0)
    hi = 1e-7
    while ce_aurbach(hi) > target and hi < 1e-2:
        hi *= 2
    if ce_aurbach(hi) > target:
        return hi, losses(hi)
    k = brentq(lambda k_: ce_aurbach(k_) - target, 0.0, hi, xtol=1e-16, rtol=1e-12)
    return k, losses(k)


def loss_at(losses: Table, j: float) -> float:
    """Per-plating loss fraction at ``j``: power law between table points, held beyond them."""
    if all(f > 0 for _, f in losses):
        return interp_scalar(losses, j, extrapolate=False)
    xs = [p[0] for p in losses]
    ys = [p[1] for p in losses]
    return float(np.interp(math.log(j), np.log(xs), ys))


class AsymmetricCell(CellModel):
    """Mg | Al/C: plated-Mg inventory on the working electrode with per-plating loss and corrosion.

    Plating (I < 0): dQ/dt = |I| (1 - f) - k Q, f drawn per plating around f(j)
    (calibrated, see :func:`calibrate_asymmetric`).  Stripping (I > 0): dQ/dt = -I - k Q;
    the voltage sits on a plateau and rises as exp(-Q / (width Q_ref)) towards
    ``strip_end.potential`` when the inventory runs out.  Each plating uses
    (plated time / plating_time) / cycle_life(j) of the cell's life; past its
    (replicate-spread) life the CE collapses to ``ce_after_life``.
    """

    kind = "asymmetric"
    _stream = 18

    def __init__(self, preset: "str | Preset", **kw: Any) -> None:
        super().__init__(preset, **kw)
        a = self.preset.asymmetric
        self.a = a
        self.k_corr, self.losses = calibrate_asymmetric(self.preset)
        self.life_multiplier = float(np.exp(self._prng.normal(0.0, a.cycle_life_spread)))
        self.ce_offset = float(self._prng.normal(0.0, a.ce_cell_sd)) if a.ce_cell_sd > 0 else 0.0
        self.inventory = 0.0  # C of plated Mg on the working electrode
        self.q_ref = 0.0  # inventory at the start of the current strip
        self.overdrawn = 0.0  # C drawn beyond the inventory in this strip
        self.loss = 0.0  # loss fraction of the current plating
        self.life_used = 0.0
        self.dead = False
        self.dead_at_cycle: int | None = None
        self.nucleation = 0.0  # V, extra plating overpotential of this plating (decays)
        self.plated_total = 0.0
        self.stripped_total = 0.0

    def _floor(self) -> float:
        return 1e-3 * MAH * self.area  # 0.001 mAh/cm2

    def _w(self) -> float:
        return self.a.strip_end.width * max(self.q_ref, self._floor())

    def eta(self, j: float) -> float:
        """Plateau |V| at ``j``: Al/C electrode overpotential + the Mg counter's half of the hysteresis."""
        hyst = interp_scalar(self.preset.symmetric.hysteresis, j)
        grow = 1.0 + self.preset.symmetric.hysteresis_growth * self.cycles
        return interp_scalar(self.a.overpotential, j) + 0.5 * hyst * grow

    def cycle_life(self, j: float) -> float:
        return interp_scalar(self.a.cycle_life, j)

    def _begin_current(self, current: float, *, new_segment: bool, reversal: bool) -> None:
        j = abs(current) / self.area
        if current < 0:
            if new_segment:
                if self.life_used >= self.life_multiplier and not self.dead:
                    self.dead = True
                    self.dead_at_cycle = self.cycles + 1
                if self.dead:
                    ce = self.a.ce_after_life * math.exp(self._crng.normal(0.0, 0.1))
                    self.loss = float(np.clip(1.0 - ce, 0.0, 1.0))
                else:
                    f = loss_at(self.losses, j) - self.ce_offset
                    if self.a.ce_cycle_sd > 0:
                        f += self._crng.normal(0.0, self.a.ce_cycle_sd)
                    self.loss = float(np.clip(f, 0.0, 1.0))
                nuc = self.a.nucleation
                self.nucleation = nuc.overpotential * math.exp(-self.inventory / (nuc.capacity * self.area))
        else:
            if reversal and self.last_sign < 0:
                self.cycles += 1
            if new_segment:
                self.q_ref = self.inventory
                self.overdrawn = 0.0

    def _inventory(self, current: float, tau: np.ndarray) -> np.ndarray:
        k = self.k_corr
        q0 = self.inventory
        if current < 0:
            src = -current * (1.0 - self.loss)
            if k <= 0:
                return q0 + src * tau
            qs = src / k
            return qs + (q0 - qs) * np.exp(-k * tau)
        if k <= 0:
            return q0 - current * tau
        return (q0 + current / k) * np.exp(-k * tau) - current / k

    def _exhaust_time(self, current: float) -> float:
        if current <= 0:
            return math.inf
        q0 = self.inventory
        if q0 <= 0:
            return 0.0
        k = self.k_corr
        if k <= 0:
            return q0 / current
        return math.log1p(k * q0 / current) / k

    def v_cp(self, current: float, tau: Any) -> np.ndarray:
        tau = np.asarray(tau, dtype=float)
        if current == 0.0:
            return self.v_rest(tau)
        j = abs(current) / self.area
        eta = self.eta(j)
        if current < 0:
            v = eta + self.nucleation * np.exp(-(self.seg_time + tau) / self.a.nucleation.decay)
            return -v
        w = self._w()
        v_ox = self.a.strip_end.potential
        q = self._inventory(current, tau)
        t_ex = self._exhaust_time(current)
        over = self.overdrawn + current * np.maximum(tau - t_ex, 0.0)
        rise = eta + (v_ox - eta) * np.exp(-np.maximum(q, 0.0) / w)
        beyond = v_ox + _STRIP_OVERSHOOT * (1.0 - np.exp(-over / w))
        return np.where(tau < t_ex, rise, beyond)

    def _advance_cp(self, current: float, dt: float) -> None:
        j = abs(current) / self.area
        if current < 0:
            self.inventory = float(self._inventory(current, np.array([dt]))[0])
            self.life_used += dt / (self.a.ce_test.plating_time * self.cycle_life(j))
            self.plated_total += -current * dt
        else:
            t_ex = self._exhaust_time(current)
            if dt >= t_ex:
                self.overdrawn += current * (dt - t_ex)
                self.inventory = 0.0
            else:
                self.inventory = max(float(self._inventory(current, np.array([dt]))[0]), 0.0)
            self.stripped_total += current * dt

    def _ocv_of(self, q: np.ndarray) -> np.ndarray:
        w = self.a.strip_end.width * max(self.q_ref, self._floor())
        return self.a.substrate_ocv * np.exp(-np.maximum(q, 0.0) / w)

    def equilibrium(self) -> float:
        return float(self._ocv_of(np.array([self.inventory]))[0])

    def _eq_rest(self, tau: np.ndarray) -> np.ndarray:
        return self._ocv_of(self.inventory * np.exp(-self.k_corr * tau))

    def _advance_rest(self, dt: float) -> None:
        self.inventory *= math.exp(-self.k_corr * dt)

    def pass_charge(self, charge: float, dt: float) -> None:
        self.advance_rest(dt)
        self.inventory = max(self.inventory - charge, 0.0)

    def impedance(self, freq: Any, temp_c: Any) -> np.ndarray:
        omega = 2 * np.pi * np.asarray(freq, dtype=float)
        z = self._mg_series(omega, temp_c, 1.0)
        if self.inventory > self._floor():
            rct = self.rct(temp_c) / 2.0
            z = z + cpe_rc(rct, self._imp.double_layer.q * 2.0, self._imp.double_layer.alpha, omega)
        else:
            z = z + 1.0 / (_SUBSTRATE_Q * (1j * omega) ** _SUBSTRATE_A)
        return z

    def describe(self) -> dict:
        d = super().describe()
        d.update(inventory_C=self.inventory, life_used=self.life_used, life_multiplier=self.life_multiplier,
                 dead=self.dead, dead_at_cycle=self.dead_at_cycle, corrosion_per_h=self.k_corr * 3600,
                 ce_offset=self.ce_offset)
        return d


# --------------------------------------------------------------------------- full Mg | Mo6S8


class FullCell(CellModel):
    """Mg | Mo6S8 (working electrode = cathode): two Chevrel plateaus, activation, polarisation.

    State of charge y (0 = charged Mo6S8, 1 = fully magnesiated accessible capacity).
    Discharge (I < 0) moves y up through a window of capacity W_d(N) (activating from
    first to best over ``activation_cycles``); the following charge moves it back down
    through W_c = CE x W_d, so the charge returns CE of the discharge.  V = E_eq(y) +
    sign(I) dE/2 with dE = cathode share + anode share (growing per cycle), scaled by
    (C-rate / reference C-rate)^exponent.
    """

    kind = "full"
    _stream = 34

    def __init__(self, preset: "str | Preset", *, cathode_mass_g: float | None = None, **kw: Any) -> None:
        super().__init__(preset, cathode_mass_g=cathode_mass_g, **kw)
        fc = self.preset.full_cell
        self.fc = fc
        self.mass = float(cathode_mass_g) if cathode_mass_g is not None else fc.cathode_mass
        if not self.mass > 0:
            raise ValueError(f"cathode_mass_g must be positive, got {cathode_mass_g!r}")
        self.capacity_multiplier = float(np.exp(self._prng.normal(0.0, fc.capacity_spread)))
        self.y = 0.0
        self.window = self.discharge_window(1)
        self.direction = 0
        self.discharges = 0

    def discharge_window(self, n: int) -> float:
        """Accessible capacity (C) of discharge ``n`` (1-based)."""
        fc = self.fc
        spec = fc.best_capacity - (fc.best_capacity - fc.first_capacity) * math.exp(-(n - 1) / fc.activation_cycles)
        return spec * self.mass * self.capacity_multiplier

    def one_c(self) -> float:
        """1C current (A) from the cathode mass and the theoretical capacity."""
        return self.mass * self.fc.theoretical_capacity / 3600.0

    def polarisation(self, current: float) -> float:
        """dE (V) at |current|: cathode share + anode share grown to this cycle, rate-scaled."""
        fc = self.fc
        n = max(self.discharges, 1)
        anode = (fc.polarisation.value - fc.cathode_polarisation) * max(
            0.1, 1.0 + fc.polarisation_growth * (n - fc.polarisation.cycle))
        rate = abs(current) / self.one_c()
        scale = (rate / fc.polarisation.c_rate) ** fc.polarisation_rate_exponent if rate > 0 else 0.0
        return (fc.cathode_polarisation + anode) * scale

    def e_eq(self, y: Any) -> np.ndarray:
        """Equilibrium voltage of Mo6S8 vs Mg at state of charge ``y``."""
        fc = self.fc
        y = np.asarray(y, dtype=float)
        yc = np.clip(y, _EPS, 1 - _EPS)
        up, lo, split = fc.plateaus.upper, fc.plateaus.lower, fc.plateaus.split
        e = lo + (up - lo) * 0.5 * (1.0 - np.tanh((yc - split) / _STEP_WIDTH))
        e = e + _NERNST * np.log((1 - yc) / yc) - _SLOPE * (yc - 0.5)
        e = e + _OVER * np.maximum(_EPS - y, 0.0) - _OVER * np.maximum(y - (1 - _EPS), 0.0)
        return e

    def _begin_current(self, current: float, *, new_segment: bool, reversal: bool) -> None:
        if current < 0 and self.direction != -1:
            self.discharges += 1
            self.window = self.discharge_window(self.discharges)
            self.direction = -1
        elif current > 0 and self.direction != 1:
            if self.direction == -1:
                ce = self.fc.ce + (self._crng.normal(0.0, self.fc.ce_sd) if self.fc.ce_sd > 0 else 0.0)
                self.window = self.window * float(np.clip(ce, 0.5, 1.0))
                self.cycles += 1
            self.direction = 1

    def v_cp(self, current: float, tau: Any) -> np.ndarray:
        tau = np.asarray(tau, dtype=float)
        if current == 0.0:
            return self.v_rest(tau)
        y = self.y - current * tau / self.window
        return self.e_eq(y) + math.copysign(0.5 * self.polarisation(current), current)

    def _advance_cp(self, current: float, dt: float) -> None:
        self.y -= current * dt / self.window

    def equilibrium(self) -> float:
        return float(self.e_eq(np.array([self.y]))[0])

    def pass_charge(self, charge: float, dt: float) -> None:
        self.advance_rest(dt)
        self.y -= charge / self.window

    def impedance(self, freq: Any, temp_c: Any) -> np.ndarray:
        omega = 2 * np.pi * np.asarray(freq, dtype=float)
        return self._mg_series(omega, temp_c, 1.0) + cpe_rc(_CATHODE_R, _CATHODE_Q, _CATHODE_A, omega)

    def describe(self) -> dict:
        d = super().describe()
        d.update(state_of_charge=self.y, discharges=self.discharges, window_C=self.window, mass_g=self.mass,
                 capacity_multiplier=self.capacity_multiplier)
        return d


# --------------------------------------------------------------------------- factory

KINDS = {"symmetric": SymmetricCell, "asymmetric": AsymmetricCell, "full": FullCell}


def simulate_cell(kind: str, preset: "str | Preset", *, area_cm2: float = 1.267,
                  cathode_mass_g: float | None = None, seed: int = 0, replicate: int = 0) -> CellModel:
    """A fresh simulated cell of ``kind`` (symmetric, asymmetric, full) with ``preset``'s physics."""
    if kind not in KINDS:
        raise ValueError(f"unknown cell kind {kind!r}; use one of: {', '.join(KINDS)}")
    kw: dict[str, Any] = {"area_cm2": area_cm2, "seed": seed, "replicate": replicate}
    if kind == "full":
        kw["cathode_mass_g"] = cathode_mass_g
    return KINDS[kind](preset, **kw)
