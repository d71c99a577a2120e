"""The GRBL dip coater: exact bytes (message pairs), the driver against its emulator over TCP and a
pty, a whole automated dip coat through the engine, faults (alarm, silence, garbage) that end safely."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.core.clock import VirtualClock
from labctl.drivers.contracts import ChannelDevices, DeviceError
from labctl.drivers.grbl import GrblDipCoater
from labctl.drivers.transports import ScriptedTransport
from labctl.simulators.emulators.grbl import GrblMachine, GrblPtyServer, GrblTcpServer

IDLE0 = b"<Idle|MPos:0.000,0.000,0.000|FS:0,0>\r\n"


def test_message_pairs_of_connect_and_immerse():
    script = [
        (b"$I\n", b"[VER:1.1h.20190825:]\r\n[OPT:V,15,128]\r\nok\r\n"),
        (b"?", IDLE0),
        (b"G21 G90\n", b"ok\r\n"),
        (b"?", IDLE0),
        (b"G1 Z-30.000 F300.0\n", b"ok\r\n"),
        (b"?", b"<Idle|MPos:0.000,0.000,-30.000|FS:0,0>\r\n"),
    ]
    with ScriptedTransport(script) as t:
        c = GrblDipCoater(VirtualClock(), transport=t, bath_z=-30.0)
        c.connect(timeout=2)
        c.immerse("DME")
    assert c.version.startswith("1.1h") and c.z == -30.0


def test_an_error_reply_names_its_code_and_meaning():
    script = [(b"$I\n", b"[VER:1.1h:]\r\nok\r\n"), (b"?", IDLE0), (b"G21 G90\n", b"error:20\r\n")]
    with pytest.raises(DeviceError, match=r"GRBL error 20 on 'G21 G90': unsupported"):
        GrblDipCoater(VirtualClock(), transport=ScriptedTransport(script)).connect(timeout=2)


def test_another_firmware_is_refused():
    script = [(b"$I\n", b"Marlin 2.1\r\nok\r\n")]
    with pytest.raises(DeviceError, match="did not answer as GRBL v1.x"):
        GrblDipCoater(VirtualClock(), transport=ScriptedTransport(script)).connect(timeout=2)


@pytest.mark.parametrize("server_cls", [GrblTcpServer, GrblPtyServer], ids=["tcp", "pty"])
def test_driver_against_emulator(server_cls):
    clock = VirtualClock(start_unix=0)
    machine = GrblMachine(clock)
    server = server_cls(machine)
    try:
        c = GrblDipCoater(clock, port=server.url, bath_z={"bromopropane": -40.0}, down_speed=600, up_speed=60)
        c.connect(timeout=5)
        t0 = clock.now()
        c.immerse("bromopropane")
        t_down = clock.now() - t0
        assert machine.z() == pytest.approx(-40.0)
        assert 4.0 <= t_down <= 4.0 + 0.4  # 40 mm at 600 mm/min, polled every 0.2 s
        t1 = clock.now()
        c.withdraw()
        assert clock.now() - t1 == pytest.approx(40.0, abs=0.4)  # slow withdrawal: 60 mm/min
        assert machine.z() == pytest.approx(0.0)
        c.close()
    finally:
        server.close()
    assert "G1 Z-40.000 F600.0" in machine.lines and "G1 Z0.000 F60.0" in machine.lines


def test_an_automated_dip_coat_runs_through_the_engine():
    from labctl.engine.runner import Engine
    from labctl.protocols import load_protocol_text
    from tests.fakes import FakePotentiostat
    from tests.test_engine import ListRecorder

    clock = VirtualClock(start_unix=0)
    server = GrblTcpServer(GrblMachine(clock))
    try:
        coater = GrblDipCoater(clock, port=server.url, bath_z=-20.0, down_speed=600, up_speed=120)
        coater.connect(timeout=5)
        p = load_protocol_text(
            """name: coat
cell: {kind: symmetric, working: Br-Mg, area: 1.267 cm2}
steps:
  - dip_coat: {cells: [S1], solution: bath, concentration: 2 vol%, immersion: 10 min, rinse: 1 min, rinse_solution: DME,
               mode: automated, tolerance: 60 s}
""",
            source="coat.yaml",
        )
        rec = ListRecorder()
        out = Engine(p, ChannelDevices(FakePotentiostat(clock), dip_coater=coater), clock, rec).run()
        assert out.status == "completed", out.end_reason
        assert out.duration >= 11 * 60
    finally:
        server.close()


def test_a_hard_limit_on_the_way_down_fails_cleanly_and_holds_the_axis():
    clock = VirtualClock(start_unix=0)
    machine = GrblMachine(clock, fail_alarm_at_z=-12.0)
    server = GrblTcpServer(machine)
    try:
        c = GrblDipCoater(clock, port=server.url, bath_z=-40.0, down_speed=600)
        c.connect(timeout=5)
        with pytest.raises(DeviceError, match="ALARM 1|alarm 1|hard limit|state Alarm"):
            c.immerse("any")
        assert machine.z() == pytest.approx(-12.0)
    finally:
        server.close()


def test_a_silent_controller_times_out_instead_of_hanging():
    clock = VirtualClock()
    server = GrblTcpServer(GrblMachine(clock, silent=True))
    try:
        c = GrblDipCoater(clock, port=server.url)
        t = time.monotonic()
        with pytest.raises(DeviceError):
            c.connect(timeout=1.0)
        assert time.monotonic() - t < 5
    finally:
        server.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=60))
def test_garbage_replies_raise_device_errors_within_the_timeout(junk: bytes):
    t = ScriptedTransport([(b"$I\n", junk + b"\n")])
    c = GrblDipCoater(VirtualClock(), transport=t)
    start = time.monotonic()
    with pytest.raises(DeviceError):
        c.connect(timeout=0.3)
    assert time.monotonic() - start < 3
