"""A simulated temperature stage: first-order lag towards the set point, optional overshoot.

The stage temperature is an analytic function of clock time (no stepping loop):
after a set-point change at t0 from temperature T0,

* ``overshoot == 0``: T(t) = Tset + (T0 - Tset) exp(-(t - t0) / tau_s)
* ``overshoot > 0``: an underdamped second-order response whose envelope decays with
  ``tau_s`` and whose first peak overshoots a step by the fraction ``overshoot``
  (damping ratio zeta = -ln(o) / sqrt(pi^2 + ln(o)^2)).

:meth:`read_temperature` adds seeded Gaussian noise of sd ``noise`` degC.
:meth:`temperature_at` (an extension beyond the contract) is the noise-free model on an
array of clock times; the simulated potentiostat uses it for the cell temperature.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["SimulatedTemperatureStage"]


class SimulatedTemperatureStage:
    """Implements :class:`labctl.drivers.contracts.TemperatureStage` in clock time."""

    def __init__(
        self,
        clock: Any,
        *,
        initial: float = 22.0,
        tau_s: float = 300.0,
        overshoot: float = 0.0,
        range_c: tuple[float, float] = (-20.0, 120.0),
        noise: float = 0.02,
        seed: int = 0,
    ) -> None:
        if not tau_s > 0:
            raise ValueError(f"tau_s must be positive, got {tau_s!r}")
        if not 0.0 <= overshoot < 1.0:
            raise ValueError(f"overshoot is a fraction in [0, 1), got {overshoot!r}")
        lo, hi = (float(x) for x in range_c)
        if not lo < hi:
            raise ValueError(f"range_c must be (low, high) with low < high, got {range_c!r}")
        if noise < 0:
            raise ValueError(f"noise must not be negative, got {noise!r}")
        self.clock = clock
        self.range_c = (lo, hi)
        self.tau_s = float(tau_s)
        self.overshoot = float(overshoot)
        self.noise = float(noise)
        self.seed = int(seed)
        self._rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 0, 3])
        self.setpoint = float(initial)
        # segments: (t0, T0, dT/dt at t0, set point)
        self._seg_t = [float(clock.now())]
        self._segs = [(float(initial), 0.0, float(initial))]
        self.connected = False
        self.log: list[tuple[float, float]] = []  # (clock time, set point) of every change
        if overshoot > 0:
            lo_ = math.log(overshoot)
            self._zeta = -lo_ / math.sqrt(math.pi**2 + lo_**2)
            self._sigma = 1.0 / self.tau_s
            wn = self._sigma / self._zeta
            self._wd = wn * math.sqrt(1.0 - self._zeta**2)

    # ------------------------------------------------------------------ contract
    def connect(self, timeout: float = 10.0) -> None:
        self.connected = True

    def close(self) -> None:
        self.connected = False

    def identify(self) -> str:
        return (
            f"labctl-sim temperature stage (tau {self.tau_s:g} s, range {self.range_c[0]:g}..{self.range_c[1]:g} degC)"
        )

    def set_setpoint(self, celsius: float) -> None:
        c = float(celsius)
        lo, hi = self.range_c
        if not math.isfinite(c) or not lo <= c <= hi:
            raise ValueError(f"set point {celsius!r} degC is outside the stage range {lo:g}..{hi:g} degC")
        now = float(self.clock.now())
        temp, rate = self._eval(np.array([now]))
        self._seg_t.append(now)
        self._segs.append((float(temp[0]), float(rate[0]), c))
        self.setpoint = c
        self.log.append((now, c))

    def read_temperature(self) -> float:
        t = float(self.temperature_at(np.array([self.clock.now()]))[0])
        if self.noise > 0:
            t += float(self._rng.normal(0.0, self.noise))
        return t

    # ------------------------------------------------------------------ model
    def temperature_at(self, t: Any) -> np.ndarray:
        """Noise-free stage temperature (degC) at clock time(s) ``t`` (array or scalar)."""
        arr = np.atleast_1d(np.asarray(t, dtype=float))
        return self._eval(arr)[0]

    def settling_time(self, band: float, step: float) -> float:
        """Time after a set-point step of ``step`` degC until the stage stays within +-``band`` (from rest)."""
        if abs(step) <= band:
            return 0.0
        if self.overshoot == 0:
            return self.tau_s * math.log(abs(step) / band)
        # envelope bound: |x| <= |step| exp(-t/tau) / sqrt(1 - zeta^2)
        return self.tau_s * math.log(abs(step) / (band * math.sqrt(1.0 - self._zeta**2)))

    def _eval(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.clip(np.searchsorted(self._seg_t, t, side="right") - 1, 0, len(self._seg_t) - 1)
        temp = np.empty_like(t)
        rate = np.empty_like(t)
        for k in np.unique(idx):
            sel = idx == k
            t0 = self._seg_t[k]
            x0_abs, v0, sp = self._segs[k]
            x0 = x0_abs - sp
            dt = np.maximum(t[sel] - t0, 0.0)
            if self.overshoot == 0:
                e = np.exp(-dt / self.tau_s)
                temp[sel] = sp + x0 * e
                rate[sel] = -x0 / self.tau_s * e
            else:
                s, wd = self._sigma, self._wd
                a = x0
                b = (v0 + s * x0) / wd
                env = np.exp(-s * dt)
                c, sn = np.cos(wd * dt), np.sin(wd * dt)
                temp[sel] = sp + env * (a * c + b * sn)
                rate[sel] = env * ((b * wd - s * a) * c + (-a * wd - s * b) * sn)
        return temp, rate
