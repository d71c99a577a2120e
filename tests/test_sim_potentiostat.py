"""Simulated potentiostat: contract conformance, determinism, clock, native limits, recording."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labctl.drivers.contracts import DeviceError, DipCoater, Potentiostat, TemperatureStage
from labctl.drivers.registry import create
from labctl.drivers.techniques import (
    ConstantCurrent,
    ConstantPotential,
    CyclicSweep,
    EndReason,
    Impedance,
    Limits,
    LinearSweep,
    OpenCircuit,
    Recording,
)
from labctl.core.clock import VirtualClock
from labctl.simulators.dipcoater import SimulatedDipCoater
from labctl.simulators.potentiostat import SimulatedPotentiostat
from labctl.simulators.stage import SimulatedTemperatureStage

A = 1.267
I05 = 0.5e-3 * A  # 0.5 mA/cm2 on the 12.7 mm disc


class ShortHorizonClock(VirtualClock):
    """A virtual clock that asks producers for small blocks, like a scaled clock would."""

    def __init__(self, horizon: float) -> None:
        super().__init__(start_unix=0.0)
        self._h = horizon

    def horizon(self) -> float:
        return self._h


def pstat(clock=None, **kw) -> SimulatedPotentiostat:
    kw.setdefault("preset", "br-mg")
    p = SimulatedPotentiostat(clock or VirtualClock(0.0), **kw)
    p.connect()
    return p


def run_all(p, tech):
    blocks = list(p.run(tech))
    cat = {
        name: np.concatenate([getattr(b, name) for b in blocks]) for name in ("t", "voltage", "current", "temperature")
    }
    return blocks, cat


# --------------------------------------------------------------------------- contract


def test_contracts_are_met():
    clock = VirtualClock(0.0)
    p = SimulatedPotentiostat(clock, preset="br-mg")
    assert isinstance(p, Potentiostat)
    assert isinstance(SimulatedTemperatureStage(clock), TemperatureStage)
    assert isinstance(SimulatedDipCoater(clock), DipCoater)
    caps = p.capabilities
    assert caps.native_limits
    assert caps.techniques == frozenset({"ocp", "cp", "ca", "lsv", "cv", "eis"})


def test_registry_entry_points_build_the_simulators():
    clock = VirtualClock(0.0)
    p = create("potentiostat", "sim", clock=clock, preset="bare-mg", cell_kind="asymmetric", seed=3)
    assert isinstance(p, SimulatedPotentiostat) and p.cell.kind == "asymmetric"
    assert isinstance(create("temperature_stage", "sim", clock=clock, seed=1), SimulatedTemperatureStage)
    assert isinstance(create("dip_coater", "sim", clock=clock), SimulatedDipCoater)


def test_connect_identify_cell_off_close():
    p = SimulatedPotentiostat(VirtualClock(0.0), preset="bare-mg", seed=4, replicate=2)
    with pytest.raises(DeviceError, match="not connected"):
        p.run(OpenCircuit(10.0))
    p.connect()
    assert "bare-mg" in p.identify() and "replicate 2" in p.identify()
    gen = p.run(ConstantCurrent(I05, Limits(duration=100.0)))
    next(gen)
    gen.close()
    p.cell_off()
    p.cell_off()
    assert not p.cell_on
    p.close()
    p.close()
    with pytest.raises(DeviceError):
        p.run(OpenCircuit(10.0))


def test_bad_techniques_are_refused():
    p = pstat()
    with pytest.raises(DeviceError, match="outside the instrument range"):
        p.run(ConstantCurrent(0.5, Limits(duration=1.0)))
    with pytest.raises(DeviceError, match="unsupported technique"):
        p.run(object())  # type: ignore[arg-type]
    with pytest.raises(DeviceError, match="frequency"):
        p.run(Impedance(1e7, 1.0, 10, 0.01))
    with pytest.raises(ValueError, match="unknown cell kind"):
        SimulatedPotentiostat(VirtualClock(0.0), preset="br-mg", cell_kind="triple")


# --------------------------------------------------------------------------- determinism and clock


def _sequence(p):
    out = []
    for tech in (
        OpenCircuit(600.0, Recording(dt=10.0)),
        ConstantCurrent(I05, Limits(duration=3600.0), Recording(dt=10.0, dv=0.005)),
        ConstantCurrent(-I05, Limits(duration=3600.0), Recording(dt=10.0, dv=0.005)),
        LinearSweep(-0.05, 0.05, 0.001, vs_ocp=True),
        Impedance(1e5, 1.0, 5, 0.01),
    ):
        _, cat = run_all(p, tech)
        out.append(cat)
    return out


def test_same_seed_gives_identical_arrays_and_other_seeds_differ():
    a = _sequence(pstat(seed=7, replicate=1))
    b = _sequence(pstat(seed=7, replicate=1))
    c = _sequence(pstat(seed=8, replicate=1))
    d = _sequence(pstat(seed=7, replicate=2))
    for x, y in zip(a, b):
        for k in x:
            assert x[k].tobytes() == y[k].tobytes()
    assert not np.array_equal(a[1]["voltage"], c[1]["voltage"])
    assert not np.array_equal(a[1]["voltage"], d[1]["voltage"])


def test_blocking_does_not_change_the_data():
    """Small blocks (a scaled clock's horizon) give the same samples as one block per technique."""
    big = _sequence(pstat(seed=2))
    small = _sequence(pstat(ShortHorizonClock(250.0), seed=2))
    for x, y in zip(big, small):
        for k in ("t", "voltage", "current"):
            np.testing.assert_array_equal(x[k], y[k])
    blocks, _ = run_all(pstat(ShortHorizonClock(250.0)), OpenCircuit(600.0, Recording(dt=10.0)))
    assert [len(b) for b in blocks] == [25, 25, 10]


def test_virtual_clock_advances_by_the_technique_durations():
    clock = VirtualClock(0.0)
    p = pstat(clock)
    blocks, cat = run_all(p, OpenCircuit(600.0, Recording(dt=10.0)))
    assert clock.now() == pytest.approx(600.0)
    assert len(blocks) == 1 and len(cat["t"]) == 60 and cat["t"][-1] == pytest.approx(600.0)
    run_all(p, ConstantCurrent(I05, Limits(duration=3600.0), Recording(dt=1.0)))
    assert clock.now() == pytest.approx(4200.0)
    blocks, cat = run_all(p, LinearSweep(-0.2, 0.2, 0.001, 0.001, vs_ocp=True))
    assert clock.now() == pytest.approx(4200.0 + 400.0)
    assert len(cat["t"]) == 400 and blocks[-1].end.reason == EndReason.COMPLETE
    tech = Impedance(1e6, 0.1, 10, 0.01)
    expected = float(np.sum(SimulatedPotentiostat.point_time(SimulatedPotentiostat.frequencies(tech))))
    blocks, _ = run_all(p, tech)
    assert clock.now() == pytest.approx(4600.0 + expected)
    assert blocks[-1].end.t == pytest.approx(clock.now())


def test_idle_clock_time_counts_as_open_circuit():
    clock = VirtualClock(0.0)
    p = pstat(clock, cell_kind="asymmetric", preset="bare-mg", noise=False)
    run_all(p, ConstantCurrent(-I05, Limits(duration=3600.0)))
    q0 = p.cell.inventory
    clock.sleep(10 * 3600.0)
    run_all(p, OpenCircuit(1.0))
    assert p.cell.inventory == pytest.approx(q0 * math.exp(-p.cell.k_corr * (10 * 3600.0 + 1.0)), rel=1e-9)


def test_every_block_carries_temperature_and_follows_the_stage():
    clock = VirtualClock(0.0)
    stage = SimulatedTemperatureStage(clock, initial=25.0, tau_s=300.0, noise=0.0)
    p = pstat(clock, stage=stage)
    stage.set_setpoint(60.0)
    blocks, cat = run_all(p, OpenCircuit(1200.0, Recording(dt=60.0)))
    assert cat["temperature"][0] == pytest.approx(60 - 35 * math.exp(-60 / 300))
    assert cat["temperature"][-1] == pytest.approx(60 - 35 * math.exp(-1200 / 300))
    blocks, cat = run_all(pstat(), OpenCircuit(60.0))
    assert np.all(cat["temperature"] == 22.0)


# --------------------------------------------------------------------------- native limits


def test_strip_to_cutoff_ends_at_the_interpolated_crossing_and_state_stops_there():
    clock = VirtualClock(0.0)
    p = pstat(clock, cell_kind="asymmetric", preset="br-mg", noise=False)
    run_all(p, ConstantCurrent(-I05, Limits(duration=3600.0), Recording(dt=60.0)))
    cell = p.cell
    t0 = clock.now()
    # the model's own exhaustion time and the cut-off crossing just before it
    blocks, cat = run_all(p, ConstantCurrent(I05, Limits(voltage_above=1.2, duration=5 * 3600.0), Recording(dt=60.0)))
    end = blocks[-1].end
    assert end.reason == EndReason.VOLTAGE_ABOVE
    assert cat["t"][-1] == end.t and cat["voltage"][-1] == 1.2
    assert np.all(cat["voltage"][:-1] < 1.2)
    assert clock.now() == pytest.approx(end.t)
    # the crossing is far finer than the 60 s recording grid
    r = (end.t - t0) % 60.0
    assert min(r, 60.0 - r) > 1e-3
    # state advanced exactly to the crossing: the residual is the cut-off's share of the strip
    a = cell.a
    eta = cell.eta(0.5e-3)
    expected_residual = a.strip_end.width * cell.q_ref * math.log((a.strip_end.potential - eta) / (1.2 - eta))
    assert cell.inventory == pytest.approx(expected_residual, rel=1e-3)
    # a fresh cell of the same seed stepped to the crossing time has the same voltage at it
    assert cell.v_relax + cell.equilibrium() == pytest.approx(1.2, abs=1e-6)


def test_charge_limit_is_exact_and_duration_ends_with_duration():
    clock = VirtualClock(0.0)
    p = pstat(clock, cell_kind="asymmetric", noise=False)
    q = 0.5 * 3.6 * A  # 0.5 mAh/cm2
    blocks, cat = run_all(p, ConstantCurrent(-I05, Limits(charge=q), Recording(dt=7.0)))
    assert blocks[-1].end.reason == EndReason.CHARGE
    assert blocks[-1].end.t == pytest.approx(3600.0, abs=1e-6)
    assert cat["t"][-1] == pytest.approx(3600.0, abs=1e-6)
    blocks, _ = run_all(p, OpenCircuit(123.4, Recording(dt=10.0)))
    assert blocks[-1].end.reason == EndReason.DURATION and blocks[-1].end.t == pytest.approx(3723.4)


def test_short_circuit_limit_fires_hold_seconds_after_the_short():
    clock = VirtualClock(0.0)
    p = pstat(clock, preset="br-mg", noise=False)
    cell = p.cell
    cell.damage = cell.life_multiplier - 0.5 / 1610.0  # half an hour of life left at 0.5 mA/cm2
    t_short = cell.time_to_short(I05)
    assert t_short == pytest.approx(1800.0, rel=1e-6)
    blocks, cat = run_all(
        p, ConstantCurrent(I05, Limits(duration=3600.0, short_circuit=0.01, short_hold=60.0), Recording(dt=60.0))
    )
    end = blocks[-1].end
    assert end.reason == EndReason.SHORT_CIRCUIT
    assert end.t == pytest.approx(t_short + 60.0, abs=0.01)
    assert cell.shorted and cell.short_age == pytest.approx(t_short, abs=1e-6)
    assert abs(cat["voltage"][-1]) < 0.002  # I x R_short
    # a shorted cell stays shorted
    blocks, cat = run_all(p, ConstantCurrent(-I05, Limits(duration=600.0), Recording(dt=60.0)))
    assert np.all(np.abs(cat["voltage"]) < 0.002)


def test_current_limit_on_a_potentiostatic_hold():
    p = pstat(preset="br-mg", noise=False)
    blocks, cat = run_all(p, ConstantPotential(0.1, Limits(current_above=1e-6, duration=60.0), vs_ocp=True))
    assert blocks[-1].end.reason == EndReason.CURRENT_ABOVE  # reached at once: BV current at 100 mV
    blocks, cat = run_all(p, ConstantPotential(0.01, Limits(duration=1200.0), vs_ocp=True, record=Recording(dt=60)))
    assert blocks[-1].end.reason == EndReason.DURATION and len(cat["t"]) == 20
    assert np.all(cat["current"] > 0)


def test_sweeps_and_cv():
    clock = VirtualClock(0.0)
    p = pstat(clock, preset="br-mg")
    blocks, cat = run_all(p, CyclicSweep(0.0, 0.1, -0.1, 0.01, 0.002, cycles=2, vs_ocp=True))
    assert len(cat["t"]) == 2 * (50 + 100 + 50)
    assert clock.now() == pytest.approx(2 * 0.4 / 0.01)
    assert cat["current"][np.argmax(cat["voltage"])] > 0 > cat["current"][np.argmin(cat["voltage"])]
    blocks, cat = run_all(p, LinearSweep(0.0, 0.3, 0.001, vs_ocp=True, limits=Limits(current_above=5e-5)))
    assert blocks[-1].end.reason == EndReason.CURRENT_ABOVE
    assert abs(cat["current"][-1]) >= 5e-5 * 0.99


# --------------------------------------------------------------------------- recording


def test_recording_dt_and_dv():
    p = pstat(preset="bare-mg", noise=False)
    _, cat = run_all(p, ConstantCurrent(I05, Limits(duration=3600.0), Recording(dt=60.0)))
    assert len(cat["t"]) == 60 and np.allclose(np.diff(cat["t"]), 60.0)
    # dv adds points where the nucleation spike decays (first minute), none on the flat plateau
    _, cat = run_all(p, ConstantCurrent(-I05, Limits(duration=3600.0), Recording(dt=60.0, dv=0.005)))
    early = np.sum(cat["t"] - cat["t"][0] < 60)
    assert early >= 5
    assert len(cat["t"]) < 60 + 30
    # dv alone: at least every max_dt
    _, cat = run_all(p, ConstantCurrent(I05, Limits(duration=3600.0), Recording(dt=None, dv=0.005, max_dt=600.0)))
    assert np.max(np.diff(cat["t"])) <= 600.0 + 1e-9
    assert 6 <= len(cat["t"]) < 40


def test_eis_spectrum_shape():
    p = pstat(preset="br-mg")
    blocks, _ = run_all(p, Impedance(1e6, 0.1, 10, 0.01))
    b = blocks[0]
    assert len(b) == 71 and b.frequency[0] == pytest.approx(1e6) and b.frequency[-1] == pytest.approx(0.1)
    assert np.all(b.z_im < 0)  # capacitive everywhere
    assert np.all(np.diff(b.t) > 0)
    assert np.all(np.abs(b.current) < 1e-7)


def test_scaled_clock_paces_blocks_in_wall_time():
    import time

    from labctl.core.clock import ScaledClock

    clock = ScaledClock(4 * 3600.0)  # horizon = 3600 s of clock time per block
    p = pstat(clock, seed=5)
    w0 = time.monotonic()
    blocks, cat = run_all(p, ConstantCurrent(I05, Limits(duration=7200.0), Recording(dt=60.0)))
    assert len(blocks) >= 2 and len(cat["t"]) == 120
    assert blocks[-1].end.reason == EndReason.DURATION
    assert clock.now() >= blocks[-1].end.t
    assert time.monotonic() - w0 >= 0.4  # 2 h of clock time at 14,400x
    same = pstat(VirtualClock(0.0), seed=5)
    _, ref = run_all(same, ConstantCurrent(I05, Limits(duration=7200.0), Recording(dt=60.0)))
    np.testing.assert_array_equal(cat["voltage"], ref["voltage"])
