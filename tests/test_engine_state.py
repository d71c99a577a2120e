"""The engine's explicit state: checkpoints at every boundary, resume from one, and the engine
bugs of milestone 1 that the new engine must not carry over (each with its test)."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.app.controller import SimSettings, build_sim_channel
from labctl.core.clock import VirtualClock
from labctl.drivers.contracts import ChannelDevices
from labctl.engine.program import OpLoopTest, OpTechnique, compile_protocol
from labctl.engine.runner import Engine
from tests.fakes import FakePotentiostat
from tests.test_engine import ListRecorder, proto

CYCLING = """  - rest: {duration: 10 min, record_every: 60 s}
  - repeat:
      times: 4
      steps:
        - galvanostatic: {current: 1 mA, duration: 1 h, record_every: 60 s}
        - galvanostatic: {current: -1 mA, duration: 1 h, record_every: 60 s}
  - rest: {duration: 10 min, record_every: 60 s}"""


def _sim_run(p, checkpoint=None, clock=None):
    clock = clock or VirtualClock(start_unix=0)
    devices = build_sim_channel(p, clock, SimSettings("br-mg", seed=3))
    rec = ListRecorder()
    eng = Engine(p, devices, clock, rec, checkpoint=checkpoint)
    return eng.run(), rec


def test_program_is_flat_with_explicit_loops():
    prog = compile_protocol(proto(CYCLING))
    kinds = [type(op).__name__ for op in prog.ops]
    assert kinds == [
        "OpTechnique",
        "OpLoopInit",
        "OpLoopTest",
        "OpTechnique",
        "OpTechnique",
        "OpLoopNext",
        "OpTechnique",
    ]
    test = prog.ops[2]
    assert isinstance(test, OpLoopTest) and prog.loop_exits[test.loop] == 6
    assert isinstance(prog.ops[3], OpTechnique) and prog.ops[3].path == "2/cycle {L0}/1"


def test_a_checkpoint_at_every_step_and_cycle_boundary():
    out, rec = _sim_run(proto(CYCLING))
    assert out.status == "completed"
    states = [s for _, s in rec.checkpoints]
    # one before each of the 10 steps, one at the end
    assert len(states) == 11
    assert [s["cycle"] for s in states] == [0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4]
    assert [s["step_counter"] for s in states] == list(range(11))
    assert states[-1]["pc"] == len(compile_protocol(proto(CYCLING)))
    assert all(s["n_samples"] <= e["n_samples"] for s, e in zip(states, states[1:]))


def test_resume_from_a_checkpoint_continues_numbering_paths_and_time():
    p = proto(CYCLING)
    full, full_rec = _sim_run(p)
    cp = full_rec.checkpoints[5][1]  # before the 6th step: cycle 3, its first half
    assert cp["cycle"] == 3 and cp["step_counter"] == 5
    clock = VirtualClock(start_unix=0)
    clock.sleep(7200.0)  # the gap of a crash: resumed 2 h later on the wall of virtual time
    out, rec = _sim_run(p, checkpoint=cp, clock=clock)
    assert out.status == "completed"
    full_paths = [(i, s["path"], s["cycle"]) for i, s in full_rec.steps.items() if i > 5]
    paths = [(i, s["path"], s["cycle"]) for i, s in rec.steps.items()]
    assert paths == full_paths  # same step indices, paths ("2/cycle 3/1" ...) and cycle numbers
    t_first = rec.samples_list[0][2][0]
    assert t_first > cp["t_test"]  # test time continues from the checkpoint (plus the gap), never restarts


def test_a_checkpoint_of_another_protocol_is_refused():
    _, rec = _sim_run(proto(CYCLING))
    other = proto(CYCLING.replace("times: 4", "times: 5"))
    with pytest.raises(ValueError, match="another protocol"):
        Engine(
            other, ChannelDevices(FakePotentiostat(VirtualClock())), VirtualClock(), checkpoint=rec.checkpoints[3][1]
        )


def test_safety_trip_keeps_the_tripping_block_up_to_the_trip():
    """Milestone 1 dropped the whole block that tripped (0 samples, duration = block end)."""
    clock = VirtualClock(start_unix=0)
    # V = 10 mV/s: leaves the [-1, 1] V window at t = 101 s, in the 3rd block of 50 samples
    pstat = FakePotentiostat(clock, voltage_fn=lambda t, i: 0.01 * t, dt=1.0, block=50)
    p = proto("  - galvanostatic: {current: 1 mA, duration: 1 h}", safety="{voltage: [-1 V, 1 V], current: 20 mA}")
    rec = ListRecorder()
    out = Engine(p, ChannelDevices(pstat), clock, rec).run()
    assert out.status == "safety"
    t = np.concatenate([s[2] for s in rec.samples_list])
    v = np.concatenate([s[3] for s in rec.samples_list])
    assert t[-1] == pytest.approx(101.0) and v[-1] > 1.0  # the tripping sample is stored
    assert len(t) == 101 and np.all(v[:-1] <= 1.0 + 1e-12)
    assert rec.steps[1]["n_samples"] == 101 and rec.steps[1]["end_reason"] == "safety"
    assert out.duration == pytest.approx(101.0)  # the trip, not the end of the block (150 s)


def test_max_duration_trips_when_it_runs_out_not_at_the_end_of_a_block():
    """A 1 min limit on a 1 h rest under --speed max tripped after 60 min in milestone 1."""
    p2 = proto(
        "  - rest: {duration: 1 h, record_every: 1 s}",
        safety="{voltage: [-2.5 V, 2.5 V], current: 20 mA, max_duration: 1 min}",
    )
    out, rec = _sim_run(p2)
    assert out.status == "safety" and "maximum duration" in out.end_reason
    t = np.concatenate([s[2] for s in rec.samples_list])
    assert t[-1] <= 60.0 + 1e-9 and len(t) == 60
    assert out.duration == pytest.approx(60.0)
    assert rec.steps[1]["t"] == pytest.approx(60.0) and rec.steps[1]["n_samples"] == 60


def test_a_step_cut_by_an_abort_is_closed_with_its_samples():
    """`show` listed a step cut by an abort or a trip as 0 samples."""
    clock = VirtualClock(start_unix=0)
    pstat = FakePotentiostat(clock, dt=1.0, block=100, fail_after_blocks=5, fail_with=KeyboardInterrupt())
    p = proto("  - galvanostatic: {current: 1 mA, duration: 10 h}")
    rec = ListRecorder()
    out = Engine(p, ChannelDevices(pstat), clock, rec).run()
    assert out.status == "aborted"
    assert rec.steps[1]["n_samples"] == 500 and rec.steps[1]["end_reason"] == "aborted"


def test_abort_mid_step_from_another_thread_stops_the_technique():
    clock = VirtualClock(start_unix=0)
    pstat = FakePotentiostat(clock, dt=1.0, block=10)
    p = proto("  - galvanostatic: {current: 1 mA, duration: 10 h}\n  - rest: {duration: 1 h}")
    rec = ListRecorder()
    eng = Engine(p, ChannelDevices(pstat), clock, rec)
    eng.on_progress = lambda pr: eng.abort("stop now") if pr.n_samples >= 30 else None
    out = eng.run()
    assert out.status == "aborted" and out.end_reason == "stop now"
    assert rec.steps[1]["n_samples"] == 30 and 2 not in rec.steps
    assert pstat.closed_early == 1 and not pstat.cell_on
