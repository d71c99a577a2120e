"""MethodSCRIPT wire format: the decoder against the worked examples, literals, script text, fuzzing."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.core.clock import VirtualClock
from labctl.drivers.contracts import DeviceError, TechniqueState
from labctl.drivers.methodscript import MethodScriptPotentiostat
from labctl.drivers.methodscript.compiler import compile_technique
from labctl.drivers.methodscript.protocol import (
    MethodScriptError,
    MethodScriptProtocolError,
    decode_package,
    decode_variable,
    encode_value,
    format_literal,
    parse_literal,
    parse_reply,
)
from labctl.drivers.techniques import (
    ConstantCurrent,
    ConstantPotential,
    CyclicSweep,
    Impedance,
    Limits,
    LinearSweep,
    OpenCircuit,
    Recording,
)
from labctl.drivers.transport import TransportTimeout


# --------------------------------------------------------------------------- decoder: the facts' worked examples
def test_worked_examples() -> None:
    assert decode_variable("da7F85F3Fu").value == pytest.approx(-0.499905, abs=1e-12)
    ba = decode_variable("ba48D503Dp,10,288")
    assert ba.value == pytest.approx(-5.78e-5, rel=1e-3) and ba.status == 0 and ba.range == 0x88
    assert decode_variable("da800000Am").value == pytest.approx(0.01)
    assert decode_variable("dcDF5DFF4u").value == pytest.approx(99.999732, abs=1e-9)
    assert decode_variable("cc896D904m").value == pytest.approx(9885.956, abs=1e-6)
    assert math.isnan(decode_variable("ba     nan").value)


def test_official_lsv_reply_decodes() -> None:
    lines = [
        "e",
        "M0000",
        "Pda7F85F3Fu;ba48D503Dp,10,288",
        "Pda7F9234Bu;ba4E2C324p,10,288",
        "Pda806EC24u;baAE16C6Dp,10,288",
        "Pda807B031u;baB360495p,10,288",
        "*",
        "",
    ]
    kinds = [parse_reply(ln + "\n").kind for ln in lines]
    assert kinds == ["ack", "loop_start", "package", "package", "package", "package", "loop_end", "end"]
    pk = [decode_package(ln) for ln in lines[2:6]]
    e = [p.get("da").value for p in pk]  # type: ignore[union-attr]
    assert e[0] == pytest.approx(-0.499905) and all(b > a for a, b in zip(e, e[1:]))
    # the dummy cell is resistive: the current has the sign of the potential and grows with it
    i = [p.get("ba").value for p in pk]  # type: ignore[union-attr]
    assert all((a > 0) == (b > 0) for a, b in zip(e, i)) and all(b > a for a, b in zip(i, i[1:]))


def test_ack_with_loop_start_on_one_line_and_errors() -> None:
    r = parse_reply(b"eM0000\n")
    assert r.kind == "ack" and r.extra[0].kind == "loop_start"
    err = parse_reply("!4001: Line 3, Col 1").error
    assert isinstance(err, MethodScriptError) and err.code == "4001" and err.line == 3 and err.col == 1
    assert "unknown script command" in str(err)
    assert parse_reply("Z!0006").error.code == "0006"  # type: ignore[union-attr]
    assert parse_reply("e!001B").error.meaning == "not supported by this device"  # type: ignore[union-attr]


def test_status_bits_become_flags() -> None:
    v = decode_variable("ba8000000p,16,207")
    assert v.flags == ["overload", "underload"] and v.range == 7


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_encode_decode_roundtrip(x: float) -> None:
    text = "da" + encode_value(x)
    # 7 hex digits: the finest prefix that holds the value, half a count of error at most
    assert decode_variable(text).value == pytest.approx(x, rel=4e-6, abs=1e-14)


@given(st.floats(min_value=-1e4, max_value=1e4, allow_nan=False))
def test_literals_are_integers_with_prefix(x: float) -> None:
    lit = format_literal(x)
    assert "." not in lit and "e" not in lit.lower().rstrip("e")
    assert parse_literal(lit) == pytest.approx(float(f"{x:.9g}"), rel=1e-9, abs=1e-18)


def test_literal_examples() -> None:
    assert [format_literal(v) for v in (0.1, 200e3, -0.5, 1.2, 0.0, 1e-9, 3600)] == [
        "100m",
        "200k",
        "-500m",
        "1200m",
        "0",
        "1n",
        "3600",
    ]
    assert format_literal(11, integer=True) == "11i"


# --------------------------------------------------------------------------- parser fuzzing
@given(st.binary(max_size=80))
def test_parse_reply_never_crashes_otherwise(raw: bytes) -> None:
    try:
        parse_reply(raw)
    except MethodScriptProtocolError:
        pass


@given(st.text(alphabet="Pdabce0123456789ABCDEFmunpkMi ;,!:-+*TLZ", max_size=40))
def test_parse_reply_on_near_miss_text(text: str) -> None:
    try:
        parse_reply(text)
    except MethodScriptProtocolError:
        pass


@given(st.sampled_from(["Pda7F85F3Fu;ba48D503Dp,10,288", "Peb8000001 ;ab800ABCDu"]), st.data())
def test_truncated_packages_raise(line: str, data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=2, max_value=len(line) - 1))
    part = line[:cut]
    try:
        parse_reply(part)
    except MethodScriptProtocolError:
        return
    # only a cut at a field boundary leaves a valid (shorter) package
    assert line[cut] in ";,"


class FeedTransport:
    """In-memory transport: replies to the script with ``feed`` then goes silent."""

    address = "memory://fuzz"

    def __init__(self, feed: bytes) -> None:
        self.feed = bytearray()
        self.pending = feed
        self.sent: list[bytes] = []

    def open(self, timeout: float) -> None:
        pass

    def write(self, data: bytes, timeout: float) -> None:
        self.sent.append(data)
        if data.startswith(b"e\nvar"):
            self.feed += self.pending

    def read_line(self, timeout: float, terminator: bytes = b"\n") -> bytes:
        i = self.feed.find(terminator)
        if i < 0:
            raise TransportTimeout("nothing")
        line = bytes(self.feed[: i + 1])
        del self.feed[: i + 1]
        return line

    def read_bytes(self, n: int, timeout: float) -> bytes:
        raise TransportTimeout("nothing")

    def query(self, data: bytes, timeout: float, terminator: bytes = b"\n") -> bytes:
        self.write(data, timeout)
        return self.read_line(timeout, terminator)

    def discard_input(self) -> None:
        self.feed.clear()

    def close(self) -> None:
        pass


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=60))
def test_handle_on_garbage_fails_within_timeout(junk: bytes) -> None:
    link = FeedTransport(b"e\nM0000\n" + junk + b"\x00garbage\n")
    dev = MethodScriptPotentiostat(
        VirtualClock(), transport=link, model="es4_lr", command_timeout=0.05, silence_timeout=0.1
    )
    dev.connected = True
    h = dev.start(OpenCircuit(10, Recording(dt=1)))
    t0 = time.monotonic()
    failed = False
    try:
        for _ in range(40):
            h.read(0.1)
            if h.state is not TechniqueState.RUNNING:
                break
    except DeviceError:
        failed = True
    assert time.monotonic() - t0 < 3.0
    if b"\n\n" not in (b"\n" + junk).replace(b"\r", b""):  # no empty line (CR is stripped): the parser must fail
        assert failed
    if not failed:  # junk ended the script (an empty line) or was valid MethodSCRIPT
        assert h.state is TechniqueState.ENDED
        return
    assert h.state is TechniqueState.FAILED
    assert any(b"Z\n" in s for s in link.sent)  # the driver aborted and then sent a cell_off script
    assert any(s == b"e\ncell_off\n\n" for s in link.sent)


# --------------------------------------------------------------------------- message pairs: exact script text
HEAD = [
    "var p",
    "var c",
    "var t",
    "var q",
    "var a",
    "var s",
    "var o",
    "var h",
    "var k",
    "var w",
    "store_var a 0 ja",
    "store_var s 0 ja",
]
PCK = ["  timer_get t", "  pck_start", "  pck_add t", "  pck_add p", "  pck_add c", "  pck_end"]
FIN = ["endloop", "on_finished:", "  cell_off"]
PROBE = ["cell_off", "meas_loop_ocp o 100m 100m", "  pck_start", "  pck_add o", "  pck_end", "endloop"]


def _text(lines: list[str]) -> str:
    return "e\n" + "".join(ln + "\n" for ln in lines) + "\n"


def _c(tech, **kw):  # type: ignore[no-untyped-def]
    return compile_technique(tech, max_current=kw.get("imax", 0.03), galvanostat=kw.get("g", True)).text()


def test_script_ocp() -> None:
    assert _c(OpenCircuit(60, Recording(dt=1))) == _text(
        HEAD
        + [
            "set_pgstat_mode 2",
            "set_range ab 4",
            "cell_off",
            "timer_start",
            "meas_loop_ocp p 1 60",
            "  timer_get t",
            "  pck_start",
            "  pck_add t",
            "  pck_add p",
            "  pck_end",
        ]
        + FIN
    )


def test_script_cp_with_cutoffs_and_capacity() -> None:
    tech = ConstantCurrent(
        -2e-3, Limits(duration=3600, voltage_below=-1.2, voltage_above=0.5, charge=3.6), Recording(dt=0.5)
    )
    assert _c(tech) == _text(
        HEAD
        + [
            "set_pgstat_mode 6",
            "set_range ab 4",
            "set_autoranging ab 4 4",
            "set_range db 10m",
            "set_autoranging db 10m 10m",
            "set_i 0",
            "cell_on",
            "timer_start",
            "meas_loop_cp p c -2m 500m 3600",
            *PCK,
            "  copy_var c q",
            "  if q < 0",
            "    mul_var q -1",
            "  endif",
            "  mul_var q 500m",
            "  add_var a q",
            "  if a > 3600m",
            '    send_string "end charge"',
            "    breakloop",
            "  endif",
            "  if p > 500m",
            '    send_string "end voltage_above"',
            "    breakloop",
            "  endif",
            "  if p < -1200m",
            '    send_string "end voltage_below"',
            "    breakloop",
            "  endif",
        ]
        + FIN
    )


def test_script_ca_vs_ocp_with_current_limit() -> None:
    tech = ConstantPotential(0.05, Limits(duration=100, current_below=1e-6), vs_ocp=True, record=Recording(dt=1))
    assert _c(tech) == _text(
        HEAD
        + PROBE
        + [
            "copy_var o h",
            "add_var h 50m",
            "set_pgstat_mode 2",
            "set_range ba 30m",
            "set_autoranging ba 1n 30m",
            "set_e h",
            "cell_on",
            "timer_start",
            "meas_loop_ca p c h 1 100",
            *PCK,
            "  if c < 1u",
            "    if c > -1u",
            '      send_string "end current_below"',
            "      breakloop",
            "    endif",
            "  endif",
        ]
        + FIN
    )


def test_script_lsv_and_cv() -> None:
    assert _c(LinearSweep(-0.5, 0.5, 0.1, step=0.01)) == _text(
        HEAD
        + [
            "set_pgstat_mode 2",
            "set_range ba 30m",
            "set_autoranging ba 1n 30m",
            "set_e -500m",
            "cell_on",
            "timer_start",
            "meas_loop_lsv p c -500m 500m 10m 100m",
            *PCK,
        ]
        + FIN
    )
    assert _c(CyclicSweep(0.0, 0.5, -0.5, 0.05, step=0.005, cycles=3)) == _text(
        HEAD
        + [
            "set_pgstat_mode 2",
            "set_range ba 30m",
            "set_autoranging ba 1n 30m",
            "set_e 0",
            "cell_on",
            "timer_start",
            "meas_loop_cv p c 0 500m -500m 5m 50m nscans(3)",
            *PCK,
        ]
        + FIN
    )


def test_script_eis() -> None:
    head = HEAD[:3] + ["var f", "var r", "var j"] + HEAD[3:]
    assert _c(Impedance(1e5, 0.1, 10, 0.01, e_dc=0.2, vs_ocp=False)) == _text(
        head
        + [
            "set_pgstat_mode 3",
            "set_max_bandwidth 1M",
            "set_range ba 30m",
            "set_autoranging ba 1n 30m",
            "set_range ab 4",
            "set_autoranging ab 4 4",
            "set_e 200m",
            "cell_on",
            "timer_start",
            "meas_loop_eis f r j 10m 100k 100m 61i 200m",
            "  timer_get t",
            "  pck_start",
            "  pck_add t",
            "  pck_add f",
            "  pck_add r",
            "  pck_add j",
            "  pck_end",
        ]
        + FIN
    )


def test_scripts_respect_the_line_rules() -> None:
    techs = [
        OpenCircuit(60),
        ConstantCurrent(1e-3, Limits(duration=10, charge=1, short_circuit=0.01)),
        ConstantPotential(0.1, Limits(duration=5, current_above=1e-3)),
        LinearSweep(0, 1, 0.1, vs_ocp=True),
        CyclicSweep(0, 1, -1, 0.1, vs_ocp=True, limits=Limits(duration=50)),
        Impedance(1e5, 1, 10, 0.01),
    ]
    for t in techs:
        text = _c(t)
        assert "\r" not in text and text.endswith("\n\n")
        for line in text.split("\n"):
            assert len(line) <= 128
            for word in line.split()[1:]:
                assert "." not in word, line


def test_pico_refuses_constant_current_before_sending() -> None:
    link = FeedTransport(b"")
    dev = MethodScriptPotentiostat(VirtualClock(), transport=link, model="espico")
    dev.connected = True
    assert "cp" not in dev.capabilities.techniques
    with pytest.raises(DeviceError, match="galvanostatic"):
        dev.start(ConstantCurrent(1e-4, Limits(duration=10)))
    assert link.sent == []
