"""Keithley 2450 source-measure unit as a galvanostat (SCPI over pyvisa, any backend).

Techniques: :class:`~labctl.drivers.techniques.ConstantCurrent` (source current, measure
voltage) and :class:`~labctl.drivers.techniques.OpenCircuit` (source 0 A on the lowest
current range, measure voltage; the output-off state is high impedance).  The 2450 has
no end conditions of its own for a cell, so the limits are enforced **on the host**
(``capabilities.native_limits`` is False): the technique handle samples on the labctl
clock at the recording interval, checks every limit of ``technique.limits`` on each
sample, and when one is crossed turns the output off and ends the technique with the
crossing time interpolated between the two samples that straddle it (the engine checks
the same limits again on every block).

Commands (see docs/drivers-visa.md): ``*IDN?`` (a non-2450 answer is refused), ``*RST``,
``*CLS``, ``:SOUR:FUNC CURR``, ``:SOUR:CURR:RANG``, ``:SOUR:CURR``, ``:SOUR:CURR:VLIM``,
``:SOUR:CURR:READ:BACK ON``, ``:SENS:FUNC "VOLT"``, ``:SENS:VOLT:RANG:AUTO ON``,
``:SENS:VOLT:RSEN``, ``:SENS:VOLT:NPLC``, ``:OUTP:SMOD HIMP``, ``:SYST:ERR?`` (after
configuration: any queued error fails the start with its code and message),
``:OUTP ON``/``:OUTP OFF`` (each confirmed with ``:OUTP?``) and ``:READ? "defbuffer1",READ,SOUR`` per sample.

Fault policy: every call has a bounded timeout; a silent instrument, a garbled or
non-numeric reply, an error in the queue or a lost link fails the technique with a
:class:`~labctl.drivers.contracts.DeviceError` after the output was switched off
(``:OUTP OFF``, confirmed with ``:OUTP?``; over a lost link the driver reopens the
resource once to do so).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from labctl.drivers.contracts import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    Capabilities,
    DeviceError,
    TechniqueState,
)
from labctl.drivers.techniques import (
    ConstantCurrent,
    EndInfo,
    EndReason,
    Limits,
    OpenCircuit,
    Recording,
    SampleBlock,
    Technique,
)
from labctl.drivers.visalink import MessageLink, as_link, parse_number

__all__ = [
    "CURRENT_RANGES",
    "READ_COMMAND",
    "Keithley2450",
    "Keithley2450Handle",
    "parse_error",
    "parse_idn",
    "parse_reading",
    "source_range",
]

#: The 2450's current source ranges (A).
CURRENT_RANGES = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
MAX_CURRENT = 1.05  # A, 105 % of the 1 A range
MAX_VOLTAGE = 210.0  # V, the largest voltage limit the 2450 accepts
READ_COMMAND = ':READ? "defbuffer1",READ,SOUR'
_TECHNIQUES = frozenset({"ocp", "cp"})
_MIN_QUERY_S = 0.2  # shortest I/O timeout a sample query gets (s of wall time)
_MAX_ERRORS = 16  # error-queue entries read at most after a configuration


def source_range(current: float) -> float:
    """The smallest 2450 current range that sources ``current`` (A); up to 105 % of a range."""
    a = abs(float(current))
    for r in CURRENT_RANGES:
        if a <= r * 1.05:
            return r
    raise DeviceError(f"current {current:g} A is beyond the 2450's {MAX_CURRENT:g} A")


def parse_idn(reply: str, address: str = "instrument") -> tuple[str, str, str, str]:
    """``*IDN?`` -> (manufacturer, model, serial, firmware); DeviceError unless it is a Keithley 2450."""
    fields = [f.strip() for f in reply.split(",")]
    if len(fields) != 4 or not all(fields[:2]):
        raise DeviceError(f"{address}: *IDN? answer is not 'maker,model,serial,firmware': {reply[:80]!r}")
    maker, model, serial, firmware = fields
    model_name = model.upper().removeprefix("MODEL").strip()
    if "KEITHLEY" not in maker.upper() or model_name != "2450":
        raise DeviceError(
            f"{address} is a {maker} {model} ({reply[:80]!r}), not a Keithley 2450: "
            "this driver refuses to source current through another model"
        )
    return maker, model, serial, firmware


def parse_error(reply: str, address: str = "instrument") -> tuple[int, str]:
    """``:SYST:ERR?`` -> (code, message), e.g. ``-222,"Parameter data out of range"``."""
    head, sep, rest = reply.partition(",")
    if not sep:
        raise DeviceError(f"{address}: :SYST:ERR? answer is not 'code,\"message\"': {reply[:80]!r}")
    try:
        code = int(head.strip())
    except ValueError:
        raise DeviceError(f"{address}: :SYST:ERR? code is not an integer: {reply[:80]!r}") from None
    msg = rest.strip()
    if len(msg) >= 2 and msg[0] == msg[-1] == '"':
        msg = msg[1:-1]
    elif '"' in msg:
        raise DeviceError(f"{address}: :SYST:ERR? message is not quoted properly: {reply[:80]!r}")
    return code, msg


def parse_reading(reply: str, address: str = "instrument") -> tuple[float, float]:
    """``:READ? "defbuffer1",READ,SOUR`` -> (voltage V, source current A)."""
    parts = reply.split(",")
    if len(parts) != 2:
        raise DeviceError(f"{address}: reading is not 'voltage,current': {reply[:80]!r}")
    return parse_number(parts[0], "measured voltage", address), parse_number(parts[1], "source current", address)


def _fmt(x: float) -> str:
    return f"{x:.6E}"


class Keithley2450:
    """A Keithley 2450 SMU as a :class:`~labctl.drivers.contracts.Potentiostat` (host-side limits).

    ``resource``: VISA resource (``TCPIP::host::5025::SOCKET`` on the LAN, or GPIB/USB);
    ``visa_library``: pyvisa backend (default ``"@py"``); ``link``: a ready
    :class:`~labctl.drivers.visalink.MessageLink` or Transport instead (tests).
    ``current_limit`` (A) and ``voltage_limit`` (V) narrow what the driver will ever ask
    for (the capabilities); ``nplc`` is the integration time in power-line cycles,
    ``four_wire`` turns remote sense on, ``io_timeout`` bounds one command or query (s),
    ``poll_interval`` is the sampling interval when a recording has no ``dt`` (s of
    clock time), ``reset`` sends ``*RST`` before each technique's configuration.
    """

    def __init__(
        self,
        clock: Any,
        *,
        resource: str | None = None,
        visa_library: str = "@py",
        link: Any = None,
        current_limit: float = MAX_CURRENT,
        voltage_limit: float = 21.0,
        nplc: float = 1.0,
        four_wire: bool = False,
        io_timeout: float = 2.0,
        poll_interval: float = 1.0,
        reset: bool = True,
    ) -> None:
        if not 0 < current_limit <= MAX_CURRENT:
            raise ValueError(f"current_limit must be in (0, {MAX_CURRENT}] A, got {current_limit!r}")
        if not 0 < voltage_limit <= MAX_VOLTAGE:
            raise ValueError(f"voltage_limit must be in (0, {MAX_VOLTAGE}] V, got {voltage_limit!r}")
        if not 0.01 <= nplc <= 10:
            raise ValueError(f"nplc must be in [0.01, 10], got {nplc!r}")
        if not io_timeout > 0 or not poll_interval > 0:
            raise ValueError("io_timeout and poll_interval must be positive")
        self.clock = clock
        self.link: MessageLink = as_link(resource=resource, visa_library=visa_library, link=link)
        self.current_limit = float(current_limit)
        self.voltage_limit = float(voltage_limit)
        self.nplc = float(nplc)
        self.four_wire = bool(four_wire)
        self.io_timeout = float(io_timeout)
        self.poll_interval = float(poll_interval)
        self.reset = bool(reset)
        self.capabilities = Capabilities(
            techniques=_TECHNIQUES,
            current_range=(-self.current_limit, self.current_limit),
            voltage_range=(-self.voltage_limit, self.voltage_limit),
            frequency_range=(0.0, 0.0),
            native_limits=False,
            channels=1,
            model="Keithley 2450",
        )
        self.connected = False
        self.idn = ""
        self.output_on = False  # as last commanded/confirmed
        self._handle: Keithley2450Handle | None = None

    # ------------------------------------------------------------------ contract
    def connect(self, timeout: float = CONNECT_TIMEOUT) -> None:
        deadline = time.monotonic() + float(timeout)
        self.link.open(timeout)
        try:
            reply = self.link.query("*IDN?", self._left(deadline))
            parse_idn(reply, self.link.address)
            self.idn = reply
            self.output_on = True  # unknown until confirmed: make it off
            self._output_off(self._left(deadline))
            self.link.write("*CLS", self._left(deadline))
        except BaseException:
            self.link.close()
            raise
        self.connected = True

    def identify(self) -> str:
        return self.idn or "Keithley 2450 (not connected)"

    def start(self, technique: Technique) -> Keithley2450Handle:
        if not self.connected:
            raise DeviceError("Keithley 2450 is not connected: call connect() first")
        if self._handle is not None and self._handle.state is TechniqueState.RUNNING:
            raise DeviceError("a technique is already running on this 2450")
        level, limits, rec = self._validate(technique)
        try:
            for cmd in self._configuration(technique, level, limits):
                self.link.write(cmd, self.io_timeout)
            self.check_errors()
            self.link.write(":OUTP ON", self.io_timeout)
            self.output_on = True
            # the reply also marks when the instrument has carried out the command: t0 is taken after it
            state = self.link.query(":OUTP?", self.io_timeout).strip().upper()
            if state not in ("1", "ON"):
                raise DeviceError(f"{self.link.address}: output did not go on (:OUTP? answered {state!r})")
        except BaseException:
            self.safe_off()
            raise
        handle = Keithley2450Handle(self, technique, level, limits, rec, self.clock.now())
        self._handle = handle
        return handle

    def run(self, technique: Technique) -> Iterator[SampleBlock]:
        """Generator form (blocks until the technique ends); the output goes off when it is closed."""
        handle = self.start(technique)
        try:
            while handle.state is TechniqueState.RUNNING:
                block = handle.read(READ_TIMEOUT)
                if len(block) or block.end is not None:
                    yield block
        finally:
            handle.stop()

    def cell_off(self) -> None:
        """Output off (confirmed); raises DeviceError only if that cannot be confirmed."""
        if not self.connected:
            return
        if self._handle is not None and self._handle.state is TechniqueState.RUNNING:
            self._handle.stop()
            return
        if not self.safe_off():
            raise DeviceError(f"{self.link.address}: could not confirm the 2450 output is off")

    def close(self) -> None:
        try:
            if self.connected:
                if self._handle is not None and self._handle.state is TechniqueState.RUNNING:
                    self._handle.stop()
                else:
                    self.safe_off()
        finally:
            self.connected = False
            self.link.close()

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _left(deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeviceError("connect timed out")
        return left

    def _validate(self, tech: Technique) -> tuple[float, Limits, Recording]:
        kind = getattr(tech, "kind", None)
        if kind not in _TECHNIQUES:
            raise DeviceError(f"the Keithley 2450 driver runs {', '.join(sorted(_TECHNIQUES))}, not {kind!r}")
        if isinstance(tech, ConstantCurrent):
            level, limits = float(tech.current), tech.limits
            if not math.isfinite(level) or abs(level) > self.current_limit:
                raise DeviceError(
                    f"current {level:g} A outside this 2450's range -{self.current_limit:g}..{self.current_limit:g} A"
                )
        elif isinstance(tech, OpenCircuit):
            level, limits = 0.0, Limits(duration=tech.duration)
        else:  # pragma: no cover - kind checked above
            raise DeviceError(f"unsupported technique {tech!r}")
        for name in ("voltage_above", "voltage_below"):
            v = getattr(limits, name)
            if v is not None and abs(v) > self.voltage_limit:
                raise DeviceError(f"{name} {v:g} V is beyond this 2450's voltage limit {self.voltage_limit:g} V")
        if limits.duration is not None and not limits.duration > 0:
            raise DeviceError(f"duration must be positive, got {limits.duration!r}")
        rec = tech.record
        if rec.dt is not None and not rec.dt > 0:
            raise DeviceError(f"recording interval must be positive, got {rec.dt!r}")
        if not rec.max_dt > 0:
            raise DeviceError(f"recording max_dt must be positive, got {rec.max_dt!r}")
        return level, limits, rec

    def compliance(self, limits: Limits) -> float:
        """The voltage limit (V) the SMU enforces: just beyond the technique's cut-offs, else the driver's."""
        cut = [abs(v) for v in (limits.voltage_above, limits.voltage_below) if v is not None]
        if not cut:
            return self.voltage_limit
        return min(self.voltage_limit, max(cut) * 1.1 + 0.1)

    def _configuration(self, tech: Technique, level: float, limits: Limits) -> list[str]:
        rng = source_range(level) if level != 0.0 else CURRENT_RANGES[0]
        cmds = ["*RST"] if self.reset else []
        cmds += [
            "*CLS",
            ":OUTP:SMOD HIMP",
            ":SOUR:FUNC CURR",
            ":SOUR:CURR:RANG:AUTO OFF",
            f":SOUR:CURR:RANG {_fmt(rng)}",
            f":SOUR:CURR {_fmt(level)}",
            f":SOUR:CURR:VLIM {_fmt(self.compliance(limits))}",
            ":SOUR:CURR:READ:BACK ON",
            ':SENS:FUNC "VOLT"',
            ":SENS:VOLT:RANG:AUTO ON",
            f":SENS:VOLT:RSEN {'ON' if self.four_wire else 'OFF'}",
            f":SENS:VOLT:NPLC {self.nplc:g}",
        ]
        return cmds

    def check_errors(self) -> None:
        """Read the error queue; DeviceError with the first code and every message if it was not empty."""
        errors: list[tuple[int, str]] = []
        for _ in range(_MAX_ERRORS):
            code, msg = parse_error(self.link.query(":SYST:ERR?", self.io_timeout), self.link.address)
            if code == 0:
                break
            errors.append((code, msg))
        else:
            raise DeviceError(f"{self.link.address}: the 2450 error queue did not empty after {_MAX_ERRORS} reads")
        if errors:
            text = "; ".join(f"{c} {m!r}" for c, m in errors)
            raise DeviceError(
                f"{self.link.address}: the 2450 reported an error after configuration: {text}", code=str(errors[0][0])
            )

    def _output_off(self, timeout: float) -> None:
        self.link.write(":OUTP OFF", timeout)
        state = self.link.query(":OUTP?", timeout).strip().upper()
        if state not in ("0", "OFF"):
            raise DeviceError(f"{self.link.address}: output still on after :OUTP OFF (:OUTP? answered {state!r})")
        self.output_on = False

    def safe_off(self) -> bool:
        """Output off after anything went wrong: resynchronise, and reopen a lost link once.  True if confirmed."""
        try:
            self.link.discard_input()
            self._output_off(self.io_timeout)
            return True
        except DeviceError:
            pass
        try:
            self.link.close()
            self.link.open(self.io_timeout)
            self._output_off(self.io_timeout)
            return True
        except DeviceError:
            return False

    def read_sample(self, timeout: float) -> tuple[float, float]:
        return parse_reading(self.link.query(READ_COMMAND, timeout), self.link.address)


class Keithley2450Handle:
    """A technique running on a 2450, paced and limited by the host (see the module docstring)."""

    def __init__(
        self, driver: Keithley2450, tech: Technique, level: float, limits: Limits, rec: Recording, t0: float
    ) -> None:
        self.driver = driver
        self.tech = tech
        self.level = level
        self.limits = limits
        self.rec = rec
        self.t0 = float(t0)
        if rec.dt is not None:
            self.interval = min(rec.dt, driver.poll_interval) if rec.dv else rec.dt
        else:
            self.interval = min(driver.poll_interval, rec.max_dt)
        self._k = 0  # samples taken
        self._state = TechniqueState.RUNNING
        self._end: EndInfo | None = None
        self._prev: tuple[float, float, float] | None = None  # last sample (t, v, i)
        self._q = 0.0
        self._short_since: float | None = None
        self._t_rec: float = self.t0  # time of the last recorded sample
        self._level_dv: float | None = None
        self.error: BaseException | None = None

    @property
    def state(self) -> TechniqueState:
        return self._state

    @property
    def end(self) -> EndInfo | None:
        return self._end

    # ------------------------------------------------------------------ sampling
    def _next_time(self) -> float:
        t = self.t0 + (self._k + 1) * self.interval
        d = self.limits.duration
        if d is not None and t > self.t0 + d - 1e-9:
            return self.t0 + d
        return t

    def _skip_missed(self) -> None:
        """Behind schedule (a slow instrument or a busy host): drop the grid points already missed,
        so the next sample is the latest one due (taken late) rather than a burst of catch-up samples."""
        late = self.driver.clock.now() - self._next_time()
        if late > self.interval:
            self._k += int(late // self.interval)

    def _wait_until(self, t: float, deadline: float) -> bool:
        """Let clock time reach ``t``; False if the wall deadline came first."""
        clock = self.driver.clock
        if not math.isfinite(clock.horizon()):
            clock.sleep_until(t)  # virtual time: jumps
            return True
        step = max(clock.horizon() / 5.0, 1e-3)
        while True:
            now = clock.now()
            if now >= t:
                return True
            if time.monotonic() >= deadline:
                return False
            clock.sleep(min(t - now, step))

    def read(self, timeout: float = READ_TIMEOUT) -> SampleBlock:
        if self._state is not TechniqueState.RUNNING:
            return SampleBlock.empty()
        clock = self.driver.clock
        start = time.monotonic()
        deadline = start + float(timeout)
        budget = start + 0.5 * float(timeout)  # stop filling a block after half the timeout
        hor = clock.horizon()
        t_block_end = clock.now() + hor if math.isfinite(hor) else math.inf
        ts: list[float] = []
        vs: list[float] = []
        cs: list[float] = []
        end: EndInfo | None = None
        try:
            while True:
                self._skip_missed()
                t_next = self._next_time()
                if ts and (t_next > t_block_end or time.monotonic() > budget or len(ts) >= 10_000):
                    break
                if not self._wait_until(t_next, deadline):
                    break
                left = deadline - time.monotonic()
                t = max(clock.now(), t_next)
                v, i = self.driver.read_sample(min(self.driver.io_timeout, max(left, _MIN_QUERY_S)))
                self._k += 1
                hit = self._check(t, v, i)
                if hit is not None:
                    reason, t_end, v_end, i_end, detail = hit
                    ts.append(t_end)
                    vs.append(v_end)
                    cs.append(i_end)
                    end = EndInfo(reason, t_end, detail)
                    break
                if self._record(t_next, v):
                    ts.append(t)
                    vs.append(v)
                    cs.append(i)
                self._prev = (t, v, i)
        except BaseException as exc:
            self._state = TechniqueState.FAILED
            self.error = exc
            self.driver.safe_off()
            raise
        if end is not None:
            self._end = end
            self._state = TechniqueState.ENDED
            self._off_or_fail()
        block = SampleBlock(np.array(ts), np.array(vs), np.array(cs))
        block.end = end
        return block

    def _record(self, t: float, v: float) -> bool:
        """Whether the sample due at grid time ``t`` is recorded (dt grid, dv step, max_dt)."""
        rec = self.rec
        keep = False
        if rec.dt is not None and t - self._t_rec >= rec.dt - 1e-6 * self.interval:
            keep = True
        if rec.dv:
            level = math.floor(v / rec.dv)
            if self._level_dv is not None and level != self._level_dv:
                keep = True
            self._level_dv = level
        if t - self._t_rec >= rec.max_dt - 1e-9:
            keep = True
        if keep:
            self._t_rec = t
        return keep

    def _check(self, t: float, v: float, i: float) -> tuple[EndReason, float, float, float, str] | None:
        """The earliest limit this sample crossed: (reason, t, V, I, detail) at the crossing, or None."""
        lim = self.limits
        prev = self._prev
        cands: list[tuple[float, int, EndReason, float, float, str]] = []

        def lerp_at(y0: float, y1: float, level: float) -> float:
            if prev is None or y1 == y0:
                return t
            x = min(max((level - y0) / (y1 - y0), 0.0), 1.0)
            return prev[0] + x * (t - prev[0])

        def values_at(tc: float) -> tuple[float, float]:
            if prev is None or t == prev[0]:
                return v, i
            x = (tc - prev[0]) / (t - prev[0])
            return prev[1] + x * (v - prev[1]), prev[2] + x * (i - prev[2])

        tp, vp, ip = prev if prev is not None else (self.t0, v, i)
        if lim.charge is not None:
            q_new = self._q + 0.5 * (abs(ip) + abs(i)) * (t - tp) if prev is not None else abs(i) * (t - self.t0)
            if q_new >= lim.charge * (1 - 1e-12):
                tc = (
                    lerp_at(self._q, q_new, lim.charge)
                    if prev is not None
                    else self.t0 + (t - self.t0) * lim.charge / q_new
                )
                vc, ic = values_at(tc)
                cands.append((tc, 4, EndReason.CHARGE, vc, ic, f"charge reached {lim.charge:g} C"))
            self._q = q_new
        for level, above, reason, word in (
            (lim.voltage_above, True, EndReason.VOLTAGE_ABOVE, "reached"),
            (lim.voltage_below, False, EndReason.VOLTAGE_BELOW, "fell to"),
        ):
            if level is not None and ((v >= level) if above else (v <= level)):
                crossed_before = prev is not None and ((vp >= level) if above else (vp <= level))
                tc = tp if crossed_before else lerp_at(vp, v, level)
                _, ic = values_at(tc)
                cands.append((tc, 1, reason, float(level), ic, f"voltage {word} {level:g} V"))
        for level, above, reason in (
            (lim.current_above, True, EndReason.CURRENT_ABOVE),
            (lim.current_below, False, EndReason.CURRENT_BELOW),
        ):
            if level is not None and ((abs(i) >= level) if above else (abs(i) <= level)):
                tc = lerp_at(abs(ip), abs(i), level)
                vc, ic = values_at(tc)
                cands.append((tc, 2, reason, vc, ic, f"|current| {'reached' if above else 'fell to'} {level:g} A"))
        if lim.short_circuit is not None:
            low = abs(v) < lim.short_circuit and abs(i) > 0
            if low:
                if self._short_since is None:
                    self._short_since = (
                        t
                        if prev is None or abs(vp) < lim.short_circuit
                        else lerp_at(abs(vp), abs(v), lim.short_circuit)
                    )
                if t >= self._short_since + lim.short_hold - 1e-9:
                    tc = self._short_since + lim.short_hold
                    vc, ic = values_at(tc)
                    cands.append(
                        (
                            tc,
                            3,
                            EndReason.SHORT_CIRCUIT,
                            vc,
                            ic,
                            f"|V| below {lim.short_circuit:g} V for {lim.short_hold:g} s",
                        )
                    )
            else:
                self._short_since = None
        if lim.duration is not None and t >= self.t0 + lim.duration - 1e-9:
            cands.append((self.t0 + lim.duration, 5, EndReason.DURATION, v, i, ""))
        if not cands:
            return None
        tc, _, reason, vc, ic, detail = min(cands, key=lambda c: (c[0], c[1]))
        return reason, tc, vc, ic, detail

    # ------------------------------------------------------------------ ending
    def _off_or_fail(self) -> None:
        try:
            self.driver._output_off(self.driver.io_timeout)
        except DeviceError as exc:
            if not self.driver.safe_off():
                self._state = TechniqueState.FAILED
                raise DeviceError(f"technique ended but the 2450 output could not be confirmed off: {exc}") from exc

    def stop(self) -> None:
        if self._state is TechniqueState.RUNNING:
            self._state = TechniqueState.STOPPED
            if not self.driver.safe_off():
                raise DeviceError(f"{self.driver.link.address}: stopped, but could not confirm the 2450 output is off")
        elif self.driver.output_on and self.driver.connected:
            self.driver.safe_off()
