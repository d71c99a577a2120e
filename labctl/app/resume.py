"""Resume an interrupted run from its last checkpoint (``labctl resume RUN``).

A run is interrupted when its owner is gone (SIGKILL, power cut, a crashed PC: see
:mod:`labctl.db.liveness`) or when SIGTERM/SIGHUP ended it.  Resuming it:

1. takes the run over (this process becomes its owner; steps left open are closed as
   ``interrupted`` with the samples they hold);
2. records the gap as an event (from the last committed sample to now);
3. measures the cell's open-circuit voltage (a short OCP step, recorded like any other);
4. continues the protocol from the last committed checkpoint (a step or cycle boundary),
   or ends the run, as the protocol's ``on_interrupt`` policy says (default ``resume``).

Committed samples are never touched: sample numbers continue after the last committed
one, step indices after the last step, cycles and test time from the checkpoint (test
time includes the gap).  On simulated instruments the cell model restarts from the
preset (a rehearsal has no real cell to come back to); on hardware the cell is what
it is, which is why its OCV is measured first.
"""

from __future__ import annotations

import time
from typing import Any

from labctl.app.controller import (
    SimSettings,
    UserError,
    build_sim_channel,
    close_devices,
    control_watcher,
    protocol_needs,
)
from labctl.core.clock import Clock, clock_for_speed
from labctl.core.interrupts import termination_as_interrupt
from labctl.drivers.contracts import ChannelDevices, TechniqueState
from labctl.drivers.techniques import OpenCircuit, Recording
from labctl.engine.runner import Engine, RunOutcome

#: What to do with an interrupted run; a protocol may say ``on_interrupt: end``.
ON_INTERRUPT = ("resume", "end")
OCV_SECONDS = 10.0


def resume_run(
    db: Any,
    run_id: int,
    *,
    sim: SimSettings | None = None,
    devices: ChannelDevices | None = None,
    clock: Clock | None = None,
    speed: str | float | None = "max",
    on_progress: Any | None = None,
    ocv_seconds: float = OCV_SECONDS,
    on_engine: Any | None = None,
    operator: Any | None = None,
) -> RunOutcome:
    """Resume interrupted run ``run_id`` in ``db`` (a :class:`labctl.db.Database`).

    ``on_engine(engine)`` is called with the engine before it runs (a worker keeps it to pause,
    cancel or interrupt the run).  A simulated run with manual steps (a dip coat) gets a simulated
    operator unless ``operator`` is given."""
    from labctl.protocols import load_protocol_text

    try:
        run = db.run(run_id)
    except KeyError:
        raise UserError(f"there is no run {run_id} in {db.url}") from None
    if run["status"] != "interrupted":
        raise UserError(
            f"run {run_id} is {run['status']}, not interrupted: nothing to resume "
            f"(hint: `labctl runs` lists each run's status)"
        )
    protocol = load_protocol_text(
        run["protocol_text"], source=f"run-{run_id}:{run.get('protocol_source') or 'protocol'}"
    )
    policy = getattr(protocol, "on_interrupt", None) or "resume"
    cyc = (run.get("meta") or {}).get("cycler")
    if cyc:
        meta = run.get("meta") or {}
        raise UserError(
            f"run {run_id} is a job on cycler {cyc.get('instrument')} channel {cyc.get('address')}, which went on "
            f"without labctl: continue harvesting it with `labctl run --from-run {run_id} --station "
            f"{meta.get('station_file', 'STATION')} --channel {meta.get('channel', 'CHANNEL')}`"
        )
    if sim is None and devices is None:
        if not run["simulated"]:
            raise UserError(
                f"run {run_id} ran on hardware: resume it on its station channel "
                f"(this labctl resumes simulated runs with --sim)"
            )
        meta = run.get("meta") or {}
        sim = SimSettings(run["preset"], seed=int(run["seed"] or 0), replicate=int(meta.get("replicate", 0)))
    clock = clock or clock_for_speed(speed)
    if devices is None:
        assert sim is not None
        devices = build_sim_channel(protocol, clock, sim)
    checkpoint = db.last_checkpoint(run_id)
    coatings: list[dict[str, Any]] = []
    rec, info = db.reopen_run(run_id)
    try:
        gap = max(0.0, time.time() - float(info["heartbeat_unix"] or time.time()))
        t_resume = info["t_last"] + gap
        t0 = clock.now() - t_resume
        rec.event(
            t_resume,
            "gap",
            f"resumed after a gap of {gap:.0f} s (interrupted: {run['end_reason']})",
            {"gap_s": gap, "t_last": info["t_last"], "checkpoint": None if checkpoint is None else checkpoint},
        )
        step_index = info["max_step"] + 1
        cycle = 0 if checkpoint is None else int(checkpoint["cycle"])
        ocv, ocv_n = _measure_ocv(devices, clock, rec, step_index, cycle, t0, ocv_seconds)
        rec.event(clock.now() - t0, "resume", f"open-circuit voltage before resuming: {ocv:.4f} V", {"ocv_v": ocv})
        if policy == "end":
            reason = "interrupted; ended on resume (on_interrupt: end)"
            rec.finish("aborted", reason, clock.unix(clock.now()))
            return RunOutcome(run_id, "aborted", reason, clock.now() - t0, info["n_samples"] + ocv_n)
        state = dict(checkpoint) if checkpoint is not None else _start_state(protocol)
        state.update(step_counter=step_index, n_samples=info["n_samples"], t_test=clock.now() - t0)
        if operator is None and sim is not None and protocol_needs(protocol)["manual"]:
            from labctl.app.operator import SimulatedOperator

            operator = SimulatedOperator(clock, seed=sim.seed)
        engine = Engine(
            protocol,
            devices,
            clock,
            rec,
            operator=operator,
            on_progress=on_progress,
            on_coating=coatings.append,
            checkpoint=state,
        )
        watcher = None
        if on_engine is not None:
            on_engine(engine)  # a campaign worker: it applies its planned run's control itself
        else:
            watcher = control_watcher(db, rec, engine, clock, t0)  # the dashboard's pause/resume/cancel
        with termination_as_interrupt():
            if watcher is not None:
                watcher.start()
            try:
                outcome = engine.run()
            finally:
                if watcher is not None:
                    watcher.stop()
    finally:
        try:
            close_devices(devices)
        finally:
            rec.close()
    for c in coatings:  # a dip coat finished after the resume is logged like any other
        for label in c["cells"]:
            db.add_coating(cell_label=label, **{k: v for k, v in c.items() if k != "cells"})
    return outcome


def _start_state(protocol: Any) -> dict[str, Any]:
    from labctl.engine.program import ProgramState, compile_protocol

    return ProgramState().to_checkpoint(compile_protocol(protocol), 0.0)


def _measure_ocv(
    devices: ChannelDevices, clock: Clock, rec: Any, step_index: int, cycle: int, t0: float, seconds: float
) -> tuple[float, int]:
    """A short open-circuit step recorded in the run (kind ``rest``, label ``resume:ocv``)."""
    import numpy as np

    t_start = clock.now() - t0
    rec.step_started(
        step_index,
        path="resume",
        kind="rest",
        label="resume:ocv",
        cycle=cycle,
        params={"technique": "ocp", "duration": seconds},
        t=t_start,
    )
    handle = devices.potentiostat.start(OpenCircuit(seconds, Recording(dt=1.0)))
    n, v_last = 0, float("nan")
    try:
        while handle.state is TechniqueState.RUNNING:
            block = handle.read()
            if len(block):
                rec.samples(step_index, cycle, block.t - t0, block.voltage, block.current, np.zeros(len(block)))
                n += len(block)
                v_last = float(block.voltage[-1])
    finally:
        if handle.state is TechniqueState.RUNNING:
            handle.stop()
    clock.sleep_until(t0 + t_start + seconds)
    rec.step_ended(
        step_index, t=clock.now() - t0, end_reason="duration", detail="open-circuit voltage", n_samples=n, charge=0.0
    )
    return v_last, n
