"""A motorised dip coater on a GRBL v1.1 motion controller (serial, any pyserial URL).

Many lab dip coaters are one linear axis driven by a stepper controller; GRBL is the
common open firmware for those, with a documented line protocol: each line sent is
answered ``ok`` or ``error:N``; ``?`` (a real-time character, no line end) asks for a
status report ``<Idle|MPos:x,y,z|FS:feed,speed>``; ``!`` holds the motion and Ctrl-X
(0x18) resets; ``ALARM:N`` lines are pushed when a limit trips.

The sample holder moves on Z (mm, absolute, ``G21 G90``).  ``immerse(bath)`` moves down to
the bath's depth at ``down_speed`` and returns when the controller reports Idle at the
target; ``withdraw()`` moves up to ``clear_z`` at ``up_speed`` (withdrawal speed sets the
film thickness, so it is its own option).  Every wait is bounded: the move's own duration
plus ``margin`` seconds.  On any failure the driver holds and resets the controller (the
holder stops where it is) before it reports the error.  The manual mode of the dip-coat
step stays the fallback when no coater is attached.
"""

from __future__ import annotations

import re
from typing import Any

from .contracts import CONNECT_TIMEOUT, DeviceError
from .transport import Transport, TransportError

STATUS = re.compile(r"<(?P<state>[A-Za-z]+)(?::\d+)?\|(?:MPos|WPos):(?P<x>-?[\d.]+),(?P<y>-?[\d.]+),(?P<z>-?[\d.]+)")
#: error and alarm codes of GRBL v1.1 that a dip coater can meet (others are reported by number)
ERRORS = {
    1: "a G-code word is missing its letter",
    2: "a numeric value is missing or badly formatted",
    9: "G-code is locked out during an alarm or jog (home with $H or unlock with $X)",
    15: "the move exceeds the machine's travel",
    20: "unsupported or invalid G-code command",
    22: "feed rate has not been set",
}
ALARMS = {
    1: "hard limit triggered (the holder hit an end switch)",
    2: "soft limit: the target is outside the machine's travel",
    3: "reset while in motion (position lost: re-home)",
    6: "homing failed (reset during homing)",
    9: "homing failed: limit switch not found",
}
CTRL_X = b"\x18"


class GrblDipCoater:
    """Implements :class:`labctl.drivers.contracts.DipCoater`.

    Options: ``port`` (pyserial URL), ``baudrate`` (115200), ``bath_z`` (mm: one depth for every
    bath, or a mapping bath name -> depth), ``clear_z`` (mm, out of the liquid), ``down_speed`` and
    ``up_speed`` (mm/min), ``home`` (run ``$H`` at connect), ``margin`` (s added to each move's wait).
    """

    def __init__(
        self,
        clock: Any,
        *,
        port: str | None = None,
        baudrate: int = 115200,
        bath_z: float | dict[str, float] = -50.0,
        clear_z: float = 0.0,
        down_speed: float = 300.0,
        up_speed: float = 60.0,
        home: bool = False,
        margin: float = 10.0,
        transport: Transport | None = None,
    ) -> None:
        if transport is None and port is None:
            raise DeviceError("the GRBL dip coater needs a port (a pyserial URL such as /dev/ttyUSB0)")
        if not (down_speed > 0 and up_speed > 0):
            raise DeviceError("down_speed and up_speed must be positive (mm/min)")
        self.clock = clock
        self.port = port
        self.baudrate = int(baudrate)
        self.bath_z = bath_z
        self.clear_z = float(clear_z)
        self.down_speed = float(down_speed)
        self.up_speed = float(up_speed)
        self.home = bool(home)
        self.margin = float(margin)
        self._transport = transport
        self.version = ""
        self.z: float | None = None

    # ------------------------------------------------------------------ link
    def connect(self, timeout: float = CONNECT_TIMEOUT) -> None:
        if self._transport is None:
            from .transports import SerialTransport

            self._transport = SerialTransport(str(self.port), baudrate=self.baudrate)
        tr = self._transport
        tr.open(timeout)
        tr.discard_input()
        lines = self._command("$I", timeout)
        ver = next((x for x in lines if x.startswith("[VER:")), None)
        if ver is None or not ver[5:].startswith("1."):
            raise DeviceError(f"{tr.address} did not answer as GRBL v1.x to $I (got {lines!r})")
        self.version = ver[5:].rstrip("]").split(":")[0]
        state, z = self.status(timeout)
        if state == "Alarm":
            if not self.home:
                raise DeviceError(
                    f"GRBL at {tr.address} is in alarm (position unknown): "
                    f"home it (option home: true) or clear it with $X at the machine"
                )
        if self.home:
            self._command("$H", timeout + 120.0)
        self._command("G21 G90", timeout)
        self.z = self.status(timeout)[1]

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def release(self) -> None:
        self.close()

    def identify(self) -> str:
        return f"GRBL {self.version} dip coater at {self._transport.address if self._transport else self.port}"

    # ------------------------------------------------------------------ protocol
    def _tr(self) -> Transport:
        if self._transport is None:
            raise DeviceError("the dip coater is not connected: call connect() first")
        return self._transport

    def _command(self, line: str, timeout: float) -> list[str]:
        """Send one line; the lines received up to its ``ok``.  ``error:N``/``ALARM:N`` raise."""
        tr = self._tr()
        tr.write(line.encode("ascii") + b"\n", timeout)
        got: list[str] = []
        deadline = self.clock_wall() + timeout
        while True:
            left = deadline - self.clock_wall()
            if left <= 0:
                raise DeviceError(f"GRBL did not acknowledge {line!r} within {timeout:g} s")
            reply = self._line(left)
            if reply == "ok":
                return got
            self._raise_if_fault(reply, line)
            if reply and not reply.startswith(("<", "Grbl ")):
                got.append(reply)

    def _line(self, timeout: float) -> str:
        raw = self._tr().read_line(timeout)
        try:
            return raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise DeviceError(f"GRBL sent bytes that are not ASCII: {raw[:40]!r}") from None

    def _raise_if_fault(self, reply: str, doing: str) -> None:
        m = re.fullmatch(r"(error|ALARM):(\d+)", reply)
        if m:
            code = int(m.group(2))
            table = ERRORS if m.group(1) == "error" else ALARMS
            what = table.get(code, "see the GRBL v1.1 code table")
            raise DeviceError(f"GRBL {m.group(1)} {code} on {doing!r}: {what}", code=f"{m.group(1)}:{code}")

    def status(self, timeout: float = 2.0) -> tuple[str, float]:
        """``(state, z)`` from a real-time status report."""
        tr = self._tr()
        tr.write(b"?", timeout)
        deadline = self.clock_wall() + timeout
        while self.clock_wall() < deadline:
            reply = self._line(max(0.01, deadline - self.clock_wall()))
            self._raise_if_fault(reply, "?")
            m = STATUS.match(reply)
            if m:
                return m.group("state"), float(m.group("z"))
        raise DeviceError(f"GRBL sent no status report within {timeout:g} s")

    @staticmethod
    def clock_wall() -> float:
        import time

        return time.monotonic()

    # ------------------------------------------------------------------ motion
    def _move(self, z: float, feed: float) -> None:
        start = self.z if self.z is not None else self.status()[1]
        duration = abs(z - start) / feed * 60.0
        try:
            self._command(f"G1 Z{z:.3f} F{feed:.1f}", 5.0)
            t_end = self.clock.now() + duration + self.margin
            while True:
                state, now_z = self.status()
                if state == "Idle" and abs(now_z - z) < 0.005:
                    self.z = now_z
                    return
                if state in ("Alarm", "Door", "Hold"):
                    raise DeviceError(f"GRBL stopped the move to Z{z:g} in state {state} at Z{now_z:g}")
                if self.clock.now() > t_end:
                    raise DeviceError(
                        f"the move to Z{z:g} did not finish within {duration + self.margin:.0f} s "
                        f"(at Z{now_z:g}, {state})"
                    )
                self.clock.sleep(0.2)
        except (DeviceError, TransportError):
            self.stop()
            raise

    def stop(self) -> None:
        """Hold the motion and reset the controller: the holder stops where it is."""
        try:
            tr = self._tr()
            tr.write(b"!", 1.0)
            tr.write(CTRL_X, 1.0)
        except Exception:
            pass

    def _depth(self, bath: str) -> float:
        if isinstance(self.bath_z, dict):
            if bath not in self.bath_z:
                raise DeviceError(f"no depth configured for bath {bath!r} (bath_z has {', '.join(self.bath_z)})")
            return float(self.bath_z[bath])
        return float(self.bath_z)

    def immerse(self, bath: str) -> None:
        self._move(self._depth(bath), self.down_speed)

    def withdraw(self) -> None:
        self._move(self.clear_z, self.up_speed)
