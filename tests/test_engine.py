"""Engine behaviour on a driver without native limits (the engine must enforce everything)."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.drivers.contracts import ChannelDevices, DeviceError
from labctl.core.clock import VirtualClock
from labctl.engine.runner import Engine
from labctl.protocols import load_protocol_text
from tests.fakes import FakePotentiostat


class ListRecorder:
    """Keeps what the engine records, in order."""

    run_id = 7

    def __init__(self) -> None:
        self.steps: dict[int, dict] = {}
        self.samples_list: list[tuple] = []
        self.events: list[tuple] = []
        self.finished: tuple | None = None
        self.checkpoints: list[tuple[float, dict]] = []

    def checkpoint(self, t, state):
        self.checkpoints.append((t, state))

    def step_started(self, idx, **kw):
        self.steps[idx] = dict(kw)

    def samples(self, idx, cycle, t, v, i, q, **kw):  # noqa: F811 - method named like the contract
        self.samples_list.append(
            (
                idx,
                cycle,
                np.array(t),
                np.array(v),
                np.array(i),
                np.array(q),
                None if kw.get("temperature") is None else np.array(kw["temperature"]),
            )
        )

    def step_ended(self, idx, **kw):
        self.steps[idx].update(kw)

    def event(self, t, kind, message, data=None):
        self.events.append((t, kind, message))

    def finish(self, status, end_reason, ended_unix):
        self.finished = (status, end_reason)

    def close(self):
        pass


def proto(steps: str, safety: str = "{voltage: [-2 V, 2 V], current: 20 mA}") -> object:
    text = f"""
name: engine-test
cell: {{kind: symmetric, id: T1, working: Mg, counter: Mg, area: 1 cm2}}
safety: {safety}
steps:
{steps}
"""
    return load_protocol_text(text, source="engine-test.yaml")


def run(p, pstat, clock):
    rec = ListRecorder()
    eng = Engine(p, ChannelDevices(pstat), clock, rec)
    return eng.run(), rec


def test_voltage_cutoff_is_interpolated_and_recorded():
    clock = VirtualClock(start_unix=0)
    # V rises 1 mV/s from 0: crosses 0.5005 V at t = 500.5 s
    pstat = FakePotentiostat(clock, voltage_fn=lambda t, i: 1e-3 * t, dt=1.0, block=64)
    p = proto("  - galvanostatic: {current: 1 mA, voltage_above: 0.5005 V, duration: 2 h, record_every: 1 s}")
    out, rec = run(p, pstat, clock)
    assert out.status == "completed"
    step = rec.steps[1]
    assert step["end_reason"] == "voltage_above"
    assert step["t"] == pytest.approx(500.5, abs=1e-6)
    last_v = rec.samples_list[-1][3][-1]
    assert last_v == pytest.approx(0.5005, abs=1e-9)
    assert pstat.closed_early == 1  # the engine stopped the technique
    assert pstat.cell_off_calls >= 1


def test_capacity_end_and_charge_column():
    clock = VirtualClock(start_unix=0)
    pstat = FakePotentiostat(clock, dt=10.0, block=100)
    # 0.5 mA/cm2 on 1 cm2 for 0.5 mAh -> exactly 1 h
    p = proto("  - galvanostatic: {current_density: -0.5 mA/cm2, capacity: 0.5 mAh/cm2, record_every: 10 s}")
    out, rec = run(p, pstat, clock)
    assert rec.steps[1]["end_reason"] == "charge"
    assert rec.steps[1]["t"] == pytest.approx(3600.0, rel=1e-9)
    q = np.concatenate([s[5] for s in rec.samples_list])
    assert q[-1] == pytest.approx(-0.5e-3 * 3600, rel=1e-9)  # plating: negative charge
    assert np.all(np.diff(q) <= 0)


def test_safety_trip_turns_cell_off_and_marks_run():
    clock = VirtualClock(start_unix=0)
    pstat = FakePotentiostat(clock, voltage_fn=lambda t, i: 0.01 * t, dt=1.0, block=50)
    p = proto("  - galvanostatic: {current: 1 mA, duration: 1 h}", safety="{voltage: [-1 V, 1 V], current: 20 mA}")
    out, rec = run(p, pstat, clock)
    assert out.status == "safety"
    assert "voltage" in out.end_reason and "safety window" in out.end_reason
    assert rec.finished[0] == "safety"
    assert pstat.cell_off_calls >= 1 and not pstat.cell_on


def test_ctrl_c_mid_run_marks_aborted_cell_off():
    clock = VirtualClock(start_unix=0)
    pstat = FakePotentiostat(clock, dt=1.0, block=100, fail_after_blocks=5, fail_with=KeyboardInterrupt())
    p = proto("  - galvanostatic: {current: 1 mA, duration: 10 h}")
    out, rec = run(p, pstat, clock)
    assert out.status == "aborted"
    assert "Ctrl-C" in out.end_reason
    assert rec.finished == ("aborted", out.end_reason)
    assert sum(len(s[2]) for s in rec.samples_list) == 500  # what arrived before the interrupt is kept
    assert pstat.cell_off_calls >= 1 and not pstat.cell_on


def test_device_error_marks_failed_cell_off():
    clock = VirtualClock(start_unix=0)
    pstat = FakePotentiostat(clock, fail_after_blocks=2, fail_with=DeviceError("overload", code="0002"))
    out, rec = run(proto("  - rest: {duration: 1 h, record_every: 1 s}"), pstat, clock)
    assert out.status == "failed" and "0002" in out.end_reason
    assert pstat.cell_off_calls >= 1


def test_unexpected_exception_still_leaves_cell_off_and_recorded():
    clock = VirtualClock(start_unix=0)
    pstat = FakePotentiostat(clock, fail_after_blocks=1, fail_with=ZeroDivisionError("bug"))
    rec = ListRecorder()
    eng = Engine(proto("  - rest: {duration: 1 h}"), ChannelDevices(pstat), clock, rec)
    with pytest.raises(ZeroDivisionError):
        eng.run()
    assert rec.finished[0] == "failed"
    assert pstat.cell_off_calls >= 1


def test_short_circuit_ends_repeat_and_counts_cycles():
    clock = VirtualClock(start_unix=0)

    # healthy for the first 5 h of current, then |V| collapses to 1 mV
    state = {"t_under_current": 0.0}

    def v(t, i):
        base = state["t_under_current"]
        return np.where(base + t < 5 * 3600, 0.07 * np.sign(i), 0.001 * np.sign(i))

    pstat = FakePotentiostat(clock, voltage_fn=v, dt=10.0, block=360)
    orig_run = pstat.run

    def run_tracking(tech):
        start = clock.now()
        try:
            yield from orig_run(tech)
        finally:
            state["t_under_current"] += clock.now() - start

    pstat.run = run_tracking  # type: ignore[method-assign]
    p = proto("""  - repeat:
      until: short_circuit
      max_cycles: 100
      steps:
        - galvanostatic: {current: -0.5 mA, duration: 1 h, record_every: 10 s}
        - galvanostatic: {current: 0.5 mA, duration: 1 h, record_every: 10 s}
  - rest: {duration: 10 min}""")
    out, rec = run(p, pstat, clock)
    assert out.status == "completed"
    assert "short circuit" in out.end_reason
    ends = [s["end_reason"] for s in rec.steps.values()]
    assert ends.count("short_circuit") == 1
    shorted = [s for s in rec.steps.values() if s["end_reason"] == "short_circuit"][0]
    assert shorted["cycle"] == 3  # 5 h of current = 2.5 cycles of 2 h
    assert rec.steps[max(rec.steps)]["kind"] == "rest"  # the protocol went on after the repeat
    assert any(e[1] == "short_circuit" for e in rec.events)


def test_times_repeat_counts_cycles_run_wide():
    clock = VirtualClock(start_unix=0)
    pstat = FakePotentiostat(clock, dt=60.0, block=10)  # blocks end on the step ends
    p = proto("""  - rest: {duration: 10 min, record_every: 60 s}
  - repeat:
      times: 3
      steps:
        - galvanostatic: {current: -1 mA, duration: 10 min, record_every: 60 s}
        - galvanostatic: {current: 1 mA, duration: 10 min, record_every: 60 s}""")
    out, rec = run(p, pstat, clock)
    cycles = [s["cycle"] for s in rec.steps.values()]
    assert cycles == [0, 1, 1, 2, 2, 3, 3]
    assert out.duration == pytest.approx(600 + 3 * 1200)


def test_preflight_rejects_what_the_channel_cannot_do():
    from labctl.drivers.contracts import Capabilities
    from labctl.engine.runner import PreflightError

    clock = VirtualClock(start_unix=0)
    pstat = FakePotentiostat(clock)
    pstat.capabilities = Capabilities(techniques=frozenset({"ocp", "cp"}), current_range=(-0.01, 0.01), model="tiny")
    eis = proto("  - eis: {f_start: 1 MHz, f_end: 0.1 Hz}")
    with pytest.raises(PreflightError, match=r"engine-test.yaml:\d+:\d+: eis: .*tiny.* does not run eis"):
        Engine(eis, ChannelDevices(pstat), clock).preflight()
    big = proto("  - galvanostatic: {current: 15 mA, duration: 1 h}")
    with pytest.raises(PreflightError, match="outside the instrument's range"):
        Engine(big, ChannelDevices(pstat), clock).preflight()
    temp = proto(
        "  - temperature: {setpoint: 40 degC}", safety="{voltage: [-2 V, 2 V], current: 20 mA, temperature: 70 degC}"
    )
    with pytest.raises(PreflightError, match="no temperature stage"):
        Engine(temp, ChannelDevices(pstat), clock).preflight()
