"""Many channels in one process on one shared virtual clock: each channel's data equals the same
run alone; pause/resume and abort of one channel leave the others untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.app.controller import SimSettings, build_sim_channel
from labctl.core.clock import SharedVirtualClock, VirtualClock
from labctl.drivers.contracts import DeviceError
from labctl.engine.channels import Channel, ChannelGroup
from labctl.engine.runner import Engine, EngineState
from labctl.protocols import load_protocol
from tests.golden.digest import LIB, CapturingRecorder

# 16 channels: 8 protocols x 2 presets, seeds all different
PROTOCOLS = [
    "tafel",
    "eis-rt",
    "aurbach-ce",
    "rate-current-capacity",
    "symmetric-5mA",
    "eis-temperature",
    "rate-stepped",
    "eis-cycling",
]
CASES = [(p, preset, 10 * k + j) for k, p in enumerate(PROTOCOLS) for j, preset in enumerate(("bare-mg", "br-mg"))]
_PROTOS: dict[str, object] = {}


def _proto(name: str):
    if name not in _PROTOS:
        _PROTOS[name] = load_protocol(LIB / f"{name}.yaml")
    return _PROTOS[name]


def _engine(case, clock) -> tuple[Engine, CapturingRecorder]:
    name, preset, seed = case
    proto = _proto(name)
    devices = build_sim_channel(proto, clock, SimSettings(preset, seed=seed))
    rec = CapturingRecorder()
    return Engine(proto, devices, clock, rec), rec


@pytest.fixture(scope="module")
def alone() -> dict[tuple, str]:
    out = {}
    for case in CASES:
        clock = VirtualClock()
        eng, rec = _engine(case, clock)
        eng.run()
        out[case] = rec.digest()
    return out


def _group(cases=CASES):
    clock = SharedVirtualClock()
    chans, recs = [], {}
    for k, case in enumerate(cases):
        eng, rec = _engine(case, clock)
        chans.append(Channel(f"ch{k + 1}", eng))
        recs[f"ch{k + 1}"] = (case, rec)
    return clock, ChannelGroup(clock, chans), recs


def test_sixteen_channels_on_one_virtual_clock_match_each_run_alone(alone):
    clock, group, recs = _group()
    assert len(group.channels) == 16
    group.start()
    assert group.join(timeout=300), "channels did not finish"
    for name, (case, rec) in recs.items():
        ch = group[name]
        assert ch.error is None, (name, ch.error)
        assert ch.outcome is not None and ch.outcome.status == "completed", (name, ch.outcome)
        assert rec.digest() == alone[case], f"{name} {case}: data differs from the same run alone"
    # the shared clock ended at the longest channel's end
    longest = max(c.outcome.duration for c in group.channels)
    assert clock.now() == pytest.approx(longest, rel=1e-9, abs=1e-6)


def test_pause_and_resume_one_channel_leaves_the_others_untouched(alone):
    cases = CASES[:6]
    clock, group, recs = _group(cases)
    paused = group["ch2"]
    # pause ch2 at the boundary after its first step (requested from its own progress callback)
    paused.engine.on_progress = lambda p: paused.pause() if p.step_index == 1 else None
    group.start()
    others = [c for c in group.channels if c is not paused]
    for c in others:
        c._thread.join(timeout=300)
    assert all(c.outcome is not None for c in others)
    assert paused.state is EngineState.PAUSED and paused.alive
    assert paused.engine.devices.potentiostat.cell_on is False  # cell safe while paused
    paused.resume()
    assert group.join(timeout=300)
    assert paused.outcome.status == "completed"
    kinds = [e[1] for e in paused.outcome.events]
    assert "pause" in kinds and "resume" in kinds and kinds.index("pause") < kinds.index("resume")
    for c in others:
        case, rec = recs[c.name]
        assert rec.digest() == alone[case], c.name


def test_abort_of_one_channel_ends_only_that_one_with_the_cell_off(alone):
    cases = CASES[:6]
    clock, group, recs = _group(cases)
    victim = group["ch5"]  # aurbach-ce: many steps
    victim.engine.on_progress = lambda p: victim.abort("operator stopped channel 5") if p.step_index == 2 else None
    group.start()
    assert group.join(timeout=300)
    assert victim.outcome.status == "aborted"
    assert victim.outcome.end_reason == "operator stopped channel 5"
    assert victim.engine.devices.potentiostat.cell_on is False
    assert len(victim.outcome.steps) == 2  # ended at the boundary after step 2: no third step started
    for c in group.channels:
        if c is victim:
            continue
        case, rec = recs[c.name]
        assert c.outcome.status == "completed"
        assert rec.digest() == alone[case], c.name


def test_a_failing_channel_never_touches_the_others(alone):
    cases = CASES[:4]
    clock, group, recs = _group(cases)
    bad = group["ch1"]
    pstat = bad.engine.devices.potentiostat
    real_start = pstat.start
    calls = {"n": 0}

    def failing_start(tech):
        calls["n"] += 1
        if calls["n"] == 2:
            raise DeviceError("USB cable pulled", code="E42")
        return real_start(tech)

    pstat.start = failing_start
    group.start()
    assert group.join(timeout=300)
    assert bad.outcome.status == "failed" and "USB cable pulled" in bad.outcome.end_reason
    assert pstat.cell_on is False
    for c in group.channels[1:]:
        case, rec = recs[c.name]
        assert rec.digest() == alone[case], c.name


def test_a_thread_without_a_seat_cannot_sleep_on_the_shared_clock():
    clock = SharedVirtualClock()
    with pytest.raises(RuntimeError, match="no seat"):
        clock.sleep(1.0)


def test_channel_names_must_be_unique():
    clock = SharedVirtualClock()
    e1, _ = _engine(CASES[0], clock)
    e2, _ = _engine(CASES[1], clock)
    with pytest.raises(ValueError, match="unique"):
        ChannelGroup(clock, [Channel("A", e1), Channel("A", e2)])


def test_library_path_exists():
    assert Path(LIB).is_dir()
