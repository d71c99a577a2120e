"""PalmSens MethodSCRIPT potentiostats (EmStat4 LR/HR, EmStat Pico) behind the Potentiostat contract.

``connect`` opens the link, aborts whatever script a previous session left running, and
identifies the device (``t``: device id and firmware, ``i``: serial number, ``v``:
MethodSCRIPT version); the device id fixes the capabilities (no galvanostatic mode on the
Pico).  ``start(technique)`` compiles the technique (:mod:`.compiler`), sends it and returns
a :class:`MethodScriptHandle` whose ``read(timeout)`` parses the reply stream: one sample
per data package, stamped ``anchor + device time`` (``timer_get`` in every package; the
anchor is the driver clock at technique start).  Every ``!XXXX`` reply becomes a
:class:`~.protocol.MethodScriptError` (a DeviceError with code and meaning).  A line that is
not MethodSCRIPT (garbage bytes, a line cut short and glued to the next) is rejected and
counted (``handle.rejected``, ``handle.rejected_lines``): the parser resynchronises at the
next line end and the technique goes on; ``MAX_REJECTED`` lines in a row raise
:class:`~.protocol.MethodScriptProtocolError` (a link that only sends garbage).  A device
silent for longer than the
technique's longest gap a DeviceTimeout.  On stop and on any failure the driver sends the
abort (``\\n`` then ``Z``) and a ``cell_off`` script before it gives up, each with a
bounded timeout.  Status bits (overload, underload, ...) become :class:`DeviceEvent` s on
``handle.events``.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.drivers.contracts import Capabilities, DeviceError, DeviceTimeout, TechniqueState
from labctl.drivers.methodscript.compiler import END_TAG, CompiledScript, compile_technique
from labctl.drivers.methodscript.protocol import (
    MethodScriptProtocolError,
    Package,
    error_from_reply,
    parse_reply,
)
from labctl.drivers.techniques import (
    ConstantCurrent,
    ConstantPotential,
    CyclicSweep,
    EndInfo,
    EndReason,
    Impedance,
    LinearSweep,
    SampleBlock,
    Technique,
)
from labctl.drivers.transport import Transport, TransportTimeout
from labctl.drivers.transports import SerialTransport

__all__ = ["MODELS", "DeviceEvent", "MethodScriptHandle", "MethodScriptPotentiostat", "ModelInfo"]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    galvanostat: bool
    max_current: float  # A, largest current range
    voltage_range: tuple[float, float]  # V
    frequency_range: tuple[float, float]  # Hz
    baudrate: int


#: Device ids (the 6 characters after ``t``) this driver runs, with their limits.
MODELS: dict[str, ModelInfo] = {
    "es4_lr": ModelInfo("EmStat4 LR", True, 0.03, (-3.0, 3.0), (1e-5, 2e5), 921600),
    "es4_hr": ModelInfo("EmStat4 HR", True, 0.2, (-6.0, 6.0), (1e-5, 2e5), 921600),
    "espico": ModelInfo("EmStat Pico", False, 0.003, (-1.7, 2.0), (0.016, 2e5), 230400),
}


@dataclass(frozen=True)
class DeviceEvent:
    """A status flag the device set on a variable: ``kind`` is ``overload``, ``underload``,
    ``overload_warning`` or ``timing_error``; ``t`` the sample's clock time."""

    t: float
    kind: str
    variable: str
    range_index: int | None


_COMMAND_TIMEOUT = 2.0  # s wall, one command's reply
_ERROR_PAUSE = 0.06  # s wall the device wants after any `!` reply


def _capabilities(info: ModelInfo, max_current: float | None) -> Capabilities:
    kinds = {"ocp", "ca", "lsv", "cv", "eis"} | ({"cp"} if info.galvanostat else set())
    imax = min(info.max_current, max_current) if max_current else info.max_current
    return Capabilities(
        techniques=frozenset(kinds),
        current_range=(-imax, imax),
        voltage_range=info.voltage_range,
        frequency_range=info.frequency_range,
        native_limits=True,
        channels=1,
        model=info.name,
    )


class MethodScriptPotentiostat:
    """A MethodSCRIPT device on ``port`` (a pyserial URL or device path) or on a given ``transport``.

    ``model``: the expected device id (``es4_lr``, ``es4_hr``, ``espico``); capabilities are
    known before ``connect`` and ``connect`` fails when another device answers.
    ``max_current``: cap the current range the scripts use (A).  ``silence_timeout``: wall
    seconds without any reply after which a running technique fails (default: from the
    technique's longest gap between packages, at least 5 s).
    """

    def __init__(
        self,
        clock: Any,
        *,
        port: str | None = None,
        transport: Transport | None = None,
        baudrate: int | None = None,
        model: str | None = None,
        max_current: float | None = None,
        command_timeout: float = _COMMAND_TIMEOUT,
        silence_timeout: float | None = None,
    ) -> None:
        if transport is None and port is None:
            raise DeviceError(
                "MethodSCRIPT driver needs a port (e.g. /dev/ttyACM0 or socket://host:port) or a transport"
            )
        if model is not None and model not in MODELS:
            raise DeviceError(f"unknown MethodSCRIPT device id {model!r}; supported: {', '.join(MODELS)}")
        self.clock = clock
        self.port = port
        self.baudrate = baudrate
        self.transport: Transport | None = transport
        self.model = model
        self.max_current = max_current
        self.command_timeout = float(command_timeout)
        self.silence_timeout = silence_timeout
        self.capabilities = (
            _capabilities(MODELS[model], max_current)
            if model
            else Capabilities(techniques=frozenset(), model="MethodSCRIPT (not connected)")
        )
        self.device_id: str | None = None
        self.firmware = ""
        self.serial_number = ""
        self.version = ""
        self.connected = False
        self.safe_state_confirmed = True  # False when the last cell-off could not be confirmed
        self._handle: MethodScriptHandle | None = None

    # ------------------------------------------------------------------ link
    def _link(self) -> Transport:
        if self.transport is None or not self.connected:
            raise DeviceError("MethodSCRIPT device is not connected: call connect() first")
        return self.transport

    def connect(self, timeout: float = 10.0) -> None:
        if self.transport is None:
            info = MODELS.get(self.model or "")
            self.transport = SerialTransport(
                str(self.port), baudrate=self.baudrate or (info.baudrate if info else 921600)
            )
        deadline = time.monotonic() + timeout
        self.transport.open(timeout)
        self.connected = True
        try:
            self._abort(min(self.command_timeout, max(0.1, deadline - time.monotonic())))
            lines = self._command("t", 2, deadline)
            if len(lines[0]) < 7 or lines[1] != "R*":
                raise MethodScriptProtocolError(f"unexpected firmware reply {lines!r}")
            dev_id, self.firmware = lines[0][1:7], lines[0][7:]
            if dev_id not in MODELS:
                raise DeviceError(f"device id {dev_id!r} is not supported by this driver ({', '.join(MODELS)})")
            if self.model is not None and dev_id != self.model:
                raise DeviceError(f"expected a {self.model} but {dev_id} answered on {self.transport.address}")
            self.device_id = dev_id
            self.serial_number = self._command("i", 1, deadline)[0][1:]
            self.version = self._command("v", 1, deadline)[0][1:]
            self.capabilities = _capabilities(MODELS[dev_id], self.max_current)
        except BaseException:
            self.connected = False
            self.transport.close()
            raise

    def _command(self, cmd: str, n_lines: int, deadline: float) -> list[str]:
        """Send a one-letter command and read ``n_lines`` reply lines (first one echoes ``cmd``)."""
        link = self._link()
        link.write(cmd.encode("ascii") + b"\n", self.command_timeout)
        out: list[str] = []
        while len(out) < n_lines:
            remaining = min(self.command_timeout, deadline - time.monotonic())
            if remaining <= 0:
                raise DeviceTimeout(f"no reply to {cmd!r} from {link.address}")
            raw = link.read_line(remaining)
            try:
                line = raw.decode("ascii").rstrip("\n").rstrip("\r")
            except UnicodeDecodeError:
                raise MethodScriptProtocolError(f"non-ASCII reply to {cmd!r}: {raw[:60]!r}") from None
            err = error_from_reply(line)
            if err is not None:
                time.sleep(_ERROR_PAUSE)  # link-level pause the device needs (wall time)
                raise err
            if not out and not line.startswith(cmd):
                raise MethodScriptProtocolError(f"reply {line[:60]!r} to {cmd!r} does not echo it")
            out.append(line)
        return out

    def identify(self) -> str:
        if self.device_id is None:
            return "PalmSens MethodSCRIPT device (not connected)"
        return (
            f"PalmSens {MODELS[self.device_id].name} ({self.device_id}), serial {self.serial_number}, "
            f"firmware {self.firmware}, MethodSCRIPT {self.version}"
        )

    # ------------------------------------------------------------------ safety
    def _abort(self, timeout: float) -> bool:
        """``\\n`` then ``Z``; read until the device answers ``Z`` / ``Z!0006``.  True when it did."""
        link = self._link()
        link.write(b"\nZ\n", timeout)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                raw = link.read_line(remaining)
            except TransportTimeout:
                return False
            if raw.startswith(b"Z"):
                if b"!" in raw:
                    time.sleep(_ERROR_PAUSE)
                link.discard_input()
                return True

    def _cell_off_script(self, timeout: float) -> bool:
        """Run ``cell_off`` as a script; True when the device confirmed (ack and end of script)."""
        link = self._link()
        link.write(b"e\ncell_off\n\n", timeout)
        deadline = time.monotonic() + timeout
        acked = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                reply = parse_reply(link.read_line(remaining))
            except (TransportTimeout, MethodScriptProtocolError):
                return False
            if reply.kind == "error":
                time.sleep(_ERROR_PAUSE)
                return False
            if reply.kind == "ack":
                acked = True
            elif reply.kind == "end" and acked:
                return True

    def _make_safe(self) -> bool:
        """Abort and turn the cell off, each within the command timeout; never raises."""
        if self.transport is None or not self.connected:
            self.safe_state_confirmed = False
            return False
        ok = False
        try:
            self._abort(self.command_timeout)
            ok = self._cell_off_script(self.command_timeout)
        except DeviceError:
            ok = False
        self.safe_state_confirmed = ok
        return ok

    def cell_off(self) -> None:
        """Stop a running technique (abort) and run ``cell_off``; best effort, never raises
        (``safe_state_confirmed`` tells whether the device confirmed)."""
        if self._handle is not None and self._handle.state is TechniqueState.RUNNING:
            self._handle.stop()
            return
        self._make_safe()

    def reconnect(self, timeout: float = 10.0) -> None:
        """Drop the link without talking to the device (it is broken) and connect again:
        ``connect`` aborts a script the device still runs and identifies it."""
        if self._handle is not None and self._handle.state is TechniqueState.RUNNING:
            self._handle._state = TechniqueState.FAILED
        self.connected = False
        if self.transport is not None:
            with contextlib.suppress(DeviceError):
                self.transport.close()
        self.connect(timeout)

    def close(self) -> None:
        if self.connected:
            self.cell_off()
            if self.transport is not None:
                self.transport.close()
        self.connected = False

    # ------------------------------------------------------------------ techniques
    def _validate(self, tech: Technique) -> None:
        caps = self.capabilities
        if tech.kind not in caps.techniques:
            if tech.kind == "cp":
                raise DeviceError(f"{caps.model} has no galvanostatic mode: constant current is not available")
            raise DeviceError(f"unsupported technique {tech.kind!r} on {caps.model}")
        lo, hi = caps.current_range
        if isinstance(tech, ConstantCurrent) and not lo <= tech.current <= hi:
            raise DeviceError(f"current {tech.current:g} A outside the range {lo:g}..{hi:g} A of {caps.model}")
        vlo, vhi = caps.voltage_range
        pots: list[float] = []
        if isinstance(tech, ConstantPotential) and not tech.vs_ocp:
            pots = [tech.potential]
        elif isinstance(tech, LinearSweep) and not tech.vs_ocp:
            pots = [tech.start, tech.end]
        elif isinstance(tech, CyclicSweep) and not tech.vs_ocp:
            pots = [tech.start, tech.vertex1, tech.vertex2]
        for p in pots:
            if not vlo <= p <= vhi:
                raise DeviceError(f"potential {p:g} V outside the range {vlo:g}..{vhi:g} V of {caps.model}")
        if isinstance(tech, Impedance):
            flo, fhi = caps.frequency_range
            for f in (tech.f_start, tech.f_end):
                if not flo <= f <= fhi:
                    raise DeviceError(f"frequency {f:g} Hz outside the range {flo:g}..{fhi:g} Hz of {caps.model}")
        rec = getattr(tech, "record", None)
        if rec is not None and rec.dt is not None and not rec.dt > 0:
            raise DeviceError(f"recording interval must be positive, got {rec.dt!r}")

    def compile(self, technique: Technique) -> CompiledScript:
        """The script ``start`` would send (for inspection and tests)."""
        self._validate(technique)
        imax = self.capabilities.current_range[1]
        return compile_technique(technique, max_current=imax, galvanostat="cp" in self.capabilities.techniques)

    def start(self, technique: Technique) -> MethodScriptHandle:
        link = self._link()
        if self._handle is not None and self._handle.state is TechniqueState.RUNNING:
            raise DeviceError("a technique is already running on this channel")
        script = self.compile(technique)
        anchor = self.clock.now()
        rate = float(getattr(self.clock, "factor", 1.0))
        silence = self.silence_timeout
        if silence is None:
            silence = max(5.0, (3.0 * script.interval + 5.0) / rate)
        try:
            link.write(script.text().encode("ascii"), self.command_timeout)
        except DeviceError:
            self._make_safe()
            raise
        self._handle = MethodScriptHandle(self, script, anchor, silence)
        return self._handle


class MethodScriptHandle:
    """A technique running as a script on the device (the TechniqueHandle contract)."""

    MAX_BLOCK = 10_000  # samples per read
    MAX_REJECTED = 20  # malformed lines in a row before the link counts as broken

    def __init__(self, dev: MethodScriptPotentiostat, script: CompiledScript, anchor: float, silence: float) -> None:
        self._dev = dev
        self.script = script
        self.anchor = anchor
        self.silence = silence
        self._state = TechniqueState.RUNNING
        self._end: EndInfo | None = None
        self._reason: EndReason | None = None
        self._loops = 0
        self._pending_error: DeviceError | None = None
        self._last = time.monotonic()
        self._t_last = anchor
        self.ocp: float | None = None  # the probed open-circuit potential of a vs_ocp technique
        self.events: list[DeviceEvent] = []
        self.texts: list[str] = []  # send_string lines other than the end tags
        self.rejected = 0  # malformed lines skipped (garbage, partial lines)
        self.rejected_lines: list[bytes] = []  # the first few, for the record
        self._rejected_in_row = 0

    @property
    def state(self) -> TechniqueState:
        return self._state

    @property
    def end(self) -> EndInfo | None:
        return self._end

    def drain_events(self) -> list[DeviceEvent]:
        """The status events collected since the last call."""
        out, self.events = self.events, []
        return out

    # ------------------------------------------------------------------ reading
    def read(self, timeout: float = 5.0) -> SampleBlock:
        if self._pending_error is not None:
            err, self._pending_error = self._pending_error, None
            raise err
        if self._state is not TechniqueState.RUNNING:
            return SampleBlock.empty()
        link = self._dev._link()
        deadline = time.monotonic() + max(0.0, timeout)
        rows: list[tuple[float, ...]] = []
        temps: list[float] = []
        try:
            while len(rows) < self.MAX_BLOCK:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    # once samples are in hand, hand them over as soon as the line goes quiet:
                    # a sample reaches the engine within milliseconds, not at the end of the timeout
                    raw = link.read_line(min(remaining, 0.002 if rows else 0.25))
                except TransportTimeout:
                    if rows:
                        break
                    if time.monotonic() - self._last > self.silence:
                        raise DeviceTimeout(
                            f"MethodSCRIPT device on {link.address} sent nothing for "
                            f"{self.silence:g} s while running {self.script.kind}"
                        ) from None
                    continue
                self._last = time.monotonic()
                if self._handle_line(raw, rows, temps):
                    break
        except DeviceError as exc:
            self._state = TechniqueState.FAILED
            self._dev._make_safe()
            if rows:
                self._pending_error = exc
            else:
                raise
        return self._block(rows, temps)

    def _handle_line(self, raw: bytes, rows: list[tuple[float, ...]], temps: list[float]) -> bool:
        """Process one reply line; True when the script has finished.  A malformed line is
        rejected and counted (the next line end resynchronises the parser)."""
        n_rows = len(rows)
        try:
            return self._parse_line(raw, rows, temps)
        except MethodScriptProtocolError as exc:
            del rows[n_rows:]
            del temps[n_rows:]
            self.rejected += 1
            self._rejected_in_row += 1
            if len(self.rejected_lines) < 10:
                self.rejected_lines.append(raw[:120])
            if self._rejected_in_row >= self.MAX_REJECTED:
                raise MethodScriptProtocolError(
                    f"{self._rejected_in_row} malformed lines in a row from {self._dev._link().address} (last: {exc})"
                ) from None
            return False

    def _parse_line(self, raw: bytes, rows: list[tuple[float, ...]], temps: list[float]) -> bool:
        reply = parse_reply(raw)
        self._rejected_in_row = 0
        items = (reply, *reply.extra) if reply.kind == "ack" else (reply,)
        for item in items:
            kind = item.kind
            if kind == "loop_start":
                self._loops += 1
            elif kind == "package" and item.package is not None:
                if self.script.probe_ocp and self._loops <= 1:
                    v = item.package.get("ab") or item.package.get("da")
                    self.ocp = None if v is None else v.value
                else:
                    self._sample(item.package, rows, temps)
            elif kind == "text":
                if item.text.startswith(END_TAG + " "):
                    self._reason = EndReason(item.text[len(END_TAG) + 1 :])
                else:
                    self.texts.append(item.text)
            elif kind == "error" and item.error is not None:
                time.sleep(_ERROR_PAUSE)
                raise item.error
            elif kind == "end":
                self._finish(rows)
                return True
            elif kind == "abort":
                raise DeviceError("the MethodSCRIPT device aborted the script by itself (nobody asked it to)")
        return False

    def _sample(self, pkg: Package, rows: list[tuple[float, ...]], temps: list[float]) -> None:
        tv = pkg.get("eb")
        t = self.anchor + tv.value if tv is not None and math.isfinite(tv.value) else self._dev.clock.now()
        nan = math.nan
        if self.script.kind == "eis":
            f, zr, zi = pkg.get("dc"), pkg.get("cc"), pkg.get("cd")
            if f is None or zr is None or zi is None:
                raise MethodScriptProtocolError(f"EIS package without dc/cc/cd: {pkg}")
            e_dc = (
                self.script.e_dc
                if self.script.e_dc is not None
                else ((self.ocp if self.ocp is not None else nan) + self.script.e_dc_offset)
            )
            rows.append((t, e_dc, nan, f.value, zr.value, zi.value))
        else:
            v = pkg.get("ab") or pkg.get("da")
            c = pkg.get("ba") or pkg.get("db")
            if v is None and c is None:
                raise MethodScriptProtocolError(f"package without potential or current: {pkg}")
            rows.append((t, v.value if v else nan, c.value if c else nan))
        temp = pkg.get("ed")
        temps.append(temp.value if temp is not None else nan)
        self._t_last = t
        for var in pkg.variables:
            for flag in var.flags:
                self.events.append(DeviceEvent(t, flag, var.type, var.range))

    def _finish(self, rows: list[tuple[float, ...]]) -> None:
        kind = self.script.kind
        if self._reason is not None:
            reason, detail = self._reason, f"the instrument ended the step: {self._reason.value.replace('_', ' ')}"
        elif kind in ("ocp", "cp", "ca"):
            reason, detail = EndReason.DURATION, ""
        else:
            reason, detail = EndReason.COMPLETE, "spectrum complete" if kind == "eis" else "sweep complete"
        self._end = EndInfo(reason, self._t_last, detail)
        self._state = TechniqueState.ENDED
        self._dev.safe_state_confirmed = True  # the script's on_finished turned the cell off

    def _block(self, rows: list[tuple[float, ...]], temps: list[float]) -> SampleBlock:
        if not rows:
            block = SampleBlock.empty()
        else:
            arr = np.array(rows, dtype=float)
            tarr = np.array(temps, dtype=float)
            kw: dict[str, Any] = {}
            if not np.all(np.isnan(tarr)):
                kw["temperature"] = tarr
            if self.script.kind == "eis":
                kw.update(frequency=arr[:, 3], z_re=arr[:, 4], z_im=arr[:, 5])
            block = SampleBlock(arr[:, 0], arr[:, 1], arr[:, 2], **kw)
        if self._state is TechniqueState.ENDED and self._pending_error is None:
            block.end = self._end
        return block

    def stop(self) -> None:
        """Abort the script and turn the cell off (idempotent; after an error the cell was already made safe)."""
        if self._state is TechniqueState.RUNNING:
            self._state = TechniqueState.STOPPED
            self._dev._make_safe()
