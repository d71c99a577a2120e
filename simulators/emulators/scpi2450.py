"""A Keithley 2450 emulator on loopback TCP: the SCPI subset of labctl's 2450 driver, on a simulated cell.

The voltage it reads is computed from the simulator's cell models
(:mod:`labctl.simulators.cells`, a preset by name) at the emulator's
clock time, exactly as :class:`~labctl.simulators.potentiostat.SimulatedPotentiostat`
would: while the output is on at a current ``I`` the reading ``tau`` s after the level was
set is ``cell.v_cp(I, tau)``; at 0 A or with the output off the cell rests
(``cell.v_rest``); the cell state advances whenever the source changes.  Measurement
noise uses the same seeded streams as the simulated potentiostat, one draw per reading,
so the same seed gives the same data.

Commands (short or long SCPI forms, optional ``[:LEVel]``, several per line with ``;``):
``*IDN?``, ``*RST``, ``*CLS``, ``:SYST:ERR?``, ``:OUTP ON|OFF``, ``:OUTP?``,
``:OUTP:SMOD HIMP|NORM|ZERO|GUAR``, ``:SOUR:FUNC CURR``, ``:SOUR:CURR <A>``,
``:SOUR:CURR:RANG <A>``, ``:SOUR:CURR:RANG:AUTO ON|OFF``, ``:SOUR:CURR:VLIM <V>``,
``:SOUR:CURR:READ:BACK ON|OFF``, ``:SENS:FUNC "VOLT"``, ``:SENS:VOLT:RANG[:AUTO]``,
``:SENS:VOLT:RSEN ON|OFF``, ``:SENS:VOLT:NPLC <n>``, ``:READ? ["defbuffer1"[,READ][,SOUR]]``
and their queries.  A bad command queues a SCPI error (``-113 Undefined header``,
``-222 Parameter data out of range``, ``-104 Data type error``) and answers nothing.
A reading taken with the output off answers 9.91E37 (not a number) and queues
``-221 Settings conflict``.  Fault hooks: see :mod:`labctl.simulators.emulators.linetcp`.

Run one by hand: ``python -m labctl.simulators.emulators.scpi2450 --port 5025 --speed 100``.
"""

from __future__ import annotations

import argparse
from collections import deque
from typing import Any

import numpy as np

from labctl.simulators.cells import CellModel, simulate_cell
from labctl.simulators.emulators.linetcp import LineServer
from labctl.simulators.presets import load_preset

__all__ = ["Keithley2450Emulator", "normalise_header"]

IDN = "KEITHLEY INSTRUMENTS,MODEL 2450,04512345,1.7.12b"
RANGES = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
NAN = 9.91e37

_LONG = {
    "SOURCE": "SOUR",
    "CURRENT": "CURR",
    "VOLTAGE": "VOLT",
    "RANGE": "RANG",
    "VLIMIT": "VLIM",
    "READBACK": "BACK",
    "SENSE": "SENS",
    "FUNCTION": "FUNC",
    "OUTPUT": "OUTP",
    "SMODE": "SMOD",
    "SYSTEM": "SYST",
    "ERROR": "ERR",
    "RSENSE": "RSEN",
    "AUTO": "AUTO",
}
_OPTIONAL = {"LEV", "LEVEL", "STAT", "STATE", "NEXT", "ON"}


def normalise_header(header: str) -> str:
    """``:SOURce1:CURRent:LEVel`` -> ``SOUR:CURR`` (short forms, no suffix numbers or optional nodes)."""
    out = []
    for node in header.strip().lstrip(":").split(":"):
        n = node.upper().rstrip("0123456789")
        n = _LONG.get(n, n)
        if n in _OPTIONAL and out:
            continue
        out.append(n)
    return ":".join(out)


class _CmdError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _num(arg: str) -> float:
    try:
        x = float(arg)
    except ValueError:
        raise _CmdError(-104, "Data type error") from None
    if not np.isfinite(x):
        raise _CmdError(-104, "Data type error")
    return x


def _bool(arg: str) -> bool:
    a = arg.strip().upper()
    if a in ("ON", "1"):
        return True
    if a in ("OFF", "0"):
        return False
    raise _CmdError(-104, "Data type error")


class Keithley2450Emulator(LineServer):
    """A 2450 with one simulated cell on its terminals.

    ``clock``: the labctl clock the physics runs on (share the driver's in tests);
    ``preset``/``cell_kind``/``area_cm2``/``seed``/``replicate``/``noise`` as for the
    simulated potentiostat.
    """

    def __init__(
        self,
        clock: Any,
        *,
        preset: Any,
        cell_kind: str = "symmetric",
        area_cm2: float = 1.267,
        cathode_mass_g: float | None = None,
        seed: int = 0,
        replicate: int = 0,
        noise: bool = True,
        idn: str = IDN,
        host: str = "127.0.0.1",
        port: int = 0,
        plan: Any = None,
    ) -> None:
        super().__init__(host, port, plan)
        self.clock = clock
        self.preset = load_preset(preset)
        self.cell: CellModel = simulate_cell(
            cell_kind, self.preset, area_cm2=area_cm2, cathode_mass_g=cathode_mass_g, seed=seed, replicate=replicate
        )
        self.noise = bool(noise)
        self.idn = idn
        ss = [int(seed) & 0xFFFFFFFF, int(replicate) & 0xFFFFFFFF]
        self._rng_v = np.random.default_rng(ss + [100])
        self._rng_i = np.random.default_rng(ss + [101])
        self.errors: deque[tuple[int, str]] = deque(maxlen=32)
        self._mode = "rest"  # what the cell is doing since _t_seg: "rest" or "cp"
        self._t_seg = float(clock.now())
        self._cp_level = 0.0
        self._reset_settings()
        self.output = False
        self.history: list[tuple[float, bool, float]] = []  # (clock time, output on, level) at every change

    def _reset_settings(self) -> None:
        self.smode = "NORM"
        self.func = "CURR"
        self.level = 0.0
        self.range = 1e-4
        self.range_auto = True
        self.vlim = 21.0
        self.readback = True
        self.sense = "VOLT"
        self.vrange_auto = True
        self.vrange = 20.0
        self.rsen = False
        self.nplc = 1.0

    # ------------------------------------------------------------------ cell
    def _settle(self) -> None:
        now = float(self.clock.now())
        dt = now - self._t_seg
        if self._mode == "cp":
            self.cell.advance_cp(self._cp_level, dt)
        else:
            self.cell.advance_rest(dt)
        self._t_seg = max(now, self._t_seg)

    def _apply(self, output: bool, level: float) -> None:
        """Output/level change: advance the cell to now, then begin what follows."""
        changed = output != self.output or (output and level != self.level)
        if not changed:
            self.output, self.level = output, level
            return
        self._settle()
        self.output, self.level = output, level
        if output and level != 0.0:
            self.cell.begin("cp", level)
            self._mode = "cp"
            self._cp_level = level
        else:
            if output:
                self.cell.begin("ocp")
            self._mode = "rest"
        self.history.append((self._t_seg, output, level))

    def cell_voltage(self) -> float:
        """Noise-free cell voltage now (V)."""
        tau = np.array([float(self.clock.now()) - self._t_seg])
        if self._mode == "cp":
            return float(self.cell.v_cp(self._cp_level, tau)[0])
        return float(self.cell.v_rest(tau)[0])

    def _measure(self) -> tuple[float, float]:
        v = self.cell_voltage()
        nz = self.preset.noise
        if self.noise and nz.voltage != 0:
            v += float(self._rng_v.normal(0.0, nz.voltage))
        v = min(max(v, -self.vlim), self.vlim)  # in compliance the SMU clamps at its voltage limit
        i = self.level if self.output else 0.0
        if self.readback and self.noise and (nz.current != 0 or nz.current_floor != 0):
            e = self._rng_i.standard_normal(2)
            i = i * (1.0 + nz.current * float(e[0])) + nz.current_floor * float(e[1])
        return v, i

    # ------------------------------------------------------------------ SCPI
    def queue_error(self, code: int, message: str) -> None:
        self.errors.append((int(code), message))

    def handle(self, command: str) -> str | None:
        head, _, arg = command.partition(" ")
        query = head.endswith("?")
        key = normalise_header(head.rstrip("?"))
        arg = arg.strip()
        try:
            return self._handle(key, query, arg)
        except _CmdError as exc:
            self.queue_error(exc.code, exc.message)
            return None

    def _handle(self, key: str, query: bool, arg: str) -> str | None:
        if key == "*IDN" and query:
            return self.idn
        if key == "*RST" and not query:
            self._apply(False, 0.0)
            self._reset_settings()
            return None
        if key == "*CLS" and not query:
            self.errors.clear()
            return None
        if key == "*OPC" and query:
            return "1"
        if key == "SYST:ERR" and query:
            if self.errors:
                code, msg = self.errors.popleft()
                return f'{code},"{msg}"'
            return '0,"No error"'
        if key == "OUTP":
            if query:
                return "1" if self.output else "0"
            on = _bool(arg)
            if on and self.func != "CURR":
                raise _CmdError(-221, "Settings conflict; only the current source is emulated")
            self._apply(on, self.level)
            return None
        if key == "OUTP:SMOD":
            if query:
                return self.smode
            a = arg.upper()
            modes = {
                "HIMP": "HIMP",
                "HIMPEDANCE": "HIMP",
                "NORM": "NORM",
                "NORMAL": "NORM",
                "ZERO": "ZERO",
                "GUAR": "GUAR",
                "GUARD": "GUAR",
            }
            if a not in modes:
                raise _CmdError(-224, "Illegal parameter value")
            self.smode = modes[a]
            return None
        if key == "SOUR:FUNC":
            if query:
                return self.func
            a = arg.upper()
            if a in ("CURR", "CURRENT"):
                self.func = "CURR"
            elif a in ("VOLT", "VOLTAGE"):
                self.func = "VOLT"
            else:
                raise _CmdError(-224, "Illegal parameter value")
            return None
        if key == "SOUR:CURR":
            if query:
                return f"{self.level:.6E}"
            x = _num(arg)
            if abs(x) > self.range * 1.05 and not self.range_auto:
                raise _CmdError(-222, "Parameter data out of range")
            if abs(x) > 1.05:
                raise _CmdError(-222, "Parameter data out of range")
            if self.range_auto:
                self.range = next((r for r in RANGES if abs(x) <= r * 1.05), 1.0)
            self._apply(self.output, x)
            return None
        if key == "SOUR:CURR:RANG":
            if query:
                return f"{self.range:.6E}"
            x = abs(_num(arg))
            if x > 1.05:
                raise _CmdError(-222, "Parameter data out of range")
            self.range = next(r for r in RANGES if x <= r * 1.05)
            self.range_auto = False
            return None
        if key == "SOUR:CURR:RANG:AUTO":
            if query:
                return "1" if self.range_auto else "0"
            self.range_auto = _bool(arg)
            return None
        if key == "SOUR:CURR:VLIM":
            if query:
                return f"{self.vlim:.6E}"
            x = _num(arg)
            if not 0.02 <= x <= 210.0:
                raise _CmdError(-222, "Parameter data out of range")
            self.vlim = x
            return None
        if key == "SOUR:CURR:READ:BACK":
            if query:
                return "1" if self.readback else "0"
            self.readback = _bool(arg)
            return None
        if key == "SENS:FUNC":
            if query:
                return f'"{self.sense}:DC"'
            a = arg.strip("\"'").upper()
            if a not in ("VOLT", "VOLTAGE", "VOLT:DC"):
                raise _CmdError(-224, "Illegal parameter value")
            self.sense = "VOLT"
            return None
        if key == "SENS:VOLT:RANG:AUTO":
            if query:
                return "1" if self.vrange_auto else "0"
            self.vrange_auto = _bool(arg)
            return None
        if key == "SENS:VOLT:RANG":
            if query:
                return f"{self.vrange:.6E}"
            x = abs(_num(arg))
            if x > 210.0:
                raise _CmdError(-222, "Parameter data out of range")
            self.vrange, self.vrange_auto = x, False
            return None
        if key == "SENS:VOLT:RSEN":
            if query:
                return "1" if self.rsen else "0"
            self.rsen = _bool(arg)
            return None
        if key == "SENS:VOLT:NPLC":
            if query:
                return f"{self.nplc:g}"
            x = _num(arg)
            if not 0.01 <= x <= 10:
                raise _CmdError(-222, "Parameter data out of range")
            self.nplc = x
            return None
        if key in ("READ", "MEAS:VOLT", "MEAS") and query:
            elements = [e.strip().strip('"').upper() for e in arg.split(",")] if arg else []
            if elements and elements[0].upper() == "DEFBUFFER1":
                elements = elements[1:]
            if not all(e in ("READ", "READING", "SOUR", "SOURCE") for e in elements):
                raise _CmdError(-224, "Illegal parameter value")
            if not self.output:
                self.queue_error(-221, "Settings conflict; output is off, no reading taken")
                values = [NAN for _ in (elements or ["READ"])]
            else:
                v, i = self._measure()
                values = [v if e.startswith("READ") else i for e in (elements or ["READ"])]
            return ",".join(f"{x:+.9E}" for x in values)
        raise _CmdError(-113, "Undefined header")


def main(argv: list[str] | None = None) -> None:
    """Serve a 2450 emulator on loopback until interrupted."""
    from labctl.core.clock import clock_for_speed

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=5025)
    ap.add_argument("--preset", required=True)
    ap.add_argument("--cell-kind", default="symmetric")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speed", default="1", help="clock speed factor (1 = wall time)")
    a = ap.parse_args(argv)
    emu = Keithley2450Emulator(
        clock_for_speed(a.speed if a.speed != "max" else "wall"),
        preset=a.preset,
        cell_kind=a.cell_kind,
        seed=a.seed,
        port=a.port,
    )
    emu.serve_until_interrupted(f"Keithley 2450 emulator (preset {a.preset})")


if __name__ == "__main__":
    main()
