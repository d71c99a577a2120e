"""Lake Shore 335/336 driver: exact message pairs, pyvisa-sim YAML (@sim), the thermal emulator over
loopback TCP (@py) for temperature steps, faults within the timeout, heater off on close."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import labctl.simulators.emulators as emulators
from labctl.core.clock import VirtualClock
from labctl.drivers import registry
from labctl.drivers.contracts import DeviceError, DeviceTimeout, TemperatureStage
from labctl.drivers.lakeshore import LakeShore335, parse_idn, parse_kelvin, parse_percent, parse_ramp, parse_range
from labctl.simulators.emulators.lakeshore import LakeShoreEmulator
from tests.visa_script import ScriptedTransport

SIM_YAML = Path(emulators.__file__).parent / "lakeshore335.yaml"
IDN = "LSCI,MODEL335,LSA2C4E/#######,2.9"
CONNECT = [
    ("*IDN?", IDN),
    ("RAMP 1,0,0.0", None),
    ("RAMP? 1", "0,+0.0"),
    ("RANGE? 1", "0"),
    ("SETP? 1", "+295.150"),
    ("KRDG? A", "+295.212"),
]


def test_set_point_and_read_send_exactly_these_commands() -> None:
    script = CONNECT + [
        ("SETP 1,318.150", None),
        ("SETP? 1", "+318.150"),
        ("RANGE 1,3", None),
        ("RANGE? 1", "3"),
        ("KRDG? A", "+300.150"),
        ("SETP 1,333.150", None),
        ("SETP? 1", "+333.150"),
        ("HTR? 1", "+42.5"),
        ("RANGE 1,0", None),
        ("RANGE? 1", "0"),
    ]
    link = ScriptedTransport(script)
    ls = LakeShore335(VirtualClock(), link=link)
    assert isinstance(ls, TemperatureStage)
    ls.connect(1.0)
    assert ls.setpoint == pytest.approx(22.0)
    ls.set_setpoint(45.0)
    assert ls.read_temperature() == pytest.approx(27.0)
    ls.set_setpoint(60.0)  # the heater is already on: no RANGE again
    assert ls.heater_output() == 42.5
    ls.close()  # heater off, confirmed
    assert link.script == [] and not link.is_open


def test_ramp_rate_is_configured_and_checked_at_connect() -> None:
    script = [
        ("*IDN?", "LSCI,MODEL336,LSA1,2.5"),
        ("RAMP 1,1,5.0", None),
        ("RAMP? 1", "1,+5.0"),
        ("RANGE? 1", "3"),
        ("SETP? 1", "+300.000"),
        ("KRDG? A", "+299.000"),
        ("RANGE 1,0", None),
        ("RANGE? 1", "0"),
    ]
    link = ScriptedTransport(script)
    ls = LakeShore335(link=link, ramp_rate=5.0)
    ls.connect(1.0)
    assert ls.heater_on
    ls.close()
    assert link.script == []


def test_a_set_point_that_does_not_take_is_a_device_error() -> None:
    link = ScriptedTransport(CONNECT + [("SETP 1,318.150", None), ("SETP? 1", "+295.150")])
    ls = LakeShore335(link=link)
    ls.connect(1.0)
    with pytest.raises(DeviceError, match="set point did not take"):
        ls.set_setpoint(45.0)


def test_out_of_range_set_point_is_refused_before_anything_is_sent() -> None:
    link = ScriptedTransport(CONNECT)
    ls = LakeShore335(link=link, range_c=(10.0, 80.0))
    ls.connect(1.0)
    for bad in (95.0, 5.0, float("nan")):
        with pytest.raises(ValueError, match="outside the stage range 10..80 degC"):
            ls.set_setpoint(bad)
    assert link.script == []


def test_another_controller_is_refused_naming_its_model() -> None:
    link = ScriptedTransport([("*IDN?", "LSCI,MODEL350,LSA9,1.0")])
    with pytest.raises(DeviceError, match="LSCI MODEL350.*not a Lake Shore 335/336"):
        LakeShore335(link=link).connect(1.0)
    assert not link.is_open


def test_registry_finds_the_driver_by_entry_point() -> None:
    assert registry.load("temperature_stage", "lakeshore335") is LakeShore335


# ---------------------------------------------------------------------------- pyvisa-sim
def test_driver_over_pyvisa_sim_yaml() -> None:
    ls = LakeShore335(resource="TCPIP::127.0.0.1::7777::SOCKET", visa_library=f"{SIM_YAML}@sim", ramp_rate=2.5)
    ls.connect(2.0)
    assert ls.identify().startswith("LSCI,MODEL335")
    assert ls.read_temperature() == pytest.approx(22.0)
    ls.set_setpoint(45.0)
    assert ls.setpoint == 45.0 and ls.heater_on
    assert ls.link.query("SETP? 1", 1.0) == "+318.150"
    assert ls.link.query("RANGE? 1", 1.0) == "3"
    assert ls.heater_output() == 0.0
    ls.heater_off()
    assert ls.link.query("RANGE? 1", 1.0) == "0" and not ls.heater_on
    ls.close()


# ---------------------------------------------------------------------------- TCP emulator
@pytest.fixture
def vclock() -> VirtualClock:
    return VirtualClock(start_unix=0)


def _stage(emu: LakeShoreEmulator, **kw) -> LakeShore335:
    ls = LakeShore335(emu.clock, resource=emu.resource, visa_library="@py", **kw)
    ls.connect(5.0)
    return ls


def test_temperature_steps_equilibrate_hold_and_close_turns_the_heater_off(vclock) -> None:
    """25 -> 60 degC steps on a tau = 120 s stage: within 0.05 degC after 10 tau, held, heater off at close."""
    with LakeShoreEmulator(vclock, ambient_c=22.0, tau_s=120.0) as emu:
        ls = _stage(emu)
        assert ls.read_temperature() == pytest.approx(22.0, abs=1e-3)
        for sp in (25.0, 40.0, 60.0, 40.0):
            ls.set_setpoint(sp)
            vclock.sleep(120.0)
            part = ls.read_temperature()
            assert abs(part - sp) > 0.5  # one tau: still on the way
            vclock.sleep(1080.0)
            assert ls.read_temperature() == pytest.approx(sp, abs=0.05)
            vclock.sleep(600.0)  # hold
            assert ls.read_temperature() == pytest.approx(sp, abs=0.01)
            assert 0.0 < ls.heater_output() <= 100.0
        ls.close()
        assert emu.heater_range == 0
        vclock.sleep(2400.0)
        assert emu.reading("A") - 273.15 == pytest.approx(22.0, abs=0.01)  # drifts back to ambient


def test_overshoot_and_a_weak_heater_range() -> None:
    clock = VirtualClock(start_unix=0)
    with LakeShoreEmulator(clock, tau_s=60.0, overshoot=0.2) as emu:
        ls = _stage(emu)
        ls.set_setpoint(42.0)
        peak = 0.0
        for _ in range(120):
            clock.sleep(5.0)
            peak = max(peak, ls.read_temperature())
        assert 42.0 + 2.0 < peak < 42.0 + 6.0  # a 20 degC step overshoots by about 20 %
        assert ls.read_temperature() == pytest.approx(42.0, abs=0.1)
        ls.close()
    clock = VirtualClock(start_unix=0)
    with LakeShoreEmulator(clock, tau_s=60.0, max_rise_k=(5.0, 30.0, 150.0)) as emu:
        ls = _stage(emu, heater_range=1)  # low range: at most ambient + 5 K
        ls.set_setpoint(45.0)
        clock.sleep(1200.0)
        assert ls.read_temperature() == pytest.approx(27.0, abs=0.05)
        assert ls.heater_output() == 100.0
        ls.close()


def test_ramp_limits_how_fast_the_set_point_moves(vclock) -> None:
    with LakeShoreEmulator(vclock, tau_s=10.0) as emu:
        ls = _stage(emu, ramp_rate=10.0)  # 10 K/min
        ls.set_setpoint(42.0)
        vclock.sleep(60.0)
        assert 25.0 < ls.read_temperature() < 32.0  # ~ 22 + 10 - lag
        vclock.sleep(120.0)
        assert ls.read_temperature() == pytest.approx(42.0, abs=0.1)
        ls.close()


def test_hold_on_close_leaves_the_loop_regulating(vclock) -> None:
    with LakeShoreEmulator(vclock) as emu:
        ls = _stage(emu, hold_on_close=True)
        ls.set_setpoint(30.0)
        ls.close()
        assert emu.heater_range == 3 and emu.setpoint == pytest.approx(303.15)


@pytest.mark.parametrize(
    "fault, kwargs, expect",
    [
        ("silent", {}, DeviceTimeout),
        ("garbage", {"payload": b"\xff\xfe\x00\r\n"}, DeviceError),
        ("garbage", {"payload": b"+2X5.1\r\n"}, DeviceError),
        ("garbage", {"payload": b"+0.000\r\n"}, DeviceError),  # a sensor fault reads 0 K
        ("garbage", {"payload": b"+295."}, DeviceTimeout),  # truncated
        ("disconnect", {}, DeviceError),
    ],
)
def test_faults_raise_device_error_within_the_timeout(fault, kwargs, expect, vclock) -> None:
    with LakeShoreEmulator(vclock) as emu:
        ls = _stage(emu, io_timeout=0.4)
        ls.set_setpoint(40.0)
        # a fault that lasts: every retry of the reading meets it
        emu.inject(fault, on="KRDG?", count=ls.RETRIES + 1, **kwargs)
        w0 = time.monotonic()
        with pytest.raises(expect):
            ls.read_temperature()
        assert time.monotonic() - w0 < (ls.RETRIES + 1) * 0.4 + 0.4
        emu.clear_faults()


@pytest.mark.parametrize("payload", [b"\xff\xfe\x00\r\n", b"+2X5.1\r\n", b"+295."])
def test_one_malformed_reading_is_rejected_counted_and_read_again(payload, vclock) -> None:
    with LakeShoreEmulator(vclock) as emu:
        ls = _stage(emu, io_timeout=0.4)
        emu.inject("garbage", on="KRDG?", payload=payload)
        assert ls.read_temperature() == pytest.approx(22.0, abs=0.5)
        assert ls.rejected == 1
        assert ls.read_temperature() == pytest.approx(22.0, abs=0.5) and ls.rejected == 1


def test_a_silent_controller_fails_connect_within_the_timeout(vclock) -> None:
    with LakeShoreEmulator(vclock) as emu:
        emu.inject("silent")
        w0 = time.monotonic()
        with pytest.raises(DeviceTimeout):
            LakeShore335(vclock, resource=emu.resource, io_timeout=0.3).connect(0.5)
        assert time.monotonic() - w0 < 1.5


# ---------------------------------------------------------------------------- parsers
@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_parsers_accept_or_raise_device_error(text: str) -> None:
    for parse in (parse_idn, parse_kelvin, parse_range, parse_ramp, parse_percent):
        try:
            parse(text)
        except DeviceError:
            pass


@settings(max_examples=150, deadline=None)
@given(st.floats(min_value=0.001, max_value=1999.0))
def test_kelvin_parser_reads_what_the_controller_prints(k: float) -> None:
    assert parse_kelvin(f"{k:+.3f}") == pytest.approx(float(f"{k:.3f}")) or round(k, 3) <= 0


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=60))
def test_any_reply_to_a_reading_is_a_temperature_or_a_device_error(raw: bytes) -> None:
    def reply(cmd: str) -> str | None:
        answers = {"*IDN?": IDN, "RAMP? 1": "0,+0.0", "RANGE? 1": "0", "SETP? 1": "+295.150"}
        if cmd == "KRDG? A" and link.sent.count("KRDG? A") > 1:
            return raw.decode("latin-1")
        return answers.get(cmd, "+295.150" if "?" in cmd else None)

    link = ScriptedTransport(replies=reply)
    ls = LakeShore335(link=link)
    ls.connect(1.0)
    try:
        t = ls.read_temperature()
    except DeviceError:
        return
    assert -273.15 < t < 2000.0
