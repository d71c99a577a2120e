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
  the lock goes with the session when a worker dies), and a job that finds no free
  channel is put back for a second later;
* runs wait for their ``at:`` time and their ``after:`` prerequisites in ``planned_runs``
  and are deferred when they become due (:func:`release`): when ``schedule`` runs, when a
  run ends (its dependents), and every few seconds by a periodic task of the workers.  Not
  ``schedule_at``: procrastinate orders the jobs of one lock by priority and id whatever
  their ``scheduled_at``, so a pinned run deferred for 09:00 would hold back an earlier
  run of its channel;
* workers send heartbeats; a periodic task retries the jobs of workers whose heartbeat is
  older than ``stalled_after`` (procrastinate's stalled-job retrieval), and a worker
  starting up does the same for its station.

Exactly once is decided by the ``planned_runs`` row, not by the queue: a job locks its
row (``SELECT ... FOR UPDATE``) before it acts.  A planned run that is done, failed or
cancelled is left alone; one claimed by a worker that is still alive (a duplicate job) is
left to it; one whose worker is gone is taken over: if it recorded a run, that run is
marked interrupted and **resumed** (:func:`labctl.app.resume.resume_run`, from its last
checkpoint, gap and OCV on record), never started a second time.  A run is recorded with
``meta.planned_run``, ``meta.station`` and ``meta.worker``, so a worker that died between
opening the run and linking it still finds it.
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
#: Seconds a job waits before it tries again when every channel of its pool is busy.
BUSY_RETRY = 1.0
#: The periodic sweeps (cron with a seconds field).
SWEEP_CRON = "* * * * * */5"

FINAL = ("done", "failed", "cancelled")
ACTIVE = ("claimed", "running")


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
                conn.execute(SchemaManager.get_schema())  # type: ignore[arg-type]  # procrastinate's own SQL
            return True
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (_BOOTSTRAP_KEY,))


def lock_for(station: str, channel: str) -> str:
    """The procrastinate lock (and channel advisory lock) of one channel."""
    return f"{station}/{channel}"


# --------------------------------------------------------------------------- the app
def make_app(url: str) -> Any:
    """A procrastinate App on ``url`` with labctl's tasks registered (not opened)."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=libpq_url(url)))

    @app.task(name=RUN_TASK, pass_context=True, retry=_Retry())
    def run_planned(context: Any, planned_id: int) -> str:
        lab: StationWorker = context.additional_context["lab"]
        return lab.run_job(int(planned_id), job_id=context.job.id)

    @app.periodic(cron=SWEEP_CRON)
    @app.task(name="labctl.sweep", queue=MAINTENANCE_QUEUE, pass_context=True)
    def sweep(context: Any, timestamp: int) -> str:
        lab: StationWorker = context.additional_context["lab"]
        return lab.sweep()

    return app


class _Retry:
    """Retry decisions: a busy pool or an interrupted run goes back to the queue; anything
    else (a bug, a broken instrument) fails the job: ``planned_runs`` says why."""

    def get_retry_exception(self, exception: BaseException, job: Any) -> Any:
        from procrastinate import exceptions
        from procrastinate.retry import RetryDecision

        if isinstance(exception, ChannelBusy):
            decision = RetryDecision(retry_in={"seconds": BUSY_RETRY})
        elif isinstance(exception, RunInterrupted):
            decision = RetryDecision(retry_in={"seconds": 0})
        else:
            return None
        return exceptions.JobRetry(decision)


# --------------------------------------------------------------------------- releasing due runs
@dataclass
class Released:
    deferred: list[int] = field(default_factory=list)  # planned-run ids given a job now
    pending: int = 0  # still waiting for their time or prerequisites


def release(db: Any, app: Any, *, now: float | None = None) -> Released:
    """Give a procrastinate job to every planned run that is due and has none (idempotent).

    Due: state ``waiting`` or ``due``, its ``at`` reached, every ``after:`` prerequisite
    done.  Serialised by an advisory lock held for the transaction, so two workers
    releasing at once never defer one run twice; a job deferred by a releaser that died
    before it marked the row is found (by its ``planned_id`` argument) and not deferred again.
    """
    import sqlalchemy as sa

    now = time.time() if now is None else now
    out = Released()
    with db.transaction(write=True) as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": _RELEASE_KEY})
        ready, out.pending = _ready_runs(conn, now)
        if not ready:
            return out
        ids = [int(r["id"]) for r in ready]
        with_job = {
            int(x)
            for (x,) in conn.execute(
                sa.text(
                    "SELECT (args->>'planned_id')::bigint FROM procrastinate_jobs "
                    "WHERE task_name = :t AND status IN ('todo', 'doing') "
                    "AND (args->>'planned_id')::bigint = ANY(:ids)"
                ),
                {"t": RUN_TASK, "ids": ids},
            )
        }
        task = app.tasks[RUN_TASK]
        for r in ready:
            pid = int(r["id"])
            if pid not in with_job:
                lock = lock_for(r["station"], r["channel"]) if r["channel"] else None
                task.configure(queue=r["station"], lock=lock, priority=int(r["priority"] or 0)).defer(planned_id=pid)
                out.deferred.append(pid)
        _mark_due(conn, ids)
    return out


def retry_stalled(app: Any, *, stalled_after: float, queue: str | None = None) -> list[int]:
    """Put back to ``todo`` the jobs held by workers whose heartbeat is older than
    ``stalled_after`` seconds (or that have no worker row any more); their ids."""

    async def go() -> list[int]:
        jobs = await app.job_manager.get_stalled_jobs(
            queue=queue, task_name=RUN_TASK, seconds_since_heartbeat=stalled_after
        )
        for job in jobs:
            await app.job_manager.retry_job(job)
        return [int(j.id) for j in jobs]

    return _run_async(go())


def _run_async(coro: Any) -> Any:
    """Run ``coro`` on the worker's event loop when called from one of its job threads, else here."""
    loop = _LOOP.get("loop")
    if loop is not None and loop.is_running():
        return asyncio.run_coroutine_threadsafe(coro, loop).result()
    return asyncio.run(coro)


_LOOP: dict[str, asyncio.AbstractEventLoop | None] = {"loop": None}


# --------------------------------------------------------------------------- scheduling
def schedule_campaign(url: str, campaign_path: str | Path, **options: Any) -> dict[str, Any]:
    """``labctl schedule CAMPAIGN --db postgresql://...``: store the campaign and defer its due runs."""
    from labctl.app.lab import store
    from labctl.db import Database

    ensure_schema(url)
    db = Database(url)
    app = make_app(url)
    try:
        campaign_id, n = store.store_campaign(db, campaign_path, **options)
        with app.open():
            rel = release(db, app)
        return {"campaign": campaign_id, "planned": n, "deferred": len(rel.deferred), "waiting": rel.pending}
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
        speed: str | float = "max",
        stalled_after: float = STALLED_AFTER,
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
        self.stop = threading.Event()
        self._local = {c: threading.Lock() for c in self.channels}
        self.url = db.engine.url.render_as_string(hide_password=False)

    # -- channels
    @contextmanager
    def channel(self, wanted: list[str]) -> Iterator[str]:
        """Hold the first free channel of ``wanted``: a thread lock in this process and a
        PostgreSQL session advisory lock for every other process.  ChannelBusy if none is free."""
        import psycopg

        for name in wanted:
            lk = self._local.get(name)
            if lk is None or not lk.acquire(blocking=False):
                continue
            conn = None
            try:
                conn = psycopg.connect(libpq_url(self.url), autocommit=True)
                key = "labctl:channel:" + lock_for(self.name, name)
                row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()
                if not (row and row[0]):
                    conn.close()
                    lk.release()
                    continue
            except BaseException:
                if conn is not None:
                    conn.close()
                lk.release()
                raise
            try:
                yield name
            finally:
                try:
                    conn.close()  # ends the session: the advisory lock goes with it
                finally:
                    lk.release()
            return
        raise ChannelBusy(f"no free channel among {', '.join(wanted)} on {self.name}")

    # -- one job
    def run_job(self, planned_id: int, *, job_id: int | None = None) -> str:
        decision = _take(self.db, planned_id, station=self.name, me=self.me, channels=self.channels)
        if decision.action == "skip":
            return decision.why
        if decision.action == "not-mine":
            raise NotMine(decision.why)
        wanted = [decision.channel] if decision.channel else decision.pool_channels
        with self.channel(wanted) as ch:
            if not _claim(self.db, planned_id, me=self.me, channel=ch, expect=decision):
                return "taken by another worker meanwhile"
            try:
                if decision.run_id is not None:
                    outcome = self._resume(decision.run_id, ch)
                    _finish(self.db, planned_id, outcome)
                else:
                    outcome = self._execute(planned_id, ch)
            except BaseException as exc:
                _failed(self.db, planned_id, f"{type(exc).__name__}: {exc}")
                raise
        release(self.db, self.app)  # its dependents
        if outcome.status == "interrupted":
            raise RunInterrupted(f"planned run {planned_id}: run {outcome.run_id} interrupted; resumable")
        return f"run {outcome.run_id} {outcome.status} on {lock_for(self.name, ch)}"

    def _execute(self, planned_id: int, channel: str) -> Any:
        from labctl.app.lab.execute import execute_planned
        from labctl.core.clock import clock_for_speed

        return execute_planned(
            self.db, planned_id, self.station, channel, clock=clock_for_speed(self.speed), stop=self.stop
        )

    def _resume(self, run_id: int, channel: str) -> Any:
        from labctl.app.resume import resume_run
        from labctl.core.clock import clock_for_speed

        run = self.db.run(run_id)
        if run["status"] == "running":  # its owner is gone (store.take checked), not yet marked
            self.db.mark_interrupted(run_id, f"its worker {run['owner']} is gone")
        log.info("resuming run %s on %s", run_id, lock_for(self.name, channel))
        return resume_run(self.db, run_id, clock=clock_for_speed(self.speed))

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
    station_path: str | Path,
    *,
    speed: str | float = "max",
    heartbeat: float = HEARTBEAT,
    stalled_after: float | None = None,
    wait: bool = True,
) -> None:
    """``labctl worker --station FILE --db postgresql://...``: serve the station's queue until
    SIGTERM/SIGINT (the runs in progress end at their next block, cells safe, resumable)."""
    import signal

    from labctl.app.station import load_station
    from labctl.db import Database

    station = load_station(station_path)
    ensure_schema(url)
    db = Database(url)
    app = make_app(url)
    stalled = float(stalled_after if stalled_after is not None else max(STALLED_AFTER, 4 * heartbeat))
    lab = StationWorker(db, station, app, speed=speed, stalled_after=stalled)
    n = max(1, len(lab.channels))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=n + 2, thread_name_prefix="labctl-job"))
        _LOOP["loop"] = loop
        async with app.open_async():
            # this station's jobs held by dead workers, before the first fetch
            await _retry_stalled_async(app, stalled, lab.name)
            await loop.run_in_executor(None, release, db, app)
            task = asyncio.ensure_future(
                app.run_worker_async(
                    queues=[lab.name, MAINTENANCE_QUEUE],
                    name=f"{lab.name}@{lab.me}",
                    concurrency=n + 1,  # one per channel, one for the sweeps
                    wait=wait,
                    additional_context={"lab": lab},
                    install_signal_handlers=False,  # ours: stop the runs too, not only the fetching
                    update_heartbeat_interval=heartbeat,
                    stalled_worker_timeout=stalled,
                    fetch_job_polling_interval=min(5.0, heartbeat),
                )
            )

            def on_signal() -> None:
                lab.stop.set()  # the runs end at their next block, cells safe, resumable
                task.cancel()  # procrastinate: stop fetching, wait for the running jobs

            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.add_signal_handler(s, on_signal)
            try:
                await task
            except asyncio.CancelledError:
                if not lab.stop.is_set():
                    raise

    try:
        asyncio.run(main())
    finally:
        _LOOP["loop"] = None
        db.close()


async def _retry_stalled_async(app: Any, stalled_after: float, queue: str) -> None:
    jobs = await app.job_manager.get_stalled_jobs(
        queue=queue, task_name=RUN_TASK, seconds_since_heartbeat=stalled_after
    )
    for job in jobs:
        await app.job_manager.retry_job(job)


# --------------------------------------------------------------------------- planned_runs
@dataclass
class Decision:
    """What a job does with its planned run: ``run`` it, ``resume`` its run, ``skip``, ``not-mine``."""

    action: str
    why: str = ""
    state: str | None = None
    claimed_by: str | None = None
    channel: str | None = None
    pool_channels: list[str] = field(default_factory=list)
    run_id: int | None = None


def _after_keys(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        import json

        value = json.loads(value) if value.strip().startswith("[") else [value]
    return [str(k) for k in value]


def _unix(value: Any) -> float | None:
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)


def _ready_runs(conn: Any, now: float) -> tuple[list[dict], int]:
    """Planned runs that are due now and not yet handed out; and how many still wait."""
    import sqlalchemy as sa

    rows = [
        dict(r)
        for r in conn.execute(
            sa.text(
                "SELECT id, campaign_id, key, station, channel, priority, not_before_unix, after, state "
                "FROM planned_runs WHERE state IN ('waiting', 'due')"
            )
        ).mappings()
    ]
    if not rows:
        return [], 0
    campaigns = sorted({int(r["campaign_id"]) for r in rows})
    done = {
        (int(c), str(k))
        for c, k in conn.execute(
            sa.text("SELECT campaign_id, key FROM planned_runs WHERE state = 'done' AND campaign_id = ANY(:c)"),
            {"c": campaigns},
        )
    }
    ready, pending = [], 0
    for r in rows:
        at = _unix(r["not_before_unix"])
        deps = _after_keys(r["after"])
        if (at is None or at <= now) and all((int(r["campaign_id"]), k) in done for k in deps):
            ready.append(r)
        else:
            pending += 1
    ready.sort(key=lambda r: (-int(r["priority"] or 0), int(r["id"])))
    return ready, pending


def _mark_due(conn: Any, ids: list[int]) -> None:
    import sqlalchemy as sa

    conn.execute(
        sa.text("UPDATE planned_runs SET state = 'due' WHERE id = ANY(:ids) AND state = 'waiting'"), {"ids": ids}
    )


def _row(conn: Any, planned_id: int, *, lock: bool) -> dict | None:
    import sqlalchemy as sa

    q = (
        "SELECT id, station, channel, pool, state, claimed_by, heartbeat_unix, run_id, attempts, control "
        "FROM planned_runs WHERE id = :id" + (" FOR UPDATE" if lock else "")
    )
    r = conn.execute(sa.text(q), {"id": planned_id}).mappings().first()
    return None if r is None else dict(r)


def _pool(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        import json

        value = json.loads(value)
    return [str(c) for c in value]


#: a run's status -> the planned run's final state
_PLANNED_END = {"completed": "done", "interrupted": "interrupted", "aborted": "cancelled"}


def _take(db: Any, planned_id: int, *, station: str, me: str, channels: list[str]) -> Decision:
    """Decide what a job does with planned run ``planned_id`` (its row locked while deciding)."""
    from labctl.db.liveness import owner_gone

    with db.transaction(write=True) as conn:
        row = _row(conn, planned_id, lock=True)
    if row is None:
        return Decision("skip", f"no planned run {planned_id}")
    base = dict(state=row["state"], claimed_by=row["claimed_by"])
    if row["station"] != station:
        return Decision("not-mine", f"planned run {planned_id} is for station {row['station']}, not {station}")
    pool = [c for c in _pool(row["pool"])]
    if row["channel"] is None or (pool and row["state"] in ("waiting", "due")):
        mine = [c for c in pool if c in channels]
        if not mine:
            return Decision("not-mine", f"planned run {planned_id}: no channel of its pool is on {station}")
        wanted_channel, wanted_pool = None, mine
    else:
        if row["channel"] not in channels:
            return Decision("not-mine", f"planned run {planned_id}: channel {row['channel']} is not on {station}")
        wanted_channel, wanted_pool = str(row["channel"]), []
    state = row["state"]
    if state in FINAL:
        return Decision("skip", f"planned run {planned_id} is {state}", **base)
    if state == "paused" or row["control"] == "pause":
        return Decision("skip", f"planned run {planned_id} is paused (resume puts it back in the queue)", **base)
    if state in ("waiting", "due"):
        return Decision("run", "", channel=wanted_channel, pool_channels=wanted_pool, **base)
    # claimed | running | interrupted: whose is it, and is that worker alive?
    if row["run_id"] is not None:
        run_id = int(row["run_id"])
        run = db.run(run_id)  # status "interrupted" when its owner is gone (labctl.db.liveness)
        if run["status"] == "running":
            return Decision("skip", f"run {run_id} is being run by {run['owner']}", **base)
        if run["status"] == "interrupted":
            return Decision("resume", "", channel=wanted_channel, pool_channels=wanted_pool, run_id=run_id, **base)
        _finish(db, planned_id, run["status"], run.get("end_reason"))  # ended; its worker died before saying so
        return Decision("skip", f"run {run_id} had already ended ({run['status']})", **base)
    why = owner_gone(row["claimed_by"], row["heartbeat_unix"])
    if state == "interrupted" or why:
        return Decision("run", "", channel=wanted_channel, pool_channels=wanted_pool, **base)
    return Decision("skip", f"planned run {planned_id} is claimed by {row['claimed_by']}", **base)


def _claim(db: Any, planned_id: int, *, me: str, channel: str, expect: Decision) -> bool:
    """Claim the planned run for this worker on ``channel``, if nobody changed it since :func:`_take`."""
    import sqlalchemy as sa

    now = time.time()
    with db.transaction(write=True) as conn:
        row = _row(conn, planned_id, lock=True)
        if row is None or row["state"] != expect.state or row["claimed_by"] != expect.claimed_by:
            return False
        conn.execute(
            sa.text(
                "UPDATE planned_runs SET state = :state, claimed_by = :me, claimed_unix = :now, "
                "heartbeat_unix = :now, channel = :ch, attempts = attempts + 1 WHERE id = :id"
            ),
            {
                "state": "running" if expect.action == "resume" else "claimed",
                "me": me,
                "now": now,
                "ch": channel,
                "id": planned_id,
            },
        )
    return True


def _finish(db: Any, planned_id: int, status: Any, reason: str | None = None) -> None:
    """Record how a planned run's run ended (``status``: a run status or a RunOutcome)."""
    import sqlalchemy as sa

    if not isinstance(status, str):
        status, reason = status.status, status.end_reason
    with db.transaction(write=True) as conn:
        conn.execute(
            sa.text(
                "UPDATE planned_runs SET state = :state, reason = :reason, ended_unix = :now, "
                "heartbeat_unix = :now WHERE id = :id"
            ),
            {"state": _PLANNED_END.get(status, "failed"), "reason": reason, "now": time.time(), "id": planned_id},
        )


def _failed(db: Any, planned_id: int, why: str) -> None:
    """A job that broke outside the run (the run itself records its own end): the planned run says why."""
    import sqlalchemy as sa

    with db.transaction(write=True) as conn:
        conn.execute(
            sa.text(
                "UPDATE planned_runs SET state = 'failed', reason = :why, ended_unix = :now "
                "WHERE id = :id AND state IN ('claimed', 'running')"
            ),
            {"why": why, "now": time.time(), "id": planned_id},
        )
