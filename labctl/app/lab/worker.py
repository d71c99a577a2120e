"""A worker: the PC that owns a station's instruments runs its due planned runs, one per channel.

:class:`Worker` claims due runs for its free channels (highest priority first) and runs
each in its own thread (:func:`labctl.app.lab.execute.execute_planned`), like
:class:`labctl.engine.channels.ChannelGroup`: a failure in one channel is that run's
outcome and never touches the others.

Lifecycle:

1. **Start**: take the station's lock (one worker per station and database); look for
   planned runs of its channels that a worker left behind (SIGKILL, power cut): a claim
   that never became a run goes back to ``due``; a run that had ended is concluded; an
   interrupted run is resumed on its channel from its last checkpoint, or ended, as its
   protocol's ``on_interrupt`` says (after ``max_attempts`` interruptions it is failed).
2. **Serve**: claim and start due runs on free channels; after every run, dependants
   (``after:``) are released.  A watcher thread applies pause/resume/cancel requests.
3. **Stop** (SIGTERM, SIGINT, or :meth:`Worker.stop`): no new claims; each running run ends
   after its current block, cell off, left ``interrupted`` (resumable); then the worker exits.

On ``--speed max`` every channel thread and the dispatcher hold a seat at one
:class:`~labctl.core.clock.SharedVirtualClock`: virtual time advances only when all of them
sleep, so each run's timeline is what it would be in real time, only faster.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from labctl.app.lab.execute import execute_planned, resume_planned
from labctl.app.lab.locks import StoreLock
from labctl.core.clock import Clock, SharedVirtualClock, notify, sleep_until_or
from labctl.db import campaigns as q
from labctl.db.liveness import owner_id

log = logging.getLogger("labctl.lab")

#: A run interrupted this many times is failed instead of resumed again.
MAX_ATTEMPTS = 3


@dataclass
class WorkerEvent:
    kind: str  # started | resumed | ended | recovered | failed
    station: str
    channel: str | None
    planned_id: int
    key: str
    run_id: int | None = None
    status: str | None = None
    reason: str | None = None
    unix: float = 0.0  # clock time (virtual on --speed max)


@dataclass
class WorkerReport:
    events: list[WorkerEvent] = field(default_factory=list)
    stopped: bool = False  # ended by stop (runs left interrupted)

    def ended(self) -> list[WorkerEvent]:
        return [e for e in self.events if e.kind == "ended"]


class Worker:
    """Runs the due planned runs of ``stations`` (loaded station files) on their channels."""

    def __init__(
        self,
        db: Any,
        stations: Iterable[Any],
        *,
        clock: Clock,
        until_idle: bool = False,
        owner: str | None = None,
        poll: float = 0.5,
        max_attempts: int = MAX_ATTEMPTS,
        scheduler_step: Callable[[float], float | None] | None = None,
        on_event: Callable[[WorkerEvent], None] | None = None,
    ) -> None:
        self.db = db
        self.stations = {(st.name or st.source): st for st in stations}
        self.clock = clock
        self.until_idle = until_idle
        self.owner = owner or owner_id()
        self.poll = poll
        self.max_attempts = max_attempts
        self.scheduler_step = scheduler_step
        self.on_event = on_event
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.report = WorkerReport()
        self._busy: dict[tuple[str, str], threading.Thread] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ control (any thread)
    def stop(self) -> None:
        """Finish the current blocks, cells off, runs left resumable; then :meth:`run` returns."""
        self.stop_event.set()
        self.wake.set()

    # ------------------------------------------------------------------ helpers
    def _now_unix(self) -> float:
        return self.clock.unix(self.clock.now())

    def _emit(self, ev: WorkerEvent) -> None:
        ev.unix = ev.unix or self._now_unix()
        with self._lock:
            self.report.events.append(ev)
        if self.on_event is not None:
            try:
                self.on_event(ev)
            except Exception:
                log.exception("worker event callback")

    def _free(self, station: str) -> list[str]:
        with self._lock:
            return [c for c in self.stations[station].channels if (station, c) not in self._busy]

    def _running(self) -> int:
        with self._lock:
            return len(self._busy)

    # ------------------------------------------------------------------ recovery
    def recover(self) -> list[tuple[str, str, int]]:
        """Planned runs left behind by a worker that is gone: the ``(station, channel, planned_id)``
        to resume first; the others are put back in the queue or concluded."""
        from labctl.app.lab.execute import STATE_OF

        resumes: list[tuple[str, str, int]] = []
        for name in self.stations:
            for r in q.orphans(self.db, name):
                pid, key = int(r["id"]), r["key"]
                why = f"its worker {r['claimed_by']} is gone" if r["state"] != "interrupted" else "interrupted"
                if r["run_id"] is None:
                    if q.transition(self.db, pid, ("claimed",), "due", claimed_by=None, channel=r["spec"]["channel"]):
                        self._emit(WorkerEvent("recovered", name, None, pid, key, reason=f"{why}: back in the queue"))
                    continue
                status = self._run_status(int(r["run_id"]))
                if status in STATE_OF and status != "interrupted":
                    q.finish(self.db, pid, STATE_OF[status], f"{status} (concluded after its worker was gone)")
                    self._emit(WorkerEvent("recovered", name, r["channel"], pid, key, int(r["run_id"]), status))
                    continue
                if status == "running":
                    self.db.mark_interrupted(int(r["run_id"]), why)
                if int(r["attempts"]) >= self.max_attempts:
                    reason = f"interrupted {r['attempts']} times; not resumed again (max_attempts {self.max_attempts})"
                    q.finish(self.db, pid, "failed", reason)
                    self._emit(WorkerEvent("failed", name, r["channel"], pid, key, int(r["run_id"]), reason=reason))
                    continue
                q.transition(self.db, pid, ("claimed", "running", "paused"), "interrupted", reason=why)
                if q.take_over(self.db, pid, self.owner, ("interrupted",)):
                    resumes.append((name, str(r["channel"]), pid))
        return resumes

    def _run_status(self, run_id: int) -> str:
        return str(self.db.run(run_id)["status"])  # "running" with its owner gone reads "interrupted"

    # ------------------------------------------------------------------ channels
    def _start(self, station: str, channel: str, pid: int, key: str, resume: bool) -> None:
        clock = self.clock
        seat = clock.participant(f"{station}/{channel}") if isinstance(clock, SharedVirtualClock) else None
        t = threading.Thread(
            target=self._channel_main,
            args=(station, channel, pid, key, resume, seat),
            name=f"labctl-worker-{station}-{channel}",
            daemon=True,
        )
        with self._lock:
            self._busy[(station, channel)] = t
        t.start()

    def _channel_main(self, station: str, channel: str, pid: int, key: str, resume: bool, seat: Any) -> None:
        clock = self.clock
        if seat is not None:
            assert isinstance(clock, SharedVirtualClock)
            clock.bind(seat)
        st = self.stations[station]
        try:
            self._emit(WorkerEvent("resumed" if resume else "started", station, channel, pid, key))
            fn = resume_planned if resume else execute_planned
            out = fn(self.db, pid, st, channel, clock=clock, stop=self.stop_event, owner=self.owner)
            self._emit(WorkerEvent("ended", station, channel, pid, key, out.run_id, out.status, out.end_reason))
        except BaseException as e:  # one channel's failure is its run's outcome, never the others'
            log.exception("channel %s/%s, planned run %s", station, channel, pid)
            reason = f"{type(e).__name__}: {e}"
            try:
                q.finish(self.db, pid, "failed", reason)
            except Exception:
                log.exception("recording the failure of planned run %s", pid)
            self._emit(WorkerEvent("ended", station, channel, pid, key, None, "failed", reason))
        finally:
            with self._lock:
                self._busy.pop((station, channel), None)
            notify(clock, self.wake)
            if seat is not None:
                assert isinstance(clock, SharedVirtualClock)
                clock.leave(seat)

    def _claim_and_start(self) -> int:
        started = 0
        for name in self.stations:
            free = self._free(name)
            if not free:
                continue
            for r in q.due_for(self.db, name, free):
                fits = [c for c in r["fits"] if c in free]
                if not fits:
                    continue
                ch = fits[0]
                if q.claim(self.db, int(r["id"]), ch, self.owner, now=self._now_unix()):
                    free.remove(ch)
                    self._start(name, ch, int(r["id"]), r["key"], resume=False)
                    started += 1
                if not free:
                    break
        return started

    def _poller(self) -> None:
        """Wall time: wake the dispatcher when another process made a run due, or on stop."""
        while not self.stop_event.wait(self.poll):
            try:
                for name in self.stations:
                    free = self._free(name)
                    if free and q.due_for(self.db, name, free):
                        notify(self.clock, self.wake)
                        break
            except Exception:
                log.exception("worker poller")
        notify(self.clock, self.wake)

    # ------------------------------------------------------------------ main loop
    def run(self) -> WorkerReport:
        """Serve until stopped (or, with ``until_idle``, until nothing is left to run)."""
        locks = [StoreLock(self.db, f"worker-{name}") for name in self.stations]
        taken: list[StoreLock] = []
        try:
            for lk in locks:
                lk.acquire()
                taken.append(lk)
            return self._serve()
        finally:
            for lk in taken:
                lk.release()

    def _serve(self) -> WorkerReport:
        clock = self.clock
        seat = clock.participant("dispatcher") if isinstance(clock, SharedVirtualClock) else None
        if seat is not None:
            assert isinstance(clock, SharedVirtualClock)
            clock.bind(seat)
        poller = threading.Thread(target=self._poller, name="labctl-worker-poller", daemon=True)
        poller.start()
        try:
            for station, channel, pid in self.recover():
                self._start(station, channel, pid, q.planned(self.db, pid)["key"], resume=True)
            q.release_ready(self.db)
            while True:
                self.wake.clear()
                next_job = self.scheduler_step(self._now_unix()) if self.scheduler_step is not None else None
                if self.stop_event.is_set():
                    break
                self._claim_and_start()
                if self._running() == 0:
                    if self.until_idle and self._idle(next_job):
                        break
                    if next_job is not None:
                        sleep_until_or(clock, next_job - clock.unix(0.0), self.wake)
                    else:
                        self.wake.wait(self.poll)  # nothing runs here: wait in wall time for another process
                else:
                    target = float("inf") if next_job is None else next_job - clock.unix(0.0)
                    sleep_until_or(clock, target, self.wake)
            self.report.stopped = self.stop_event.is_set()
            # stop: the watchers interrupt the running engines; wait for every channel
            while True:
                with self._lock:
                    threads = list(self._busy.values())
                if not threads:
                    break
                if seat is not None:
                    assert isinstance(clock, SharedVirtualClock)
                    with clock.detached():
                        threads[0].join()
                else:
                    threads[0].join()
        finally:
            self.stop_event.set()
            poller.join(5)
            if seat is not None:
                assert isinstance(clock, SharedVirtualClock)
                clock.leave(seat)
        return self.report

    def _idle(self, next_job: float | None) -> bool:
        names = list(self.stations)
        if all(q.pending(self.db, station=n) == 0 for n in names):
            return True
        # rehearsal: the scheduler runs here; nothing due, nothing timed left: the rest can never start
        if self.scheduler_step is not None and next_job is None:
            return not any(q.due_for(self.db, n, self.stations[n].channels) for n in names)
        return False
