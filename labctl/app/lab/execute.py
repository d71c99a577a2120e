"""One planned run on one channel of a station: build the channel, run, record, leave the cell safe.

:func:`execute_planned` is what a worker's channel thread calls for a run it has claimed
(:func:`labctl.db.campaigns.claim`); :func:`resume_planned` for an interrupted one.  While
the run goes on, a watcher thread (wall time) heartbeats the planned run, applies the
user's pause/resume/cancel requests (the ``control`` column, set by ``labctl pause`` etc.)
to the engine, which honours them at the next step boundary with the cell off, and turns
the worker's ``stop`` (SIGTERM/SIGINT of the worker) into an interrupt: the current block
ends, the cell goes off and the run is left ``interrupted``, resumable.

The run row and the planned run are linked in one transaction (``open_run(on_created=)``),
so a crash never leaves a run that its planned run does not know (nothing doubled).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from labctl.app.controller import (
    SimSettings,
    UserError,
    build_sim_channel,
    cell_attributes,
    close_devices,
    load_sim_preset,
    protocol_needs,
)
from labctl.app.lab.campaign import PlannedRun, channel_is_cycler, channel_is_simulated
from labctl.core.clock import Clock
from labctl.core.errors import ProtocolError
from labctl.db import campaigns as q
from labctl.db.liveness import owner_id
from labctl.engine.runner import Engine, EngineState, PreflightError, RunOutcome

log = logging.getLogger("labctl.lab")

#: seconds (wall) between the watcher's looks at the control column and heartbeats
WATCH_INTERVAL = 0.25
#: run status -> planned-run state
STATE_OF = {
    "completed": "done",
    "failed": "failed",
    "safety": "failed",
    "aborted": "failed",
    "interrupted": "interrupted",
}


class _Watcher:
    """Heartbeats, control requests and the worker's stop, applied to a running engine (wall time)."""

    def __init__(self, db: Any, planned_id: int, owner: str, stop: threading.Event | None) -> None:
        self.db, self.pid, self.owner, self.stop = db, planned_id, owner, stop
        self.engine: Engine | None = None
        self.cancelled = False
        self.stopped = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"labctl-watch-{planned_id}", daemon=True)

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        self._apply()  # a request made before the run started
        if not self._thread.is_alive():
            self._thread.start()

    def close(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _loop(self) -> None:
        last_beat = 0.0
        while not self._done.wait(WATCH_INTERVAL):
            try:
                self._apply()
                if time.time() - last_beat > 2.0:
                    q.heartbeat(self.db, [self.pid], self.owner)
                    last_beat = time.time()
            except Exception:
                log.exception("watcher of planned run %s", self.pid)

    def _apply(self) -> None:
        eng = self.engine
        if eng is None:
            return
        if self.stop is not None and self.stop.is_set() and not self.stopped:
            self.stopped = True
            eng.interrupt("the worker was stopped (cell off; resumable from the last checkpoint)")
            return
        control = q.controls(self.db, [self.pid]).get(self.pid)
        if control == "cancel" and not self.cancelled:
            self.cancelled = True
            eng.abort("cancelled by the user")
        elif control == "pause":
            eng.pause()
            q.clear_control(self.db, self.pid, "pause")
        elif control == "resume":
            eng.resume()
            q.clear_control(self.db, self.pid, "resume")
        if eng.state is EngineState.PAUSED:
            q.transition(self.db, self.pid, ("running",), "paused")
        elif eng.state is EngineState.RUNNING:
            q.transition(self.db, self.pid, ("paused",), "running")


#: The run-end notifier of this process (labctl.app.notify.RunNotifier), set by the worker command
#: from the config file; None: nobody is told.
_notifier: list[Any] = [None]


def set_notifier(notifier: Any) -> None:
    """Tell ``notifier`` (a :class:`labctl.app.notify.RunNotifier`, or None) of every planned run's end."""
    _notifier[0] = notifier


def _notify(db: Any, event: dict[str, Any], outcome: RunOutcome) -> None:
    """Tell the user how a planned run ended; a failing notification never fails the run."""
    notifier = _notifier[0]
    if notifier is None:
        return
    try:
        if outcome.run_id is not None:
            notifier.run_ended_in(db, outcome.run_id, outcome)
        else:  # failed before a run was recorded: say which planned run, where
            notifier.run_ended(
                outcome,
                {
                    "channel": event["channel"],
                    "cell": event["cell"],
                    "protocol": event["protocol"],
                    "meta": {"station": event["station"]},
                },
            )
    except Exception:
        log.exception("notification of run %s", event.get("run_id"))


def _event(row: dict[str, Any], spec: PlannedRun, channel: str, outcome: RunOutcome, state: str) -> dict[str, Any]:
    return {
        "run_id": outcome.run_id,
        "status": outcome.status,
        "end_reason": outcome.end_reason,
        "state": state,
        "campaign": row["campaign"],
        "planned": spec.key,
        "station": spec.station,
        "channel": channel,
        "cell": spec.cell,
        "protocol": spec.protocol,
        "duration_s": outcome.duration,
        "n_samples": outcome.n_samples,
    }


def _devices(
    protocol: Any, spec: PlannedRun, station: Any, channel: str, clock: Clock
) -> tuple[Any, SimSettings | None]:
    if channel_is_simulated(station, channel):
        sim = SimSettings(spec.preset, spec.seed, spec.replicate)
        return build_sim_channel(protocol, clock, sim), sim
    from labctl.app.station import open_channel

    return open_channel(station, channel, clock), None


def execute_planned(
    db: Any,
    planned_id: int,
    station: Any,
    channel_name: str,
    *,
    clock: Clock,
    stop: threading.Event | None = None,
    owner: str | None = None,
    on_engine: Callable[[Engine], None] | None = None,
) -> RunOutcome:
    """Run claimed planned run ``planned_id`` on ``channel_name`` of ``station`` (a loaded station).

    The planned run must be ``claimed`` by ``owner`` (default: this process).  Returns the run's
    outcome (``run_id`` None when it failed before a run was recorded: a preflight or instrument
    error, recorded as the planned run's reason).  The planned run ends ``done``, ``failed``,
    ``cancelled`` or ``interrupted``; the cell is off on every exit.
    """
    from labctl.protocols import load_protocol

    owner = owner or owner_id()
    row = q.planned(db, planned_id)
    spec = PlannedRun.from_dict(row["spec"])
    if channel_is_cycler(station, channel_name):
        return _on_cycler(db, planned_id, row, spec, station, channel_name, clock, stop, owner, resume=False)

    def fail_early(reason: str) -> RunOutcome:
        q.finish(db, planned_id, "failed", reason)
        out = RunOutcome(None, "failed", reason, 0.0, 0)
        _notify(db, _event(row, spec, channel_name, out, "failed"), out)
        return out

    try:
        protocol = load_protocol(spec.protocol)
        devices, sim = _devices(protocol, spec, station, channel_name, clock)
    except (ProtocolError, UserError) as e:
        return fail_early(f"cannot start: {e}")
    watcher = _Watcher(db, planned_id, owner, stop)
    outcome: RunOutcome | None = None
    recorder = None
    coatings: list[dict[str, Any]] = []
    try:
        operator = None
        if sim is not None and protocol_needs(protocol)["manual"]:
            from labctl.app.operator import SimulatedOperator

            operator = SimulatedOperator(clock, seed=sim.seed)
        engine = Engine(protocol, devices, clock, None, operator=operator, on_coating=coatings.append)
        try:
            engine.preflight()
        except PreflightError as e:
            close_devices(devices)
            devices = None
            return fail_early(f"preflight on {spec.station}/{channel_name}: {e}")
        attrs = cell_attributes(protocol, None if sim is None else load_sim_preset(sim))
        meta: dict[str, Any] = {
            "station": spec.station,
            "campaign": {"id": row["campaign_id"], "name": row["campaign"]},
            "planned": spec.key,
            "planned_id": planned_id,
            "cell": attrs,
        }
        if sim is not None:
            meta["replicate"] = sim.replicate
        if devices.extras:
            meta["instruments"] = devices.extras.get("instruments")
        recorder = db.open_run(
            protocol_name=protocol.name,
            protocol_text=protocol.text,
            protocol_source=protocol.source,
            cell_label=spec.cell or protocol.cell.id,
            cell_kind=protocol.cell.kind,
            cell_attrs=attrs,
            channel=channel_name,
            simulated=sim is not None,
            seed=None if sim is None else sim.seed,
            preset=None if sim is None else str(sim.preset),
            started_unix=clock.unix(clock.now()),
            meta=meta,
            on_created=lambda conn, run_id: q.link_run(conn, planned_id, run_id, owner),
        )
        engine.rec = recorder
        if on_engine is not None:
            on_engine(engine)
        watcher.attach(engine)
        outcome = engine.run()
    finally:
        watcher.close()
        try:
            if devices is not None:
                close_devices(devices)
        finally:
            if recorder is not None:
                recorder.close()
        if outcome is None and recorder is not None:  # an exception from the engine: the run row says failed
            q.finish(db, planned_id, "failed", "the run failed with an error (see its events)")
    for c in coatings:
        for label in c["cells"]:
            db.add_coating(cell_label=label, **{k: v for k, v in c.items() if k != "cells"})
    return _conclude(db, planned_id, row, spec, channel_name, outcome, watcher.cancelled)


def _conclude(
    db: Any,
    planned_id: int,
    row: dict[str, Any],
    spec: PlannedRun,
    channel: str,
    outcome: RunOutcome,
    cancelled: bool,
) -> RunOutcome:
    state = STATE_OF.get(outcome.status, "failed")
    if cancelled and outcome.status == "aborted":
        state = "cancelled"
    q.finish(db, planned_id, state, f"{outcome.status}: {outcome.end_reason}")
    if state != "interrupted":
        _notify(db, _event(row, spec, channel, outcome, state), outcome)
    return outcome


def resume_planned(
    db: Any,
    planned_id: int,
    station: Any,
    channel_name: str,
    *,
    clock: Clock,
    stop: threading.Event | None = None,
    owner: str | None = None,
) -> RunOutcome:
    """Resume the interrupted run of planned run ``planned_id`` (already taken over by ``owner``) on its
    channel, as the protocol's ``on_interrupt`` says (:func:`labctl.app.resume.resume_run`)."""
    from labctl.app.resume import resume_run

    owner = owner or owner_id()
    row = q.planned(db, planned_id)
    spec = PlannedRun.from_dict(row["spec"])
    if channel_is_cycler(station, channel_name):
        return _on_cycler(db, planned_id, row, spec, station, channel_name, clock, stop, owner, resume=True)
    run_id = int(row["run_id"])
    watcher = _Watcher(db, planned_id, owner, stop)
    devices = None
    sim = None
    if not channel_is_simulated(station, channel_name):
        from labctl.app.station import open_channel

        devices = open_channel(station, channel_name, clock)
    else:
        sim = SimSettings(spec.preset, spec.seed, spec.replicate)
    try:
        outcome = resume_run(db, run_id, sim=sim, devices=devices, clock=clock, on_engine=watcher.attach)
    except UserError as e:
        q.finish(db, planned_id, "failed", f"cannot resume run {run_id}: {e}")
        return RunOutcome(run_id, "failed", str(e), 0.0, 0)
    finally:
        watcher.close()
    return _conclude(db, planned_id, row, spec, channel_name, outcome, watcher.cancelled)


# ---------------------------------------------------------------------------------- cycler channels
class _CyclerHandle:
    """What the watcher drives (``pause``/``resume``/``abort``/``interrupt``/``state``) for a run on a
    battery-cycler channel: requests become actions that :func:`labctl.app.cycler_run.run_on_cycler`
    takes between its polls (cancel stops the job; a stopped worker stops watching, the job goes on)."""

    def __init__(self, db: Any, planned_id: int, cycler: Any, channel: str) -> None:
        self.db, self.pid, self.channel = db, planned_id, channel
        self.can_pause = bool(getattr(cycler, "supports_pause", False))
        self.vendor = type(cycler).__name__
        self.state = EngineState.RUNNING
        self._pending: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def _put(self, action: str, reason: str) -> None:
        with self._lock:
            self._pending.append((action, reason))

    def take(self) -> tuple[str, str] | None:
        with self._lock:
            return self._pending.pop(0) if self._pending else None

    def abort(self, reason: str) -> None:
        self._put("cancel", reason)

    def interrupt(self, reason: str) -> None:
        self._put("interrupt", "labctl stopped watching: the worker was stopped (resumable)")

    def pause(self) -> None:
        if self.state is EngineState.PAUSED:
            return
        if not self.can_pause:
            why = (
                f"pause refused: channel {self.channel} is a battery-cycler channel and its vendor API "
                f"({self.vendor}) has no pause; the job goes on (labctl cancel stops it)"
            )
            self._put("note", why)
            q.transition(self.db, self.pid, ("running",), "running", reason=why)
            return
        self._put("pause", "paused by the user")
        self.state = EngineState.PAUSED

    def resume(self) -> None:
        if self.state is EngineState.PAUSED:
            self._put("resume", "resumed by the user")
            self.state = EngineState.RUNNING


def _on_cycler(
    db: Any,
    planned_id: int,
    row: dict[str, Any],
    spec: PlannedRun,
    station: Any,
    channel: str,
    clock: Clock,
    stop: threading.Event | None,
    owner: str,
    *,
    resume: bool,
) -> RunOutcome:
    """A planned run on a battery-cycler channel: :func:`labctl.app.cycler_run.run_on_cycler` submits it
    (or, resuming, finds its job and harvests on from its cursor: no second start)."""
    import contextlib

    from labctl.app.cycler_run import run_on_cycler
    from labctl.app.station import open_instrument

    def failed(reason: str, run_id: int | None = None) -> RunOutcome:
        q.finish(db, planned_id, "failed", reason)
        out = RunOutcome(run_id, "failed", reason, 0.0, 0)
        _notify(db, _event(row, spec, channel, out, "failed"), out)
        return out

    if resume:
        run_id = int(row["run_id"])
        jobs = [j for j in db.cycler_jobs(run_id=run_id) if j["state"] in ("submitting", "running", "paused")]
        if not jobs:
            db.mark_interrupted(run_id, "its worker was gone")
            return failed(f"run {run_id} has no cycler job to continue (its worker died before the start)", run_id)
    try:
        from labctl.protocols import load_protocol

        protocol = load_protocol(spec.protocol)
        instrument = station.channels[channel].cycler
        cycler = open_instrument(station, instrument, clock)
    except (ProtocolError, UserError) as e:
        return failed(f"cannot start: {e}")
    handle = _CyclerHandle(db, planned_id, cycler, channel)
    watcher = _Watcher(db, planned_id, owner, stop)
    meta: dict[str, Any] = {
        "station": spec.station,
        "campaign": {"id": row["campaign_id"], "name": row["campaign"]},
        "planned": spec.key,
        "planned_id": planned_id,
    }
    outcome: RunOutcome | None = None
    detach = getattr(clock, "detached", None)  # a shared virtual clock: the cycler keeps its own time
    try:
        watcher.attach(handle)  # type: ignore[arg-type]
        with detach() if detach is not None else contextlib.nullcontext():
            outcome = run_on_cycler(
                protocol,
                db=db,
                station=station,
                channel=channel,
                clock=clock,
                poll=float(getattr(cycler, "poll", 10.0)),
                meta=meta,
                cycler=cycler,
                on_created=None if resume else (lambda conn, run_id: q.link_run(conn, planned_id, run_id, owner)),
                control=handle.take,
            )
    except (ProtocolError, UserError) as e:
        return failed(f"cannot start on cycler channel {channel}: {e}")
    finally:
        watcher.close()
        cycler.close()
        if outcome is None and row.get("run_id") is None:
            with contextlib.suppress(Exception):
                q.finish(db, planned_id, "failed", "the cycler run failed with an error (see its events)")
    if resume and outcome.run_id != int(row["run_id"]):
        log.error("planned run %s: resumed as run %s, expected %s", planned_id, outcome.run_id, row["run_id"])
    return _conclude(db, planned_id, row, spec, channel, outcome, watcher.cancelled)
