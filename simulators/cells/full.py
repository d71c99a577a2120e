"""Full Mg | Mo6S8 cell: two Chevrel plateaus, capacity activation, rate-dependent polarisation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from labctl.core.constants import SECONDS_PER_HOUR
from labctl.simulators.cells.base import CellModel
from labctl.simulators.cells.kinetics import cpe_rc
from labctl.simulators.cells.noise import cycle_deviation, lognormal_multiplier
from labctl.simulators.presets import Preset

__all__ = ["FullCell"]

# shape constants of the Mo6S8 curve (modelling choices, documented in docs/presets.md)
NERNST = 0.015  # V, width of the Nernstian ends of the Mo6S8 curve
SLOPE = 0.03  # V per unit of state of charge across the plateaus
STEP_WIDTH = 0.02  # width (in state of charge) of the step between the plateaus
EPS = 1e-9  # state of charge treated as empty/full
OVER = 500.0  # V per unit of state of charge driven beyond empty/full (side reactions)
CATHODE_R = 300.0  # ohm, Mo6S8 charge transfer (full-cell EIS)
CATHODE_Q, CATHODE_A = 1e-4, 0.8
CE_BOUNDS = (0.5, 1.0)  # a drawn cycle CE is clipped to this range


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
    stream = 34

    def __init__(self, preset: str | Preset, *, cathode_mass_g: float | None = None, **kw: Any) -> None:
        super().__init__(preset, **kw)
        fc = self.preset.full_cell
        self.fc = fc
        self.mass = float(cathode_mass_g) if cathode_mass_g is not None else fc.cathode_mass
        if not self.mass > 0:
            raise ValueError(f"cathode_mass_g must be positive, got {cathode_mass_g!r}")
        self.capacity_multiplier = lognormal_multiplier(self._prng, fc.capacity_spread)
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
        return self.mass * self.fc.theoretical_capacity / SECONDS_PER_HOUR

    def polarisation(self, current: float) -> float:
        """dE (V) at |current|: cathode share + anode share grown to this cycle, rate-scaled."""
        fc = self.fc
        n = max(self.discharges, 1)
        anode = (fc.polarisation.value - fc.cathode_polarisation) * max(
            0.1, 1.0 + fc.polarisation_growth * (n - fc.polarisation.cycle)
        )
        rate = abs(current) / self.one_c()
        scale = (rate / fc.polarisation.c_rate) ** fc.polarisation_rate_exponent if rate > 0 else 0.0
        return (fc.cathode_polarisation + anode) * scale

    def e_eq(self, y: Any) -> np.ndarray:
        """Equilibrium voltage of Mo6S8 vs Mg at state of charge ``y``."""
        fc = self.fc
        y = np.asarray(y, dtype=float)
        yc = np.clip(y, EPS, 1 - EPS)
        up, lo, split = fc.plateaus.upper, fc.plateaus.lower, fc.plateaus.split
        e = lo + (up - lo) * 0.5 * (1.0 - np.tanh((yc - split) / STEP_WIDTH))
        e = e + NERNST * np.log((1 - yc) / yc) - SLOPE * (yc - 0.5)
        e = e + OVER * np.maximum(EPS - y, 0.0) - OVER * np.maximum(y - (1 - EPS), 0.0)
        return e

    def _begin_current(self, current: float, *, new_segment: bool, reversal: bool) -> None:
        if current < 0 and self.direction != -1:
            self.discharges += 1
            self.window = self.discharge_window(self.discharges)
            self.direction = -1
        elif current > 0 and self.direction != 1:
            if self.direction == -1:
                ce = self.fc.ce + cycle_deviation(self._crng, self.fc.ce_sd)
                self.window = self.window * float(np.clip(ce, *CE_BOUNDS))
                self.cycles += 1
            self.direction = 1

    def _v_cp(self, current: float, tau: np.ndarray) -> np.ndarray:
        y = self.y - current * tau / self.window
        return self.e_eq(y) + math.copysign(0.5 * self.polarisation(current), current)

    def _advance_cp(self, current: float, dt: float) -> None:
        self.y -= current * dt / self.window

    def equilibrium(self) -> float:
        return float(self.e_eq(np.array([self.y]))[0])

    def pass_charge(self, charge: float, dt: float) -> None:
        super().pass_charge(charge, dt)
        self.y -= charge / self.window

    def _impedance(self, omega: np.ndarray, temp_c: Any) -> np.ndarray:
        return self.mg_series(omega, temp_c, 1.0) + cpe_rc(CATHODE_R, CATHODE_Q, CATHODE_A, omega)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            state_of_charge=self.y,
            discharges=self.discharges,
            window_C=self.window,
            mass_g=self.mass,
            capacity_multiplier=self.capacity_multiplier,
        )
        return d
