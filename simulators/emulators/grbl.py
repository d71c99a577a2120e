"""An emulator of a GRBL v1.1 controller driving a dip coater's Z axis, over TCP or a pty.

It speaks the bytes the real controller does: a welcome line on connect, ``ok`` or
``error:N`` for every line, ``<State|MPos:x,y,z|FS:f,0>`` for a ``?`` (real-time,
no line end), ``!`` feed hold, Ctrl-X reset (``ALARM:3`` if it was moving), ``$I``
build info, ``$H`` homing, ``$X`` unlock.  Motion is linear at the commanded feed in
the clock's time, so a virtual clock runs a dip coat in no wall time.  Faults for tests:
``fail_alarm_at_z`` (a hard limit trips there), ``silent`` (answers nothing).
"""

from __future__ import annotations

import os
import re
import socket
import threading
from typing import Any

WELCOME = b"\r\nGrbl 1.1h ['$' for help]\r\n"


class GrblMachine:
    """The controller's state; ``feed(bytes) -> bytes`` is the whole protocol."""

    def __init__(
        self,
        clock: Any,
        *,
        z0: float = 0.0,
        travel: tuple[float, float] = (-120.0, 0.0),
        fail_alarm_at_z: float | None = None,
        silent: bool = False,
        alarm: bool = False,
    ) -> None:
        self.clock = clock
        self.travel = travel
        self.fail_alarm_at_z = fail_alarm_at_z
        self.silent = silent
        self.alarm = alarm
        self._z0, self._z1 = z0, z0
        self._t0 = self._t1 = clock.now()
        self._hold = False
        self._frozen = z0
        self._pending_alarm = b""
        self._feed = 0.0
        self._buf = b""
        self.lines: list[str] = []  # every line received, for tests

    # -------------------------------------------------------------- motion model
    def z(self) -> float:
        now = self.clock.now()
        if self._hold or now >= self._t1 or self._t1 <= self._t0:
            z = self._z1 if not self._hold else self._frozen
        else:
            z = self._z0 + (self._z1 - self._z0) * (now - self._t0) / (self._t1 - self._t0)
        if self.fail_alarm_at_z is not None and not self.alarm:
            lo, hi = sorted((self._z0, z))
            if lo <= self.fail_alarm_at_z <= hi:
                self.alarm = True
                self._z0 = self._z1 = self.fail_alarm_at_z
                self._t1 = now
                self._pending_alarm = b"ALARM:1\r\n"
                return self.fail_alarm_at_z
        return z

    def moving(self) -> bool:
        return not self._hold and self.clock.now() < self._t1

    def state(self) -> str:
        if self.alarm:
            return "Alarm"
        if self._hold:
            return "Hold"
        return "Run" if self.moving() else "Idle"

    # -------------------------------------------------------------- protocol
    def feed(self, data: bytes) -> bytes:
        if self.silent:
            return b""
        out = b""
        for b in data:
            ch = bytes([b])
            if ch == b"?":
                z = self.z()
                out += getattr(self, "_pending_alarm", b"")
                self._pending_alarm = b""
                out += f"<{self.state()}|MPos:0.000,0.000,{z:.3f}|FS:0,0>\r\n".encode()
            elif ch == b"!":
                if self.moving():
                    self._frozen = self.z()
                    self._hold = True
            elif ch == b"~":
                self._hold = False
            elif ch == b"\x18":
                if self.moving() or self._hold:
                    self.alarm = True
                    out += b"ALARM:3\r\n"
                z = self.z() if not self._hold else self._frozen
                self._hold = False
                self._z0 = self._z1 = z
                self._t1 = self.clock.now()
                out += WELCOME
            elif ch == b"\n":
                line = self._buf.decode("ascii", "replace").strip()
                self._buf = b""
                if line:
                    out += self._line(line)
            elif ch != b"\r":
                self._buf += ch
        return out

    def _line(self, line: str) -> bytes:
        self.lines.append(line)
        if line == "$I":
            return b"[VER:1.1h.20190825:labctl-emulator]\r\n[OPT:V,15,128]\r\nok\r\n"
        if line == "$X":
            self.alarm = False
            return b"[MSG:Caution: Unlocked]\r\nok\r\n"
        if line == "$H":
            self.alarm = False
            self._z0 = self._z1 = self.travel[1]
            return b"ok\r\n"
        if self.alarm:
            return b"error:9\r\n"
        words = dict(re.findall(r"([A-Z])(-?[\d.]+)", line.upper()))
        codes = re.findall(r"G(\d+)", line.upper())
        if not codes or any(c not in ("0", "1", "4", "21", "90") for c in codes):
            return b"error:20\r\n"
        if "1" in codes or "0" in codes:
            if "Z" not in words:
                return b"ok\r\n"
            z = float(words["Z"])
            if not self.travel[0] <= z <= self.travel[1]:
                self.alarm = True
                return b"ALARM:2\r\nerror:15\r\n"
            feed = float(words.get("F", getattr(self, "_feed", 0) or 0))
            if feed <= 0:
                return b"error:22\r\n"
            self._feed = feed
            now = self.clock.now()
            start = self.z()
            self._z0, self._z1 = start, z
            self._t0, self._t1 = now, now + abs(z - start) / feed * 60.0
        return b"ok\r\n"


class _Server:
    """``plan``: a :class:`~labctl.simulators.emulators.faults.FaultPlan` counted in replies
    (disconnect, with ``duration`` connections refused; silent; garbage; partial)."""

    def __init__(self, machine: GrblMachine, plan: Any = None) -> None:
        from labctl.simulators.emulators.faults import FaultPlan

        self.machine = machine
        self.plan = plan if plan is not None else FaultPlan()
        self.refused = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def refusing(self) -> bool:
        if self.plan.active("disconnect", self.machine.clock.now()) is not None:
            self.refused += 1
            return True
        return False

    def _faulted(self, out: bytes) -> bytes | None:
        """The reply as the fault plan lets it through; None: drop the link."""
        from labctl.simulators.emulators.faults import GARBAGE

        now = self.machine.clock.now()
        for p in self.plan.tick(now):
            if p.kind == "disconnect" and p.left == p.count:
                p.left = 0
                return None
        if self.plan.active("silent", now) is not None:
            return b""
        for p in self.plan.faults:
            if p.fired_at is not None and p.kind == "garbage" and self.plan.take(p):
                return GARBAGE
            if p.fired_at is not None and p.kind == "partial" and self.plan.take(p):
                return out[: max(1, len(out) // 2)]
        return out

    def _pump(self, recv: Any, send: Any) -> None:
        try:
            self._serve(recv, send)
        except OSError:  # the link closed under us (server stopped, client gone)
            return

    def _serve(self, recv: Any, send: Any) -> None:
        send(WELCOME)
        while not self._stop.is_set():
            try:
                data = recv()
            except (OSError, TimeoutError):
                if self._stop.is_set():
                    return
                continue
            if data is None:
                continue
            if not data:
                return
            out = self.machine.feed(data)
            if out and self.plan:
                faulted = self._faulted(out)
                if faulted is None:
                    return  # the caller closes the connection
                out = faulted
            if out:
                send(out)

    def close(self) -> None:
        self._stop.set()


class GrblTcpServer(_Server):
    """Serves the machine on ``socket://127.0.0.1:PORT`` (one client at a time)."""

    def __init__(self, machine: GrblMachine, port: int = 0, plan: Any = None) -> None:
        super().__init__(machine, plan)
        self._sock = socket.create_server(("127.0.0.1", port))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        t = threading.Thread(target=self._accept, daemon=True, name="grbl-emulator")
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            if self.refusing():
                conn.close()
                continue
            conn.settimeout(0.2)
            with conn:
                self._pump(lambda: _recv(conn), conn.sendall)

    def close(self) -> None:
        super().close()
        self._sock.close()


def _recv(conn: socket.socket) -> bytes | None:
    try:
        return conn.recv(4096)
    except TimeoutError:
        return None


class GrblPtyServer(_Server):
    """Serves the machine on a pseudo-terminal; ``url`` is the slave device path."""

    def __init__(self, machine: GrblMachine) -> None:
        import select
        import tty

        super().__init__(machine)
        self._master, slave = os.openpty()
        tty.setraw(slave)
        self.url = os.ttyname(slave)
        self._slave = slave

        def recv() -> bytes | None:
            r, _, _ = select.select([self._master], [], [], 0.2)
            return os.read(self._master, 4096) if r else None

        t = threading.Thread(
            target=self._pump, args=(recv, lambda b: os.write(self._master, b)), daemon=True, name="grbl-emulator-pty"
        )
        t.start()
        self._threads.append(t)

    def close(self) -> None:
        super().close()
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
