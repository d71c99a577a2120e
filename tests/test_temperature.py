"""Temperature steps on the simulated stage: settle in the band, hold, time out; EIS follows the stage."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.drivers.contracts import ChannelDevices
from labctl.drivers.techniques import Impedance
from labctl.core.clock import VirtualClock
from labctl.engine.runner import Engine
from labctl.protocols import load_protocol_text
from labctl.simulators.potentiostat import SimulatedPotentiostat
from labctl.simulators.stage import SimulatedTemperatureStage
from tests.test_engine import ListRecorder

TEXT = """name: temp
cell: {{kind: symmetric, id: T1, working: Br-Mg, area: 1.267 cm2}}
safety: {{voltage: [-2 V, 2 V], current: 20 mA, temperature: 70 degC}}
steps:
  - temperature: {{setpoint: 40 degC, band: 0.2 degC, hold: 10 min, timeout: {timeout}, record_every: 10 s}}
  - eis: {{f_start: 1 MHz, f_end: 0.1 Hz, points_per_decade: 10, amplitude: 10 mV}}
"""


def channel(clock, tau_s=300.0):
    stage = SimulatedTemperatureStage(clock, initial=22.0, tau_s=tau_s, seed=3)
    pstat = SimulatedPotentiostat(clock, preset="br-mg", stage=stage, seed=3)
    for d in (stage, pstat):
        d.connect()
    return ChannelDevices(pstat, stage)


def test_temperature_step_settles_holds_then_eis_at_temperature():
    clock = VirtualClock(start_unix=0)
    devs = channel(clock)
    rec = ListRecorder()
    out = Engine(load_protocol_text(TEXT.format(timeout="2 h"), "temp.yaml"), devs, clock, rec).run()
    assert out.status == "completed", out.end_reason
    step = rec.steps[1]
    assert step["end_reason"] == "complete" and "held 40" in step["detail"]
    # first-order lag: |T - 40| <= 0.2 after tau ln(18/0.2) = 22.5 min, then a 10 min hold
    assert step["t"] == pytest.approx(300 * np.log(18 / 0.2) + 600, abs=60)
    temps = np.concatenate([s[6] for s in rec.samples_list if s[0] == 1])
    assert temps.size > 100  # the temperature was recorded all along
    assert temps[0] < 25 and abs(temps[-1] - 40) <= 0.2
    eis = [s for s in rec.samples_list if s[0] == 2]
    assert eis and len(eis[0][2]) == 71


def test_temperature_timeout_fails_the_run_with_the_cell_off():
    clock = VirtualClock(start_unix=0)
    devs = channel(clock, tau_s=20_000.0)  # a stage far too slow for the timeout
    rec = ListRecorder()
    out = Engine(load_protocol_text(TEXT.format(timeout="30 min"), "temp.yaml"), devs, clock, rec).run()
    assert out.status == "failed"
    assert "did not settle at 40" in out.end_reason and "30 min" in out.end_reason
    assert rec.finished[0] == "failed"
    assert rec.steps[1]["end_reason"] == "error"
    assert 2 not in rec.steps  # the EIS never ran


def _rct_proxy(devs) -> float:
    """Low-frequency |Z| (dominated by Rs + Rct) of a spectrum measured now."""
    block = next(devs.potentiostat.run(Impedance(1e6, 0.1, 10, 0.01)))
    return float(np.hypot(block.z_re[-1], block.z_im[-1]))


def test_impedance_measured_before_equilibrium_shows_it():
    clock = VirtualClock(start_unix=0)
    devs = channel(clock)
    cold = _rct_proxy(devs)
    devs.stage.set_setpoint(60.0)
    early = _rct_proxy(devs)  # right after the set point changed: still near room temperature
    clock.sleep(3 * 3600)
    hot = _rct_proxy(devs)
    assert hot < early < cold * 1.01
    assert early > 2 * hot  # Rct falls ~4-6x from 22 to 60 C; the early spectrum is far from that


def test_stage_is_handed_back_at_room_temperature_when_the_run_ends():
    for timeout, status in (("2 h", "completed"), ("30 min", "failed")):
        clock = VirtualClock(start_unix=0)
        devs = channel(clock, tau_s=300.0 if status == "completed" else 20_000.0)
        rec = ListRecorder()
        out = Engine(load_protocol_text(TEXT.format(timeout=timeout), "temp.yaml"), devs, clock, rec).run()
        assert out.status == status
        assert devs.stage.setpoint == pytest.approx(22.0, abs=0.1)
        assert any("set point back to 22" in e[2] for e in rec.events)
