"""The conformance suite: both simulators pass; broken drivers fail fast with messages that say what to fix."""

from __future__ import annotations

import functools
import threading
import time

import numpy as np
import pytest

from labctl.core.clock import VirtualClock, WallClock
from labctl.drivers.conformance import (
    POTENTIOSTAT_CHECKS,
    ConformanceError,
    PotentiostatConformance,
    TemperatureStageConformance,
    check_potentiostat,
    check_temperature_stage,
)
from labctl.drivers.contracts import Capabilities, DeviceError, TechniqueState
from labctl.drivers.techniques import EndReason, SampleBlock
from labctl.simulators.potentiostat import SimulatedPotentiostat
from labctl.simulators.stage import SimulatedTemperatureStage
from tests.fakes import FakePotentiostat


# ---------------------------------------------------------------------- the simulators pass
def test_simulated_potentiostat_passes_on_a_virtual_clock():
    check_potentiostat(functools.partial(SimulatedPotentiostat, preset="br-mg"), clock=VirtualClock())


def test_simulated_potentiostat_passes_in_real_time():
    t0 = time.monotonic()
    check_potentiostat(
        functools.partial(SimulatedPotentiostat, preset="br-mg"),
        clock=WallClock(),
        read_timeout=0.5,
        only=["read_honours_timeout"],
    )
    assert time.monotonic() - t0 < 10


def test_simulated_stage_passes():
    check_temperature_stage(SimulatedTemperatureStage, clock=VirtualClock())
    check_temperature_stage(lambda: SimulatedTemperatureStage(VirtualClock(), overshoot=0.2))


def test_fake_without_native_limits_passes_its_time_series_techniques():
    # the engine's fake streams until stopped (no native limits) and models no impedance or sweeps
    check_potentiostat(
        lambda clock: _Only(FakePotentiostat(clock, dt=0.2, block=5), {"ocp", "cp"}), clock=VirtualClock()
    )


class _Only:
    """Declare only some of a driver's techniques (the rest delegate)."""

    def __init__(self, inner, kinds):
        self._inner = inner
        self.capabilities = Capabilities(techniques=frozenset(kinds), native_limits=inner.capabilities.native_limits)

    def start(self, technique):
        if technique.kind not in self.capabilities.techniques:
            raise DeviceError(f"{technique.kind} is not declared")
        return self._inner.start(technique)

    def __getattr__(self, name):
        return getattr(self._inner, name)

    @property
    def cell_on(self):
        return self._inner.cell_on


class TestSimulatedPotentiostatConformance(PotentiostatConformance):
    def make_driver(self):
        self.clock = VirtualClock()
        return SimulatedPotentiostat(self.clock, preset="bare-mg", seed=3)


class TestSimulatedStageConformance(TemperatureStageConformance):
    def make_driver(self):
        self.clock = VirtualClock()
        return SimulatedTemperatureStage(self.clock, initial=30.0, tau_s=120.0)


def test_the_pytest_form_has_one_test_per_check():
    names = {n for n in dir(PotentiostatConformance) if n.startswith("test_")}
    assert names == {f"test_{n}" for n, _ in POTENTIOSTAT_CHECKS}


# ---------------------------------------------------------------------- broken drivers
def _block(t0: float = 0.0, n: int = 5) -> SampleBlock:
    t = t0 + 0.2 * (np.arange(n) + 1.0)
    return SampleBlock(t, np.full(n, 0.01), np.full(n, 1e-5))


class IteratorDriver:
    """The old contract: start() hands back an iterator of blocks."""

    def __init__(self) -> None:
        self.capabilities = Capabilities(techniques=frozenset({"cp"}), native_limits=False, model="iter")

    def connect(self, timeout: float = 10.0) -> None: ...

    def identify(self) -> str:
        return "iter"

    def cell_off(self) -> None: ...

    def close(self) -> None: ...

    def _declared(self, technique) -> None:
        if technique.kind not in self.capabilities.techniques:
            raise DeviceError(f"{technique.kind} is not declared")

    def start(self, technique):
        self._declared(technique)
        return iter([_block()])


class _BlockingHandle:
    def __init__(self, release: threading.Event) -> None:
        self._release = release
        self._state = TechniqueState.RUNNING

    @property
    def state(self):
        return self._state

    @property
    def end(self):
        return None

    def read(self, timeout: float = 5.0) -> SampleBlock:
        self._release.wait(60.0)  # waits for the instrument, ignoring timeout
        return SampleBlock.empty()

    def stop(self) -> None:
        self._state = TechniqueState.STOPPED


class BlockingReadDriver(IteratorDriver):
    release = threading.Event()

    def start(self, technique):
        self._declared(technique)
        return _BlockingHandle(self.release)


def test_iterator_from_start_fails_with_what_to_fix():
    t0 = time.monotonic()
    with pytest.raises(ConformanceError) as ei:
        check_potentiostat(IteratorDriver)
    msg = str(ei.value)
    assert "start() must return a TechniqueHandle with read(timeout)/stop()/state" in msg
    assert "got list_iterator" in msg and "GeneratorHandle" in msg
    assert all(f.check == "start_returns_handle" for f in ei.value.failures)
    assert time.monotonic() - t0 < 5


def test_read_that_ignores_its_timeout_fails_fast_with_what_to_fix():
    t0 = time.monotonic()
    try:
        with pytest.raises(ConformanceError) as ei:
            check_potentiostat(BlockingReadDriver, read_timeout=1.0)
    finally:
        BlockingReadDriver.release.set()
    elapsed = time.monotonic() - t0
    msg = str(ei.value)
    assert "read(timeout=1) of cp did not return within 3 s: read blocks past its timeout" in msg
    assert "give up when its timeout runs out" in msg
    assert [f.check for f in ei.value.failures] == ["read_honours_timeout"]
    assert elapsed < 6, elapsed


class _MilliampDriver:
    """Reports mA and time since the technique started, and never ends despite native_limits."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.capabilities = Capabilities(techniques=frozenset({"cp"}), native_limits=True)
        self.cell_on = False

    def connect(self, timeout: float = 10.0) -> None: ...

    def identify(self) -> str:
        return "mA"

    def cell_off(self) -> None:
        self.cell_on = False

    def close(self) -> None:
        self.cell_off()

    def start(self, technique):
        from labctl.drivers.handles import GeneratorHandle

        def gen():
            self.cell_on = True
            k = 0
            while True:
                self.clock.sleep(1.0)
                yield SampleBlock(np.array([float(k)]), np.array([0.01]), np.array([technique.current * 1e3]))
                k += 1

        return GeneratorHandle(gen(), on_stop=lambda: None)  # forgets the cell


def test_units_time_base_end_and_cell_failures_are_all_listed():
    clock = VirtualClock()
    clock.sleep(1000.0)
    with pytest.raises(ConformanceError) as ei:
        check_potentiostat(_MilliampDriver, clock=clock, max_technique_s=1.0)
    msg = str(ei.value)
    assert "report the current in amperes" in msg
    assert "t is the driver's clock time" in msg
    assert "did not end within 1 s" in msg
    assert "cell_on is True after stop()" in msg


class _LaxStage(SimulatedTemperatureStage):
    def set_setpoint(self, celsius: float) -> None:  # accepts anything
        self.setpoint = celsius


def test_stage_accepting_out_of_range_set_points_fails():
    with pytest.raises(ConformanceError, match=r"set_setpoint\(170\) outside range_c .* was accepted"):
        check_temperature_stage(_LaxStage, clock=VirtualClock())


def test_simulator_end_reasons_are_checked_against_the_technique():
    # what the suite relies on: a duration-limited cp of the simulator ends with DURATION
    from labctl.drivers.conformance import default_techniques

    clock = VirtualClock()
    p = SimulatedPotentiostat(clock, preset="br-mg")
    p.connect()
    h = p.start(default_techniques()["cp"])
    b = h.read(1.0)
    assert b.end is not None and b.end.reason is EndReason.DURATION and h.state is TechniqueState.ENDED
