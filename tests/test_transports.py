"""Transports: every call honours its timeout, partial lines time out and are kept, closed links
raise, framing does not depend on how bytes arrive; scripted and recorded transcripts replay."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.drivers.transport import Transport, TransportError, TransportTimeout
from labctl.drivers.transports import (
    RecordingTransport,
    ScriptedTransport,
    SerialTransport,
    TranscriptTransport,
    TransportConfigError,
    VisaTransport,
    open_transport,
)

SLACK = 0.25  # s a call may take beyond its timeout on a loaded 2-core machine


def timed(fn):
    t0 = time.monotonic()
    try:
        return fn(), time.monotonic() - t0
    except Exception as exc:  # returned so the test can assert on it and on the time
        return exc, time.monotonic() - t0


# ---------------------------------------------------------------------- pty
@pytest.fixture
def pty():
    master, slave = os.openpty()
    name = os.ttyname(slave)
    yield master, name
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


def test_serial_over_a_pty_reads_lines_and_bytes_and_writes(pty):
    master, name = pty
    t = SerialTransport(name, baudrate=115200)
    assert isinstance(t, Transport)
    t.open(timeout=1.0)
    os.write(master, b"ID,ACME\r\nrest")
    assert t.read_line(1.0, terminator=b"\r\n") == b"ID,ACME\r\n"
    assert t.read_bytes(2, 1.0) == b"re"
    t.write(b"CELL OFF\n", 1.0)
    assert os.read(master, 100) == b"CELL OFF\n"
    t.close()
    t.close()  # safe twice


def test_serial_pty_silent_peer_times_out_on_time(pty):
    master, name = pty
    t = SerialTransport(name)
    t.open(1.0)
    for timeout in (0.05, 0.4):
        exc, dt = timed(lambda: t.read_line(timeout))
        assert isinstance(exc, TransportTimeout) and "nothing arrived" in str(exc)
        assert timeout - 0.01 <= dt < timeout + SLACK
    exc, dt = timed(lambda: t.read_bytes(4, 0.3))
    assert isinstance(exc, TransportTimeout) and dt < 0.3 + SLACK


def test_serial_pty_partial_line_times_out_and_is_kept(pty):
    master, name = pty
    t = SerialTransport(name)
    t.open(1.0)
    os.write(master, b"12.5")
    exc, dt = timed(lambda: t.read_line(0.3))
    assert isinstance(exc, TransportTimeout) and "partial line" in str(exc) and "b'12.5'" in str(exc)
    assert dt < 0.3 + SLACK

    # the instrument keeps dribbling bytes: the deadline still holds
    def dribble():
        for _ in range(8):
            os.write(master, b"0")
            time.sleep(0.05)

    th = threading.Thread(target=dribble)
    th.start()
    exc, dt = timed(lambda: t.read_line(0.2))
    th.join()
    assert isinstance(exc, TransportTimeout) and dt < 0.2 + SLACK
    os.write(master, b"7\n")
    assert t.read_line(1.0) == b"12.5000000007\n"


def test_serial_pty_closed_peer_raises_transport_error(pty):
    master, name = pty
    t = SerialTransport(name)
    t.open(1.0)
    os.close(master)
    exc, dt = timed(lambda: t.read_line(2.0))
    assert isinstance(exc, TransportError) and not isinstance(exc, TransportTimeout)
    assert "closed or broken" in str(exc) and dt < 2.0


def test_serial_calls_on_a_closed_transport_raise(pty):
    _, name = pty
    t = SerialTransport(name)
    with pytest.raises(TransportError, match="not open"):
        t.read_line(0.1)
    t.open(1.0)
    t.close()
    with pytest.raises(TransportError, match="not open"):
        t.write(b"x", 0.1)


def test_serial_open_errors_are_clear():
    with pytest.raises(TransportError, match="could not open"):
        SerialTransport("/dev/does-not-exist-labctl").open(1.0)
    with pytest.raises(TransportError, match="pyserial URL"):
        SerialTransport("nosuchscheme://x").open(1.0)


# ---------------------------------------------------------------------- TCP (socket:// and VISA SOCKET)
class Peer:
    """A TCP peer on 127.0.0.1: silent, or answering ``replies`` to lines it receives."""

    def __init__(self, replies: dict[bytes, bytes] | None = None) -> None:
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.replies = replies
        self.conn: socket.socket | None = None
        self.received = bytearray()
        self.accepted = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.conn, _ = self.srv.accept()
        self.accepted.set()
        if self.replies is None:
            return
        buf = b""
        while True:
            try:
                data = self.conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            self.received += data
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line + b"\n" in self.replies:
                    self.conn.sendall(self.replies[line + b"\n"])

    def send(self, data: bytes) -> None:
        self.accepted.wait(2)
        assert self.conn is not None
        self.conn.sendall(data)

    def close(self) -> None:
        self.accepted.wait(2)
        if self.conn is not None:
            self.conn.close()
        self.srv.close()


def test_socket_url_silent_peer_times_out_and_closed_peer_raises():
    peer = Peer()
    t = SerialTransport(f"socket://127.0.0.1:{peer.port}")
    t.open(2.0)
    exc, dt = timed(lambda: t.read_line(0.4))
    assert isinstance(exc, TransportTimeout) and 0.39 <= dt < 0.4 + SLACK
    exc, dt = timed(lambda: t.query(b"*IDN?\n", 0.3))
    assert isinstance(exc, TransportTimeout) and dt < 0.3 + SLACK
    peer.send(b"half")
    exc, _ = timed(lambda: t.read_line(0.2))
    assert isinstance(exc, TransportTimeout) and "partial line" in str(exc)
    peer.close()
    exc, dt = timed(lambda: t.read_line(2.0))
    assert isinstance(exc, TransportError) and not isinstance(exc, TransportTimeout) and dt < 2.0
    t.close()


def test_socket_url_refused_is_a_transport_error():
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    exc, dt = timed(lambda: SerialTransport(f"socket://127.0.0.1:{port}").open(1.0))
    assert isinstance(exc, TransportError) and "could not open" in str(exc) and dt < 1.0 + SLACK


def test_visa_socket_resource_queries_and_times_out():
    peer = Peer({b"*IDN?\n": b"ACME,P1,42,1.0\n", b"SLOW?\n": b"1"})
    t = VisaTransport(f"TCPIP::127.0.0.1::{peer.port}::SOCKET", "@py")
    t.open(3.0)
    assert t.query(b"*IDN?\n", 2.0) == b"ACME,P1,42,1.0\n"
    exc, dt = timed(lambda: t.query(b"SLOW?\n", 0.4))
    assert isinstance(exc, TransportTimeout) and dt < 0.4 + SLACK
    exc, dt = timed(lambda: t.read_line(0.3, terminator=b"\r\n"))  # byte by byte, still on time
    assert isinstance(exc, TransportTimeout) and dt < 0.3 + SLACK
    t.close()
    peer.close()


def test_visa_sim_backend():
    t = open_transport({"resource": "ASRL1::INSTR", "visa_library": "@sim", "read_termination": "\n"})
    assert isinstance(t, VisaTransport)
    t.open(2.0)
    assert t.query(b"?IDN\r\n", 2.0) == b"LSG Serial #1234\n"
    exc, dt = timed(lambda: t.read_line(0.2))
    assert isinstance(exc, TransportTimeout) and dt < 0.2 + SLACK
    t.close()


def test_visa_open_errors_are_clear():
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    t = VisaTransport(f"TCPIP::127.0.0.1::{port}::SOCKET")
    # pyvisa-py opens a refused socket without complaint; the first write reports it
    exc, dt = timed(lambda: (t.open(1.0), t.write(b"*IDN?\n", 1.0)))
    assert isinstance(exc, TransportError) and "refused" in str(exc) and dt < 1.0 + SLACK
    t.close()
    with pytest.raises(TransportError, match="could not be loaded"):
        VisaTransport("ASRL1::INSTR", "/nonexistent/libvisa.so").open(1.0)


# ---------------------------------------------------------------------- scripted
def test_scripted_transport_replays_pairs_and_checks_the_driver():
    with ScriptedTransport([(b"*IDN?\n", b"ACME,P1\n"), ("CELL OFF\n", None), (None, b"DATA 1\nDATA 2\n")]) as t:
        assert t.query(b"*IDN?\n", 1.0) == b"ACME,P1\n"
        t.write(b"CELL ", 1.0)  # chunked writes are fine
        t.write(b"OFF\n", 1.0)
        assert t.read_line(1.0) == b"DATA 1\n" and t.read_line(1.0) == b"DATA 2\n"


def test_scripted_transport_unexpected_write_says_what_was_expected():
    t = ScriptedTransport([(b"*IDN?\n", b"ACME\n")])
    with pytest.raises(TransportError, match=r"expects b'\*IDN\?\\n', the driver sent b'ID\?\\n'"):
        t.write(b"ID?\n", 1.0)


def test_scripted_transport_read_before_write_times_out_at_once_and_unplayed_is_reported():
    t = ScriptedTransport([(b"MEAS?\n", b"1.0\n")])
    exc, dt = timed(lambda: t.read_line(5.0))
    assert isinstance(exc, TransportTimeout) and "expects it to send b'MEAS?\\n'" in str(exc) and dt < 0.1
    with pytest.raises(TransportError, match="not played"):
        with ScriptedTransport([(b"A\n", b"ok\n"), (b"B\n", None)]) as s:
            s.query(b"A\n", 1.0)
    with pytest.raises(TransportError, match="script is finished"):
        ScriptedTransport([]).write(b"X\n", 1.0)


# ---------------------------------------------------------------------- record and replay
def test_recording_then_transcript_replays_the_run_deterministically(tmp_path: Path):
    peer = Peer({b"*IDN?\n": b"ACME,P1\n", b"BIN?\n": b"\x00\xff\x10\n", b"MEAS?\n": b""})
    path = tmp_path / "run.jsonl"
    rec = RecordingTransport(SerialTransport(f"socket://127.0.0.1:{peer.port}"), path)
    rec.open(2.0)

    def session(t: Transport) -> list[object]:
        out: list[object] = [t.query(b"*IDN?\n", 2.0), t.query(b"BIN?\n", 2.0)]
        try:
            t.query(b"MEAS?\n", 0.2)  # the instrument stays silent
        except TransportTimeout:
            out.append("timeout")
        return out

    live = session(rec)
    rec.close()
    peer.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0]["format"] == "labctl-transcript/1"
    dirs = [x["dir"] for x in lines[1:]]
    assert dirs == ["open", "tx", "rx", "tx", "rx", "tx", "timeout", "close"]
    assert lines[3]["text"] == "ACME,P1\n" and "b64" in lines[5]
    assert all(isinstance(x["t"], float) for x in lines[1:])

    replay = TranscriptTransport(path)
    replay.open(1.0)
    assert session(replay) == live == [b"ACME,P1\n", b"\x00\xff\x10\n", "timeout"]
    assert replay.done
    # a driver that diverges from the recording is told where
    other = TranscriptTransport(path)
    other.open(1.0)
    with pytest.raises(TransportError, match=r"expects b'\*IDN\?\\n'"):
        other.write(b"*RST\n", 1.0)


def test_transcript_errors_name_the_line(tmp_path: Path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"format":"labctl-transcript/1","address":"x"}\n{"t":0,"dir":"tx","text":"a"}\nnot json\n')
    with pytest.raises(TransportError, match=r"bad.jsonl:3:1: not a JSON line"):
        TranscriptTransport(p)
    p.write_text('{"t":0,"dir":"tx","text":"a"}\n')
    with pytest.raises(TransportError, match="no header"):
        TranscriptTransport(p)


# ---------------------------------------------------------------------- factory
def test_open_transport_builds_from_station_entries(tmp_path: Path):
    s = open_transport({"port": "loop://", "baudrate": 115200, "parity": "e"})
    assert isinstance(s, SerialTransport) and s.settings["baudrate"] == 115200 and s.settings["parity"] == "E"
    s.open(1.0)
    s.write(b"ping\n", 1.0)
    assert s.read_line(1.0) == b"ping\n"
    s.close()
    v = open_transport({"resource": "TCPIP::10.0.0.5::5025::SOCKET", "visa_library": "@sim"})
    assert isinstance(v, VisaTransport) and v.visa_library == "@sim"
    assert open_transport({"resource": "GPIB0::12::INSTR"}).visa_library == "@py"  # type: ignore[attr-defined]
    r = open_transport({"port": "loop://", "record": str(tmp_path / "t.jsonl")})
    assert isinstance(r, RecordingTransport) and isinstance(r.inner, SerialTransport)
    r.close()


@pytest.mark.parametrize(
    "spec, field, words",
    [
        ({}, None, "add port:"),
        ({"port": "loop://", "resource": "ASRL1::INSTR"}, "resource", "only one of"),
        ({"port": "loop://", "baud": 9600}, "baud", "allowed: baudrate"),
        ({"port": "loop://", "baudrate": "fast"}, "baudrate", "whole number"),
        ({"port": "loop://", "baudrate": True}, "baudrate", "whole number"),
        ({"port": 3}, "port", "device path"),
        ({"port": "loop://", "stopbits": 3}, "stopbits", "1, 1.5 or 2"),
        ({"resource": "ASRL1::INSTR", "visa_library": 1}, "visa_library", "'@py'"),
        ({"resource": "ASRL1::INSTR", "read_termination": 10}, "read_termination", "text"),
        ({"replay": "/nonexistent/x.jsonl"}, "replay", "cannot read"),
    ],
)
def test_open_transport_errors_name_the_field_and_the_fix(spec, field, words):
    with pytest.raises(TransportConfigError) as ei:
        open_transport(spec)
    assert ei.value.field == field and words in str(ei.value)


# ---------------------------------------------------------------------- framing properties
line_bodies = st.lists(st.binary(min_size=0, max_size=30), min_size=0, max_size=8)
terminators = st.sampled_from([b"\n", b"\r\n", b"\r", b"END"])


def _lines(bodies: list[bytes], term: bytes) -> list[bytes]:
    # bodies without any byte of the terminator, so it only occurs where a line ends
    return [bytes(c for c in b if c not in term) + term for b in bodies]


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    pts = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(pts, pts[1:]) if b > a]


@given(line_bodies, terminators, st.lists(st.integers(0, 10_000), max_size=40))
def test_framing_does_not_depend_on_chunking(bodies, term, cuts):
    lines = _lines(bodies, term)
    data = b"".join(lines)
    t = ScriptedTransport([(None, chunk) for chunk in _split(data, cuts)])
    got = [t.read_line(1.0, terminator=term) for _ in lines]
    assert got == lines
    with pytest.raises(TransportTimeout):
        t.read_line(0.0, terminator=term)


@given(
    st.binary(max_size=200), st.lists(st.integers(0, 10_000), max_size=30), st.lists(st.integers(0, 50), max_size=10)
)
def test_read_bytes_does_not_depend_on_chunking(data, cuts, sizes):
    t = ScriptedTransport([(None, chunk) for chunk in _split(data, cuts)])
    out = bytearray()
    for n in sizes:
        if len(out) + n > len(data):
            break
        out += t.read_bytes(n, 1.0)
    assert bytes(out) == data[: len(out)]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line_bodies, terminators, st.lists(st.integers(0, 10_000), max_size=12))
def test_framing_over_a_pty_with_arbitrary_chunking(pty, bodies, term, cuts):
    master, name = pty
    lines = _lines(bodies, term)
    t = SerialTransport(name)
    t.open(1.0)
    t.discard_input()

    def feed():
        for chunk in _split(b"".join(lines), cuts):
            os.write(master, chunk)
            time.sleep(0.002)

    th = threading.Thread(target=feed)
    th.start()
    try:
        assert [t.read_line(2.0, terminator=term) for _ in lines] == lines
    finally:
        th.join()
        t.close()
