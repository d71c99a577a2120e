"""Rehearse a campaign in virtual time: scheduler and worker in one process, every station simulated.

``labctl schedule CAMPAIGN --rehearse`` queues the campaign in a scratch database (or
``--db``), then runs the worker of every station it names on one
:class:`~labctl.core.clock.SharedVirtualClock` with the scheduler's job store driven by the
same clock (:class:`~labctl.app.lab.scheduler.VirtualScheduler`): an overnight (or
three-week) plan runs in seconds, with the timeline it would have.  Hardware channels
cannot be rehearsed (their instruments run in real time): give a station of simulated
instruments with the same channel names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from labctl.app.controller import UserError
from labctl.app.lab.campaign import Campaign, channel_is_simulated
from labctl.app.lab.scheduler import VirtualScheduler, schedule_campaign
from labctl.app.lab.worker import Worker, WorkerEvent, WorkerReport
from labctl.core.clock import SharedVirtualClock


@dataclass
class TimelineRow:
    key: str
    station: str
    channel: str | None
    state: str
    run_id: int | None
    status: str | None
    start_unix: float | None
    end_unix: float | None
    reason: str | None
    after: list[str] = field(default_factory=list)
    at: float | None = None


@dataclass
class Rehearsal:
    campaign_id: int
    start_unix: float
    timeline: list[TimelineRow]
    report: WorkerReport
    wall_s: float

    @property
    def end_unix(self) -> float:
        ends = [r.end_unix for r in self.timeline if r.end_unix is not None]
        return max(ends) if ends else self.start_unix


def timeline(db: Any, campaign_id: int) -> list[TimelineRow]:
    """The campaign's planned runs with their run's start and end (clock times of the run rows)."""
    from labctl.db import campaigns as q

    out = []
    for r in q.queue(db, campaign_id=campaign_id):
        run = db.run(int(r["run_id"])) if r["run_id"] is not None else None
        out.append(
            TimelineRow(
                key=r["key"],
                station=r["station"],
                channel=r["channel"],
                state=r["state"],
                run_id=r["run_id"],
                status=None if run is None else run["status"],
                start_unix=None if run is None else run["started_unix"],
                end_unix=None if run is None else run["ended_unix"],
                reason=r["reason"],
                after=list(r["after"] or []),
                at=r["not_before_unix"],
            )
        )
    return out


def rehearse(campaign: Campaign, db: Any, *, on_event: Any | None = None, start_unix: float | None = None) -> Rehearsal:
    """Queue ``campaign`` in ``db`` and run it to the end in virtual time (see the module docstring)."""
    for name, st in campaign.stations.items():
        hw = [c for c in st.channels if not channel_is_simulated(st, c)]
        if hw:
            raise UserError(
                f"station {name}: channels {', '.join(hw)} are instruments, not simulators: a rehearsal runs "
                f"simulated stations only (give a station file with driver: sim and the same channel names)"
            )
    t0 = time.perf_counter()
    start = time.time() if start_unix is None else start_unix
    clock = SharedVirtualClock(start_unix=start)
    cid = schedule_campaign(db, campaign, now=start)
    vs = VirtualScheduler(db)
    worker = Worker(
        db,
        campaign.stations.values(),
        clock=clock,
        until_idle=True,
        scheduler_step=vs.step,
        on_event=on_event,
    )
    report = worker.run()
    return Rehearsal(cid, start, timeline(db, cid), report, time.perf_counter() - t0)


__all__ = ["Rehearsal", "TimelineRow", "WorkerEvent", "rehearse", "timeline"]
