"""Keithley 2450 driver: exact SCPI message pairs, the emulator over real loopback TCP (pyvisa-py),
the same data as the in-process simulator, host-side limits, and the output off on every failure."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.core.clock import ScaledClock, VirtualClock
from labctl.drivers import registry
from labctl.drivers.contracts import DeviceError, DeviceTimeout, Potentiostat, TechniqueHandle, TechniqueState
from labctl.drivers.keithley2450 import READ_COMMAND, Keithley2450, parse_error, parse_idn, parse_reading, source_range
from labctl.drivers.techniques import (
    ConstantCurrent,
    ConstantPotential,
    EndReason,
    Limits,
    OpenCircuit,
    Recording,
)
from labctl.drivers.visalink import decode_reply
from labctl.simulators.emulators.scpi2450 import Keithley2450Emulator, normalise_header
from labctl.simulators.potentiostat import SimulatedPotentiostat
from tests.visa_script import ScriptedTransport

IDN = "KEITHLEY INSTRUMENTS,MODEL 2450,04512345,1.7.12b"


def configuration(level: str, rng: str, vlim: str) -> list[tuple[str, str | None]]:
    return [
        ("*RST", None),
        ("*CLS", None),
        (":OUTP:SMOD HIMP", None),
        (":SOUR:FUNC CURR", None),
        (":SOUR:CURR:RANG:AUTO OFF", None),
        (f":SOUR:CURR:RANG {rng}", None),
        (f":SOUR:CURR {level}", None),
        (f":SOUR:CURR:VLIM {vlim}", None),
        (":SOUR:CURR:READ:BACK ON", None),
        (':SENS:FUNC "VOLT"', None),
        (":SENS:VOLT:RANG:AUTO ON", None),
        (":SENS:VOLT:RSEN OFF", None),
        (":SENS:VOLT:NPLC 1", None),
    ]


CONNECT = [("*IDN?", IDN), (":OUTP OFF", None), (":OUTP?", "0"), ("*CLS", None)]
OFF = [(":OUTP OFF", None), (":OUTP?", "0")]


def read_all(handle: TechniqueHandle, timeout: float = 5.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ts, vs, cs = [], [], []
    while handle.state is TechniqueState.RUNNING:
        b = handle.read(timeout)
        ts.append(b.t)
        vs.append(b.voltage)
        cs.append(b.current)
    return np.concatenate(ts), np.concatenate(vs), np.concatenate(cs)


@pytest.fixture
def vclock() -> VirtualClock:
    return VirtualClock(start_unix=0)


@pytest.fixture
def emulator(vclock: VirtualClock):
    emu = Keithley2450Emulator(vclock, preset="br-mg", seed=3)
    emu.start()
    yield emu
    emu.stop()


# ---------------------------------------------------------------------------- message pairs
def test_galvanostatic_step_sends_exactly_these_commands(vclock: VirtualClock) -> None:
    script = (
        CONNECT
        + configuration("1.000000E-03", "1.000000E-03", "6.500000E-01")
        + [
            (":SYST:ERR?", '0,"No error"'),
            (":OUTP ON", None),
            (":OUTP?", "1"),
            (READ_COMMAND, "+5.01E-02,+1.0E-03"),
            (READ_COMMAND, "+5.02E-02,+1.0E-03"),
            (READ_COMMAND, "+5.03E-02,+1.0E-03"),
            *OFF,
        ]
    )
    link = ScriptedTransport(script)
    k = Keithley2450(vclock, link=link)
    assert isinstance(k, Potentiostat)
    k.connect(1.0)
    tech = ConstantCurrent(1e-3, Limits(duration=30.0, voltage_above=0.5, voltage_below=-0.5), Recording(dt=10.0))
    h = k.start(tech)
    t, v, i = read_all(h)
    assert link.script == [], f"commands not sent: {link.script}"
    assert list(t) == [10.0, 20.0, 30.0]
    assert list(v) == [0.0501, 0.0502, 0.0503]
    assert h.state is TechniqueState.ENDED and h.end is not None and h.end.reason is EndReason.DURATION
    assert k.capabilities.native_limits is False
    h.stop()  # idempotent after the end: nothing more is sent (the output is confirmed off)
    assert link.script == []


def test_open_circuit_sources_zero_on_the_lowest_range(vclock: VirtualClock) -> None:
    script = (
        CONNECT
        + configuration("0.000000E+00", "1.000000E-08", "2.100000E+01")
        + [
            (":SYST:ERR?", '0,"No error"'),
            (":OUTP ON", None),
            (":OUTP?", "1"),
            (READ_COMMAND, "+1.0E-03,+1.0E-12"),
            (READ_COMMAND, "+1.1E-03,-2.0E-12"),
            *OFF,
        ]
    )
    link = ScriptedTransport(script)
    k = Keithley2450(vclock, link=link)
    k.connect(1.0)
    t, v, _ = read_all(k.start(OpenCircuit(2.0, Recording(dt=1.0))))
    assert link.script == [] and list(t) == [1.0, 2.0] and list(v) == [1e-3, 1.1e-3]


def test_a_queued_error_after_configuration_fails_the_start_with_its_code_and_output_off(vclock) -> None:
    script = (
        CONNECT
        + configuration("1.000000E-03", "1.000000E-03", "2.100000E+01")
        + [(":SYST:ERR?", '-222,"Parameter data out of range"'), (":SYST:ERR?", '0,"No error"'), *OFF]
    )
    link = ScriptedTransport(script)
    k = Keithley2450(vclock, link=link)
    k.connect(1.0)
    with pytest.raises(DeviceError, match="Parameter data out of range") as err:
        k.start(ConstantCurrent(1e-3, Limits(duration=10.0)))
    assert err.value.code == "-222"
    assert link.script == [] and ":OUTP ON" not in link.sent


def test_a_bad_technique_is_refused_before_anything_is_sent(vclock: VirtualClock) -> None:
    link = ScriptedTransport(CONNECT)
    k = Keithley2450(vclock, link=link, current_limit=0.01)
    k.connect(1.0)
    with pytest.raises(DeviceError, match="outside this 2450's range"):
        k.start(ConstantCurrent(0.02, Limits(duration=1.0)))
    with pytest.raises(DeviceError, match="runs cp, ocp"):
        k.start(ConstantPotential(0.1, Limits(duration=1.0)))
    assert link.sent == [c for c, _ in CONNECT]


def test_source_range_is_the_smallest_that_fits() -> None:
    assert source_range(1e-3) == 1e-3 and source_range(1.04e-3) == 1e-3 and source_range(1.06e-3) == 1e-2
    assert source_range(-5e-9) == 1e-8
    with pytest.raises(DeviceError):
        source_range(1.2)


# ---------------------------------------------------------------------------- over loopback TCP
def test_a_non_2450_is_refused_naming_its_model(vclock: VirtualClock) -> None:
    with Keithley2450Emulator(vclock, preset="br-mg", idn="KEITHLEY INSTRUMENTS INC.,MODEL 2400,1234567,C30") as emu:
        k = Keithley2450(vclock, resource=emu.resource)
        with pytest.raises(DeviceError, match="MODEL 2400.*not a Keithley 2450"):
            k.connect(2.0)


def test_registry_finds_the_driver_by_entry_point() -> None:
    assert registry.load("potentiostat", "keithley2450") is Keithley2450


def test_same_protocol_and_seed_give_the_same_data_as_the_in_process_simulator(emulator) -> None:
    """OCP, +1 mA, -1 mA, OCP on br-mg (seed 3, with noise): simulator vs 2450 emulator over TCP."""
    rec = Recording(dt=5.0)
    techs = [
        OpenCircuit(60.0, rec),
        ConstantCurrent(1e-3, Limits(duration=600.0), rec),
        ConstantCurrent(-1e-3, Limits(duration=600.0), rec),
        OpenCircuit(60.0, rec),
        ConstantCurrent(2e-3, Limits(charge=0.25, voltage_above=5.0), rec),
    ]
    sim_clock = VirtualClock(start_unix=0)
    sim = SimulatedPotentiostat(sim_clock, preset="br-mg", seed=3)
    sim.connect()
    k = Keithley2450(emulator.clock, resource=emulator.resource, visa_library="@py")
    k.connect(5.0)
    for tech in techs:
        hs, hk = sim.start(tech), k.start(tech)
        ts, vs, is_ = read_all(hs)
        tk, vk, ik = read_all(hk)
        assert len(tk) == len(ts) > 10
        np.testing.assert_allclose(tk[:-1], ts[:-1], rtol=0, atol=1e-9)
        np.testing.assert_allclose(vk[:-1], vs[:-1], rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(ik[:-1], is_[:-1], rtol=1e-8, atol=1e-12)
        # the end: the simulator integrates the model current, the host the measured (noisy) one
        assert hk.end.reason is hs.end.reason
        assert hk.end.t == pytest.approx(hs.end.t, abs=0.01) and tk[-1] == hk.end.t
        assert vk[-1] == pytest.approx(vs[-1], abs=1e-4) and ik[-1] == pytest.approx(is_[-1], rel=1e-3)
        assert emulator.output is False
    assert hk.end.reason is EndReason.CHARGE and hk.end.t - techs[0].duration > 0
    k.close()


def test_host_ends_the_step_at_a_voltage_limit_and_turns_the_output_off(emulator) -> None:
    k = Keithley2450(emulator.clock, resource=emulator.resource)
    k.connect(5.0)
    plateau = emulator.cell.plateau(5e-3 / emulator.cell.area)
    level = 0.8 * plateau  # below the plateau: crossed between the first two samples at the latest
    t0 = emulator.clock.now()
    h = k.start(ConstantCurrent(5e-3, Limits(duration=3600.0, voltage_above=level), Recording(dt=10.0)))
    t, v, _ = read_all(h)
    assert h.end.reason is EndReason.VOLTAGE_ABOVE and "reached" in h.end.detail
    assert t0 < h.end.t <= t0 + 10.0 and t[-1] == h.end.t and v[-1] == level
    assert emulator.output is False and k.output_on is False
    assert emulator.history[-1][1] is False
    k.close()


def test_wall_paced_run_keeps_the_read_timeout(vclock) -> None:
    clock = ScaledClock(20.0, start_unix=0)
    with Keithley2450Emulator(clock, preset="br-mg", noise=False) as emu:
        k = Keithley2450(clock, resource=emu.resource)
        k.connect(5.0)
        h = k.start(ConstantCurrent(1e-3, Limits(duration=20.0), Recording(dt=1.0)))
        ts = []
        while h.state is TechniqueState.RUNNING:
            w0 = time.monotonic()
            b = h.read(0.1)
            assert time.monotonic() - w0 < 0.1 + 0.3
            ts.extend(b.t)
        # one sample a second of clock time (a late one is taken late, missed ones are not made up)
        assert 10 <= len(ts) <= 20 and np.all(np.diff(ts) > 0.5)
        assert ts[-1] >= h.t0 + 20.0 and h.end.reason is EndReason.DURATION
        assert emu.output is False
        k.close()


def test_stop_mid_run_turns_the_output_off_and_is_idempotent(emulator) -> None:
    k = Keithley2450(emulator.clock, resource=emulator.resource)
    k.connect(5.0)
    h = k.start(ConstantCurrent(1e-3, Limits(duration=3600.0), Recording(dt=1.0)))
    assert emulator.output is True
    b = h.read(0.3)
    assert len(b) > 0
    h.stop()
    h.stop()
    assert h.state is TechniqueState.STOPPED and emulator.output is False
    assert len(h.read(1.0)) == 0
    k.close()
    k.close()


@pytest.mark.parametrize(
    "fault, kwargs, expect",
    [
        ("silent", {}, DeviceTimeout),
        ("garbage", {"payload": b"\x8f\xff#GARBLE\n"}, DeviceError),  # not ASCII
        ("garbage", {"payload": b"+1.0E-01;;OVER\n"}, DeviceError),  # not two numbers
        ("garbage", {"payload": b"+9.9E37,+1.0E-03\n"}, DeviceError),  # overflow
        ("garbage", {"payload": b"+1.0E-01,+1.0"}, DeviceTimeout),  # truncated: no terminator
        ("disconnect", {}, DeviceError),
    ],
)
def test_every_link_failure_mid_run_raises_in_time_with_the_output_off(fault, kwargs, expect) -> None:
    clock = ScaledClock(50.0, start_unix=0)
    with Keithley2450Emulator(clock, preset="br-mg") as emu:
        k = Keithley2450(clock, resource=emu.resource, io_timeout=0.4)
        k.connect(5.0)
        h = k.start(ConstantCurrent(1e-3, Limits(duration=3600.0), Recording(dt=1.0)))
        emu.inject(fault, on=":READ?", skip=3, **kwargs)
        w0 = time.monotonic()
        with pytest.raises(expect):
            while True:
                h.read(2.0)
        assert time.monotonic() - w0 < 2.0 + 0.5
        assert h.state is TechniqueState.FAILED
        assert emu.output is False, f"output left on after {fault}"
        h.stop()  # safe after the error
        emu.clear_faults()
        k.close()


def test_an_instrument_error_queued_during_configuration_is_reported_with_the_output_off(emulator) -> None:
    k = Keithley2450(emulator.clock, resource=emulator.resource)
    k.connect(5.0)
    emulator.inject("error", on=":SENS:VOLT:NPLC", code=-222, message="Parameter data out of range")
    with pytest.raises(DeviceError, match=r"-222 'Parameter data out of range'") as err:
        k.start(ConstantCurrent(1e-3, Limits(duration=10.0)))
    assert err.value.code == "-222"
    assert emulator.output is False and ":OUTP ON" not in emulator.log
    h = k.start(ConstantCurrent(1e-3, Limits(duration=10.0)))  # the queue was read empty: next start works
    read_all(h)
    assert h.end.reason is EndReason.DURATION
    k.close()


def test_a_silent_instrument_fails_connect_within_the_timeout() -> None:
    clock = VirtualClock(start_unix=0)
    with Keithley2450Emulator(clock, preset="br-mg") as emu:
        emu.inject("silent")
        k = Keithley2450(clock, resource=emu.resource)
        w0 = time.monotonic()
        with pytest.raises(DeviceTimeout):
            k.connect(0.5)
        assert time.monotonic() - w0 < 1.5


def test_connect_to_nothing_is_a_device_error() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    k = Keithley2450(VirtualClock(), resource=f"TCPIP::127.0.0.1::{port}::SOCKET")
    with pytest.raises(DeviceError):
        k.connect(1.0)


def test_emulator_understands_long_forms_and_reports_bad_commands(vclock) -> None:
    assert normalise_header(":SOURce1:CURRent:LEVel") == "SOUR:CURR"
    assert normalise_header("SENSe:VOLTage:NPLCycles") == "SENS:VOLT:NPLCYCLES"
    emu = Keithley2450Emulator(vclock, preset="br-mg")
    assert emu.handle(":SOUR:CURR:RANG 1e-3") is None
    assert emu.handle(":SOUR:CURR 0.5") is None  # beyond the fixed range
    assert emu.handle(":BOGUS 1") is None
    assert emu.handle(":SYST:ERR?") == '-222,"Parameter data out of range"'
    assert emu.handle(":SYST:ERR?") == '-113,"Undefined header"'
    assert emu.handle(":SYST:ERR?") == '0,"No error"'


# ---------------------------------------------------------------------------- parsers
@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_reply_parsers_accept_or_raise_device_error(text: str) -> None:
    for parse in (parse_reading, parse_error, parse_idn):
        try:
            parse(text)
        except DeviceError:
            pass


@settings(max_examples=200, deadline=None)
@given(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e30, max_value=1e30),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e30, max_value=1e30),
)
def test_reading_parser_round_trips_numbers(v: float, i: float) -> None:
    assert parse_reading(f"{v:+.9E},{i:+.9E}") == (float(f"{v:+.9E}"), float(f"{i:+.9E}"))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_any_reply_bytes_during_a_run_raise_device_error_with_the_output_off(raw: bytes) -> None:
    """Whatever bytes come back to a reading, the technique either goes on or fails with the output off."""
    state = {"on": False}

    def reply(cmd: str) -> str | None:
        if cmd == "*IDN?":
            return IDN
        if cmd == ":OUTP ON":
            state["on"] = True
        if cmd == ":OUTP OFF":
            state["on"] = False
        if cmd == ":OUTP?":
            return "1" if state["on"] else "0"
        if cmd == ":SYST:ERR?":
            return '0,"No error"'
        if cmd == READ_COMMAND:
            return raw.decode("latin-1")
        return None

    k = Keithley2450(VirtualClock(), link=ScriptedTransport(replies=reply))
    k.connect(1.0)
    h = k.start(ConstantCurrent(1e-3, Limits(duration=3.0), Recording(dt=1.0)))
    try:
        read_all(h)
        assert h.state is TechniqueState.ENDED
    except DeviceError:
        assert h.state is TechniqueState.FAILED
    assert state["on"] is False


@given(st.binary(max_size=5000))
@settings(max_examples=200, deadline=None)
def test_decode_reply_is_text_or_device_error(raw: bytes) -> None:
    try:
        text = decode_reply(raw, "x")
    except DeviceError:
        return
    assert text.isprintable() or "\t" in text
