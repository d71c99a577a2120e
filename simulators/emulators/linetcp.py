"""A threaded loopback TCP server for line-oriented instruments, with fault hooks.

Subclasses implement :meth:`LineServer.handle` (one command line in, a reply line or
``None`` out).  The server listens on 127.0.0.1 only (port 0 picks a free one), runs one
thread per client, and serialises commands with a lock, so the emulated instrument sees
them one at a time like a real one.

Fault hooks (:meth:`LineServer.inject`), for testing a driver's failure paths:

* ``"silent"``: commands are still carried out, but no query is answered any more;
* ``"garbage"``: the next ``count`` replies are replaced by ``payload`` bytes;
* ``"disconnect"``: the client's connection is closed instead of answering;
* ``"error"``: handled by the subclass (an error queued in a SCPI error queue).

A fault can wait for a command: ``on=":READ?"`` (prefix, case-insensitive) and
``skip=n`` arm it at the (n+1)-th such command.  :meth:`clear_faults` heals the instrument.

``plan`` (a :class:`~labctl.simulators.emulators.faults.FaultPlan`, counted in commands
received) schedules faults that last and heal: ``disconnect`` (new connections refused for
``duration``), ``silent`` for ``duration``, ``garbage`` and ``partial`` replies, ``error``
(SCPI: the code queued); subclasses read the stage kinds (``no_settle``, ``overshoot``).
"""

from __future__ import annotations

import socket
import socketserver
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from labctl.simulators.emulators.faults import FaultPlan

__all__ = ["Fault", "LineServer"]

GARBAGE = b"\x8f\xff#GARBLE\x00?"


@dataclass
class Fault:
    kind: str
    on: str | None = None
    skip: int = 0
    count: int = 1
    payload: bytes = GARBAGE
    code: int = -100
    message: str = "Command error"


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        owner = self.server.owner
        sock: socket.socket = self.request
        if owner.refusing():
            sock.close()
            return
        sock.settimeout(0.2)
        owner._register(sock)
        buf = b""
        try:
            while not owner._closing.is_set():
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    line = raw.decode("ascii", "replace").strip()
                    if not line:
                        continue
                    for part in owner.split(line):
                        out = owner._dispatch(part)
                        if out is _DROP:
                            sock.close()
                            return
                        if out is not None:
                            try:
                                sock.sendall(out)
                            except OSError:
                                return
        finally:
            owner._unregister(sock)


_DROP = b"\x00__drop__"


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: LineServer


class LineServer(ABC):
    """Base of the loopback emulators.  Use as a context manager or ``start()``/``stop()``."""

    #: Bytes appended to each reply.
    reply_terminator = b"\n"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, plan: FaultPlan | None = None) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the emulators listen on the loopback interface only")
        self.host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        self.lock = threading.RLock()
        self.log: list[str] = []  # every command received, in order
        self.faults: list[Fault] = []
        self.silent = False
        self.plan = plan if plan is not None else FaultPlan()
        self.refused = 0  # connections refused while a planned disconnect lasts

    def plan_now(self) -> float:
        clock = getattr(self, "clock", None)
        return float(clock.now()) if clock is not None else 0.0

    def refusing(self) -> bool:
        if self.plan.active("disconnect", self.plan_now()) is not None:
            self.refused += 1
            return True
        return False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LineServer:
        self._closing.clear()
        srv = _Server((self.host, self._port), _Handler)
        srv.owner = self
        self._server = srv
        self._thread = threading.Thread(
            target=srv.serve_forever, kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return int(self._server.server_address[1])

    @property
    def resource(self) -> str:
        """The VISA resource name of this emulator (raw socket)."""
        return f"TCPIP::127.0.0.1::{self.port}::SOCKET"

    def serve_until_interrupted(self, banner: str) -> None:
        """Start, print ``banner`` (with the resource), serve until Ctrl-C, then stop: the ``python -m`` entry."""
        self.start()
        print(f"{banner} at {self.resource}; Ctrl-C stops it", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        self._closing.set()
        self.disconnect()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def __enter__(self) -> LineServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ faults
    def inject(
        self,
        kind: str,
        *,
        on: str | None = None,
        skip: int = 0,
        count: int = 1,
        payload: bytes = GARBAGE,
        code: int = -100,
        message: str = "Command error",
    ) -> None:
        if kind not in ("silent", "garbage", "disconnect", "error"):
            raise ValueError(f"unknown fault {kind!r}")
        with self.lock:
            self.faults.append(Fault(kind, on, skip, count, payload, code, message))

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()
            self.silent = False

    def disconnect(self) -> None:
        """Close every client connection now (the emulated instrument keeps its state)."""
        with self._clients_lock:
            clients = list(self._clients)
        for s in clients:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def _register(self, s: socket.socket) -> None:
        with self._clients_lock:
            self._clients.add(s)

    def _unregister(self, s: socket.socket) -> None:
        with self._clients_lock:
            self._clients.discard(s)

    # ------------------------------------------------------------------ dispatch
    def split(self, line: str) -> list[str]:
        """Commands in one line (SCPI allows several separated by ';')."""
        return [p.strip() for p in line.split(";") if p.strip()]

    def _armed(self, command: str) -> Fault | None:
        for f in self.faults:
            if f.on is None or command.upper().startswith(f.on.upper()):
                if f.skip > 0:
                    f.skip -= 1
                    continue
                return f
        return None

    def _dispatch(self, command: str) -> bytes | None:
        with self.lock:
            self.log.append(command)
            fault = self._armed(command)
            if fault is not None and fault.kind == "disconnect":
                self.faults.remove(fault)
                return _DROP
            if fault is not None and fault.kind == "silent":
                self.faults.remove(fault)
                self.silent = True
            if fault is not None and fault.kind == "error":
                self.faults.remove(fault)
                self.queue_error(fault.code, fault.message)
            planned = self.plan.tick(self.plan_now()) if self.plan else []
            for p in planned:
                if p.kind == "disconnect" and p.left == p.count:
                    p.left = 0
                    return _DROP
                if p.kind == "error" and p.left == p.count:
                    p.left = 0
                    try:
                        code = int(p.code)
                    except ValueError:
                        code = -100
                    self.queue_error(code, "Injected error")
            reply = self.handle(command)
            if reply is None:
                return None
            if self.silent or self.plan.active("silent", self.plan_now()) is not None:
                return None
            for p in planned:
                if p.kind == "garbage" and self.plan.take(p):
                    return GARBAGE + self.reply_terminator
                if p.kind == "partial" and self.plan.take(p):
                    data = reply.encode("ascii")
                    return data[: max(1, len(data) // 2)]
            if fault is not None and fault.kind == "garbage":
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault.payload
            return reply.encode("ascii") + self.reply_terminator

    def queue_error(self, code: int, message: str) -> None:
        """Record an instrument error (instruments without an error queue ignore it)."""

    @abstractmethod
    def handle(self, command: str) -> str | None:
        """Carry out one command; the reply line (without terminator), or None for no reply."""
