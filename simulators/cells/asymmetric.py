"""Asymmetric Mg | Al/C cell: plated-Mg inventory with per-plating loss and corrosion.

:func:`calibrate_asymmetric` solves the loss and corrosion parameters that reproduce
the preset's Coulombic efficiencies; the cell and the calibration integrate the same
inventory equations (:func:`plated_inventory`, :func:`stripped_inventory`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.optimize import brentq

from labctl.core.constants import COULOMBS_PER_MAH, SECONDS_PER_HOUR
from labctl.simulators.cells.base import CellModel
from labctl.simulators.cells.kinetics import cpe_rc, hysteresis
from labctl.simulators.cells.noise import cycle_deviation, lognormal_multiplier, normal_offset
from labctl.simulators.cells.tables import interp_fraction, interp_scalar
from labctl.simulators.presets import Preset, Table

__all__ = ["AsymmetricCell", "calibrate_asymmetric", "loss_at", "plated_inventory", "stripped_inventory"]

SUBSTRATE_Q, SUBSTRATE_A = 1e-5, 0.9  # blocking Al/C electrode without plated Mg
STRIP_OVERSHOOT = 0.5  # V the Al/C electrode rises beyond strip_end.potential when overdrawn
DEAD_CE_SPREAD = 0.1  # log-normal sigma of the CE of a cell past its cycle life, per plating

Exp = Callable[[Any], Any]


# --------------------------------------------------------------------------- inventory equations


def plated_inventory(q0: Any, source: float, k: float, t: Any, exp: Exp) -> Any:
    """Inventory after plating ``t`` s: dQ/dt = source - k Q from ``q0`` (``exp``: math.exp or np.exp)."""
    if k <= 0:
        return q0 + source * t
    qs = source / k
    return qs + (q0 - qs) * exp(-k * t)


def stripped_inventory(q0: Any, current: float, k: float, t: Any, exp: Exp) -> Any:
    """Inventory after stripping at ``current`` (> 0) for ``t`` s: dQ/dt = -current - k Q (may go below 0)."""
    if k <= 0:
        return q0 - current * t
    return (q0 + current / k) * exp(-k * t) - current / k


def plateau_eta(preset: Preset, j: float, cycles: int) -> float:
    """Plateau |V| at ``j``: Al/C electrode overpotential + the Mg counter's half of the hysteresis."""
    sym = preset.symmetric
    return interp_scalar(preset.asymmetric.overpotential, j) + 0.5 * hysteresis(
        sym.hysteresis, sym.hysteresis_growth, j, cycles
    )


def loss_at(losses: Table, j: float) -> float:
    """Per-plating loss fraction at ``j``: power law between table points, held beyond them."""
    return interp_fraction(losses, j)


# --------------------------------------------------------------------------- calibration


@lru_cache(maxsize=64)
def calibrate_asymmetric(preset: Preset) -> tuple[float, Table]:
    """Corrosion rate k (1/s) and per-plating loss fractions f(j) that reproduce the preset.

    Losses: a fraction f(j) of each plating is lost at once (SEI, dead Mg), and the
    plated inventory corrodes at k per second while it sits on the working electrode.
    f at each current density of ``asymmetric.ce`` is solved so that the long-term
    test (plate ``ce_test.plating_time``, strip to ``ce_test.cutoff``) gives that CE at
    steady state; k is solved so that the Aurbach test (reservoir, n strip/plate cycles,
    strip to its cut-off) gives ``aurbach.ce``.  Both tests are simulated here with the
    same noise-free equations the cell uses (on a fresh cell: no hysteresis growth).
    """
    a = preset.asymmetric
    w, v_ox = a.strip_end.width, a.strip_end.potential

    def x_cut(v_cut: float, j: float) -> float:
        e = plateau_eta(preset, j, 0)
        if v_cut <= e:
            return 1.0
        if v_cut >= v_ox:
            return 0.0
        return w * math.log((v_ox - e) / (v_cut - e))

    def plate(q0: float, j: float, f: float, k: float, t: float) -> float:
        return plated_inventory(q0, j * (1 - f), k, t, math.exp)

    def strip_fixed(q0: float, j: float, k: float, t: float) -> float:
        return stripped_inventory(q0, j, k, t, math.exp)

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


# --------------------------------------------------------------------------- the cell


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
    stream = 18

    def __init__(self, preset: str | Preset, **kw: Any) -> None:
        super().__init__(preset, **kw)
        a = self.preset.asymmetric
        self.a = a
        self.k_corr, self.losses = calibrate_asymmetric(self.preset)
        self.life_multiplier = lognormal_multiplier(self._prng, a.cycle_life_spread)
        self.ce_offset = normal_offset(self._prng, a.ce_cell_sd)
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
        return 1e-3 * COULOMBS_PER_MAH * self.area  # 0.001 mAh/cm2

    def _w(self) -> float:
        """Charge scale (C) of the rise at the end of a strip."""
        return self.a.strip_end.width * max(self.q_ref, self._floor())

    def eta(self, j: float) -> float:
        """Plateau |V| at ``j``: Al/C electrode overpotential + the Mg counter's half of the hysteresis."""
        return plateau_eta(self.preset, j, self.cycles)

    def cycle_life(self, j: float) -> float:
        return interp_scalar(self.a.cycle_life, j)

    def _plating_loss(self, j: float) -> float:
        """Loss fraction of a new plating at ``j`` (one draw from the per-cycle stream)."""
        if self.dead:
            ce = self.a.ce_after_life * math.exp(self._crng.normal(0.0, DEAD_CE_SPREAD))
            return float(np.clip(1.0 - ce, 0.0, 1.0))
        f = loss_at(self.losses, j) - self.ce_offset + cycle_deviation(self._crng, self.a.ce_cycle_sd)
        return float(np.clip(f, 0.0, 1.0))

    def _begin_current(self, current: float, *, new_segment: bool, reversal: bool) -> None:
        if current < 0:
            if new_segment:
                if self.life_used >= self.life_multiplier and not self.dead:
                    self.dead = True
                    self.dead_at_cycle = self.cycles + 1
                self.loss = self._plating_loss(self.current_density(current))
                nuc = self.a.nucleation
                self.nucleation = nuc.overpotential * math.exp(-self.inventory / (nuc.capacity * self.area))
        else:
            if reversal and self.last_sign < 0:
                self.cycles += 1
            if new_segment:
                self.q_ref = self.inventory
                self.overdrawn = 0.0

    def _inventory(self, current: float, tau: np.ndarray) -> np.ndarray:
        if current < 0:
            return plated_inventory(self.inventory, -current * (1.0 - self.loss), self.k_corr, tau, np.exp)
        return stripped_inventory(self.inventory, current, self.k_corr, tau, np.exp)

    def _exhaust_time(self, current: float) -> float:
        """Seconds until a strip at ``current`` empties the inventory (inf when plating)."""
        if current <= 0:
            return math.inf
        q0 = self.inventory
        if q0 <= 0:
            return 0.0
        k = self.k_corr
        if k <= 0:
            return q0 / current
        return math.log1p(k * q0 / current) / k

    def _v_cp(self, current: float, tau: np.ndarray) -> np.ndarray:
        eta = self.eta(self.current_density(current))
        if current < 0:
            v = eta + self.nucleation * np.exp(-(self.seg_time + tau) / self.a.nucleation.decay)
            return -v
        w = self._w()
        v_ox = self.a.strip_end.potential
        q = self._inventory(current, tau)
        t_ex = self._exhaust_time(current)
        over = self.overdrawn + current * np.maximum(tau - t_ex, 0.0)
        rise = eta + (v_ox - eta) * np.exp(-np.maximum(q, 0.0) / w)
        beyond = v_ox + STRIP_OVERSHOOT * (1.0 - np.exp(-over / w))
        return np.where(tau < t_ex, rise, beyond)

    def _advance_cp(self, current: float, dt: float) -> None:
        if current < 0:
            j = self.current_density(current)
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
        return self.a.substrate_ocv * np.exp(-np.maximum(q, 0.0) / self._w())

    def equilibrium(self) -> float:
        return float(self._ocv_of(np.array([self.inventory]))[0])

    def _eq_rest(self, tau: np.ndarray) -> np.ndarray:
        return self._ocv_of(self.inventory * np.exp(-self.k_corr * tau))

    def _advance_rest(self, dt: float) -> None:
        self.inventory *= math.exp(-self.k_corr * dt)

    def pass_charge(self, charge: float, dt: float) -> None:
        super().pass_charge(charge, dt)
        self.inventory = max(self.inventory - charge, 0.0)

    def _impedance(self, omega: np.ndarray, temp_c: Any) -> np.ndarray:
        z = self.mg_series(omega, temp_c, 1.0)
        if self.inventory > self._floor():
            rct = self.rct(temp_c) / 2.0
            z = z + cpe_rc(rct, self._imp.double_layer.q * 2.0, self._imp.double_layer.alpha, omega)
        else:
            z = z + 1.0 / (SUBSTRATE_Q * (1j * omega) ** SUBSTRATE_A)
        return z

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            inventory_C=self.inventory,
            life_used=self.life_used,
            life_multiplier=self.life_multiplier,
            dead=self.dead,
            dead_at_cycle=self.dead_at_cycle,
            corrosion_per_h=self.k_corr * SECONDS_PER_HOUR,
            ce_offset=self.ce_offset,
        )
        return d
