"""The state and physics every cell kind shares: :class:`CellModel`.

A cell model holds the state of one cell (plated inventory, cycle count, damage,
short) and answers, without changing that state, "what is the noise-free voltage
``tau`` seconds from now under current I" as a vectorised numpy function; the
potentiostat finds limit crossings on those arrays and then advances the state
exactly to where the technique ended.  Noise is added by the potentiostat.

Sign convention (labctl-wide): current > 0 is anodic at the working electrode
(stripping Mg from it, charging the full cell), < 0 cathodic (plating onto it,
discharging the full cell).  Voltage = working electrode minus counter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from labctl.simulators.cells.kinetics import arrhenius_exponent, butler_volmer_ir, bv_factor, cpe_rc
from labctl.simulators.cells.noise import PARAMETER_STREAM, cell_rng
from labctl.simulators.cells.tables import linear_table
from labctl.simulators.presets import Preset, load_preset

__all__ = ["CellModel"]


class CellModel(ABC):
    """State and physics shared by the three cell kinds.

    The potentiostat calls :meth:`begin` at the start of each technique, uses the
    pure functions (:meth:`v_cp`, :meth:`v_rest`, :meth:`kinetic_current`,
    :meth:`impedance`) on arrays, then advances the state with :meth:`advance_cp`,
    :meth:`advance_rest` or :meth:`pass_charge`.

    A cell kind defines :meth:`_begin_current`, :meth:`_v_cp` (current != 0),
    :meth:`_advance_cp`, :meth:`equilibrium` and :meth:`_impedance` (on angular
    frequencies); it may refine :meth:`_eq_rest` and :meth:`_advance_rest`.
    """

    kind = ""
    stream = 2  # random stream of the per-cycle draws (one per kind)

    def __init__(self, preset: str | Preset, *, area_cm2: float = 1.267, seed: int = 0, replicate: int = 0) -> None:
        self.preset = load_preset(preset)
        if not area_cm2 > 0:
            raise ValueError(f"area_cm2 must be positive, got {area_cm2!r}")
        self.area = float(area_cm2)
        self.seed = int(seed)
        self.replicate = int(replicate)
        self._prng = cell_rng(seed, replicate, PARAMETER_STREAM)  # cell parameters (replicate spread)
        self._crng = cell_rng(seed, replicate, self.stream)  # per-cycle draws
        self.age = 0.0  # s of cell time simulated
        self.on_time = 0.0  # s under current
        self.cycles = 0  # completed cycles (definition per kind)
        self.last_sign = 0
        self.continuing = False
        self.seg_time = 0.0  # s since the current segment (half-cycle) began
        self.rest_time = 0.0  # s at open circuit since the last current
        self.v_relax = 0.0  # polarisation left at the last current's end (relaxes at OCP)
        self._tau_relax = self.preset.symmetric.relaxation
        self._kin = self.preset.kinetics
        self._imp = self.preset.impedance

    def current_density(self, current: float) -> float:
        """|current| / area (A/cm2)."""
        return abs(current) / self.area

    # ---- temperature dependence
    def rct(self, temp_c: Any) -> np.ndarray:
        """Charge-transfer resistance of the symmetric cell at ``temp_c`` (Arrhenius from T0)."""
        imp = self._imp
        return imp.rct * np.exp(arrhenius_exponent(imp.activation_energy, temp_c, imp.reference_temperature))

    def j0(self, temp_c: Any) -> np.ndarray:
        """Exchange current density (A/cm2) at ``temp_c`` (same activation energy as 1/Rct)."""
        k = self._kin
        return k.j0 * np.exp(-arrhenius_exponent(self._imp.activation_energy, temp_c, k.j0_temperature))

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
        """A galvanostatic segment starts (``new_segment``: not a continuation; ``reversal``: sign changed)."""

    # ---- galvanostatic
    def v_cp(self, current: float, tau: Any) -> np.ndarray:
        """Noise-free voltage ``tau`` s from now under constant ``current`` (state unchanged)."""
        tau = np.asarray(tau, dtype=float)
        if current == 0.0:
            return self.v_rest(tau)
        return self._v_cp(current, tau)

    @abstractmethod
    def _v_cp(self, current: float, tau: np.ndarray) -> np.ndarray:
        """:meth:`v_cp` for ``current`` != 0."""

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
        """Advance the kind's state by ``dt`` s under ``current`` != 0."""

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
        """Open-circuit evolution of the kind's state (none by default)."""

    # ---- kinetics (sweeps, potentiostatic holds)
    def kinetic_current(self, voltage: Any, temp_c: float) -> np.ndarray:
        """Current (A) at cell ``voltage`` from Butler-Volmer about the open-circuit voltage, with iR.

        Two identical electrodes each take half the charge-transfer overpotential:
        I = A j0 [exp(a n F e/(2RT)) - exp(-(1-a) n F e/(2RT))], e = E - OCV - I Rs
        (for a = 0.5: I = 2 A j0 sinh(n F e / (4 R T))).
        """
        e = np.asarray(voltage, dtype=float) - self.ocv()
        k = self._kin
        i0 = self.area * float(self.j0(temp_c))
        return butler_volmer_ir(e, i0, k.alpha, bv_factor(k.electrons, temp_c), self._imp.rs)

    def pass_charge(self, charge: float, dt: float) -> None:
        """A sweep or hold passed ``charge`` (C, signed) over ``dt`` s."""
        self.advance_rest(dt)

    # ---- impedance
    def impedance(self, freq: Any, temp_c: Any) -> np.ndarray:
        """Noise-free impedance (ohm, complex) at ``freq`` (Hz) and ``temp_c``."""
        return self._impedance(2 * np.pi * np.asarray(freq, dtype=float), temp_c)

    @abstractmethod
    def _impedance(self, omega: np.ndarray, temp_c: Any) -> np.ndarray:
        """:meth:`impedance` at angular frequencies ``omega`` (rad/s)."""

    def mg_series(self, omega: np.ndarray, temp_c: Any, electrodes: float) -> np.ndarray:
        """Rs + film + Mg charge transfer of ``electrodes`` (2 symmetric, 1 a single Mg electrode)."""
        imp = self._imp
        z = np.full(omega.shape, imp.rs, dtype=complex)
        rf = self.film_resistance() * electrodes / 2.0
        if rf > 0:
            z = z + cpe_rc(rf, imp.film.cpe.q * 2.0 / electrodes, imp.film.cpe.alpha, omega)
        rct = self.rct(temp_c) * electrodes / 2.0
        return z + cpe_rc(rct, imp.double_layer.q * 2.0 / electrodes, imp.double_layer.alpha, omega)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "preset": self.preset.name,
            "seed": self.seed,
            "replicate": self.replicate,
            "area_cm2": self.area,
            "age_s": self.age,
            "cycles": self.cycles,
        }
