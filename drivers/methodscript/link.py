"""A small :class:`~labctl.drivers.transport.Transport` over pyserial's ``serial_for_url``.

Any pyserial URL works: a device path (``/dev/ttyACM0``, a pty), ``socket://127.0.0.1:PORT``.
Partial lines stay buffered across timeouts, so a read that times out mid-line loses nothing.
The driver takes any Transport; this one is its default when only ``port`` is given.
"""

from __future__ import annotations

import time

import serial

from labctl.drivers.transport import TransportError, TransportTimeout

#: A reply line longer than this is garbage (device lines are far shorter).
MAX_REPLY = 4096


class SerialLink:
    def __init__(self, url: str, baudrate: int = 230400) -> None:
        self.address = url
        self.baudrate = baudrate
        self._port: serial.SerialBase | None = None
        self._buf = bytearray()

    def open(self, timeout: float) -> None:
        try:
            self._port = serial.serial_for_url(self.address, baudrate=self.baudrate, timeout=min(timeout, 0.05),
                                               write_timeout=timeout, do_not_open=False)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(f"cannot open {self.address}: {exc}") from exc

    def _need(self) -> serial.SerialBase:
        if self._port is None:
            raise TransportError(f"{self.address} is not open")
        return self._port

    def write(self, data: bytes, timeout: float) -> None:
        port = self._need()
        try:
            port.write_timeout = timeout
            port.write(data)
            port.flush()
        except serial.SerialTimeoutException as exc:
            raise TransportTimeout(f"write to {self.address} timed out after {timeout:g} s") from exc
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"write to {self.address} failed: {exc}") from exc

    def _fill(self, deadline: float) -> bool:
        port = self._need()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            port.timeout = min(remaining, 0.05)
            chunk = port.read(max(1, port.in_waiting))
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"{self.address} broke: {exc}") from exc
        if chunk:
            self._buf += chunk
        return bool(chunk)

    def read_line(self, timeout: float, terminator: bytes = b"\n") -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            i = self._buf.find(terminator)
            if i >= 0:
                line = bytes(self._buf[: i + len(terminator)])
                del self._buf[: i + len(terminator)]
                return line
            if len(self._buf) > MAX_REPLY:
                junk = bytes(self._buf[:60])
                self._buf.clear()
                raise TransportError(f"{self.address}: no line end in {MAX_REPLY} bytes ({junk!r}...)")
            if time.monotonic() >= deadline:
                raise TransportTimeout(f"no complete line from {self.address} within {timeout:g} s")
            self._fill(deadline)

    def read_bytes(self, n: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self._buf) < n:
            if time.monotonic() >= deadline:
                raise TransportTimeout(f"{n} bytes from {self.address} did not arrive within {timeout:g} s")
            self._fill(deadline)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def query(self, data: bytes, timeout: float, terminator: bytes = b"\n") -> bytes:
        self.write(data, timeout)
        return self.read_line(timeout, terminator)

    def discard_input(self) -> None:
        self._buf.clear()
        if self._port is not None:
            try:
                self._port.reset_input_buffer()
            except (serial.SerialException, OSError):
                pass

    def close(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except (serial.SerialException, OSError):
                pass
            self._port = None
