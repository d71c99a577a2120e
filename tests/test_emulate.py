"""`labctl emulate`: every instrument of a station served by its emulator, and a station file that
reaches them, so a rehearsal runs the real drivers over real transports."""

from __future__ import annotations

import pytest

from labctl.app.emulate import available, emulate_station
from labctl.app.station import StationError, load_station_text, open_channel
from labctl.core.clock import WallClock

STATION = """name: coating-bench
instruments:
  pstat1: {driver: sim, preset: br-mg}
  coater: {driver: grbl, port: /dev/ttyUSB0, bath_z: -20, down_speed: 1200, up_speed: 1200}
channels:
  A: {potentiostat: pstat1, dip_coater: coater}
"""


def test_the_emulated_station_reaches_every_emulator():
    assert "grbl" in available()
    st = load_station_text(STATION, source="bench.yaml")
    em = emulate_station(st, WallClock(), preset="br-mg")
    try:
        text = em.to_yaml()
        assert "socket://127.0.0.1:" in text and "/dev/ttyUSB0" not in text
        emulated = load_station_text(text, source="emulated.yaml")
        dev = open_channel(emulated, "A", WallClock(), timeout=5)
        dev.dip_coater.immerse("any")
        dev.dip_coater.withdraw()
        assert dev.dip_coater.z == pytest.approx(0.0)
        dev.dip_coater.close()
    finally:
        em.close()


def test_a_driver_without_an_emulator_is_named():
    from labctl.drivers import registry

    registry.register("potentiostat", "no-emulator-pstat", object)
    st = load_station_text("instruments:\n  p1: {driver: no-emulator-pstat, port: COM3}\n", source="st.yaml")
    with pytest.raises(StationError, match=r"st.yaml:2:\d+: instruments.p1.driver: instrument p1: driver "
                                           r"'no-emulator-pstat' has no emulator"):
        emulate_station(st, WallClock(), preset="br-mg")
