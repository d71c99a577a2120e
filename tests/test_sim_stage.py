"""Simulated temperature stage (lag, overshoot, band, range) and dip coater (timing, log)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labctl.drivers.contracts import DeviceError
from labctl.core.clock import VirtualClock
from labctl.simulators.dipcoater import SimulatedDipCoater
from labctl.simulators.stage import SimulatedTemperatureStage


def test_first_order_lag_towards_the_set_point():
    clock = VirtualClock(0.0)
    st = SimulatedTemperatureStage(clock, initial=25.0, tau_s=300.0, noise=0.0)
    st.connect()
    st.set_setpoint(60.0)
    for t in (0.0, 300.0, 900.0):
        clock.sleep_until(t)
        assert st.read_temperature() == pytest.approx(60.0 - 35.0 * math.exp(-t / 300.0))
    # a change mid-transition starts from where the stage is
    st.set_setpoint(40.0)
    t_now = clock.now()
    here = 60.0 - 35.0 * math.exp(-900.0 / 300.0)
    assert st.temperature_at(t_now + 300.0)[0] == pytest.approx(40.0 + (here - 40.0) * math.exp(-1.0))
    # the model is analytic: any past time is answered from its segment
    assert st.temperature_at(150.0)[0] == pytest.approx(60.0 - 35.0 * math.exp(-0.5))


def test_settling_band_time():
    clock = VirtualClock(0.0)
    st = SimulatedTemperatureStage(clock, initial=25.0, tau_s=300.0, noise=0.0)
    st.set_setpoint(60.0)
    ts = st.settling_time(0.2, 35.0)
    assert ts == pytest.approx(300.0 * math.log(35.0 / 0.2))
    t = np.linspace(0, 3 * ts, 3001)
    inside = np.abs(st.temperature_at(t) - 60.0) <= 0.2
    first = t[np.argmax(inside)]
    assert ts <= first <= ts + 3 * ts / 3000
    assert inside[t >= first].all()


def test_overshoot_then_settles():
    clock = VirtualClock(0.0)
    st = SimulatedTemperatureStage(clock, initial=25.0, tau_s=200.0, overshoot=0.1, noise=0.0)
    st.set_setpoint(45.0)
    t = np.linspace(0, 5000, 50001)
    temp = st.temperature_at(t)
    assert temp.max() == pytest.approx(45.0 + 0.1 * 20.0, rel=1e-3)
    ts = st.settling_time(0.2, 20.0)
    assert np.all(np.abs(temp[t >= ts] - 45.0) <= 0.2)


def test_noise_is_seeded_and_small():
    def readings(seed):
        clock = VirtualClock(0.0)
        st = SimulatedTemperatureStage(clock, initial=30.0, noise=0.02, seed=seed)
        out = []
        for _ in range(200):
            out.append(st.read_temperature())
            clock.sleep(1.0)
        return np.array(out)

    a, b, c = readings(1), readings(1), readings(2)
    assert a.tobytes() == b.tobytes() and not np.array_equal(a, c)
    assert np.std(a) == pytest.approx(0.02, rel=0.2)


def test_set_point_outside_the_range_is_refused():
    st = SimulatedTemperatureStage(VirtualClock(0.0), range_c=(-20.0, 120.0))
    with pytest.raises(ValueError, match=r"set point 130\.0 degC is outside the stage range -20..120 degC"):
        st.set_setpoint(130.0)
    with pytest.raises(ValueError, match="outside"):
        st.set_setpoint(float("nan"))
    with pytest.raises(ValueError):
        SimulatedTemperatureStage(VirtualClock(0.0), tau_s=0.0)
    st.set_setpoint(120.0)
    assert st.setpoint == 120.0


def test_dip_coater_takes_clock_time_and_logs_every_move():
    clock = VirtualClock(0.0)
    dc = SimulatedDipCoater(clock, speed_mm_s=2.0, depth_mm=20.0, baths=["bromopropane", "DME"])
    with pytest.raises(DeviceError, match="not connected"):
        dc.immerse("DME")
    dc.connect()
    dc.immerse("bromopropane")
    assert clock.now() == pytest.approx(10.0) and dc.position_mm == 20.0
    with pytest.raises(DeviceError, match="already immersed"):
        dc.immerse("DME")
    clock.sleep(3600.0)
    dc.withdraw()
    dc.withdraw()  # safe twice
    with pytest.raises(DeviceError, match="unknown bath"):
        dc.immerse("water")
    dc.immerse("DME")
    dc.close()  # withdraws
    assert [(a.action, a.bath) for a in dc.log] == [
        ("immerse", "bromopropane"),
        ("withdraw", "bromopropane"),
        ("immerse", "DME"),
        ("withdraw", "DME"),
    ]
    assert dc.log[1].t_start - dc.log[0].t_end == pytest.approx(3600.0)
    assert dc.log[1].t_end == pytest.approx(3620.0)
    assert dc.positions[-1][1] == 0.0 and dc.position_mm == 0.0
