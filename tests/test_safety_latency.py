"""Issue 10, item 5: a safety limit turns the cell off within one sample period, every time,
measured in virtual time over many seeds, record intervals and limits.

The simulated potentiostat runs on a virtual clock whose horizon is zero, so it delivers its
samples one at a time as a streaming instrument does (under ``--speed max`` it may compute a
long block at once, and the trip is still taken at the first sample beyond the limit, the
block's later samples dropped: ``tests/test_engine_state.py``).  For each run we record the
virtual time of every ``cell_off`` and check: the last stored sample is the first one beyond
the limit, the one before it is inside, and the cell went off no later than one record
interval after the last sample inside the limit (the crossing lies between the two).
"""

from __future__ import annotations

import numpy as np
import pytest

from labctl.app.controller import SimSettings, build_sim_channel
from labctl.core.clock import VirtualClock
from labctl.drivers.contracts import ChannelDevices
from labctl.engine.runner import Engine
from labctl.protocols import load_protocol_text
from labctl.simulators.stage import SimulatedTemperatureStage
from tests.fakes import FakePotentiostat
from tests.test_engine import ListRecorder


class StreamingClock(VirtualClock):
    """Virtual time in which a simulator hands over each sample as it is measured."""

    def horizon(self) -> float:
        return 0.0


def _protocol(step: str, safety: str) -> object:
    return load_protocol_text(
        f"""name: trip
cell: {{kind: symmetric, working: Mg, area: 1.267 cm2}}
safety: {safety}
steps:
  - rest: {{duration: 3 s, record_every: 1 s}}
  - {step}
""",
        source="trip.yaml",
    )


def _run(step: str, safety: str, seed: int, overshoot: float = 0.0):  # type: ignore[no-untyped-def]
    clock = StreamingClock(start_unix=0)
    p = _protocol(step, safety)
    dev = build_sim_channel(p, clock, SimSettings("br-mg", seed=seed))
    if overshoot:
        dev.stage = SimulatedTemperatureStage(clock, tau_s=120.0, overshoot=overshoot, seed=seed)
    offs: list[float] = []
    real_off = dev.potentiostat.cell_off

    def cell_off() -> None:
        offs.append(clock.now())
        real_off()

    dev.potentiostat.cell_off = cell_off  # type: ignore[method-assign]
    rec = ListRecorder()
    out = Engine(p, dev, clock, rec).run()
    t = np.concatenate([s[2] for s in rec.samples_list])
    v = np.concatenate([s[3] for s in rec.samples_list])
    i = np.concatenate([s[4] for s in rec.samples_list])
    temps = [s[6] for s in rec.samples_list]
    temp = np.concatenate(
        [x if x is not None else np.full(len(s[2]), np.nan) for x, s in zip(temps, rec.samples_list, strict=False)]
    )
    return out, rec, offs, t, v, i, temp


SEEDS = range(10)


def _off_after(offs: list[float], t_inside: float) -> float:
    """The virtual time of the first cell_off at or after the last sample inside the limit."""
    after = [x for x in offs if x >= t_inside - 1e-9]
    assert after, f"no cell_off after t = {t_inside} (cell_off at {offs})"
    return after[0]


@pytest.mark.parametrize("seed", SEEDS)
def test_voltage_and_current_limits_trip_within_one_sample_period(seed: int) -> None:
    rng = np.random.default_rng(seed)
    step_mv = float(rng.choice([1.0, 2.0, 5.0]))
    rate = float(rng.choice([5.0, 10.0, 20.0]))
    dt = step_mv / rate  # s between points of the sweep
    sweep = f"lsv: {{start: 0 V, end: 0.5 V, scan_rate: {rate:g} mV/s, step: {step_mv:g} mV}}"
    # voltage: a host-driven instrument (no limits of its own) whose cell polarises at a rate drawn at
    # random, past a limit drawn at random
    slope, vmax = float(rng.uniform(1e-3, 2e-2)), float(rng.uniform(0.3, 1.5))
    clock = StreamingClock(start_unix=0)
    fake = FakePotentiostat(clock, voltage_fn=lambda t, i: 0.05 + slope * t, dt=dt, block=1)
    offs: list[float] = []
    real_off = fake.cell_off
    fake.cell_off = lambda: (offs.append(clock.now()), real_off())[-1]  # type: ignore[method-assign]
    p = _protocol(
        "galvanostatic: {current: 1 mA, duration: 2 h}", f"{{voltage: [-{vmax:.4f} V, {vmax:.4f} V], current: 50 mA}}"
    )
    rec = ListRecorder()
    out = Engine(p, ChannelDevices(fake), clock, rec).run()
    t = np.concatenate([s[2] for s in rec.samples_list])
    v = np.concatenate([s[3] for s in rec.samples_list])
    assert out.status == "safety" and "voltage" in out.end_reason, out.end_reason
    assert v[-1] > vmax and np.all(v[:-1] <= vmax + 1e-12)
    assert 0 <= _off_after(offs, t[-2]) - t[-2] <= dt + 1e-9, (offs, t[-2], dt)
    # current: the sweep's current passes a limit drawn between what it reaches at 30 % and 70 % of the sweep
    out, rec, offs, t, v, i, _ = _run(sweep, "{voltage: [-2 V, 2 V], current: 50 mA}", seed)
    assert out.status == "completed"
    ii = np.abs(i[~np.isnan(i)])
    imax = float(rng.uniform(ii[int(0.3 * len(ii))], ii[int(0.7 * len(ii))]))
    out, rec, offs, t, v, i, _ = _run(sweep, f"{{voltage: [-2 V, 2 V], current: {imax * 1e3:.6f} mA}}", seed)
    assert out.status == "safety" and "current" in out.end_reason, out.end_reason
    lim = float(f"{imax * 1e3:.6f}") * 1e-3
    assert abs(i[-1]) > lim and np.all(np.abs(i[:-1][~np.isnan(i[:-1])]) <= lim * (1 + 1e-9))
    assert 0 <= _off_after(offs, t[-2]) - t[-2] <= dt + 1e-9


@pytest.mark.parametrize("seed", SEEDS)
def test_duration_and_temperature_limits_trip_within_one_sample_period(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    dt = float(rng.choice([0.5, 1.0, 2.0, 5.0]))
    limit_s = float(rng.uniform(20.0, 200.0))
    out, _rec, offs, t, _v, _i, _ = _run(
        f"rest: {{duration: 1 h, record_every: {dt:g} s}}",
        f"{{voltage: [-2 V, 2 V], current: 20 mA, max_duration: {limit_s:.3f} s}}",
        seed,
    )
    assert out.status == "safety" and "maximum duration" in out.end_reason
    assert t[-1] <= limit_s + 1e-6 and 0 <= _off_after(offs, t[-1]) - t[-1] <= dt + 1e-9
    # temperature: an underdamped stage (30 % overshoot) heads for 45 degC and peaks near 52 degC,
    # past a limit drawn at random above the set point
    dt = float(rng.choice([1.0, 2.0, 5.0]))
    tmax = float(rng.uniform(46.0, 50.0))
    out, _rec, offs, t, _v, _i, temp = _run(
        f"temperature: {{setpoint: 45 degC, band: 0.5 degC, hold: 60 s, timeout: 2 h, record_every: {dt:g} s}}",
        f"{{voltage: [-2 V, 2 V], current: 20 mA, temperature: {tmax:.3f} degC}}",
        seed,
        overshoot=0.3,
    )
    assert out.status == "safety" and "temperature" in out.end_reason, out.end_reason
    temp = temp[~np.isnan(temp)]
    assert temp[-1] > tmax and np.all(temp[:-1] <= tmax)
    assert 0 <= _off_after(offs, t[-2]) - t[-2] <= dt + 1e-9


@pytest.mark.parametrize("seed", SEEDS)
def test_a_charge_limit_trips_within_one_sample_period(seed: int) -> None:
    rng = np.random.default_rng(2000 + seed)
    dt = float(rng.choice([0.5, 1.0, 2.0, 5.0]))
    limit_mah = float(rng.uniform(0.01, 0.05))  # 36 s .. 180 s at 1 mA
    out, rec, offs, t, _v, _i, _ = _run(
        f"galvanostatic: {{current: 1 mA, duration: 1 h, record_every: {dt:g} s}}",
        f"{{voltage: [-2 V, 2 V], current: 20 mA, charge: {limit_mah:.5f} mAh}}",
        seed,
    )
    assert out.status == "safety" and "charge" in out.end_reason, out.end_reason
    q = np.concatenate([s[5] for s in rec.samples_list if s[0] == 2])
    lim = float(f"{limit_mah:.5f}") * 3.6
    assert abs(q[-1]) > lim and np.all(np.abs(q[:-1]) <= lim * (1 + 1e-9))
    assert 0 <= _off_after(offs, t[-2]) - t[-2] <= dt + 1e-9


def test_the_charge_limit_is_read_with_its_unit() -> None:
    p = _protocol("rest: {duration: 3 s}", "{voltage: [-2 V, 2 V], current: 20 mA, charge: 2 mAh}")
    assert p.safety.charge_max == pytest.approx(7.2)
