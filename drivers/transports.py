"""Implementations of the :class:`~labctl.drivers.transport.Transport` contract.

* :class:`SerialTransport`: any pyserial URL (``/dev/ttyUSB0``, ``COM3``,
  ``socket://host:port``, ``loop://``, a pty path) via ``serial.serial_for_url``.
* :class:`VisaTransport`: any pyvisa resource and backend (``"@py"``, ``"@sim"``,
  ``"file.yaml@sim"``, NI-VISA with ``""`` or ``"@ivi"``).
* :class:`ScriptedTransport`: replays expected (request, reply) message pairs, for driver
  tests without hardware; an unexpected write raises :class:`TransportError` naming what
  the script expected.
* :class:`RecordingTransport`: wraps any transport and appends every event to a JSON-lines
  transcript; :class:`TranscriptTransport` replays that transcript as the instrument, so a
  failed overnight run re-executes deterministically.
* :func:`open_transport`: builds one from a station-file entry (``port:`` or ``resource:``).

Framing is done here, not by the link: bytes are buffered and a line is cut at the
terminator given to each call, so however the bytes arrive (one at a time, several
lines per read, a terminator split across reads) the lines are the same.  Every call
computes a deadline from its timeout and never waits past it; what was read of an
incomplete line stays buffered for the next call.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from .transport import Transport, TransportError, TransportTimeout

__all__ = [
    "TRANSCRIPT_FORMAT",
    "BufferedTransport",
    "RecordingTransport",
    "ScriptedTransport",
    "SerialTransport",
    "TranscriptTransport",
    "TransportConfigError",
    "VisaTransport",
    "open_transport",
    "read_transcript",
]

TRANSCRIPT_FORMAT = "labctl-transcript/1"
_T = TypeVar("_T")


def _show(data: bytes, limit: int = 80) -> str:
    s = repr(bytes(data[:limit]))
    return s + (f"... ({len(data)} bytes)" if len(data) > limit else "")


def _check_timeout(timeout: float) -> float:
    t = float(timeout)
    if not t >= 0:
        raise ValueError(f"timeout must be a non-negative number of seconds, got {timeout!r}")
    return t


def _check_terminator(terminator: bytes) -> bytes:
    if not isinstance(terminator, (bytes, bytearray)) or not terminator:
        raise ValueError(f"terminator must be non-empty bytes, got {terminator!r}")
    return bytes(terminator)


class BufferedTransport:
    """Line and byte framing over a link that delivers chunks of bytes.

    Subclasses implement ``_open_link(timeout)``, ``_write_link(data, timeout)``,
    ``_read_link(max_bytes, timeout, terminator)`` (return what arrived within ``timeout``,
    possibly ``b""``; raise :class:`TransportError` when the link is closed or broken),
    ``_discard_link()`` and ``_close_link()``.
    """

    address: str = ""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._open = False

    # ------------------------------------------------------------------ link (subclasses)
    def _open_link(self, timeout: float) -> None:
        raise TransportError(f"{type(self).__name__} cannot open a link")

    def _write_link(self, data: bytes, timeout: float) -> None:
        raise TransportError(f"{type(self).__name__} cannot write")

    def _read_link(self, max_bytes: int, timeout: float, terminator: bytes | None) -> bytes:
        raise TransportError(f"{type(self).__name__} cannot read")

    def _discard_link(self) -> None:
        return None

    def _close_link(self) -> None:
        return None

    # ------------------------------------------------------------------ contract
    @property
    def is_open(self) -> bool:
        return self._open

    def open(self, timeout: float) -> None:
        if self._open:
            return
        self._open_link(_check_timeout(timeout))
        self._buf.clear()
        self._open = True

    def _require_open(self) -> None:
        if not self._open:
            raise TransportError(f"{self.address}: the link is not open (call open() first, or it was closed)")

    def write(self, data: bytes, timeout: float) -> None:
        self._require_open()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"write() takes bytes, got {type(data).__name__}")
        self._write_link(bytes(data), _check_timeout(timeout))

    def read_line(self, timeout: float, terminator: bytes = b"\n") -> bytes:
        self._require_open()
        term = _check_terminator(terminator)
        deadline = time.monotonic() + _check_timeout(timeout)
        searched = 0  # bytes of the buffer already searched for the terminator
        while True:
            idx = self._buf.find(term, max(0, searched - len(term) + 1))
            if idx >= 0:
                end = idx + len(term)
                line = bytes(self._buf[:end])
                del self._buf[:end]
                return line
            searched = len(self._buf)
            left = deadline - time.monotonic()
            if left <= 0:
                what = (
                    f"only a partial line arrived ({_show(bytes(self._buf))}, kept for the next read)"
                    if self._buf
                    else "nothing arrived"
                )
                raise TransportTimeout(
                    f"{self.address}: no complete line (terminator {term!r}) within {timeout:g} s: {what}"
                )
            self._buf += self._read_link(4096, left, term)

    def read_bytes(self, n: int, timeout: float) -> bytes:
        self._require_open()
        if n < 0:
            raise ValueError(f"read_bytes needs n >= 0, got {n}")
        deadline = time.monotonic() + _check_timeout(timeout)
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransportTimeout(
                    f"{self.address}: {len(self._buf)} of {n} bytes arrived within {timeout:g} s "
                    "(kept for the next read)"
                )
            self._buf += self._read_link(n - len(self._buf), left, None)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def query(self, data: bytes, timeout: float, terminator: bytes = b"\n") -> bytes:
        deadline = time.monotonic() + _check_timeout(timeout)
        self.write(data, timeout)
        return self.read_line(max(0.0, deadline - time.monotonic()), terminator)

    def discard_input(self) -> None:
        self._require_open()
        self._buf.clear()
        self._discard_link()

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        self._buf.clear()
        self._close_link()

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address!r})"


def _call_with_timeout(
    fn: Callable[[], _T], timeout: float, what: str, cleanup: Callable[[_T], None] | None = None
) -> _T:
    """Run a blocking ``fn`` (a library's open) in a thread; give up after ``timeout`` s.

    When it gives up, a late result is passed to ``cleanup`` (so a link that opens after
    the caller stopped waiting is closed, not leaked)."""
    box: dict[str, Any] = {}
    lock = threading.Lock()

    def target() -> None:
        try:
            res = fn()
        except BaseException as exc:  # re-raised in the caller
            with lock:
                box["error"] = exc
            return
        with lock:
            if box.get("abandoned"):
                if cleanup is not None:
                    try:
                        cleanup(res)
                    except Exception:
                        pass
                return
            box["result"] = res

    th = threading.Thread(target=target, name=f"labctl-open {what}", daemon=True)
    th.start()
    th.join(timeout)
    with lock:
        if "result" in box:
            return box["result"]  # type: ignore[no-any-return]
        if "error" in box:
            raise box["error"]
        box["abandoned"] = True
    raise TransportTimeout(f"{what}: did not open within {timeout:g} s")


# ====================================================================== serial (pyserial)
class SerialTransport(BufferedTransport):
    """A pyserial link: ``url`` is anything ``serial.serial_for_url`` accepts.

    ``poll`` (s) is the longest single wait inside a call; the call's own deadline is
    always honoured (the last wait is shortened to it).
    """

    def __init__(
        self,
        url: str,
        baudrate: int = 9600,
        *,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: float = 1,
        rtscts: bool = False,
        xonxoff: bool = False,
        dsrdtr: bool = False,
        exclusive: bool | None = None,
        poll: float = 0.1,
    ) -> None:
        super().__init__()
        if not isinstance(url, str) or not url:
            raise ValueError(f"serial port must be a device path or pyserial URL, got {url!r}")
        self.url = url
        self.address = url
        self.settings: dict[str, Any] = dict(
            baudrate=int(baudrate),
            bytesize=int(bytesize),
            parity=str(parity),
            stopbits=stopbits,
            rtscts=bool(rtscts),
            xonxoff=bool(xonxoff),
            dsrdtr=bool(dsrdtr),
        )
        if exclusive is not None:
            self.settings["exclusive"] = bool(exclusive)
        self.poll = float(poll)
        self._ser: Any = None

    def _open_link(self, timeout: float) -> None:
        import serial

        try:
            ser = serial.serial_for_url(
                self.url, do_not_open=True, timeout=self.poll, write_timeout=timeout, **self.settings
            )
        except (ValueError, serial.SerialException) as exc:
            raise TransportError(f"{self.url}: not a usable serial port or pyserial URL: {exc}") from exc

        def do_open() -> Any:
            ser.open()
            return ser

        def late(s: Any) -> None:
            s.close()

        try:
            self._ser = _call_with_timeout(do_open, timeout, self.url, cleanup=late)
        except TransportTimeout:
            raise
        except (OSError, serial.SerialException) as exc:
            raise TransportError(f"{self.url}: could not open: {exc}") from exc

    def _set_timeout(self, attr: str, value: float) -> None:
        if getattr(self._ser, attr) != value:
            setattr(self._ser, attr, value)

    def _write_link(self, data: bytes, timeout: float) -> None:
        import serial

        try:
            self._set_timeout("write_timeout", max(timeout, 1e-3))
            self._ser.write(data)
        except serial.SerialTimeoutException as exc:
            raise TransportTimeout(
                f"{self.url}: write of {len(data)} bytes did not finish within {timeout:g} s"
            ) from exc
        except (OSError, serial.SerialException) as exc:
            raise TransportError(f"{self.url}: write failed, the link is closed or broken: {exc}") from exc

    def _read_link(self, max_bytes: int, timeout: float, terminator: bytes | None) -> bytes:
        import serial

        try:
            self._set_timeout("timeout", min(timeout, self.poll))
            data = bytes(self._ser.read(1))
            if data and max_bytes > 1:
                waiting = int(self._ser.in_waiting)
                if waiting:
                    data += bytes(self._ser.read(min(waiting, max_bytes - 1)))
            return data
        except (OSError, serial.SerialException) as exc:
            raise TransportError(f"{self.url}: read failed, the link is closed or broken: {exc}") from exc

    def _discard_link(self) -> None:
        import serial

        try:
            self._ser.reset_input_buffer()
        except (OSError, serial.SerialException) as exc:
            raise TransportError(f"{self.url}: could not discard input: {exc}") from exc

    def _close_link(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:
                pass


# ====================================================================== VISA (pyvisa)
class VisaTransport(BufferedTransport):
    """A pyvisa message-based resource (``ASRL3::INSTR``, ``TCPIP::10.0.0.5::5025::SOCKET``,
    ``USB0::...::INSTR``, ``GPIB0::12::INSTR``) on the backend ``visa_library``.

    With ``read_termination`` set, VISA's termination character is enabled and a read
    returns at it; reading lines with another terminator reads byte by byte.
    ``write_termination`` is appended to nothing: :meth:`write` sends exactly its bytes
    (drivers add their own terminators), it is kept for the backend's configuration.
    """

    def __init__(
        self,
        resource: str,
        visa_library: str = "@py",
        *,
        read_termination: str | None = "\n",
        write_termination: str | None = "\n",
        baudrate: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(resource, str) or not resource:
            raise ValueError(f"VISA resource must be a resource string such as 'ASRL3::INSTR', got {resource!r}")
        self.resource = resource
        self.visa_library = visa_library
        self.address = resource if visa_library in ("", None) else f"{resource} ({visa_library})"
        self.read_termination = read_termination
        self.write_termination = write_termination
        self.baudrate = baudrate
        self._rm: Any = None
        self._res: Any = None

    def _visa_errors(self) -> tuple[type[BaseException], ...]:
        import pyvisa

        return (pyvisa.errors.VisaIOError, pyvisa.errors.InvalidSession, OSError)

    def _is_timeout(self, exc: BaseException) -> bool:
        import pyvisa

        return (
            isinstance(exc, pyvisa.errors.VisaIOError) and exc.error_code == pyvisa.constants.StatusCode.error_timeout
        )

    def _open_link(self, timeout: float) -> None:
        import pyvisa

        try:
            rm = pyvisa.ResourceManager(self.visa_library)
        except (OSError, ValueError, pyvisa.errors.Error) as exc:
            raise TransportError(
                f"VISA library {self.visa_library!r} could not be loaded ({exc}); use visa_library: '@py' "
                "(pyvisa-py, pure Python) or install the vendor VISA"
            ) from exc
        kw: dict[str, Any] = {"read_termination": self.read_termination, "write_termination": self.write_termination}
        if self.baudrate is not None:
            kw["baud_rate"] = int(self.baudrate)

        def do_open() -> Any:
            return rm.open_resource(self.resource, open_timeout=max(1, int(timeout * 1000)), **kw)

        def late(res: Any) -> None:
            res.close()

        try:
            res = _call_with_timeout(do_open, timeout, self.address, cleanup=late)
        except TransportTimeout:
            raise
        except (pyvisa.errors.Error, OSError, ValueError) as exc:
            raise TransportError(f"{self.address}: could not open: {exc}") from exc
        if not hasattr(res, "write_raw"):
            res.close()
            raise TransportError(f"{self.address}: not a message-based VISA resource")
        self._rm, self._res = rm, res

    def _set_timeout_ms(self, seconds: float) -> None:
        self._res.timeout = max(1, int(seconds * 1000))

    def _write_link(self, data: bytes, timeout: float) -> None:
        try:
            self._set_timeout_ms(timeout)
            self._res.write_raw(data)
        except self._visa_errors() as exc:
            if self._is_timeout(exc):
                raise TransportTimeout(f"{self.address}: write did not finish within {timeout:g} s") from exc
            raise TransportError(f"{self.address}: write failed, the link is closed or broken: {exc}") from exc

    def _read_link(self, max_bytes: int, timeout: float, terminator: bytes | None) -> bytes:
        term_char = self.read_termination.encode() if self.read_termination else None
        # exact byte counts and lines at VISA's own term char can read in chunks (VISA returns at
        # count, END or the term char); other lines go byte by byte so no read waits past a line
        count = max_bytes if terminator is None or terminator.endswith(term_char or b"\x00\x00") else 1
        try:
            self._set_timeout_ms(timeout)
            data, _status = self._res.visalib.read(self._res.session, count)
            return bytes(data)
        except self._visa_errors() as exc:
            if self._is_timeout(exc):
                return b""  # the caller's deadline decides (its next wait is 0 s)
            raise TransportError(f"{self.address}: read failed, the link is closed or broken: {exc}") from exc

    def _discard_link(self) -> None:
        import pyvisa

        try:
            self._res.flush(pyvisa.constants.BufferOperation.discard_read_buffer)
        except (pyvisa.errors.Error, NotImplementedError, AttributeError):
            # backends without a flush: drain what is there without waiting
            try:
                self._set_timeout_ms(0.001)
                while self._res.visalib.read(self._res.session, 4096)[0]:
                    pass
            except Exception:
                pass

    def _close_link(self) -> None:
        res, self._res = self._res, None
        rm, self._rm = self._rm, None
        for obj in (res, rm):
            if obj is not None:
                try:
                    obj.close()
                except Exception:
                    pass


# ====================================================================== replay (scripted and transcripts)
class _ReplayTransport(BufferedTransport):
    """Plays a list of events as the instrument: ``("tx", bytes)`` the driver must send,
    ``("rx", bytes)`` the instrument sends, ``("timeout", "")`` a read that got nothing,
    ``("error", message)`` the link broke.

    Writes are compared as a stream (chunking does not matter).  A read takes the next
    ``rx`` events; when the script expects the driver to send next, or it is finished, a
    read times out at once (a real instrument would stay silent) with a message saying so.
    """

    def __init__(self, events: Sequence[tuple[str, bytes | str]], address: str) -> None:
        super().__init__()
        self.address = address
        self._events = list(events)
        self._pos = 0
        self._pending = bytearray()

    @property
    def done(self) -> bool:
        """Every event of the script was played."""
        return self._pos >= len(self._events) and not self._pending

    def remaining(self) -> list[tuple[str, bytes | str]]:
        return self._events[self._pos :]

    def check_done(self) -> None:
        """Raise :class:`TransportError` when the driver did not play the whole script."""
        if self.done:
            return
        left = self.remaining()
        head = ", ".join(f"{kind} {_show(data) if isinstance(data, bytes) else data!r}" for kind, data in left[:3])
        pend = (
            f"; {len(self._pending)} bytes written but not matched yet: {_show(bytes(self._pending))}"
            if self._pending
            else ""
        )
        raise TransportError(
            f"{self.address}: the driver stopped with {len(left)} scripted event(s) not played (next: {head}){pend}"
        )

    def _where(self) -> str:
        return f"event {self._pos + 1} of {len(self._events)}"

    def _open_link(self, timeout: float) -> None:
        self._pending.clear()

    def _write_link(self, data: bytes, timeout: float) -> None:
        self._pending += data
        while self._pending:
            # replies the driver did not read are in the input buffer by now
            while self._pos < len(self._events) and self._events[self._pos][0] == "rx":
                self._buf += self._events[self._pos][1]  # type: ignore[arg-type]
                self._pos += 1
            if self._pos >= len(self._events):
                raise TransportError(
                    f"{self.address}: unexpected write {_show(bytes(self._pending))}: "
                    "the script is finished and expects nothing more from the driver"
                )
            kind, expected = self._events[self._pos]
            if kind != "tx":
                what = "a read that timed out" if kind == "timeout" else f"a link error ({expected!r})"
                raise TransportError(
                    f"{self.address}: unexpected write {_show(bytes(self._pending))} at "
                    f"{self._where()}: the script expects {what} here, not a write"
                )
            assert isinstance(expected, bytes)
            n = min(len(expected), len(self._pending))
            if bytes(self._pending[:n]) != expected[:n]:
                raise TransportError(
                    f"{self.address}: unexpected write at {self._where()}: the script expects "
                    f"{_show(expected)}, the driver sent {_show(bytes(self._pending))}"
                )
            if n < len(expected):
                # a prefix of the expected message: wait for the rest
                self._events[self._pos] = ("tx", expected[n:])
                del self._pending[:n]
                return
            del self._pending[:n]
            self._pos += 1

    def _read_link(self, max_bytes: int, timeout: float, terminator: bytes | None) -> bytes:
        if self._pos < len(self._events):
            kind, data = self._events[self._pos]
            if kind == "rx":
                self._pos += 1
                assert isinstance(data, bytes)
                return data
            if kind == "timeout":
                self._pos += 1
                raise TransportTimeout(f"{self.address}: the read at {self._where()} timed out in the recording")
            if kind == "error":
                self._pos += 1
                raise TransportError(f"{self.address}: {data!s} (the link broke here in the recording)")
            assert isinstance(data, bytes)
            raise TransportTimeout(
                f"{self.address}: the driver reads but the script expects it to send "
                f"{_show(data)} next ({self._where()}); nothing arrives"
            )
        raise TransportTimeout(f"{self.address}: the driver reads but the script is finished; nothing arrives")

    def _discard_link(self) -> None:
        # what had arrived is gone; replies still in the script arrive later
        return None


def _as_bytes(x: bytes | str, what: str) -> bytes:
    if isinstance(x, (bytes, bytearray)):
        return bytes(x)
    if isinstance(x, str):
        return x.encode()
    raise TypeError(f"{what} must be bytes or str, got {type(x).__name__}")


class ScriptedTransport(_ReplayTransport):
    """Replays ``pairs`` of (request, reply) as the instrument, for driver tests.

    ``request`` is what the driver must send (bytes, or str encoded as UTF-8), ``None`` for a
    reply the instrument sends on its own (streamed data); ``reply`` is what the instrument
    answers, ``None`` or ``b""`` for a command without an answer.  The driver's writes
    must match the requests in order, else :class:`TransportError` says what was expected.
    Use it as a context manager to also check that the whole script was played::

        with ScriptedTransport([(b"*IDN?\\n", b"ACME,P1,123,1.0\\n"), (b"CELL OFF\\n", None)]) as t:
            drv = MyDriver(transport=t); drv.connect(); drv.cell_off()
    """

    def __init__(
        self, pairs: Iterable[tuple[bytes | str | None, bytes | str | None]], address: str = "scripted"
    ) -> None:
        events: list[tuple[str, bytes | str]] = []
        for k, pair in enumerate(pairs):
            try:
                req, rep = pair
            except (TypeError, ValueError):
                raise TypeError(f"script entry {k} must be a (request, reply) pair, got {pair!r}") from None
            if req is None and rep is None:
                raise ValueError(f"script entry {k} is (None, None): give a request, a reply or both")
            if req is not None and _as_bytes(req, f"request {k}"):
                events.append(("tx", _as_bytes(req, f"request {k}")))
            if rep is not None and _as_bytes(rep, f"reply {k}"):
                events.append(("rx", _as_bytes(rep, f"reply {k}")))
        super().__init__(events, address)
        self._open = True  # a script is always "connected"; open() is accepted and does nothing

    def __enter__(self) -> ScriptedTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.check_done()


# ---------------------------------------------------------------------- transcripts
def _encode(data: bytes) -> dict[str, str]:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(data).decode("ascii")}
    if all(c.isprintable() or c in "\r\n\t" for c in text):
        return {"text": text}
    return {"b64": base64.b64encode(data).decode("ascii")}


def _decode(ev: Mapping[str, Any], where: str) -> bytes:
    if "text" in ev:
        return str(ev["text"]).encode("ascii")
    if "b64" in ev:
        return base64.b64decode(str(ev["b64"]), validate=True)
    raise TransportError(f"{where}: a {ev.get('dir')} event needs 'text' or 'b64'")


class RecordingTransport:
    """Wraps ``inner`` and appends every event to a JSON-lines transcript.

    The first line is a header (``{"format": "labctl-transcript/1", "address": ..., "unix": ...}``);
    then one object per event: ``t`` (s since the recording started), ``dir`` (``tx``,
    ``rx``, ``timeout``, ``error``, ``open``, ``close``, ``discard``) and the bytes as
    ``text`` (printable ASCII, JSON-escaped) or ``b64``.  Each line is flushed as it is
    written, so a transcript survives a crash.  ``path_or_file``: a path (appended to) or
    an open text file.
    """

    def __init__(self, inner: Transport, path_or_file: str | Path | IO[str]) -> None:
        self.inner = inner
        self.address = inner.address
        if isinstance(path_or_file, (str, Path)):
            self._file: IO[str] = open(path_or_file, "a", encoding="utf-8")
            self._own = True
        else:
            self._file = path_or_file
            self._own = False
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._emit({"format": TRANSCRIPT_FORMAT, "address": inner.address, "unix": time.time()}, stamp=False)

    def _emit(self, obj: dict[str, Any], stamp: bool = True) -> None:
        if stamp:
            obj = {"t": round(time.monotonic() - self._t0, 6), **obj}
        with self._lock:
            if self._file.closed:
                return
            self._file.write(json.dumps(obj, separators=(",", ":")) + "\n")
            self._file.flush()

    def _guard(self, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except TransportTimeout:
            self._emit({"dir": "timeout"})
            raise
        except TransportError as exc:
            self._emit({"dir": "error", "message": str(exc)})
            raise

    def open(self, timeout: float) -> None:
        self._guard(lambda: self.inner.open(timeout))
        self._emit({"dir": "open"})

    def write(self, data: bytes, timeout: float) -> None:
        self._guard(lambda: self.inner.write(data, timeout))
        self._emit({"dir": "tx", **_encode(bytes(data))})

    def read_line(self, timeout: float, terminator: bytes = b"\n") -> bytes:
        line = self._guard(lambda: self.inner.read_line(timeout, terminator))
        self._emit({"dir": "rx", **_encode(line)})
        return line

    def read_bytes(self, n: int, timeout: float) -> bytes:
        data = self._guard(lambda: self.inner.read_bytes(n, timeout))
        self._emit({"dir": "rx", **_encode(data)})
        return data

    def query(self, data: bytes, timeout: float, terminator: bytes = b"\n") -> bytes:
        deadline = time.monotonic() + timeout
        self.write(data, timeout)
        return self.read_line(max(0.0, deadline - time.monotonic()), terminator)

    def discard_input(self) -> None:
        self._guard(self.inner.discard_input)
        self._emit({"dir": "discard"})

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self._emit({"dir": "close"})
            if self._own and not self._file.closed:
                self._file.close()

    def __enter__(self) -> RecordingTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_transcript(path: str | Path) -> tuple[dict[str, Any], list[tuple[str, bytes | str]]]:
    """The header and the replayable events (tx, rx, timeout, error) of a transcript file."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TransportError(f"transcript {p}: cannot read it: {exc}") from exc
    header: dict[str, Any] = {}
    events: list[tuple[str, bytes | str]] = []
    for no, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        where = f"{p}:{no}"
        try:
            ev = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise TransportError(f"{where}:{exc.colno}: not a JSON line ({exc.msg})") from exc
        if not isinstance(ev, dict):
            raise TransportError(f"{where}: each line must be a JSON object")
        if "format" in ev:
            if ev["format"] != TRANSCRIPT_FORMAT:
                raise TransportError(
                    f"{where}: unknown transcript format {ev['format']!r} (expected {TRANSCRIPT_FORMAT})"
                )
            header = header or ev  # a file appended to by several recordings replays as one
            continue
        d = ev.get("dir")
        if d in ("tx", "rx"):
            try:
                events.append((d, _decode(ev, where)))
            except (ValueError, UnicodeEncodeError) as exc:
                raise TransportError(f"{where}: bad bytes in a {d} event: {exc}") from exc
        elif d == "timeout":
            events.append(("timeout", ""))
        elif d == "error":
            events.append(("error", str(ev.get("message", "link error"))))
        elif d in ("open", "close", "discard"):
            continue
        else:
            raise TransportError(f"{where}: unknown event dir {d!r} (tx, rx, timeout, error, open, close, discard)")
    if not header:
        raise TransportError(
            f"transcript {p}: no header line (format {TRANSCRIPT_FORMAT}); was it written by RecordingTransport?"
        )
    return header, events


class TranscriptTransport(_ReplayTransport):
    """Replays a transcript written by :class:`RecordingTransport` as the instrument.

    The driver must send what was recorded (else :class:`TransportError` at the first
    difference); it reads what the instrument sent, and the recorded timeouts and link
    errors happen at the same points.  Timing is not replayed: it runs as fast as the driver.
    """

    def __init__(self, path: str | Path) -> None:
        header, events = read_transcript(path)
        super().__init__(events, f"transcript {Path(path).name} of {header.get('address', '?')}")
        self.header = header


# ====================================================================== station-file factory
class TransportConfigError(ValueError):
    """A transport entry of a station file is wrong.  ``field`` names the key at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


_SERIAL_KEYS = {"port", "baudrate", "bytesize", "parity", "stopbits", "rtscts", "xonxoff", "dsrdtr", "exclusive"}
_VISA_KEYS = {"resource", "visa_library", "read_termination", "write_termination", "baudrate"}
_COMMON_KEYS = {"record"}


def _typed(spec: Mapping[str, Any], key: str, kind: type, fix: str) -> Any:
    value = spec[key]
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool):
        raise TransportConfigError(f"{key}: expected {fix}, got {value!r}", key)
    if not isinstance(value, kind):
        raise TransportConfigError(f"{key}: expected {fix}, got {value!r}", key)
    return value


def open_transport(spec: Mapping[str, Any]) -> Transport:
    """Build (not open) a transport from a station-file entry.

    ``port:`` (a device path or pyserial URL, with ``baudrate``, ``bytesize``, ``parity``,
    ``stopbits``, ``rtscts``, ``xonxoff``, ``dsrdtr``, ``exclusive``) gives a
    :class:`SerialTransport`; ``resource:`` (with ``visa_library`` default ``"@py"``,
    ``read_termination``, ``write_termination``, ``baudrate``) a :class:`VisaTransport`;
    ``replay:`` (a transcript path) a :class:`TranscriptTransport`.  ``record: path`` wraps
    the result in a :class:`RecordingTransport`.  Errors are :class:`TransportConfigError`
    naming the key and the fix.
    """
    if not isinstance(spec, Mapping):
        raise TransportConfigError(f"a transport entry must be a mapping with port: or resource:, got {spec!r}")
    kinds = [k for k in ("port", "resource", "replay") if k in spec]
    if not kinds:
        raise TransportConfigError(
            "no link given: add port: (serial: a device path such as /dev/ttyUSB0 or COM3, or a pyserial URL "
            "such as socket://10.0.0.5:7001) or resource: (VISA: e.g. TCPIP::10.0.0.5::5025::SOCKET, "
            "with visa_library: '@py')",
            None,
        )
    if len(kinds) > 1:
        raise TransportConfigError(
            f"{kinds[1]}: give only one of port: (serial), resource: (VISA) or replay:, not {' and '.join(kinds)}",
            kinds[1],
        )
    kind = kinds[0]
    allowed = {"port": _SERIAL_KEYS, "resource": _VISA_KEYS, "replay": {"replay"}}[kind] | _COMMON_KEYS
    for key in spec:
        if key not in allowed:
            raise TransportConfigError(
                f"{key}: not an option of a {kind}: link; allowed: {', '.join(sorted(allowed))}", key
            )
    transport: Transport
    if kind == "port":
        url = _typed(spec, "port", str, "a device path or pyserial URL (text)")
        kw: dict[str, Any] = {}
        for key, typ, fix in (
            ("baudrate", int, "a whole number of baud such as 115200"),
            ("bytesize", int, "5, 6, 7 or 8"),
            ("parity", str, "N, E, O, M or S"),
            ("stopbits", float, "1, 1.5 or 2"),
            ("rtscts", bool, "true or false"),
            ("xonxoff", bool, "true or false"),
            ("dsrdtr", bool, "true or false"),
            ("exclusive", bool, "true or false"),
        ):
            if key in spec:
                kw[key] = _typed(spec, key, typ, fix)
        if "baudrate" in kw and kw["baudrate"] <= 0:
            raise TransportConfigError(f"baudrate: must be positive, got {kw['baudrate']}", "baudrate")
        if "bytesize" in kw and kw["bytesize"] not in (5, 6, 7, 8):
            raise TransportConfigError(f"bytesize: expected 5, 6, 7 or 8, got {kw['bytesize']}", "bytesize")
        if "parity" in kw and kw["parity"].upper() not in ("N", "E", "O", "M", "S"):
            raise TransportConfigError(f"parity: expected N, E, O, M or S, got {kw['parity']!r}", "parity")
        if "parity" in kw:
            kw["parity"] = kw["parity"].upper()
        if "stopbits" in kw and kw["stopbits"] not in (1, 1.5, 2):
            raise TransportConfigError(f"stopbits: expected 1, 1.5 or 2, got {kw['stopbits']:g}", "stopbits")
        if "stopbits" in kw and kw["stopbits"] != 1.5:
            kw["stopbits"] = int(kw["stopbits"])
        transport = SerialTransport(url, **kw)
    elif kind == "resource":
        res = _typed(spec, "resource", str, "a VISA resource string such as TCPIP::10.0.0.5::5025::SOCKET")
        vkw: dict[str, Any] = {}
        if "visa_library" in spec:
            vkw["visa_library"] = _typed(
                spec, "visa_library", str, "a VISA backend: '@py', '@sim', 'file.yaml@sim', '@ivi' or a library path"
            )
        for key in ("read_termination", "write_termination"):
            if key in spec:
                if spec[key] is not None and not isinstance(spec[key], str):
                    raise TransportConfigError(
                        f'{key}: expected text such as "\\n" or "\\r\\n", got {spec[key]!r}', key
                    )
                vkw[key] = spec[key]
        if "baudrate" in spec:
            vkw["baudrate"] = _typed(spec, "baudrate", int, "a whole number of baud such as 115200")
        transport = VisaTransport(res, **vkw)
    else:
        path = _typed(spec, "replay", str, "the path of a transcript written with record:")
        try:
            transport = TranscriptTransport(path)
        except TransportError as exc:
            raise TransportConfigError(f"replay: {exc}", "replay") from exc
    if "record" in spec:
        rec = _typed(spec, "record", str, "the path of a transcript file to append to")
        try:
            transport = RecordingTransport(transport, rec)
        except OSError as exc:
            raise TransportConfigError(f"record: cannot write the transcript {rec!r}: {exc}", "record") from exc
    return transport
