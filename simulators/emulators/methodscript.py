"""An emulated PalmSens MethodSCRIPT device (EmStat4 LR/HR, EmStat Pico) on a simulated cell.

It serves the MethodSCRIPT wire protocol over a pty (:meth:`MethodScriptEmulator.serve_pty`,
a device path for pyserial) or TCP on 127.0.0.1 (:meth:`serve_tcp`, ``socket://127.0.0.1:PORT``)
and answers like the device: the first character of a command is echoed, ``t`` gives the
firmware line and ``R*``, ``i`` the serial number, ``v`` the MethodSCRIPT version, ``Z``
aborts (``Z!0006`` when nothing runs), unknown commands give ``!0003``, lines over 128
characters ``!0008``.  ``e`` loads a script up to an empty line, checks it (``e!XXXX: Line L,
Col C`` for what the device rejects: unknown commands, decimal literals, nested measurement
loops, chronopotentiometry on a Pico) and runs it: ``e``, ``Mxxxx``, one ``P...`` line per
``pck_end``, ``T...`` for ``send_string``, ``*`` at the end of each measurement loop and an
empty line when the script is done.

The interpreter covers the MethodSCRIPT that :mod:`labctl.drivers.methodscript` emits:
``var``/``store_var``/``copy_var``/``add_var``/``sub_var``/``mul_var``/``div_var``,
``if``/``elseif``/``else``/``endif``, ``loop``/``endloop``/``breakloop``, ``timer_start``/
``timer_get``, ``pck_*``, ``send_string``, ``wait``, ``cell_on``/``cell_off``, set-up commands
(accepted, ranges used for the overload status bit), ``on_finished:`` and the measurement
loops ``meas_loop_ocp``, ``_cp``, ``_ca``, ``_lsv``, ``_cv`` (``nscans``) and ``_eis``.  The
physics is the simulator's cell model (:func:`labctl.simulators.cells.simulate_cell`), the
same calls :class:`~labctl.simulators.potentiostat.SimulatedPotentiostat` makes, so a
technique run through driver and emulator matches the in-process simulator (noise off).
Points are paced by ``clock`` (a WallClock, or a ScaledClock for accelerated runs); the
device time in packages (``timer_get``) is exact, the pacing is best effort.

:class:`Faults` injects failures after N packages: silence, garbage bytes, an ``!XXXX``
error mid-loop, a disconnect (the script keeps running on the "instrument").  ``plan``
(a :class:`~labctl.simulators.emulators.faults.FaultPlan`, counted in data packages) adds
faults that last and heal: a disconnect for ``duration`` s (connections refused meanwhile),
a silence for ``duration`` s, garbage and partial lines, an ``!XXXX`` error.  A new TCP
connection takes over a script still running from a connection that dropped, so the host's
abort (``Z``) reaches it, as on the device.  On a pty a disconnect closes the pty for good
(a new device path would be a new cable): rehearse reconnection over TCP.
"""

from __future__ import annotations

import errno
import math
import os
import re
import select
import socket
import threading
import tty
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl.core.clock import WallClock
from labctl.drivers.methodscript.protocol import MAX_LINE, encode_value, parse_literal
from labctl.simulators.cells import CellModel, simulate_cell
from labctl.simulators.emulators.faults import GARBAGE, FaultPlan
from labctl.simulators.potentiostat import CA_BLOCK_S, ROOM_TEMPERATURE, SimulatedPotentiostat
from labctl.simulators.presets import load_preset

__all__ = ["DEVICES", "DeviceSpec", "Faults", "MethodScriptEmulator"]


@dataclass(frozen=True)
class DeviceSpec:
    device_id: str  # the 6 characters after `t`
    firmware: str
    serial: str
    galvanostat: bool
    max_current: float  # A
    max_potential: float  # V


DEVICES: dict[str, DeviceSpec] = {
    "es4_lr": DeviceSpec("es4_lr", "1500#Mar 12 2026 14:28:01", "ES4LR20B0008", True, 0.03, 3.0),
    "es4_hr": DeviceSpec("es4_hr", "1500#Mar 12 2026 14:28:01", "ES4HR21A0012", True, 0.2, 6.0),
    "espico": DeviceSpec("espico", "1207#Feb 02 2026 10:11:12", "ESPICO2104", False, 0.003, 2.0),
}
VERSION = "01.09.00"

# Measurement loop codes the emulator prints after `M` (only lsv's 0000 is from PalmSens' example).
_LOOP_CODES = {"lsv": "0000", "cv": "0002", "ca": "0007", "ocp": "0008", "eis": "000A", "cp": "000B"}
_OUT_TYPES = {  # variable types a measurement loop assigns to its outputs
    "ocp": ("ab",),
    "cp": ("ab", "ba"),
    "ca": ("da", "ba"),
    "lsv": ("da", "ba"),
    "cv": ("da", "ba"),
    "eis": ("dc", "cc", "cd"),
}
_N_ARGS = {"ocp": (3, 3), "cp": (5, 5), "ca": (5, 5), "lsv": (6, 6), "cv": (7, 8), "eis": (8, 8)}
_SETUP = {
    "set_pgstat_chan",
    "set_pgstat_mode",
    "set_max_bandwidth",
    "set_range",
    "set_autoranging",
    "set_range_minmax",
    "set_acquisition_frac_autoadjust",
    "set_e",
    "set_i",
    "cell_on",
    "cell_off",
    "wait",
    "timer_start",
    "timer_get",
    "var",
    "store_var",
    "copy_var",
    "add_var",
    "sub_var",
    "mul_var",
    "div_var",
    "pck_start",
    "pck_add",
    "pck_end",
    "send_string",
    "breakloop",
    "endloop",
    "loop",
    "if",
    "elseif",
    "else",
    "endif",
    "on_finished:",
}
_ONLY_GALVANOSTAT = {"meas_loop_cp", "meas_loop_geis", "meas_loop_lsp"}
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
_CHUNK = 1024  # points evaluated on the cell model at a time
_ADVANCE_EVERY = 100_000  # points after which a long loop advances the cell state


@dataclass
class Faults:
    """Failures injected after the N-th data package (counted over the emulator's life)."""

    silent_after: int | None = None  # stop answering anything (a hung device)
    garbage_after: int | None = None  # send ``garbage`` once, then carry on
    garbage: bytes = b"\x00\x13#\xff garbage\xfe\n"
    error_after: int | None = None  # reply ``!error_code`` mid-loop; the script ends, cell off
    error_code: str = "7FFF"
    disconnect_after: int | None = None  # drop the link; the script keeps running on the device
    status_after: int | None = None  # from this package on, currents carry ``status_bits``
    status_bits: int = 2


class _ScriptError(Exception):
    def __init__(self, code: str, line: int = 0, col: int = 0) -> None:
        super().__init__(code)
        self.code, self.line, self.col = code, line, col


class _Break(Exception):
    pass


class _Abort(Exception):
    pass


@dataclass
class _Stmt:
    line: int
    words: list[str]
    body: list[_Stmt] = field(default_factory=list)
    branches: list[tuple[list[str] | None, list[_Stmt]]] = field(default_factory=list)  # if/elseif/else

    @property
    def cmd(self) -> str:
        return self.words[0]


# --------------------------------------------------------------------------- links
class _Conn:
    def send(self, data: bytes) -> bool: ...

    def recv(self, timeout: float) -> bytes | None: ...

    def close(self) -> None: ...


class _PtyConn(_Conn):
    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.closed = False

    def send(self, data: bytes) -> bool:
        view = memoryview(data)
        while view and not self.closed:
            try:
                n = os.write(self.master, view)
                view = view[n:]
            except BlockingIOError:
                select.select([], [self.master], [], 0.05)
            except OSError:
                return False
        return not self.closed

    def recv(self, timeout: float) -> bytes | None:
        if self.closed:
            return None
        r, _, _ = select.select([self.master], [], [], timeout)
        if not r:
            return b""
        try:
            return os.read(self.master, 4096)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:  # no one has the slave open right now
                return b""
            return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for fd in (self.master, self.slave):
                try:
                    os.close(fd)
                except OSError:
                    pass


class _SockConn(_Conn):
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.settimeout(0.05)
        self.closed = False

    def send(self, data: bytes) -> bool:
        view = memoryview(data)
        while view and not self.closed:
            try:
                n = self.sock.send(view)
                view = view[n:]
            except TimeoutError:
                continue
            except OSError:
                return False
        return not self.closed

    def recv(self, timeout: float) -> bytes | None:
        if self.closed:
            return None
        try:
            r, _, _ = select.select([self.sock], [], [], timeout)
            if not r:
                return b""
            data = self.sock.recv(4096)
        except (TimeoutError, BlockingIOError):
            return b""
        except OSError:
            return None
        return data if data else None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass


# --------------------------------------------------------------------------- the device
class MethodScriptEmulator:
    """One emulated device with one simulated cell (see the module docstring).

    ``advance_idle``: time between scripts counts as open circuit on the cell (as on a real
    bench and in SimulatedPotentiostat); turn it off to compare with a simulator on a virtual
    clock, where techniques follow each other without gaps.
    """

    def __init__(
        self,
        device: str = "es4_lr",
        *,
        preset: Any,
        cell_kind: str = "symmetric",
        area_cm2: float = 1.267,
        seed: int = 0,
        replicate: int = 0,
        clock: Any = None,
        noise: bool = False,
        faults: Faults | None = None,
        plan: FaultPlan | None = None,
        advance_idle: bool = True,
        room_temperature: float = ROOM_TEMPERATURE,
    ) -> None:
        if device not in DEVICES:
            raise ValueError(f"unknown device {device!r}; emulated: {', '.join(DEVICES)}")
        self.spec = DEVICES[device]
        self.clock = clock if clock is not None else WallClock()
        self.preset = load_preset(preset)
        self.cell: CellModel = simulate_cell(cell_kind, self.preset, area_cm2=area_cm2, seed=seed, replicate=replicate)
        self.noise = noise
        self._rng = np.random.default_rng([seed & 0xFFFFFFFF, replicate & 0xFFFFFFFF, 200])
        self.faults = faults or Faults()
        self.plan = plan if plan is not None else FaultPlan()
        self._active: _Session | None = None  # the session whose script runs (TCP)
        self.refused = 0  # connections refused while a disconnect fault lasts
        self.advance_idle = advance_idle
        self.temperature = room_temperature
        self.cell_on = False
        self.received: list[str] = []  # every line the host sent (for tests)
        self.scripts: list[dict[str, Any]] = []  # one record per script run: how it ended
        self.packages_sent = 0
        self.silent = False
        self._idle = threading.Event()
        self._idle.set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._conns: list[_Conn] = []
        self._server: socket.socket | None = None
        self._closed = False
        self._t_idle = self.clock.now()

    # ------------------------------------------------------------------ serving
    def serve_pty(self) -> str:
        """Serve on a new pty; returns the device path to open (pyserial, 8N1, any baud)."""
        conn = _PtyConn()
        self._conns.append(conn)
        self._spawn(self._session, conn)
        return conn.path

    def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve on TCP (one connection at a time); returns the port (``socket://127.0.0.1:PORT``)."""
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, port))
        srv.listen(1)
        srv.settimeout(0.1)
        self._server = srv
        self._spawn(self._accept_loop, srv)
        return int(srv.getsockname()[1])

    def _accept_loop(self, srv: socket.socket) -> None:
        while not self._closed:
            try:
                sock, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.plan.active("disconnect", self.clock.now()) is not None:
                self.refused += 1
                sock.close()
                continue
            conn = _SockConn(sock)
            self._conns.append(conn)
            prev = self._active
            if prev is not None and prev.running():
                # the device still runs the script a dropped connection started: this link takes it over
                prev.conn, prev.disconnected, prev.mode = conn, False, "idle"
                prev.run()
            else:
                self._session(conn)

    def _spawn(self, fn: Any, *args: Any) -> None:
        th = threading.Thread(target=fn, args=args, daemon=True, name="methodscript-emulator")
        th.start()
        self._threads.append(th)

    def wait_idle(self, timeout: float) -> bool:
        """Wait (wall seconds) until no script runs."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        self._closed = True
        self._abort_flag = True
        if self._server is not None:
            self._server.close()
        for c in self._conns:
            c.close()
        for th in self._threads:
            th.join(timeout=2.0)

    # ------------------------------------------------------------------ one connection
    def _session(self, conn: _Conn) -> None:
        sess = _Session(self, conn)
        self._active = sess
        sess.run()

    def silenced(self) -> bool:
        """True while the device answers nothing (a ``silent`` fault)."""
        return self.silent or self.plan.active("silent", self.clock.now()) is not None


class _Session:
    """The line protocol on one connection; scripts run in a second thread."""

    def __init__(self, dev: MethodScriptEmulator, conn: _Conn) -> None:
        self.dev = dev
        self.conn = conn
        self.mode = "idle"  # idle | loading | skip
        self.script: list[str] = []
        self.runner: threading.Thread | None = None
        # a script runs from its start until just before its last line goes out: the host may
        # send the next script the moment it reads that line, before the runner thread has exited
        self.busy = False
        self.abort = threading.Event()
        self.halted = threading.Event()
        self.disconnected = False
        self.wlock = threading.Lock()

    # writes that a silent or disconnected device drops
    def write(self, text: str | bytes) -> None:
        if self.disconnected or self.dev.silenced():
            return
        data = text.encode("ascii") if isinstance(text, str) else text
        with self.wlock:
            if not self.conn.send(data):
                self.disconnected = True

    def running(self) -> bool:
        return self.busy

    def run(self) -> None:
        buf = b""
        while not self.dev._closed and not self.disconnected:
            data = self.conn.recv(0.05)
            if data is None:
                break
            buf += data
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                self.on_line(raw.decode("latin-1"))
        self.abort.set() if self.dev._closed else None

    def on_line(self, line: str) -> None:
        self.dev.received.append(line)
        if self.dev.silenced():
            return
        if self.running():
            if line.startswith("Z"):
                self.abort.set()
            elif line.startswith("h"):
                self.halted.set()
            elif line.startswith("H"):
                self.halted.clear()
            return
        if self.mode == "skip":
            if line == "":
                self.mode = "idle"
            return
        if self.mode == "loading":
            if line == "":
                self.mode = "idle"
                self.start_script(self.script)
                return
            if len(line) > MAX_LINE:
                self.write(f"e!0008: Line {len(self.script) + 1}, Col {MAX_LINE + 1}\n")
                self.mode = "skip"
                return
            self.script.append(line)
            return
        if line == "":
            return
        if len(line) > MAX_LINE:
            self.write(f"{line[0]}!0008\n")
            return
        c = line[0]
        spec = self.dev.spec
        if line == "t":
            self.write(f"t{spec.device_id}{spec.firmware}\nR*\n")
        elif line == "i":
            self.write(f"i{spec.serial}\n")
        elif line == "v":
            self.write(f"v{VERSION}\n")
        elif line == "e":
            self.mode = "loading"
            self.script = []
        elif c in "ZhHY":
            self.write(f"{c}!0006\n")
        else:
            self.write(f"{c}!0003\n")

    # ------------------------------------------------------------------ scripts
    def start_script(self, lines: list[str]) -> None:
        try:
            main, fin = _parse(lines, self.dev.spec)
        except _ScriptError as exc:
            self.write(f"e!{exc.code}: Line {exc.line}, Col {exc.col}\n")
            return
        self.abort.clear()
        self.dev._idle.clear()
        self.busy = True
        self.runner = threading.Thread(
            target=self._run_script, args=(main, fin), daemon=True, name="methodscript-script"
        )
        self.runner.start()

    def _run_script(self, main: list[_Stmt], fin: list[_Stmt]) -> None:
        dev = self.dev
        ex = _Executor(self)
        rec: dict[str, Any] = {"end": "complete", "texts": ex.texts}
        dev.scripts.append(rec)
        last: str | None = None
        try:
            if dev.advance_idle:
                gap = dev.clock.now() - dev._t_idle
                if gap > 0:
                    dev.cell.advance_rest(gap)
            self.write("e\n")
            try:
                ex.block(main)
            except _Abort:
                rec["end"] = "abort"
            except _ScriptError as exc:
                rec["end"] = "error"
                self.write(f"!{exc.code}: Line {exc.line}, Col {exc.col}\n")
            except _Hang:
                rec["end"] = "hung"
            finally:
                try:
                    ex.block(fin)
                except (_Abort, _ScriptError, _Break, _Hang):
                    pass
                dev.cell_on = False
            rec["elapsed"] = ex.now_dev
            rec["cell_on"] = dev.cell_on
            last = {"abort": "Z\n", "complete": "\n"}.get(rec["end"])
        finally:
            dev._t_idle = dev.clock.now()
            self.busy = False
            dev._idle.set()
        if last is not None:
            self.write(last)


class _Hang(Exception):
    pass


# --------------------------------------------------------------------------- parsing
def _check_literal_or_name(word: str, line: int, col: int) -> None:
    if _NAME_RE.match(word):
        return
    try:
        parse_literal(word)
    except ValueError:
        raise _ScriptError("4004", line, col) from None


def _parse(lines: list[str], spec: DeviceSpec) -> tuple[list[_Stmt], list[_Stmt]]:
    """Lines -> (main block, on_finished block); raises _ScriptError like the device would."""
    root: list[_Stmt] = []
    fin: list[_Stmt] = []
    stack: list[tuple[_Stmt, list[_Stmt]]] = []
    target = root
    in_meas = 0
    for n, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].rstrip()
        if not text.strip():
            continue
        col0 = len(text) - len(text.lstrip()) + 1
        if raw.endswith("\r"):
            raise _ScriptError("4004", n, len(raw))
        words = _split(text.strip(), n, col0)
        cmd = words[0]
        st = _Stmt(n, words)
        if cmd == "on_finished:":
            if stack:
                raise _ScriptError("4004", n, col0)
            target = fin
            continue
        if cmd in _ONLY_GALVANOSTAT and not spec.galvanostat:
            raise _ScriptError("001B", n, col0)
        if cmd == "set_pgstat_mode" and len(words) > 1 and words[1] == "6" and not spec.galvanostat:
            raise _ScriptError("4205", n, col0 + len(cmd) + 1)
        if cmd.startswith("meas_loop_"):
            kind = cmd[len("meas_loop_") :]
            if kind not in _N_ARGS:
                raise _ScriptError("4001", n, col0)
            if in_meas:
                raise _ScriptError("400B", n, col0)
            lo, hi = _N_ARGS[kind]
            if not lo <= len(words) - 1 <= hi:
                raise _ScriptError("4004", n, col0)
            for w in words[1:]:
                if not w.startswith("nscans("):
                    _check_literal_or_name(w, n, col0)
            in_meas += 1
            target.append(st)
            stack.append((st, target))
            target = st.body
            continue
        if cmd == "loop" or cmd == "if":
            target.append(st)
            stack.append((st, target))
            if cmd == "if":
                st.branches.append((words[1:], []))
                target = st.branches[-1][1]
            else:
                target = st.body
            continue
        if cmd in ("elseif", "else"):
            if not stack or stack[-1][0].cmd != "if":
                raise _ScriptError("4004", n, col0)
            ifst = stack[-1][0]
            ifst.branches.append((words[1:] if cmd == "elseif" else None, []))
            target = ifst.branches[-1][1]
            continue
        if cmd in ("endloop", "endif"):
            if not stack:
                raise _ScriptError("4004", n, col0)
            opener, parent = stack.pop()
            want = "endif" if opener.cmd == "if" else "endloop"
            if cmd != want:
                raise _ScriptError("4004", n, col0)
            if opener.cmd.startswith("meas_loop_"):
                in_meas -= 1
            target = parent
            continue
        if cmd not in _SETUP:
            raise _ScriptError("4001", n, col0)
        for w in words[1:]:
            if cmd == "send_string":
                break
            if cmd in ("set_range", "set_autoranging", "set_range_minmax", "store_var") and _NAME_RE.match(w):
                continue
            _check_literal_or_name(w, n, col0)
        target.append(st)
    if stack:
        raise _ScriptError("4004", stack[-1][0].line, 1)
    return root, fin


def _split(text: str, line: int, col0: int) -> list[str]:
    if text.startswith("send_string"):
        rest = text[len("send_string") :].strip()
        if len(rest) < 2 or rest[0] != '"' or rest[-1] != '"':
            raise _ScriptError("4004", line, col0 + len("send_string") + 1)
        return ["send_string", rest[1:-1]]
    return text.split()


# --------------------------------------------------------------------------- execution
class _Executor:
    def __init__(self, sess: _Session) -> None:
        self.sess = sess
        self.dev = sess.dev
        self.vars: dict[str, tuple[float, str]] = {}
        self.pck: list[str] | None = None
        self.now_dev = 0.0  # device time since the script started (exact)
        self.timer0 = 0.0
        self.clock0 = self.dev.clock.now()
        self.texts: list[str] = []
        self.irange = {"ba": self.dev.spec.max_current}

    # values
    def val(self, word: str, st: _Stmt) -> float:
        if _NAME_RE.match(word):
            if word not in self.vars:
                raise _ScriptError("4004", st.line, 1)
            return self.vars[word][0]
        return parse_literal(word)

    def setv(self, name: str, value: float, vtype: str | None = None) -> None:
        old = self.vars.get(name, (0.0, "ja"))
        self.vars[name] = (float(value), vtype or old[1])

    def cond(self, words: list[str], st: _Stmt) -> bool:
        if len(words) != 3:
            raise _ScriptError("4004", st.line, 1)
        a, op, b = self.val(words[0], st), words[1], self.val(words[2], st)
        ops = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}
        if op not in ops:
            raise _ScriptError("4004", st.line, 1)
        return ops[op]

    # pacing
    def wait_until(self, t_dev: float) -> None:
        clock = self.dev.clock
        target = self.clock0 + t_dev
        rate = float(getattr(clock, "factor", 1.0))
        while True:
            if self.sess.abort.is_set() or self.dev._closed:
                raise _Abort()
            if self.sess.halted.is_set():
                threading.Event().wait(0.02)
                continue
            rem = target - clock.now()
            if rem <= 0 or getattr(clock, "horizon", lambda: 1.0)() == float("inf"):
                clock.sleep_until(target)
                return
            clock.sleep(min(rem, 0.02 * rate))

    def block(self, stmts: list[_Stmt]) -> None:
        for st in stmts:
            self.stmt(st)

    def stmt(self, st: _Stmt) -> None:
        cmd, w = st.cmd, st.words
        dev = self.dev
        if cmd == "var":
            for name in w[1:]:
                self.vars.setdefault(name, (0.0, "ja"))
        elif cmd == "store_var":
            self.setv(w[1], self.val(w[2], st), w[3] if len(w) > 3 else None)
        elif cmd == "copy_var":
            self.vars[w[2]] = self.vars.get(w[1], (0.0, "ja"))
        elif cmd in ("add_var", "sub_var", "mul_var", "div_var"):
            a, b = self.val(w[1], st), self.val(w[2], st)
            if cmd == "div_var" and b == 0:
                raise _ScriptError("4205", st.line, 1)
            r = {"add_var": a + b, "sub_var": a - b, "mul_var": a * b, "div_var": a / b if b else 0.0}[cmd]
            self.setv(w[1], r)
        elif cmd == "cell_on":
            dev.cell_on = True
        elif cmd == "cell_off":
            dev.cell_on = False
        elif cmd == "wait":
            self.now_dev += self.val(w[1], st)
            self.wait_until(self.now_dev)
        elif cmd == "timer_start":
            self.timer0 = self.now_dev
        elif cmd == "timer_get":
            self.setv(w[1], self.now_dev - self.timer0, "eb")
        elif cmd in ("set_range", "set_autoranging") and len(w) >= 3 and w[1] == "ba":
            self.irange["ba"] = abs(self.val(w[-1], st))
        elif cmd == "pck_start":
            self.pck = []
        elif cmd == "pck_add":
            if self.pck is None:
                raise _ScriptError("4004", st.line, 1)
            self.pck.append(self.encode(w[1], st))
        elif cmd == "pck_end":
            if self.pck is None:
                raise _ScriptError("4004", st.line, 1)
            self.send_package("P" + ";".join(self.pck) + "\n")
            self.pck = None
        elif cmd == "send_string":
            self.texts.append(w[1])
            self.sess.write(f"T{w[1]}\n")
        elif cmd == "breakloop":
            raise _Break()
        elif cmd == "if":
            for cond, body in st.branches:
                if cond is None or self.cond(cond, st):
                    self.block(body)
                    break
        elif cmd == "loop":
            while self.cond(w[1:], st):
                if self.sess.abort.is_set():
                    raise _Abort()
                try:
                    self.block(st.body)
                except _Break:
                    break
        elif cmd.startswith("meas_loop_"):
            self.meas(st)
        # other set-up commands: accepted, nothing to model

    def encode(self, name: str, st: _Stmt) -> str:
        if name not in self.vars:
            raise _ScriptError("4004", st.line, 1)
        value, vtype = self.vars[name]
        s = vtype + encode_value(value, integer=(vtype == "ja" and float(value).is_integer() and False))
        if vtype == "ba":
            status = 0
            rng = self.irange["ba"]
            if math.isfinite(value) and abs(value) > rng:
                status |= 2
            f = self.dev.faults
            if f.status_after is not None and self.dev.packages_sent >= f.status_after:
                status |= f.status_bits
            idx = max(0, int(round(math.log10(max(rng, 1e-9) / 1e-9))))
            s += f",1{status:X},2{idx:02X}"
        return s

    def send_package(self, line: str) -> None:
        dev = self.dev
        f = dev.faults
        fired = dev.plan.tick(dev.clock.now()) if dev.plan else []
        partial = next((p for p in fired if p.kind == "partial" and dev.plan.take(p)), None)
        # a partial line: half of the package, no line end; the next line is glued onto it
        self.sess.write(line if partial is None else line[: max(1, len(line) // 2)].rstrip("\n"))
        dev.packages_sent += 1
        n = dev.packages_sent
        for p in fired:
            if p.kind == "garbage" and dev.plan.take(p):
                self.sess.write(GARBAGE)
            elif p.kind == "error" and p.left == p.count:
                p.left = 0
                raise _ScriptError(p.code, 0, 0)
            elif p.kind == "disconnect" and p.left == p.count:
                p.left = 0
                self.sess.disconnected = True
                self.sess.conn.close()
        if f.garbage_after is not None and n == f.garbage_after:
            self.sess.write(f.garbage)
        if f.error_after is not None and n == f.error_after:
            raise _ScriptError(f.error_code, 0, 0)
        if f.disconnect_after is not None and n == f.disconnect_after:
            self.sess.disconnected = True
            self.sess.conn.close()
        if f.silent_after is not None and n == f.silent_after:
            dev.silent = True
            while not dev._closed:
                threading.Event().wait(0.05)
            raise _Hang()

    # ------------------------------------------------------------------ measurement loops
    def meas(self, st: _Stmt) -> None:
        kind = st.cmd[len("meas_loop_") :]
        args = st.words[1:]
        nscans = 1
        if args and args[-1].startswith("nscans("):
            nscans = int(parse_literal(args[-1][len("nscans(") : -1]))
            args = args[:-1]
        nout = len(_OUT_TYPES[kind])
        outs = args[:nout]
        vals = [self.val(a, st) for a in args[nout:]]
        dev = self.dev
        if kind == "ocp" and dev.cell_on:
            raise _ScriptError("0014", st.line, 1)
        if kind != "ocp":
            dev.cell_on = True
        for v in vals[1:] if kind in ("cp", "ca") else []:
            if not v > 0:
                raise _ScriptError("4205", st.line, 1)
        for name in outs:
            self.vars.setdefault(name, (0.0, "ja"))
        self.sess.write(f"M{_LOOP_CODES[kind]}\n")
        phys = _Physics(dev, kind, vals, nscans)
        t_loop0 = self.now_dev
        try:
            for t_rel, values, marker in phys.points():
                if marker:
                    self.sess.write(marker)
                    continue
                self.now_dev = t_loop0 + t_rel
                self.wait_until(self.now_dev)
                for name, vtype, value in zip(outs, _OUT_TYPES[kind], values):
                    self.setv(name, value, vtype)
                try:
                    self.block(st.body)
                except _Break:
                    break
        finally:
            phys.finish()
        self.sess.write("*\n")


class _Physics:
    """The points of one measurement loop, from the cell model (calls as SimulatedPotentiostat makes)."""

    def __init__(self, dev: MethodScriptEmulator, kind: str, vals: list[float], nscans: int) -> None:
        self.dev = dev
        self.cell = dev.cell
        self.kind = kind
        self.vals = vals
        self.nscans = max(1, nscans)
        self.base = 0.0  # loop time the cell state corresponds to
        self.t_last = 0.0  # loop time of the last point handed out
        self.q = 0.0  # charge not yet passed (sweeps, eis)
        self.i_dc = 0.0
        self.temp = dev.temperature
        self.done = False

    def _vnoise(self, n: int, scale: float = 1.0) -> np.ndarray:
        nz = self.dev.preset.noise
        if not self.dev.noise or nz.voltage == 0:
            return np.zeros(n)
        return self.dev._rng.normal(0.0, nz.voltage * scale, n)

    def _inoise(self, cur: np.ndarray) -> np.ndarray:
        nz = self.dev.preset.noise
        if not self.dev.noise:
            return cur
        e = self.dev._rng.standard_normal(2 * len(cur))
        return cur * (1.0 + nz.current * e[0::2]) + nz.current_floor * e[1::2]

    def _kin(self, e: np.ndarray) -> np.ndarray:
        m = self.dev.spec.max_current * 10  # the model's current, clipped far beyond the range (overload shows)
        return np.clip(self.cell.kinetic_current(e, self.temp), -m, m)

    def points(self) -> Iterator[tuple[float, tuple[float, ...], str]]:
        k = self.kind
        cell = self.cell
        if k in ("ocp", "cp", "ca"):
            if k == "ocp":
                interval, run = self.vals
                cell.begin("ocp")
            elif k == "cp":
                current, interval, run = self.vals
                cell.begin("cp", current)
            else:
                e, interval, run = self.vals
                cell.begin("ca")
            n = max(1, math.ceil(run / interval - 1e-9))
            every = _ADVANCE_EVERY if k != "ca" else max(1, int(CA_BLOCK_S / interval))
            i = 0
            while i < n:
                j = min(n, i + _CHUNK, (i // every + 1) * every)
                ts = np.arange(i + 1, j + 1) * interval
                if j == n:
                    ts[-1] = run
                if i > 0 and i % every == 0:
                    self._advance(self.t_last)
                tau = ts - self.base
                if k == "ocp":
                    rows: Any = zip(cell.v_rest(tau) + self._vnoise(len(ts)))
                elif k == "cp":
                    rows = zip(cell.v_cp(current, tau) + self._vnoise(len(ts)), self._inoise(np.full(len(ts), current)))
                else:
                    self.i_dc = float(self._kin(np.array([e]))[0])
                    rows = zip(np.full(len(ts), e), self._inoise(np.full(len(ts), self.i_dc)))
                for t, row in zip(ts, rows):
                    self.t_last = float(t)
                    yield float(t), tuple(float(x) for x in row), ""
                i = j
            return
        if k in ("lsv", "cv"):
            if k == "lsv":
                b, x, step, rate = self.vals
                scans = [[b, x]]
            else:
                b, v1, v2, step, rate = self.vals
                scans = [[b, v1, v2, b] for _ in range(self.nscans)]
            cell.begin(k)
            parts = [np.array([b])]
            ends: set[int] = set()
            count = 1
            for nodes in scans:
                for a, c in zip(nodes, nodes[1:]):
                    m = max(1, int(round(abs(c - a) / step)))
                    parts.append(a + (c - a) * np.arange(1, m + 1) / m)
                    count += m
                ends.add(count - 1)
            e = np.concatenate(parts)
            t_all = np.concatenate(([0.0], np.cumsum(np.abs(np.diff(e))))) / rate
            cur = self._kin(e)
            meas = self._inoise(cur)
            scan = 0
            for idx in range(len(e)):
                if self.nscans > 1 and (idx == 0 or idx - 1 in ends):
                    yield float(t_all[idx]), (), f"C{scan:04X}\n"
                    scan += 1
                if idx:
                    self.q += float(cur[idx]) * float(t_all[idx] - t_all[idx - 1])
                self.t_last = float(t_all[idx])
                yield self.t_last, (float(e[idx]), float(meas[idx])), ""
                if self.nscans > 1 and idx in ends:
                    yield self.t_last, (), "-\n"
            return
        if k == "eis":
            amp, fs, fe, n, edc = self.vals
            f = np.logspace(math.log10(fs), math.log10(fe), int(n))
            t_rel = np.cumsum(SimulatedPotentiostat.point_time(f))
            cell.begin("eis")
            z = cell.impedance(f, np.full(len(f), self.temp))
            if self.dev.noise and self.dev.preset.noise.impedance > 0:
                eps = self.dev._rng.standard_normal(2 * len(f)) * self.dev.preset.noise.impedance
                z = z * (1.0 + eps[0::2] + 1j * eps[1::2])
            self.i_dc = float(self._kin(np.array([edc]))[0])
            for idx in range(len(f)):
                self.t_last = float(t_rel[idx])
                self.q = self.i_dc * self.t_last
                yield self.t_last, (float(f[idx]), float(z[idx].real), float(z[idx].imag)), ""
            return
        raise _ScriptError("4001")

    def _advance(self, t: float) -> None:
        dt = t - self.base
        if dt <= 0:
            return
        cell = self.cell
        if self.kind == "ocp":
            cell.advance_rest(dt)
        elif self.kind == "cp":
            cell.advance_cp(self.vals[0], dt)
        elif self.kind == "ca":
            cell.pass_charge(self.i_dc * dt, dt)
        self.base = t

    def finish(self) -> None:
        """Advance the cell to the last point handed out (a break or an abort ends the loop there)."""
        if self.done:
            return
        self.done = True
        if self.kind in ("lsv", "cv", "eis"):
            if self.t_last > 0:
                self.cell.pass_charge(self.q, self.t_last)
            return
        self._advance(self.t_last)
