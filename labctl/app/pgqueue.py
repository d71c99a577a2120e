"""The shared lab on PostgreSQL: planned runs as procrastinate jobs, one worker per station.

Several lab PCs share one PostgreSQL database.  Each PC runs ``labctl worker --station
FILE --db postgresql://...`` for the station it is wired to; ``labctl schedule CAMPAIGN
--db postgresql://...`` stores the campaign (the ``campaigns``/``planned_runs`` tables of
:mod:`labctl.app.lab`) and hands every planned run that is due to procrastinate
(https://procrastinate.readthedocs.io), a maintained task queue whose only broker is
PostgreSQL itself:

* a job carries one argument, the planned run's id (``{"planned_id": 7}``);
* its queue is the station's name, so a worker fetches only its own station's runs;
* a run pinned to a channel has the lock ``"<station>/<channel>"``: procrastinate starts
  at most one job of a lock at a time, in priority then submission order;
* a pooled run has no lock; the worker picks a free channel of the pool when the job
  starts, under a PostgreSQL advisory lock per channel held by the worker's session (a
  second worker of the same station, or a pinned run of that channel, cannot take it;
  the lock goes with the session when a worker dies); the worker fetches one job ahead
  per channel, which waits up to CHANNEL_WAIT s for a channel and then goes back to the
  queue for BUSY_RETRY s;
* runs wait for their ``at:`` time and their ``after:`` prerequisites in ``planned_runs``
  and are deferred when they become due (:func:`release`): when ``schedule`` runs, when a
  run ends (its dependents), and every few seconds by a periodic task of the workers.  Not
  ``schedule_at``: procrastinate orders the jobs of one lock by priority and id whatever
  their ``scheduled_at``, so a pinned run deferred for 09:00 would hold back an earlier
  run of its channel;
* workers send heartbeats; a periodic task retries the jobs of workers whose heartbeat is
  older than ``stalled_after`` (procrastinate's stalled-job retrieval), and a worker
  starting up does the same for its station.

Exactly once is decided by the ``planned_runs`` row, not by the queue (a job may come
twice: a stalled worker's job is retried, a releaser may race another).  A planned run that
is done, failed or cancelled is left alone; one held by a worker that is still alive is
left to it; one whose worker is gone is taken over, by a conditional UPDATE on its state,
holder and attempts (of two takers one wins): if it recorded a run, that run is marked
interrupted and **resumed** (:func:`labctl.app.lab.execute.resume_planned`, from its last
checkpoint, gap and OCV on record), never started a second time; if not, it runs.  The
run and its planned run are linked in the transaction that creates the run
(``open_run(on_created=)``), so there is no moment when a run exists that its planned run
does not name.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("labctl.pgqueue")

#: The task that runs one planned run.
RUN_TASK = "labctl.run_planned"
#: The queue every worker also serves: the periodic release and stalled-job sweeps.
MAINTENANCE_QUEUE = "labctl"
#: Seconds between a worker's heartbeats, and the age after which its jobs count as stalled.
HEARTBEAT = 5.0
STALLED_AFTER = 20.0
#: Seconds a job waits for one of its channels to come free (the worker fetches one job ahead
#: per channel, so the next run is ready when a channel frees), then the job goes back to the
#: queue for BUSY_RETRY seconds.
CHANNEL_WAIT = 2.0
BUSY_RETRY = 1.0
#: The periodic sweeps (cron with a seconds field).
SWEEP_CRON = "* * * * * */5"

FINAL = ("done", "failed", "cancelled")


class ChannelBusy(Exception):
    """No channel for this run is free right now: the job goes back to the queue for a moment."""


class RunInterrupted(Exception):
    """The run was interrupted (the worker is stopping): the job goes back to the queue, resumable."""


class NotMine(Exception):
    """A job reached a worker whose station does not own its channel."""


# --------------------------------------------------------------------------- URLs and schema
def is_postgres(url: str | None) -> bool:
    """True for a PostgreSQL URL (``postgresql://``, ``postgres://``, ``postgresql+psycopg://``)."""
    if not url or "://" not in url:
        return False
    return url.split("://", 1)[0].split("+")[0] in ("postgresql", "postgres")


def libpq_url(url: str) -> str:
    """The URL psycopg and procrastinate connect with (no SQLAlchemy driver suffix)."""
    from sqlalchemy.engine import make_url

    u = make_url(url).set(drivername="postgresql")
    return u.render_as_string(hide_password=False)


#: Key of the advisory lock that serialises schema bootstrap and job releases.
_BOOTSTRAP_KEY = "labctl:procrastinate-schema"
_RELEASE_KEY = "labctl:release"


def ensure_schema(url: str) -> bool:
    """Create procrastinate's tables, types and functions in the database of ``url`` unless
    they are there (idempotent; concurrent workers wait on an advisory lock).  True if created."""
    import psycopg
    from procrastinate.schema import SchemaManager

    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (_BOOTSTRAP_KEY,))
        try:
            row = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
            if row is not None and row[0] is not None:
                return False
            with conn.transaction():
                conn.execute(SchemaManager.get_schema())  # procrastinate's own SQL
            return True
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (_BOOTSTRAP_KEY,))


def _utc_in(seconds: float) -> Any:
    import datetime

    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)


def lock_for(station: str, channel: str) -> str:
    """The procrastinate lock (and channel advisory lock) of one channel."""
    return f"{station}/{channel}"


# --------------------------------------------------------------------------- the app
def make_app(url: str) -> Any:
    """A procrastinate App on ``url`` with labctl's tasks registered (not opened)."""
    import procrastinate
    from procrastinate.retry import BaseRetryStrategy, RetryDecision

    class Retry(BaseRetryStrategy):
        """A busy pool or an interrupted run goes back to the queue; anything else (a bug, a
        broken instrument) fails the job, and ``planned_runs`` says why."""

        def get_retry_decision(self, *, exception: BaseException, job: Any) -> RetryDecision | None:
            if isinstance(exception, ChannelBusy):
                return RetryDecision(retry_at=_utc_in(BUSY_RETRY))
            if isinstance(exception, RunInterrupted):
                return RetryDecision(retry_at=_utc_in(0.0))
            return None

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=libpq_url(url)))

    @app.task(name=RUN_TASK, pass_context=True, retry=Retry())
    def run_planned(context: Any, planned_id: int) -> str:
        labs: dict[str, StationWorker] = context.additional_context["labs"]
        lab = labs.get(context.job.queue)  # the queue is the station
        if lab is None:
            raise NotMine(f"job {context.job.id} is for station {context.job.queue}, not {', '.join(labs)}")
        return lab.run_job(int(planned_id), job_id=context.job.id)

    @app.periodic(cron=SWEEP_CRON)
    @app.task(name="labctl.sweep", queue=MAINTENANCE_QUEUE, pass_context=True)
    def sweep(context: Any, timestamp: int) -> str:
        labs: dict[str, StationWorker] = context.additional_context["labs"]
        return next(iter(labs.values())).sweep()

    return app


# --------------------------------------------------------------------------- releasing due runs
@dataclass
class Released:
    deferred: list[int] = field(default_factory=list)  # planned-run ids given a job now
    missed: list[int] = field(default_factory=list)  # failed: their start was missed beyond the limit


def release(db: Any, app: Any, *, now: float | None = None) -> Released:
    """Give a procrastinate job to every planned run that is due and has none (idempotent).

    First the start times: a waiting run whose ``at:`` has come is allowed to start, or
    fails when it came longer ago than its campaign's misfire limit (the embedded
    scheduler's policy, :mod:`labctl.db.campaigns`); then waiting runs whose prerequisites
    are done become due.  Then every due run without a ``todo``/``doing`` job gets one,
    with the queueing lock ``planned-<id>``: two releasers at once defer it once.  Call
    from a thread, not from the worker's event loop (procrastinate's sync defer).
    """
    import sqlalchemy as sa
    from procrastinate import exceptions

    from labctl.db import campaigns as plan

    now = time.time() if now is None else now
    out = Released()
    limits: dict[int, float] = {}
    for r in plan.queue(db, states=("waiting",)):
        at = r["not_before_unix"]
        if r["start_ok"] or at is None or at > now:
            continue
        cid = int(r["campaign_id"])
        if cid not in limits:
            limits[cid] = float(plan.campaign(db, cid)["misfire_limit_s"])
        late = now - float(at)
        if late > limits[cid]:
            why = f"its start was missed by {late:.0f} s, more than the misfire limit ({limits[cid]:.0f} s)"
            if plan.start_missed(db, int(r["id"]), why, now=now):
                out.missed.append(int(r["id"]))
        else:
            plan.start_time_came(db, int(r["id"]))
    plan.release_ready(db, now=now)
    with db.transaction() as conn:
        due = [
            dict(r)
            for r in conn.execute(
                sa.text(
                    # NOT IN over one scan of the jobs (a hashed subplan), not a join per planned run
                    "SELECT p.id, p.station, p.channel, p.pool, p.priority FROM planned_runs p "
                    "WHERE p.state = 'due' AND p.id NOT IN (SELECT (j.args->>'planned_id')::bigint "
                    "FROM procrastinate_jobs j WHERE j.task_name = :t AND j.status IN ('todo', 'doing') "
                    "AND j.args ? 'planned_id') ORDER BY p.priority DESC, p.id"
                ),
                {"t": RUN_TASK},
            ).mappings()
        ]
    task = app.tasks[RUN_TASK]
    for r in due:
        pid = int(r["id"])
        pinned = r["channel"] is not None and not r["pool"]
        try:
            task.configure(
                queue=str(r["station"]),
                lock=lock_for(r["station"], r["channel"]) if pinned else None,
                queueing_lock=f"planned-{pid}",
                priority=int(r["priority"] or 0),
            ).defer(planned_id=pid)
        except exceptions.AlreadyEnqueued:
            continue  # another releaser was first
        out.deferred.append(pid)
    return out


def retry_stalled(app: Any, *, stalled_after: float, queue: str | None = None) -> list[int]:
    """Put back to ``todo`` the run jobs held by workers whose heartbeat is older than
    ``stalled_after`` seconds (or whose worker row is gone); their job ids.  From a thread."""
    from asgiref.sync import async_to_sync

    jobs = async_to_sync(app.job_manager.get_stalled_jobs)(
        queue=queue, task_name=RUN_TASK, seconds_since_heartbeat=stalled_after
    )
    out = []
    for job in jobs:
        async_to_sync(app.job_manager.retry_job)(job)
        out.append(int(job.id))
    return out


# --------------------------------------------------------------------------- scheduling
def store_campaign(db: Any, campaign: Any) -> tuple[int, dict[str, int]]:
    """Store a loaded :class:`labctl.app.lab.campaign.Campaign` and its planned runs (one transaction)."""
    from labctl.app.lab.scheduler import store_campaign as store

    return store(db, campaign)


def schedule_campaign(url: str, campaign: Any) -> dict[str, Any]:
    """``labctl schedule CAMPAIGN --db postgresql://...``: store the campaign (validated by
    :func:`labctl.app.lab.campaign.load_campaign`) and defer the runs that are due; the workers'
    periodic release defers the others when their time and prerequisites come."""
    from labctl.db import Database

    ensure_schema(url)
    db = Database(url)
    app = make_app(url)
    try:
        campaign_id, ids = store_campaign(db, campaign)
        with app.open():
            rel = release(db, app)
        return {
            "campaign": campaign.name,
            "campaign_id": campaign_id,
            "planned": len(ids),
            "deferred": len(rel.deferred),
            "waiting": len(ids) - len(rel.deferred) - len(rel.missed),
            "missed": len(rel.missed),
        }
    finally:
        db.close()


# --------------------------------------------------------------------------- the worker
class StationWorker:
    """What one worker process knows: its station, its channels, the database, the clock."""

    def __init__(
        self,
        db: Any,
        station: Any,
        app: Any,
        *,
        speed: str | float | None = None,
        stalled_after: float = STALLED_AFTER,
        stop: threading.Event | None = None,
    ) -> None:
        from labctl.db.liveness import owner_id

        self.db = db
        self.station = station
        self.app = app
        self.name = station_name(station)
        self.channels = list(station.channels)
        self.speed = speed
        self.stalled_after = float(stalled_after)
        self.me = owner_id()
        self.stop = stop if stop is not None else threading.Event()
        self._local = {c: threading.Lock() for c in self.channels}
        self._conns: dict[str, Any] = {}
        self._freed = threading.Condition()
        self.url = db.engine.url.render_as_string(hide_password=False)

    # -- channels
    @contextmanager
    def channel(self, wanted: list[str], wait: float = CHANNEL_WAIT) -> Iterator[str]:
        """Hold the first free channel of ``wanted``: a thread lock in this process and a
        PostgreSQL session advisory lock for every other process (one connection per channel,
        kept; the lock goes with the session if the worker dies).  Waits up to ``wait`` s for
        one of this worker's channels to come free, then ChannelBusy."""
        deadline = time.monotonic() + wait
        while True:
            got = self._try_channel(wanted)
            if got is not None:
                break
            with self._freed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChannelBusy(f"no free channel among {', '.join(wanted)} on {self.name}")
                self._freed.wait(left)
        name, conn, key = got
        try:
            yield name
        finally:
            try:
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
            except Exception:  # a broken session has released it anyway
                self._drop_conn(name)
            finally:
                self._local[name].release()
                with self._freed:
                    self._freed.notify_all()

    def _try_channel(self, wanted: list[str]) -> tuple[str, Any, str] | None:
        for name in wanted:
            lk = self._local.get(name)
            if lk is None or not lk.acquire(blocking=False):
                continue
            key = "labctl:channel:" + lock_for(self.name, name)
            try:
                conn = self._lock_conn(name)
                row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()
            except BaseException:
                self._drop_conn(name)
                lk.release()
                raise
            if row and row[0]:
                return name, conn, key
            lk.release()  # held by another process
        return None

    def _lock_conn(self, channel: str) -> Any:
        import psycopg

        conn = self._conns.get(channel)
        if conn is None or conn.closed:
            conn = self._conns[channel] = psycopg.connect(libpq_url(self.url), autocommit=True)
        return conn

    def _drop_conn(self, channel: str) -> None:
        conn = self._conns.pop(channel, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for ch in list(self._conns):
            self._drop_conn(ch)

    # -- one job
    def run_job(self, planned_id: int, *, job_id: int | None = None) -> str:
        decision = _take(self.db, planned_id, station=self.name, me=self.me, channels=self.channels)
        if decision.action == "skip":
            return decision.why
        if decision.action == "not-mine":
            raise NotMine(decision.why)
        if decision.action == "fail":  # the station file and the campaign disagree: say so, never drop it
            from labctl.db import campaigns as plan

            plan.transition(
                self.db, planned_id, ("waiting", "due"), "failed", reason=decision.why, ended_unix=time.time()
            )
            return decision.why
        wanted = [decision.channel] if decision.channel else decision.pool_channels
        with self.channel(wanted) as ch:
            if not _take_over(self.db, planned_id, me=self.me, channel=ch, expect=decision):
                return "taken by another worker meanwhile"
            try:
                if decision.action == "resume":
                    assert decision.run_id is not None
                    outcome = self._resume(planned_id, decision.run_id, ch)
                else:
                    outcome = self._execute(planned_id, ch)
            except BaseException as exc:
                _failed(self.db, planned_id, f"{type(exc).__name__}: {exc}")
                raise
        if _anything_waits(self.db):
            release(self.db, self.app)  # its dependents (the periodic sweep catches what this misses)
        if outcome.status == "interrupted":
            raise RunInterrupted(f"planned run {planned_id}: run {outcome.run_id} interrupted; resumable")
        return f"run {outcome.run_id} {outcome.status} on {lock_for(self.name, ch)}"

    def clock(self) -> Any:
        """A clock for one run: wall time, or (simulated stations) ``max`` virtual time or a factor."""
        from labctl.core.clock import WallClock, clock_for_speed

        if self.speed is None or str(self.speed).lower() in ("wall", "real", "realtime", "1"):
            return WallClock()
        return clock_for_speed(self.speed)

    def _execute(self, planned_id: int, channel: str) -> Any:
        from labctl.app.lab.execute import execute_planned

        clock = self.clock()
        return execute_planned(self.db, planned_id, self.station, channel, clock=clock, stop=self.stop, owner=self.me)

    def _resume(self, planned_id: int, run_id: int, channel: str) -> Any:
        from labctl.app.lab.execute import resume_planned

        # on record: the run was interrupted (its worker is gone) before it is taken over
        self.db.mark_interrupted(run_id, "its worker is gone (taken over by a worker of the same station)")
        log.info("resuming run %s on %s", run_id, lock_for(self.name, channel))
        clock = self.clock()
        return resume_planned(self.db, planned_id, self.station, channel, clock=clock, stop=self.stop, owner=self.me)

    # -- maintenance
    def sweep(self) -> str:
        stalled = retry_stalled(self.app, stalled_after=self.stalled_after)
        rel = release(self.db, self.app)
        return f"{len(stalled)} stalled job(s) retried, {len(rel.deferred)} run(s) released"


def station_name(station: Any) -> str:
    """A station's queue name: its ``name:``, else its file's stem."""
    if station.name:
        return str(station.name)
    return Path(station.source).stem


def run_worker(
    url: str,
    station_paths: str | Path | list[str | Path] | list[Path],
    *,
    speed: str | float | None = None,
    heartbeat: float = HEARTBEAT,
    stalled_after: float | None = None,
    poll: float = 5.0,
    until_idle: bool = False,
) -> bool:
    """``labctl worker --station FILE --db postgresql://...``: serve the queues of the stations
    (one queue per station, one run at a time per channel and one job fetched ahead per channel)
    until SIGTERM/SIGINT/SIGHUP: the runs in progress end at their next block with the cells safe
    and their jobs go back to the queue, resumable.  True when a signal stopped it; with
    ``until_idle`` it returns (False) once no planned run of its stations is left to run."""
    import signal

    from asgiref.sync import sync_to_async

    from labctl.app.station import load_station
    from labctl.db import Database

    paths = station_paths if isinstance(station_paths, list) else [station_paths]
    stations = [load_station(p) for p in paths]
    ensure_schema(url)
    db = Database(url)
    app = make_app(url)
    stalled = float(stalled_after if stalled_after is not None else 4 * heartbeat)
    stop = threading.Event()
    labs = {
        station_name(st): StationWorker(db, st, app, speed=speed, stalled_after=stalled, stop=stop) for st in stations
    }
    n = max(1, sum(len(lab.channels) for lab in labs.values()))
    me = next(iter(labs.values())).me

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2 * n + 4, thread_name_prefix="labctl-job"))
        async with app.open_async():
            # this station's jobs held by dead workers, then the runs that became due meanwhile
            for name in labs:
                await sync_to_async(retry_stalled, thread_sensitive=False)(app, stalled_after=stalled, queue=name)
            await sync_to_async(release, thread_sensitive=False)(db, app)
            task = asyncio.ensure_future(
                app.run_worker_async(
                    queues=[*labs, MAINTENANCE_QUEUE],
                    name=f"{'+'.join(labs)}@{me}",
                    concurrency=2 * n,  # one job running per channel, one fetched ahead waiting for it
                    additional_context={"labs": labs},
                    install_signal_handlers=False,  # ours: stop the runs too, not only the fetching
                    update_heartbeat_interval=heartbeat,
                    stalled_worker_timeout=stalled,
                    fetch_job_polling_interval=poll,  # besides LISTEN/NOTIFY
                    delete_jobs="successful",  # a sweep every 5 s; planned_runs keeps each run's history
                )
            )

            def on_signal() -> None:
                stop.set()  # the runs end at their next block, cells safe, resumable
                task.cancel()  # procrastinate: stop fetching, wait for the running jobs

            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.add_signal_handler(s, on_signal)
            idle = asyncio.ensure_future(_until_idle(db, list(labs), poll, task)) if until_idle else None
            try:
                await task
            except asyncio.CancelledError:
                if not stop.is_set() and not (idle is not None and idle.done()):
                    raise
            finally:
                if idle is not None:
                    idle.cancel()

    try:
        asyncio.run(main())
    finally:
        for lab in labs.values():
            lab.close()
        db.close()
    return stop.is_set()


def _anything_waits(db: Any) -> bool:
    """Some planned run waits for a start time or a prerequisite (else a release has nothing to do)."""
    import sqlalchemy as sa

    with db.transaction() as conn:
        return conn.execute(sa.text("SELECT 1 FROM planned_runs WHERE state = 'waiting' LIMIT 1")).first() is not None


async def _until_idle(db: Any, stations: list[str], poll: float, task: asyncio.Future[Any]) -> None:
    """Stop the worker once none of ``stations``' planned runs is left (done, failed or cancelled)."""
    from asgiref.sync import sync_to_async

    from labctl.db import campaigns as plan

    def left() -> int:
        return sum(plan.pending(db, station=s) for s in stations)

    while await sync_to_async(left, thread_sensitive=False)() > 0:
        await asyncio.sleep(poll)
    task.cancel()  # graceful: nothing is running


# --------------------------------------------------------------------------- planned_runs
@dataclass
class Decision:
    """What a job does with its planned run: ``run`` it, ``resume`` its run, ``skip``, ``not-mine``."""

    action: str
    why: str = ""
    state: str | None = None
    claimed_by: str | None = None
    attempts: int = 0
    channel: str | None = None
    pool_channels: list[str] = field(default_factory=list)
    run_id: int | None = None


def _take(db: Any, planned_id: int, *, station: str, me: str, channels: list[str]) -> Decision:
    """Decide what a job does with planned run ``planned_id``."""
    from labctl.db import campaigns as plan
    from labctl.db.liveness import owner_gone

    try:
        row = plan.planned(db, planned_id)
    except KeyError:
        return Decision("skip", f"no planned run {planned_id}")
    base = dict(state=row["state"], claimed_by=row["claimed_by"], attempts=int(row["attempts"] or 0))
    if row["station"] != station:
        return Decision("not-mine", f"planned run {planned_id} is for station {row['station']}, not {station}")
    state = row["state"]
    pool = [str(c) for c in (row["pool"] or [])]
    if pool and state in ("waiting", "due"):  # a pooled run takes its channel when it starts
        mine = [c for c in pool if c in channels]
        if not mine:
            return Decision("fail", f"no channel of its pool ({', '.join(pool)}) is in station {station}'s file")
        where: dict[str, Any] = dict(pool_channels=mine)
    else:  # pinned, or a pooled run that has started: its cell is on that channel
        if row["channel"] not in channels:
            return Decision("fail", f"channel {row['channel']} is not in station {station}'s file", **base)
        where = dict(channel=str(row["channel"]))
    if state in plan.FINAL_STATES:
        return Decision("skip", f"planned run {planned_id} is {state}", **base)
    if state == "waiting":
        return Decision("skip", f"planned run {planned_id} is not due yet", **base)
    if state == "due":
        return Decision("run", **where, **base)
    # claimed | running | paused | interrupted: whose is it, and is that worker alive?
    if row["run_id"] is not None:
        run_id = int(row["run_id"])
        run = db.run(run_id)  # status "interrupted" once its owner is gone (labctl.db.liveness)
        if run["status"] == "running":
            return Decision("skip", f"run {run_id} is being run by {run['owner']}", **base)
        if run["status"] == "interrupted":
            return Decision("resume", run_id=run_id, **where, **base)
        # the run ended but its worker died before saying so in planned_runs
        from labctl.app.lab.execute import STATE_OF

        plan.finish(db, planned_id, STATE_OF.get(run["status"], "failed"), f"{run['status']}: {run['end_reason']}")
        return Decision("skip", f"run {run_id} had already ended ({run['status']})", **base)
    if state == "interrupted" or owner_gone(row["claimed_by"], row["heartbeat_unix"]):
        return Decision("run", **where, **base)  # claimed, then its worker died before the run began
    return Decision("skip", f"planned run {planned_id} is claimed by {row['claimed_by']}", **base)


def _take_over(db: Any, planned_id: int, *, me: str, channel: str, expect: Decision) -> bool:
    """Make this worker the holder of an orphaned planned run, if nobody did since :func:`_take`.

    ``run``: the planned run goes back to ``due`` and is claimed like any due run; ``resume``:
    it becomes ``running`` under this worker.  Conditional on state, holder and attempts, so
    of two jobs (or workers) taking over one run, one wins."""
    import sqlalchemy as sa

    from labctl.db import campaigns as plan
    from labctl.db.schema import planned_runs as pr

    now = time.time()
    cond = [pr.c.id == planned_id, pr.c.state == expect.state, pr.c.attempts == expect.attempts]
    cond.append(pr.c.claimed_by.is_(None) if expect.claimed_by is None else pr.c.claimed_by == expect.claimed_by)
    if expect.action == "resume":
        values: dict[str, Any] = dict(
            state="running",
            claimed_by=me,
            claimed_unix=now,
            heartbeat_unix=now,
            channel=channel,
            control=None,
            attempts=pr.c.attempts + 1,
        )
    elif expect.state == "due":
        return plan.claim(db, planned_id, channel, me, now=now)
    else:
        values = dict(state="due", claimed_by=None, claimed_unix=None, heartbeat_unix=None)
    with db.transaction(write=True) as conn:
        moved = conn.execute(sa.update(pr).where(*cond).values(**values)).rowcount == 1
    if moved and expect.action == "run":
        return plan.claim(db, planned_id, channel, me, now=now)
    return bool(moved)


def _failed(db: Any, planned_id: int, why: str) -> None:
    """A job that broke outside the run (the run records its own end): the planned run says why."""
    from labctl.db import campaigns as plan

    plan.finish(db, planned_id, "failed", why)
