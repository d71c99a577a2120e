"""A Lake Shore 335/336 temperature controller emulator on loopback TCP, with thermal dynamics.

The stage follows a first-order lag (time constant ``tau_s``) towards the temperature
the heater can hold: the set point, or the set point as it ramps (``RAMP``), bounded
below by ``ambient_c`` (the heater only heats) and above by what the heater range
reaches (``RANGE`` 0 off: the stage drifts back to ambient; 1 low, 2 medium, 3 high:
``ambient + max_rise_k[range]``).  With ``overshoot > 0`` the response is underdamped
(second order; the first peak overshoots a step by that fraction), like
:class:`labctl.simulators.stage.SimulatedTemperatureStage`.  The state is integrated
in clock time whenever a command arrives (exactly for the first-order lag without a
ramp, in steps of at most 1 s otherwise).

Commands (Lake Shore syntax, ``,`` separated, replies ``\\r\\n`` terminated):
``*IDN?``, ``*RST``, ``*CLS``, ``SETP <loop>,<K>``, ``SETP? <loop>``, ``KRDG? <A|B>``,
``CRDG? <A|B>``, ``RAMP <loop>,<0|1>,<K/min>``, ``RAMP? <loop>``, ``RANGE <out>,<0-3>``,
``RANGE? <out>``, ``HTR? <out>``.  Like the instrument it ignores a command it does not
understand (no error queue).  Input A is the stage sensor, input B reads ambient.
Fault hooks: see :mod:`labctl.simulators.emulators.linetcp`; the fault plan's stage kinds:
``no_settle`` (the heater levels off ``size`` K, default 3 K, short of the set point, so a
temperature step never settles) and ``overshoot`` (the loop runs away towards set point +
``size`` K, default 15 K).

Run one by hand: ``python -m labctl.simulators.emulators.lakeshore --port 7777 --speed 60``.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np

from labctl.core.constants import ZERO_CELSIUS_K
from labctl.simulators.emulators.linetcp import LineServer

__all__ = ["T_ZERO", "LakeShoreEmulator"]

T_ZERO = ZERO_CELSIUS_K
IDN = {"335": "LSCI,MODEL335,LSA2C4E/#######,2.9", "336": "LSCI,MODEL336,LSA2C4F/#######,2.5"}


class LakeShoreEmulator(LineServer):
    """One control loop (loop 1, heater output 1, sensor input A) of a 335/336."""

    reply_terminator = b"\r\n"

    def __init__(
        self,
        clock: Any,
        *,
        model: str = "335",
        ambient_c: float = 22.0,
        tau_s: float = 120.0,
        overshoot: float = 0.0,
        max_rise_k: tuple[float, float, float] = (5.0, 30.0, 150.0),
        noise: float = 0.0,
        seed: int = 0,
        idn: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        plan: Any = None,
    ) -> None:
        super().__init__(host, port, plan)
        if not tau_s > 0:
            raise ValueError(f"tau_s must be positive, got {tau_s!r}")
        if not 0.0 <= overshoot < 1.0:
            raise ValueError(f"overshoot is a fraction in [0, 1), got {overshoot!r}")
        self.clock = clock
        self.idn = idn if idn is not None else IDN[str(model)]
        self.ambient = float(ambient_c) + T_ZERO
        self.tau = float(tau_s)
        self.overshoot = float(overshoot)
        self.max_rise = (0.0, *(float(x) for x in max_rise_k))
        self.noise = float(noise)
        self._rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7])
        self.temp = self.ambient  # K, stage
        self.rate = 0.0  # K/s (second-order state)
        self._t = float(clock.now())
        self._reset()
        if self.overshoot > 0:
            lo = math.log(self.overshoot)
            self._zeta = -lo / math.sqrt(math.pi**2 + lo**2)
            self._wn = (1.0 / self.tau) / self._zeta

    def _reset(self) -> None:
        self.setpoint = self.ambient  # K, as commanded
        self.sp_eff = self.ambient  # K, the ramping set point
        self.ramp_on = False
        self.ramp_rate = 0.0  # K/min
        self.heater_range = 0

    # ------------------------------------------------------------------ physics
    def goal(self) -> float:
        """The temperature (K) the loop drives the stage to right now."""
        if self.heater_range == 0:
            return self.ambient
        sp = self.sp_eff
        now = float(self.clock.now())
        short = self.plan.active("no_settle", now) if self.plan else None
        if short is not None:
            sp = max(self.ambient, sp - (3.0 if short.size is None else short.size))
        runaway = self.plan.active("overshoot", now) if self.plan else None
        if runaway is not None:
            return sp + (15.0 if runaway.size is None else runaway.size)
        return min(max(sp, self.ambient), self.ambient + self.max_rise[self.heater_range])

    def _advance(self) -> None:
        now = float(self.clock.now())
        dt = now - self._t
        if dt <= 0:
            return
        self._t = now
        ramping = self.ramp_on and self.ramp_rate > 0 and self.sp_eff != self.setpoint
        if self.overshoot == 0 and not ramping:
            g = self.goal()
            self.temp = g + (self.temp - g) * math.exp(-dt / self.tau)
            return
        n = max(1, math.ceil(dt / min(1.0, self.tau / 50.0)))
        h = dt / n
        for _ in range(n):
            if self.ramp_on and self.ramp_rate > 0 and self.sp_eff != self.setpoint:
                step = self.ramp_rate / 60.0 * h
                d = self.setpoint - self.sp_eff
                self.sp_eff = self.setpoint if abs(d) <= step else self.sp_eff + math.copysign(step, d)
            g = self.goal()
            if self.overshoot == 0:
                self.temp = g + (self.temp - g) * math.exp(-h / self.tau)
            else:
                wn, z = self._wn, self._zeta
                acc = -2.0 * z * wn * self.rate - wn * wn * (self.temp - g)
                self.rate += acc * h
                self.temp += self.rate * h

    def heater_percent(self) -> float:
        if self.heater_range == 0:
            return 0.0
        span = self.max_rise[self.heater_range]
        hold = (self.temp - self.ambient) / span
        drive = 5.0 * (self.sp_eff - self.temp) / span
        return float(min(max(100.0 * (hold + drive), 0.0), 100.0))

    def reading(self, channel: str) -> float:
        """Sensor reading (K) of input A (stage) or B (ambient) now."""
        with self.lock:
            self._advance()
        t = self.temp if channel == "A" else self.ambient
        if self.noise > 0 and channel == "A":
            t += float(self._rng.normal(0.0, self.noise))
        return t

    # ------------------------------------------------------------------ commands
    def handle(self, command: str) -> str | None:
        self._advance()
        head, _, arg = command.partition(" ")
        head = head.upper()
        args = [a.strip() for a in arg.split(",")] if arg.strip() else []
        try:
            return self._handle(head, args)
        except (ValueError, IndexError):
            return None  # the instrument ignores what it cannot parse

    def _handle(self, head: str, args: list[str]) -> str | None:
        if head == "*IDN?":
            return self.idn
        if head == "*RST":
            self._reset()
            return None
        if head == "*CLS":
            return None
        if head in ("KRDG?", "CRDG?"):
            ch = (args[0] if args else "A").upper()
            if ch not in ("A", "B"):
                return None
            k = self.reading(ch)
            return f"{k:+.3f}" if head == "KRDG?" else f"{k - T_ZERO:+.3f}"
        if head == "SETP":
            loop, value = int(args[0]), float(args[1])
            if loop == 1 and math.isfinite(value) and 0.0 <= value <= 1500.0:
                self.setpoint = value  # with the ramp on, sp_eff ramps from where it is
                if not (self.ramp_on and self.ramp_rate > 0):
                    self.sp_eff = value
            return None
        if head == "SETP?":
            return f"{self.setpoint:+.3f}" if int(args[0]) == 1 else "+0.000"
        if head == "RAMP":
            loop, on, rate = int(args[0]), int(args[1]), float(args[2])
            if loop == 1 and on in (0, 1) and 0.0 <= rate <= 100.0:
                self.ramp_on, self.ramp_rate = bool(on), rate
                if not self.ramp_on:
                    self.sp_eff = self.setpoint
            return None
        if head == "RAMP?":
            return f"{int(self.ramp_on)},{self.ramp_rate:+.1f}"
        if head == "RANGE":
            out, rng = int(args[0]), int(args[1])
            if out == 1 and 0 <= rng <= 3:
                self.heater_range = rng
            return None
        if head == "RANGE?":
            return str(self.heater_range) if int(args[0]) == 1 else "0"
        if head == "HTR?":
            return f"{self.heater_percent():+.1f}" if int(args[0]) == 1 else "+0.0"
        return None


def main(argv: list[str] | None = None) -> None:
    """Serve a Lake Shore emulator on loopback until interrupted."""

    from labctl.core.clock import clock_for_speed

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=7777)
    ap.add_argument("--model", default="335", choices=sorted(IDN))
    ap.add_argument("--tau", type=float, default=120.0)
    ap.add_argument("--overshoot", type=float, default=0.0)
    ap.add_argument("--speed", default="1", help="clock speed factor (1 = wall time)")
    a = ap.parse_args(argv)
    emu = LakeShoreEmulator(
        clock_for_speed(a.speed if a.speed != "max" else "wall"),
        model=a.model,
        tau_s=a.tau,
        overshoot=a.overshoot,
        port=a.port,
    )
    emu.serve_until_interrupted(f"Lake Shore {a.model} emulator")


if __name__ == "__main__":
    main()
