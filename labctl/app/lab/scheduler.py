"""Start times of planned runs: APScheduler 3.11 with a persistent job store in the labctl database.

Queuing a campaign (:func:`schedule_campaign`) stores the campaign and its planned runs,
and, for every run with an ``at:`` time, one APScheduler date job in the
``labctl_scheduler_jobs`` table of the same database.  A job carries only the planned
run's id; when it fires (:func:`start_job`) the run's start is allowed and it becomes
``due`` as soon as its ``after:`` runs are done.  Runs without ``at:`` need no job.

**Misfire policy.**  Each job has ``misfire_grace_time`` = the campaign's
``misfire_limit`` and ``coalesce=True``.  A start missed while the scheduler (or the PC)
was off fires when it comes back, if it is at most that late; older, APScheduler reports
the job missed and :func:`start_missed` fails the planned run with the reason ("missed
its start ... by 2 h 5 min; misfire limit 1 h").  A run is never dropped silently: on
start the scheduler also checks every waiting run against the store, so a job lost in a
crash between queuing and storing is re-created or failed by the same rule.

Only one scheduler serves a store (:class:`~labctl.app.lab.locks.StoreLock`).  For a
rehearsal (:class:`VirtualScheduler`) the same job store is driven in virtual time by
the worker's dispatcher: due jobs are read with the store's public API and handled by
the same misfire rule.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from labctl.app.lab.campaign import Campaign
from labctl.app.lab.locks import StoreLock
from labctl.db import campaigns as q

log = logging.getLogger("labctl.lab")

JOBS_TABLE = "labctl_scheduler_jobs"
JOB_FUNC = "labctl.app.lab.scheduler:start_job"

#: The database the jobs of this process act on (a job carries only a planned-run id).
_current_db: Any = None


def job_id(planned_id: int) -> str:
    return f"planned-{planned_id}"


def _utc(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def jobstore(db: Any) -> Any:
    """APScheduler's SQLAlchemy job store on ``db`` (its own engine: APScheduler disposes it on shutdown)."""
    import sqlalchemy as sa
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    url = db.engine.url
    kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 60}
    return SQLAlchemyJobStore(engine=sa.create_engine(url, **kwargs), tablename=JOBS_TABLE)


def _scheduler(db: Any, *, background: bool = True) -> Any:
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    return BackgroundScheduler(
        jobstores={"default": jobstore(db)},
        executors={"default": ThreadPoolExecutor(4)},
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone=UTC,
    )


def start_job(planned_id: int) -> None:
    """The job of a planned run: its start time came (within the misfire limit)."""
    db = _current_db
    if db is None:
        raise RuntimeError("no labctl database is set for the scheduler's jobs")
    q.start_time_came(db, int(planned_id))


def _missed_reason(at: float, now: float, limit: float) -> str:
    from labctl.core.formatting import fmt_duration

    when = datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")
    return (
        f"missed its start at {when} by {fmt_duration(now - at)} (the campaign's misfire limit is "
        f"{fmt_duration(limit)}); not started late"
    )


def start_missed(db: Any, planned_id: int, *, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    row = q.planned(db, planned_id)
    limit = float(q.campaign(db, int(row["campaign_id"]))["misfire_limit_s"])
    return q.start_missed(db, planned_id, _missed_reason(float(row["not_before_unix"]), now, limit), now=now)


def _store(db: Any) -> tuple[Any, Any]:
    """The job store (table created if needed) and the never-started scheduler its jobs belong to."""
    sched = _scheduler(db)
    store = jobstore(db)
    store.start(sched, "default")
    return store, sched


def _add_jobs(db: Any, rows: list[dict[str, Any]], limit: float) -> None:
    """One date job per planned run (id only), written straight to the store: no scheduler runs here."""
    from apscheduler.job import Job
    from apscheduler.jobstores.base import ConflictingIdError
    from apscheduler.triggers.date import DateTrigger

    store, sched = _store(db)
    for r in rows:
        trigger = DateTrigger(run_date=_utc(float(r["not_before_unix"])), timezone=UTC)
        job = Job(
            sched,
            id=job_id(int(r["id"])),
            func=JOB_FUNC,
            args=(int(r["id"]),),
            kwargs={},
            trigger=trigger,
            executor="default",
            name=f"{r.get('campaign', '')}:{r['key']}",
            misfire_grace_time=max(1, int(limit)),
            coalesce=True,
            max_instances=1,
            next_run_time=trigger.get_next_fire_time(None, _utc(float(r["not_before_unix"]))),
        )
        try:
            store.add_job(job)
        except ConflictingIdError:
            store.update_job(job)
    store.shutdown()


def store_campaign(db: Any, campaign: Campaign, *, now: float | None = None) -> tuple[int, dict[str, int]]:
    """Store ``campaign`` and its planned runs in one transaction: (campaign id, planned id by key).

    Raises :class:`labctl.db.campaigns.CampaignExists` when its name is already queued."""
    runs_ = [
        dict(
            key=p.key,
            spec=p.to_dict(),
            station=p.station,
            channel=p.channel,
            pool=p.pool,
            priority=p.priority,
            at=p.at,
            after=list(p.after),
        )
        for p in campaign.expand()
    ]
    return q.add_campaign(
        db,
        name=campaign.name,
        text=campaign.text,
        sha256=campaign.sha256,
        source=campaign.source,
        misfire_limit_s=campaign.misfire_limit_s,
        runs_=runs_,
        now=now,
    )


def schedule_campaign(db: Any, campaign: Campaign, *, now: float | None = None) -> int:
    """Queue ``campaign``: its planned runs and one job per ``at:`` time; the campaign id.

    Raises :class:`labctl.db.campaigns.CampaignExists` when its name is already queued."""
    cid, _ = store_campaign(db, campaign, now=now)
    timed = [r for r in q.queue(db, campaign_id=cid) if r["not_before_unix"] is not None]
    if timed:
        _add_jobs(db, timed, campaign.misfire_limit_s)
    return cid


def reconcile(db: Any, store_ids: set[str], *, now: float | None = None) -> list[dict[str, Any]]:
    """Waiting runs whose start has not come and that have no job: missed ones fail (beyond the limit),
    the others are returned so the caller re-creates their jobs."""
    now = time.time() if now is None else now
    missing = []
    for r in q.queue(db, states=("waiting",)):
        if r["start_ok"] or r["not_before_unix"] is None or job_id(int(r["id"])) in store_ids:
            continue
        limit = float(q.campaign(db, int(r["campaign_id"]))["misfire_limit_s"])
        if now - float(r["not_before_unix"]) > limit:
            start_missed(db, int(r["id"]), now=now)
        else:
            missing.append(r)
    return missing


def serve(db: Any, *, stop: threading.Event | None = None, until_done: bool = True, poll: float = 0.5) -> int:
    """Run the scheduler on ``db``'s job store (exclusively) until every job has fired (``until_done``)
    or ``stop`` is set.  Returns how many jobs fired or were handled as missed."""
    global _current_db
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED

    stop = stop or threading.Event()
    handled = [0]
    with StoreLock(db, "scheduler"):
        _current_db = db
        sched = _scheduler(db)

        def on_event(ev: Any) -> None:
            pid = int(str(ev.job_id).rsplit("-", 1)[1])
            handled[0] += 1
            if ev.code == EVENT_JOB_MISSED:
                log.warning("planned run %s missed its start", pid)
                start_missed(db, pid)
            elif ev.code == EVENT_JOB_ERROR:
                log.error("start job of planned run %s failed: %s", pid, ev.exception)

        sched.add_listener(on_event, EVENT_JOB_MISSED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        store, _ = _store(db)
        ids = {j.id for j in store.get_all_jobs()}
        store.shutdown()
        for r in reconcile(db, ids):
            limit = float(q.campaign(db, int(r["campaign_id"]))["misfire_limit_s"])
            _add_jobs(db, [r], limit)
        q.release_ready(db)
        sched.start()
        try:
            while not stop.wait(poll):
                if until_done and not sched.get_jobs():
                    break
        finally:
            sched.shutdown(wait=True)
            _current_db = None
    return handled[0]


class VirtualScheduler:
    """The job store driven in virtual time (``labctl schedule --rehearse``): :meth:`step` fires the
    jobs due at ``now`` (unix, virtual) by the same misfire rule and returns the next job's time."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.store, self.sched = _store(db)
        self.fired: list[tuple[float, int, str]] = []  # (virtual unix, planned id, "started" | "missed")

    def step(self, now: float) -> float | None:
        for job in self.store.get_due_jobs(_utc(now)):
            pid = int(job.args[0])
            late = now - job.next_run_time.timestamp()
            if job.misfire_grace_time is not None and late > job.misfire_grace_time:
                start_missed(self.db, pid, now=now)
                self.fired.append((now, pid, "missed"))
            else:
                q.start_time_came(self.db, pid)
                self.fired.append((now, pid, "started"))
            self.store.remove_job(job.id)
        nxt = self.store.get_next_run_time()
        return None if nxt is None else nxt.timestamp()
