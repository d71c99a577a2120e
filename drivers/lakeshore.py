"""Lake Shore 335/336 temperature controller as a :class:`~labctl.drivers.contracts.TemperatureStage`.

Over pyvisa with any backend: pyvisa-py (``visa_library="@py"``, e.g.
``TCPIP::192.0.2.5::7777::SOCKET`` on the LAN or ``ASRL/dev/ttyUSB0::INSTR``), a
pyvisa-sim YAML (``visa_library="path/lakeshore335.yaml@sim"``, see
``labctl/simulators/emulators/lakeshore335.yaml``) or the system VISA.

One control loop (``loop``, default 1) drives one heater output (``output``, default
the loop's number) from one sensor input (``sensor``, default ``"A"``).  Set points
and readings are in kelvin on the wire (``SETP``/``KRDG?``; the loop's set-point units
must be kelvin, the controller's default) and in degC in labctl.

Commands: ``*IDN?`` (anything but a ``LSCI,MODEL335``/``MODEL336`` is refused),
``RAMP <loop>,<on>,<K/min>`` and ``RAMP? <loop>`` at connect (ramping off unless
``ramp_rate`` is given), ``SETP <loop>,<K>`` then ``SETP? <loop>`` to confirm it,
``RANGE <output>,<range>`` and ``RANGE? <output>`` (the heater goes on at
``heater_range`` with the first set point; 1 low, 2 medium, 3 high), ``KRDG? <input>``,
``HTR? <output>`` (heater output in %).  The controller has no error queue and
ignores a command it does not understand, so every setting is read back and a
mismatch is a :class:`~labctl.drivers.contracts.DeviceError`.

``close()`` turns the heater off (``RANGE <output>,0``, confirmed) and leaves the set
point where it was: the stage then drifts to ambient.  ``hold_on_close=True`` leaves
the loop regulating at the last set point instead (for a stage shared with another run).
"""

from __future__ import annotations

import math
import time
from typing import Any

from labctl.core.constants import ZERO_CELSIUS_K
from labctl.drivers.contracts import CONNECT_TIMEOUT, DeviceError
from labctl.drivers.visalink import MessageLink, as_link, parse_number

__all__ = ["T_ZERO", "LakeShore335", "parse_idn", "parse_kelvin", "parse_percent", "parse_ramp", "parse_range"]

T_ZERO = ZERO_CELSIUS_K
MODELS = ("MODEL335", "MODEL336")
SETPOINT_TOLERANCE_K = 0.002


def parse_idn(reply: str, address: str = "instrument") -> tuple[str, str, str, str]:
    """``*IDN?`` -> (maker, model, serial, firmware); DeviceError unless a Lake Shore 335 or 336."""
    fields = [f.strip() for f in reply.split(",")]
    if len(fields) != 4 or not all(fields[:2]):
        raise DeviceError(f"{address}: *IDN? answer is not 'maker,model,serial,firmware': {reply[:80]!r}")
    maker, model, serial, firmware = fields
    if maker.upper() != "LSCI" or model.upper() not in MODELS:
        raise DeviceError(
            f"{address} is a {maker} {model} ({reply[:80]!r}), not a Lake Shore 335/336: "
            "this driver refuses to drive another controller's heater"
        )
    return maker, model, serial, firmware


def parse_kelvin(reply: str, address: str = "instrument") -> float:
    """``KRDG?``/``SETP?`` -> kelvin; a non-positive reading is a sensor fault."""
    k = parse_number(reply, "temperature", address)
    if not 0.0 < k < 2000.0:
        raise DeviceError(f"{address}: temperature {reply[:40]!r} K is not a sensor reading (open or shorted sensor?)")
    return k


def parse_range(reply: str, address: str = "instrument") -> int:
    """``RANGE?`` -> heater range 0 (off) .. 5."""
    text = reply.strip()
    if text not in ("0", "1", "2", "3", "4", "5"):
        raise DeviceError(f"{address}: heater range {reply[:40]!r} is not 0..5")
    return int(text)


def parse_ramp(reply: str, address: str = "instrument") -> tuple[bool, float]:
    """``RAMP?`` -> (on, rate K/min)."""
    parts = [p.strip() for p in reply.split(",")]
    if len(parts) != 2 or parts[0] not in ("0", "1"):
        raise DeviceError(f"{address}: RAMP? answer is not '<0|1>,<rate>': {reply[:40]!r}")
    rate = parse_number(parts[1], "ramp rate", address)
    if not 0.0 <= rate <= 100.0:
        raise DeviceError(f"{address}: ramp rate {rate:g} K/min is outside 0..100")
    return parts[0] == "1", rate


def parse_percent(reply: str, address: str = "instrument") -> float:
    """``HTR?`` -> heater output in percent (0..100)."""
    p = parse_number(reply, "heater output", address)
    if not -0.05 <= p <= 100.05:
        raise DeviceError(f"{address}: heater output {reply[:40]!r} % is outside 0..100")
    return p


class LakeShore335:
    """A Lake Shore 335 (or 336) controlling one stage (see the module docstring).

    ``range_c``: the set points the stage accepts (degC); ``heater_range`` the range the
    heater is switched to while regulating; ``ramp_rate`` (K/min) ramps set-point changes;
    ``io_timeout`` bounds every command and query (s of wall time).
    """

    def __init__(
        self,
        clock: Any = None,
        *,
        resource: str | None = None,
        visa_library: str = "@py",
        link: Any = None,
        loop: int = 1,
        output: int | None = None,
        sensor: str = "A",
        heater_range: int = 3,
        ramp_rate: float | None = None,
        range_c: tuple[float, float] = (5.0, 100.0),
        io_timeout: float = 2.0,
        hold_on_close: bool = False,
    ) -> None:
        if loop not in (1, 2):
            raise ValueError(f"loop must be 1 or 2, got {loop!r}")
        if sensor.upper() not in ("A", "B", "C", "D"):
            raise ValueError(f"sensor must be an input A..D, got {sensor!r}")
        if not 1 <= int(heater_range) <= 3:
            raise ValueError(f"heater_range must be 1 (low) .. 3 (high), got {heater_range!r}")
        if ramp_rate is not None and not 0 < ramp_rate <= 100:
            raise ValueError(f"ramp_rate must be in (0, 100] K/min, got {ramp_rate!r}")
        lo, hi = (float(x) for x in range_c)
        if not lo < hi:
            raise ValueError(f"range_c must be (low, high) with low < high, got {range_c!r}")
        if not io_timeout > 0:
            raise ValueError("io_timeout must be positive")
        self.clock = clock
        self.link: MessageLink = as_link(
            resource=resource, visa_library=visa_library, link=link, read_termination="\n", write_termination="\r\n"
        )
        self.loop = int(loop)
        self.output = int(output if output is not None else loop)
        self.sensor = sensor.upper()
        self.heater_range = int(heater_range)
        self.ramp_rate = ramp_rate
        self.range_c = (lo, hi)
        self.io_timeout = float(io_timeout)
        self.hold_on_close = bool(hold_on_close)
        self.connected = False
        self.idn = ""
        self.setpoint: float | None = None  # degC, last confirmed
        self.heater_on = False
        self.rejected = 0  # replies rejected by read_temperature (garbage, cut short, missing)

    # ------------------------------------------------------------------ contract
    def connect(self, timeout: float = CONNECT_TIMEOUT) -> None:
        deadline = time.monotonic() + float(timeout)

        def left() -> float:
            rest = deadline - time.monotonic()
            if rest <= 0:
                raise DeviceError(f"{self.link.address}: connect timed out")
            return min(rest, max(self.io_timeout, 0.1))

        self.link.open(timeout)
        try:
            reply = self.link.query("*IDN?", left())
            parse_idn(reply, self.link.address)
            self.idn = reply
            on, rate = self.ramp_rate is not None, self.ramp_rate or 0.0
            self.link.write(f"RAMP {self.loop},{int(on)},{rate:.1f}", left())
            got_on, got_rate = parse_ramp(self.link.query(f"RAMP? {self.loop}", left()), self.link.address)
            if got_on != on or abs(got_rate - rate) > 0.05:
                raise DeviceError(
                    f"{self.link.address}: ramp did not take (asked {int(on)},{rate:.1f}, "
                    f"RAMP? answered {int(got_on)},{got_rate:.1f})"
                )
            self.heater_on = parse_range(self.link.query(f"RANGE? {self.output}", left()), self.link.address) > 0
            self.setpoint = parse_kelvin(self.link.query(f"SETP? {self.loop}", left()), self.link.address) - T_ZERO
            parse_kelvin(self.link.query(f"KRDG? {self.sensor}", left()), self.link.address)
        except BaseException:
            self.link.close()
            raise
        self.connected = True

    def identify(self) -> str:
        return self.idn or "Lake Shore 335/336 (not connected)"

    def set_setpoint(self, celsius: float) -> None:
        c = float(celsius)
        lo, hi = self.range_c
        if not math.isfinite(c) or not lo <= c <= hi:
            raise ValueError(f"set point {celsius!r} degC is outside the stage range {lo:g}..{hi:g} degC")
        self._need()
        k = c + T_ZERO
        self.link.write(f"SETP {self.loop},{k:.3f}", self.io_timeout)
        got = parse_kelvin(self.link.query(f"SETP? {self.loop}", self.io_timeout), self.link.address)
        if abs(got - k) > SETPOINT_TOLERANCE_K:
            raise DeviceError(
                f"{self.link.address}: set point did not take (asked {k:.3f} K, SETP? answered {got:.3f} K)"
            )
        self.setpoint = c
        if not self.heater_on:
            self._set_range(self.heater_range)

    #: queries of a reading tried again after a malformed or missing reply (input discarded between)
    RETRIES = 2

    def read_temperature(self) -> float:
        """The stage temperature.  A malformed reply (garbage, a line cut short) or a reply that
        does not come is rejected and counted (``rejected``); the input is discarded and the query
        sent again, up to ``RETRIES`` times, before the DeviceError is raised."""
        self._need()
        for attempt in range(self.RETRIES + 1):
            try:
                return (
                    parse_kelvin(self.link.query(f"KRDG? {self.sensor}", self.io_timeout), self.link.address) - T_ZERO
                )
            except DeviceError:
                if attempt == self.RETRIES:
                    raise
                self.rejected += 1
                self.link.discard_input()
        raise AssertionError("unreachable")

    def heater_output(self) -> float:
        """Heater output, percent of the range's full power."""
        self._need()
        return parse_percent(self.link.query(f"HTR? {self.output}", self.io_timeout), self.link.address)

    def heater_off(self) -> None:
        self._need()
        self._set_range(0)

    def close(self) -> None:
        error: DeviceError | None = None
        try:
            if self.connected and not self.hold_on_close:
                self._set_range(0)
        except DeviceError as exc:
            error = exc
        finally:
            self.connected = False
            self.link.close()
        if error is not None:
            raise DeviceError(f"closed, but the heater could not be confirmed off: {error}") from error

    # ------------------------------------------------------------------ helpers
    def _need(self) -> None:
        if not self.connected:
            raise DeviceError("Lake Shore controller is not connected: call connect() first")

    def _set_range(self, rng: int) -> None:
        self.link.write(f"RANGE {self.output},{rng}", self.io_timeout)
        got = parse_range(self.link.query(f"RANGE? {self.output}", self.io_timeout), self.link.address)
        if got != rng:
            raise DeviceError(f"{self.link.address}: heater range did not take (asked {rng}, RANGE? answered {got})")
        self.heater_on = rng > 0
