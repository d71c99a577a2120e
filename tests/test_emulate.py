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
    with pytest.raises(
        StationError,
        match=r"st.yaml:2:\d+: instruments.p1.driver: instrument p1: driver "
        r"'no-emulator-pstat' has no emulator",
    ):
        emulate_station(st, WallClock(), preset="br-mg")


def test_a_methodscript_channel_runs_a_protocol_on_its_emulated_station():
    from labctl.engine.runner import Engine
    from labctl.protocols import load_protocol_text
    from tests.test_engine import ListRecorder

    st = load_station_text(
        "instruments:\n  ps: {driver: methodscript, port: /dev/ttyACM0, model: es4_lr}\n"
        "channels:\n  A: {potentiostat: ps}\n",
        source="st.yaml",
    )
    clock = WallClock()
    em = emulate_station(st, clock, preset="br-mg")
    try:
        emulated = load_station_text(em.to_yaml(), source="emulated.yaml")
        dev = open_channel(emulated, "A", clock, timeout=5)
        p = load_protocol_text(
            """name: short
cell: {kind: symmetric, working: Mg, area: 1.267 cm2}
steps:
  - rest: {duration: 3 s, record_every: 1 s}
  - galvanostatic: {current: 0.5 mA, duration: 3 s, record_every: 1 s}
""",
            source="short.yaml",
        )
        rec = ListRecorder()
        out = Engine(p, dev, clock, rec).run()
        dev.potentiostat.close()
        assert out.status == "completed", out.end_reason
        assert out.n_samples >= 4
    finally:
        em.close()
