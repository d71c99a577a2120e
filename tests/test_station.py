"""Station files: validation with positions, channels opened from the driver registry, limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.app.station import StationError, load_station, load_station_text, open_channel, survey
from labctl.core.clock import VirtualClock

GOOD = """name: bench-1
instruments:
  pstat1: {driver: sim, preset: br-mg, seed: 3, limits: {current: 5 mA, voltage: [-2 V, 2 V]}}
  pstat2: {driver: sim, preset: bare-mg}
  tc1:    {driver: sim-stage}
  spare:  {driver: sim, preset: br-mg}
channels:
  A: {potentiostat: pstat1, stage: tc1}
  B: {potentiostat: pstat2}
"""


@pytest.fixture(autouse=True)
def _stage_driver():
    from labctl.drivers import registry
    from labctl.simulators.stage import SimulatedTemperatureStage

    registry.register("temperature_stage", "sim-stage", SimulatedTemperatureStage)
    yield


def test_a_good_station_opens_its_channels_with_limits():
    st = load_station_text(GOOD, source="bench.yaml")
    assert set(st.channels) == {"A", "B"} and "spare" in st.instruments
    dev = open_channel(st, "A", VirtualClock())
    assert dev.stage is not None
    assert dev.potentiostat.capabilities.current_range == (-0.005, 0.005)
    assert dev.potentiostat.capabilities.voltage_range == (-2.0, 2.0)
    assert dev.extras["instruments"] == {"potentiostat": "pstat1", "stage": "tc1"}


def test_survey_identifies_every_instrument_without_changing_it():
    st = load_station_text(GOOD, source="bench.yaml")
    rows = survey(st, VirtualClock())
    assert [r["instrument"] for r in rows] == ["pstat1", "pstat2", "tc1", "spare"]
    assert rows[0]["state"]["cell"] == "off" and rows[0]["channel"] == "A"
    assert rows[2]["state"]["temperature"].endswith("degC")
    assert rows[3]["channel"] is None


@pytest.mark.parametrize(
    "change, where, needle",
    [
        (("driver: sim-stage", "driver: sim-stag"), "5:", "unknown driver 'sim-stag'"),
        (("B: {potentiostat: pstat2}", "B: {potentiostat: pstat1}"), "9:", "already used by channel A"),
        (("B: {potentiostat: pstat2}", "B: {potentiostat: pstat9}"), "9:", "no instrument named 'pstat9'"),
        (("A: {potentiostat: pstat1, stage: tc1}", "A: {potentiostat: tc1}"), "8:", "not a potentiostat"),
        (("B: {potentiostat: pstat2}", "B: {potentiostat: pstat2}\n  A: {potentiostat: spare}"), "", "duplicate"),
        (("current: 5 mA", "current: 5 V"), "3:", "current"),
        (("voltage: [-2 V, 2 V]", "voltage: [2 V, -2 V]"), "3:", "not below"),
        (("channels:", "chanels:"), "7:", "did you mean 'channels'"),
    ],
)
def test_bad_station_names_file_line_and_field(change, where, needle):
    with pytest.raises(StationError) as e:
        load_station_text(GOOD.replace(*change), source="bench.yaml")
    msg = str(e.value)
    assert needle in msg, msg
    assert f"bench.yaml:{where}" in msg, msg


def test_relative_visa_library_is_resolved_against_the_station_folder(tmp_path: Path):
    p = tmp_path / "st.yaml"
    p.write_text("instruments:\n  tc1: {driver: sim-stage, visa_library: lakeshore.yaml@sim}\n")
    st = load_station(p)
    assert st.driver_options("tc1")["visa_library"] == f"{tmp_path / 'lakeshore.yaml'}@sim"


def test_an_instrument_that_does_not_open_is_named(tmp_path: Path):
    from labctl.drivers import registry
    from labctl.drivers.contracts import DeviceError

    class Dead:
        def __init__(self, clock, **kw):
            pass

        def connect(self, timeout=10.0):
            raise DeviceError("no answer within 0.5 s")

        def close(self):
            pass

    registry.register("potentiostat", "dead", Dead)
    st = load_station_text(
        "instruments:\n  p1: {driver: dead, port: /dev/ttyUSB9}\nchannels:\n  A: {potentiostat: p1}\n", source="st.yaml"
    )
    with pytest.raises(StationError, match=r"st.yaml:2:.*instrument p1 \(dead at /dev/ttyUSB9\) did not open"):
        open_channel(st, "A", VirtualClock())
