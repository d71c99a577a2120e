"""Line-oriented message links for VISA instruments (SCPI and Lake Shore style commands).

A driver talks text messages to a :class:`MessageLink`: ``write(command, timeout)`` and
``query(command, timeout) -> reply`` (one line, terminator stripped).  Two links:

* :class:`VisaLink` opens a pyvisa resource with any backend (``"@py"``, the pure-Python
  pyvisa-py; ``"file.yaml@sim"``, pyvisa-sim; NI-VISA with ``""``), e.g.
  ``TCPIP::127.0.0.1::5025::SOCKET``.
* :class:`TransportLink` speaks over any :class:`labctl.drivers.transport.Transport`
  (serial, TCP, a scripted transcript of message pairs in tests).

Every call takes a timeout in seconds of wall time.  A silent instrument raises
:class:`~labctl.drivers.contracts.DeviceTimeout`, a closed or broken link and a reply that
is not text raise :class:`~labctl.drivers.contracts.DeviceError`: nothing waits forever.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any, Protocol, runtime_checkable

from labctl.drivers.contracts import DeviceError, DeviceTimeout

__all__ = ["MessageLink", "TransportLink", "VisaLink", "as_link", "decode_reply", "parse_number"]

_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

#: Longest reply line accepted (characters); anything longer is garbage.
MAX_REPLY = 4096


@runtime_checkable
class MessageLink(Protocol):
    address: str

    def open(self, timeout: float) -> None: ...

    def write(self, command: str, timeout: float) -> None: ...

    def query(self, command: str, timeout: float) -> str: ...

    def discard_input(self) -> None: ...

    def close(self) -> None: ...


def decode_reply(raw: bytes, address: str) -> str:
    """Bytes of one reply line -> text without the terminator; DeviceError for anything not printable ASCII."""
    if len(raw) > MAX_REPLY:
        raise DeviceError(f"{address}: reply of {len(raw)} bytes is too long to be an answer (garbled link?)")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise DeviceError(f"{address}: reply is not ASCII text: {raw[:40]!r}") from exc
    text = text.strip("\r\n")
    if any(not (ch.isprintable() or ch == "\t") for ch in text):
        raise DeviceError(f"{address}: reply has control characters: {raw[:40]!r}")
    return text.strip()


def parse_number(text: str, what: str, address: str = "instrument", *, overflow: float = 9.9e37) -> float:
    """A finite number from a reply field; DeviceError naming ``what`` otherwise.

    SCPI instruments answer 9.9E37 for an overflow and 9.91E37 for "not a number":
    both, and anything at or above ``overflow`` in magnitude, are errors too.
    """
    field = text.strip()
    if not _NUMBER.fullmatch(field):  # ASCII decimal only: float() would also take '1_0', '١', 'inf'
        raise DeviceError(f"{address}: {what} is not a number: {field[:40]!r}")
    value = float(field)
    if not math.isfinite(value):
        raise DeviceError(f"{address}: {what} is not finite: {field[:40]!r}")
    if abs(value) >= overflow:
        raise DeviceError(f"{address}: {what} overflowed ({field[:40]!r}: out of range or not a number)")
    return value


def _ms(timeout: float) -> int:
    return max(1, int(math.ceil(float(timeout) * 1000.0)))


class VisaLink:
    """A pyvisa resource as a :class:`MessageLink`.

    ``resource``: a VISA resource name; ``visa_library``: the pyvisa backend (``"@py"``
    pyvisa-py, ``"path/to/file.yaml@sim"`` pyvisa-sim, ``""`` the system VISA).
    """

    def __init__(
        self, resource: str, visa_library: str = "@py", *, read_termination: str = "\n", write_termination: str = "\n"
    ) -> None:
        self.resource = resource
        self.visa_library = visa_library
        self.address = resource if not visa_library else f"{resource} ({visa_library})"
        self.read_termination = read_termination
        self.write_termination = write_termination
        self._rm: Any = None
        self._res: Any = None

    @property
    def is_open(self) -> bool:
        return self._res is not None

    def open(self, timeout: float) -> None:
        import pyvisa

        self.close()
        try:
            self._rm = pyvisa.ResourceManager(self.visa_library)
            self._res = self._rm.open_resource(
                self.resource,
                open_timeout=_ms(timeout),
                timeout=_ms(timeout),
                read_termination=self.read_termination,
                write_termination=self.write_termination,
            )
        except Exception as exc:  # pyvisa raises VisaIOError, OSError, ValueError (bad name), ...
            self.close()
            raise DeviceError(f"cannot open {self.address}: {exc}") from exc

    def _need(self) -> Any:
        if self._res is None:
            raise DeviceError(f"{self.address}: link is not open (call connect() first)")
        return self._res

    def _fail(self, exc: BaseException, doing: str) -> DeviceError:
        import pyvisa

        if isinstance(exc, pyvisa.errors.VisaIOError) and exc.error_code == pyvisa.constants.StatusCode.error_timeout:
            return DeviceTimeout(f"{self.address}: no answer to {doing} within the timeout")
        return DeviceError(f"{self.address}: link failed during {doing}: {exc}")

    def write(self, command: str, timeout: float) -> None:
        res = self._need()
        try:
            res.timeout = _ms(timeout)
            res.write(command)
        except Exception as exc:
            raise self._fail(exc, repr(command)) from exc

    def query(self, command: str, timeout: float) -> str:
        res = self._need()
        deadline = time.monotonic() + float(timeout)
        try:
            res.timeout = _ms(timeout)
            res.write(command)
            res.timeout = _ms(max(0.001, deadline - time.monotonic()))
            raw = res.read_raw()
        except Exception as exc:
            raise self._fail(exc, repr(command)) from exc
        return decode_reply(bytes(raw), self.address)

    def discard_input(self) -> None:
        """Drop pending input: read with a short timeout until nothing more arrives (bounded)."""
        res = self._res
        if res is None:
            return
        try:
            res.timeout = 30
            for _ in range(64):
                res.read_raw()
        except Exception:
            pass

    def close(self) -> None:
        res, rm = self._res, self._rm
        self._res = self._rm = None
        for obj in (res, rm):
            if obj is not None:
                try:
                    obj.close()
                except Exception:
                    pass


class TransportLink:
    """Any :class:`labctl.drivers.transport.Transport` as a :class:`MessageLink` (``\\n`` terminated)."""

    def __init__(self, transport: Any, *, write_termination: str = "\n", read_termination: bytes = b"\n") -> None:
        self.transport = transport
        self.address = str(getattr(transport, "address", "transport"))
        self.write_termination = write_termination
        self.read_termination = read_termination

    def open(self, timeout: float) -> None:
        self.transport.open(timeout)

    def write(self, command: str, timeout: float) -> None:
        self.transport.write((command + self.write_termination).encode("ascii"), timeout)

    def query(self, command: str, timeout: float) -> str:
        raw = self.transport.query((command + self.write_termination).encode("ascii"), timeout, self.read_termination)
        return decode_reply(bytes(raw), self.address)

    def discard_input(self) -> None:
        self.transport.discard_input()

    def close(self) -> None:
        self.transport.close()


def as_link(
    *, resource: str | None, visa_library: str, link: Any, read_termination: str = "\n", write_termination: str = "\n"
) -> MessageLink:
    """The link a driver was configured with: an explicit link or Transport, else a VISA resource."""
    if link is not None:
        if isinstance(link, MessageLink) and not hasattr(link, "read_line"):
            return link
        return TransportLink(
            link, write_termination=write_termination, read_termination=read_termination.encode("ascii")[-1:] or b"\n"
        )
    if not resource:
        raise DeviceError("no instrument address: give resource='TCPIP::host::port::SOCKET' (or a link)")
    return VisaLink(resource, visa_library, read_termination=read_termination, write_termination=write_termination)
