"""The byte link between a driver and an instrument.

A driver's parsing talks only to a :class:`Transport`, so the same code runs on
hardware (serial, VISA), on an emulator over a pty or TCP, and on a transcript of
recorded message pairs.  Every call takes a timeout in seconds of wall time and
raises :class:`TransportTimeout` when it runs out: nothing reads forever.

Implementations (``labctl.drivers.transports``): serial (any pyserial URL: a device
path, ``socket://host:port``, a pty), VISA (pyvisa, any backend: ``@py``, ``@sim``,
NI-VISA) and scripted (message pairs, for tests), plus a wrapper that records raw
traffic with timestamps (transcripts).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .contracts import DeviceError, DeviceTimeout


class TransportError(DeviceError):
    """The link failed: it would not open, it closed, or it broke mid-message."""


class TransportTimeout(TransportError, DeviceTimeout):
    """Nothing (or not all of a message) arrived within the timeout."""


@runtime_checkable
class Transport(Protocol):
    """Bytes to and from one instrument."""

    #: Human-readable address (``socket://127.0.0.1:7001``, ``TCPIP::...::SOCKET``) for messages.
    address: str

    def open(self, timeout: float) -> None: ...

    def write(self, data: bytes, timeout: float) -> None: ...

    def read_line(self, timeout: float, terminator: bytes = b"\n") -> bytes:
        """One line including its terminator; TransportTimeout if it is not complete in time."""

    def read_bytes(self, n: int, timeout: float) -> bytes:
        """Exactly ``n`` bytes; TransportTimeout if they do not all arrive in time."""

    def query(self, data: bytes, timeout: float, terminator: bytes = b"\n") -> bytes:
        """``write(data)`` then ``read_line``: one request, one reply line."""

    def discard_input(self) -> None:
        """Drop whatever has arrived and not been read (resynchronise after an error)."""

    def close(self) -> None: ...
