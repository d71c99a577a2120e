"""Symmetric Mg | Mg cell: plateau hysteresis, nucleation spike, damage and stochastic short."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from labctl.core.constants import SECONDS_PER_HOUR
from labctl.simulators.cells.base import CellModel
from labctl.simulators.cells.kinetics import hysteresis
from labctl.simulators.cells.noise import lognormal_multiplier, normal_offset
from labctl.simulators.cells.tables import interp_scalar
from labctl.simulators.presets import Preset

__all__ = ["SymmetricCell"]


class SymmetricCell(CellModel):
    """Mg | Mg: plateau hysteresis (power law in j), nucleation spike, stochastic short.

    Damage D grows at 1/life(j) per hour under current (life a power law in j through
    the preset's points) plus ``rate_step_damage`` per e-fold step-up of the current
    density above the highest one so far (spread over ``rate_step_window``).  The cell
    shorts when D reaches its replicate's threshold exp(N(0, life_spread)).
    """

    kind = "symmetric"

    def __init__(self, preset: str | Preset, **kw: Any) -> None:
        super().__init__(preset, **kw)
        p = self.preset.symmetric
        self.p = p
        self.life_multiplier = lognormal_multiplier(self._prng, p.life_spread)
        self.ocp_offset = normal_offset(self._prng, p.ocp_spread)
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
        return hysteresis(self.p.hysteresis, self.p.hysteresis_growth, j, self.cycles)

    def life_hours(self, j: float) -> float:
        """Nominal hours under current until the short at ``j`` (before the replicate spread)."""
        return interp_scalar(self.p.life, j) / SECONDS_PER_HOUR

    def _damage_rate(self, current: float) -> float:
        """Damage per second under ``current`` from the lifetime (without the rate-step shock)."""
        return 1.0 / (self.life_hours(self.current_density(current)) * SECONDS_PER_HOUR)

    def _begin_current(self, current: float, *, new_segment: bool, reversal: bool) -> None:
        j = self.current_density(current)
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
        r = self._damage_rate(current)
        if self.shock_remaining > 0 and self.shock_rate > 0:
            t1 = self.shock_remaining / self.shock_rate
            if (r + self.shock_rate) * t1 >= left:
                return left / (r + self.shock_rate)
            return t1 + (left - (r + self.shock_rate) * t1) / r
        return left / r

    def _v_cp(self, current: float, tau: np.ndarray) -> np.ndarray:
        short_v = current * self.p.short_resistance
        if self.shorted:
            return np.full_like(tau, short_v)
        eta = self.plateau(self.current_density(current))
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
        r = self._damage_rate(current)
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

    def _impedance(self, omega: np.ndarray, temp_c: Any) -> np.ndarray:
        z = self.mg_series(omega, temp_c, 2.0)
        if self.shorted:
            r = self.p.short_resistance
            z = z * r / (z + r)
        return z

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            damage=self.damage, life_multiplier=self.life_multiplier, shorted=self.shorted, short_age_s=self.short_age
        )
        return d
