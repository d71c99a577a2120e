"""Campaign commands: ``schedule``, ``worker``, ``queue``, ``pause``, ``resume``, ``cancel``, ``status``.

See docs/campaigns.md.  Every command imports what it needs inside its body.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from labctl.cli.common import (
    EXIT_INTERRUPTED,
    RUN_ID_MAX,
    fail,
    fmt_duration,
    open_db,
    out,
    print_error,
    print_json,
    user_errors,
)

DB_OPTION = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL (default: embedded SQLite).")
BACKEND_OPTION = typer.Option(
    "auto",
    "--backend",
    help="Queue engine: auto (procrastinate on a PostgreSQL --db, else embedded), procrastinate, embedded.",
)


def _procrastinate(backend: str, db: str | None) -> bool:
    """Whether the shared lab's queue (procrastinate on PostgreSQL, labctl.app.pgqueue) serves this command."""
    from labctl.app.pgqueue import is_postgres

    b = backend.strip().lower()
    if b not in ("auto", "procrastinate", "embedded"):
        fail(f"--backend {backend!r}: use auto, procrastinate or embedded")
    if b == "embedded":
        return False
    if not is_postgres(db):
        if b == "procrastinate":
            fail("--backend procrastinate keeps its queue in PostgreSQL: give --db postgresql://USER@HOST/DB")
        return False
    try:
        import procrastinate  # noqa: F401
    except ImportError:
        fail(
            "the shared lab on PostgreSQL needs procrastinate: pip install 'labctl[postgres]' "
            "(or --backend embedded for the single-PC scheduler)"
        )
    return True


def _clock(speed: str | None, simulated_only: bool) -> Any:
    from labctl.core.clock import ScaledClock, SharedVirtualClock, WallClock

    if speed is None or speed.lower() in ("wall", "real", "realtime", "1"):
        return WallClock()
    if not simulated_only:
        fail("--speed is for simulated stations: a station with instruments runs in real time")
    if speed.lower() == "max":
        return SharedVirtualClock()
    try:
        factor = float(speed)
    except ValueError:
        factor = float("nan")
    if not (factor > 0 and factor < float("inf")):
        fail(f"--speed {speed!r}: use 'max' or a positive number such as 100")
    return ScaledClock(factor)


def _when(unix: float | None, origin: float | None = None) -> str:
    if unix is None:
        return "-"
    if origin is not None:
        return f"+{fmt_duration(unix - origin)}"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix))


def _print_timeline(reh: Any) -> None:
    from rich.table import Table

    t = Table("run", "station/channel", "start", "end", "state", "reason", title="rehearsal timeline (virtual time)")
    for r in sorted(reh.timeline, key=lambda x: (x.start_unix or float("inf"), x.key)):
        t.add_row(
            r.key,
            f"{r.station}/{r.channel or '-'}",
            _when(r.start_unix, reh.start_unix),
            _when(r.end_unix, reh.start_unix),
            r.state,
            "" if r.state == "done" else (r.reason or ""),
        )
    out.print(t)
    done = sum(r.state == "done" for r in reh.timeline)
    out.print(
        f"{done} of {len(reh.timeline)} runs done; the campaign ends {fmt_duration(reh.end_unix - reh.start_unix)} "
        f"after it is scheduled; rehearsed in {reh.wall_s:.1f} s"
    )


@user_errors
def schedule(
    campaign: Path | None = typer.Argument(
        None, help="Campaign file (YAML). Without it: serve the start times already queued (after a restart)."
    ),
    db: str | None = DB_OPTION,
    rehearse: bool = typer.Option(
        False,
        "--rehearse",
        help="Run the whole campaign now in virtual time (scheduler + workers), print its timeline.",
    ),
    speed: str | None = typer.Option(
        None, help="With --rehearse: max (the default). Rehearsals run in virtual time only."
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Serve the start times until all came (default)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    backend: str = BACKEND_OPTION,
) -> None:
    """Queue a campaign (validated first: nothing is queued on any error) and serve its start times.

    On PostgreSQL (the shared lab) the runs go to procrastinate, one queue per station, and the
    workers release the timed ones when their time comes: schedule returns at once."""
    from labctl.app.lab.campaign import load_campaign
    from labctl.app.lab.scheduler import schedule_campaign, serve
    from labctl.core.interrupts import install_termination_handlers
    from labctl.db.campaigns import CampaignExists

    if speed is not None and not rehearse:
        fail("--speed applies to --rehearse (a scheduler keeps real time; give --speed to the worker)")
    if speed is not None and speed.lower() != "max":
        fail(f"--speed {speed!r}: a rehearsal runs at --speed max")
    camp = load_campaign(campaign) if campaign is not None else None
    if rehearse:
        if camp is None:
            fail("--rehearse needs a campaign file")
        _rehearse(camp, db, as_json)
        return
    if _procrastinate(backend, db):
        assert db is not None
        _schedule_shared(camp, db, as_json)
        return
    database = open_db(db)
    if camp is not None:
        try:
            cid = schedule_campaign(database, camp)
        except CampaignExists:
            fail(
                f"a campaign named {camp.name!r} is already queued in {database.url} "
                f"(`labctl queue` lists it); rename the campaign to queue it again"
            )
        n = len(camp.expand())
        timed = sum(p.at is not None for p in camp.expand())
        if as_json:
            print_json({"campaign_id": cid, "name": camp.name, "runs": n, "timed": timed})
        else:
            out.print(f"campaign {camp.name} (id {cid}): {n} runs queued, {timed} with a start time")
    if not wait:
        return
    install_termination_handlers()
    from labctl.db import campaigns as q

    pending = sorted(
        r["not_before_unix"]
        for r in q.queue(database, states=("waiting",))
        if not r["start_ok"] and r["not_before_unix"]
    )
    if pending and not as_json:
        out.print(
            f"serving {len(pending)} start times on {database.url} (next {_when(pending[0])}, last "
            f"{_when(pending[-1])}); Ctrl-C stops, `labctl schedule` serves them again",
            highlight=False,
        )
    try:
        fired = serve(database)
    except KeyboardInterrupt:
        print_error("scheduler stopped; `labctl schedule --db ...` serves the remaining start times again")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if not as_json:
        out.print(f"every start time came ({fired} handled); the workers run the rest")


def _schedule_shared(camp: Any, db: str, as_json: bool) -> None:
    from labctl.app.pgqueue import schedule_campaign
    from labctl.db.campaigns import CampaignExists

    if camp is None:
        fail("on PostgreSQL the workers serve the start times: give `labctl schedule CAMPAIGN` a campaign file")
    open_db(db).close()  # a clear error for a database that does not open (and the migrations)
    try:
        summary = schedule_campaign(db, camp)
    except CampaignExists:
        fail(f"a campaign named {camp.name!r} is already queued (`labctl queue` lists it); rename it to queue it again")
    if as_json:
        print_json({**summary, "backend": "procrastinate"})
    else:
        out.print(
            f"campaign {camp.name} (id {summary['campaign_id']}): {summary['planned']} runs queued on PostgreSQL "
            f"(procrastinate): {summary['deferred']} due now, {summary['waiting']} waiting for their start or "
            f"their after: runs" + (f", {summary['missed']} missed their start" if summary["missed"] else "")
        )


def _rehearse(camp: Any, db: str | None, as_json: bool) -> None:
    import tempfile

    from labctl.app.lab.rehearsal import rehearse
    from labctl.db import Database

    def show(ev: Any) -> None:
        if not as_json and ev.kind != "started":
            out.print(
                f"[dim]{ev.station}/{ev.channel}[/dim] {ev.key}: {ev.kind} {ev.status or ''} {ev.reason or ''}",
                highlight=False,
            )

    with tempfile.TemporaryDirectory() as tmp:
        database = open_db(db) if db else Database(f"sqlite:///{Path(tmp) / 'rehearsal.sqlite'}")
        try:
            reh = rehearse(camp, database, on_event=show)
        finally:
            if not db:
                database.close()
    if as_json:
        print_json(
            {
                "campaign": camp.name,
                "wall_s": reh.wall_s,
                "start_unix": reh.start_unix,
                "end_unix": reh.end_unix,
                "timeline": [r.__dict__ for r in reh.timeline],
            }
        )
    else:
        _print_timeline(reh)


@user_errors
def worker(
    station: list[Path] = typer.Option(..., "--station", help="Station file(s) whose channels this worker runs."),
    db: str | None = DB_OPTION,
    speed: str | None = typer.Option(None, help="Simulated stations only: max (virtual time) or a factor."),
    until_idle: bool = typer.Option(False, "--until-idle", help="Exit when nothing of these stations is left."),
    poll: float = typer.Option(0.5, help="Seconds between looks at the queue for runs made due elsewhere."),
    backend: str = BACKEND_OPTION,
    heartbeat: float = typer.Option(
        5.0, help="procrastinate: seconds between worker heartbeats; a worker silent for 4 of them is stalled."
    ),
) -> None:
    """Run due planned runs on the station's free channels, one per channel, until stopped (SIGTERM/Ctrl-C:
    current block finished, cells off, runs left resumable).

    On PostgreSQL (the shared lab) it serves its stations' procrastinate queues: one worker per lab
    PC, each taking only the runs of the channels its station files own."""
    import signal

    from labctl.app.lab.campaign import channel_is_simulated
    from labctl.app.lab.execute import set_notifier
    from labctl.app.lab.worker import Worker
    from labctl.app.notify import RunNotifier
    from labctl.app.station import load_station

    notifier = RunNotifier.from_config()  # the config file's notify: section; a bad file stops here
    stations = [load_station(p) for p in station]
    simulated = all(channel_is_simulated(st, c) for st in stations for c in st.channels)
    clock = _clock(speed, simulated)
    if not (poll > 0 and poll < 3600):
        fail("--poll: give seconds between 0 and 3600")
    if _procrastinate(backend, db):
        assert db is not None
        if not (heartbeat >= 0.1 and heartbeat <= 600):
            fail("--heartbeat: give seconds between 0.1 and 600")
        from labctl.app.pgqueue import run_worker

        open_db(db).close()  # a clear error for a database that does not open (and the migrations)
        names = ", ".join(st.name or st.source for st in stations)
        n = sum(len(st.channels) for st in stations)
        out.print(f"worker of {names} on PostgreSQL (procrastinate), {n} channels")
        stopped = run_worker(db, list(station), speed=speed, heartbeat=heartbeat, poll=poll, until_idle=until_idle)
        if stopped:
            print_error("worker stopped: every cell off; its interrupted runs resume when a worker starts again")
            raise typer.Exit(EXIT_INTERRUPTED)
        return
    database = open_db(db)

    def show(ev: Any) -> None:
        tail = f" run {ev.run_id}" if ev.run_id else ""
        what = f"{ev.status}: {ev.reason}" if ev.kind == "ended" else (ev.reason or "")
        out.print(f"{ev.station}/{ev.channel or '-'} {ev.key}: {ev.kind}{tail} {what}", highlight=False)

    w = Worker(database, stations, clock=clock, until_idle=until_idle, poll=poll, on_event=show)

    def on_signal(signum: int, frame: Any) -> None:
        w.stop()

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    names = ", ".join(st.name or st.source for st in stations)
    out.print(f"worker of {names} on {database.url} ({sum(len(st.channels) for st in stations)} channels)")
    set_notifier(notifier)
    try:
        report = w.run()
    finally:
        set_notifier(None)
        if notifier is not None:  # the messages of the last runs go out before the worker exits
            notifier.close(notifier.max_wait)
    if report.stopped:
        print_error("worker stopped: every cell off; interrupted runs resume when a worker starts again")
        raise typer.Exit(EXIT_INTERRUPTED)


@user_errors
def queue(
    db: str | None = DB_OPTION,
    campaign: str | None = typer.Option(None, help="Only this campaign (name)."),
    as_json: bool = typer.Option(False, "--json", help="Print the queue as JSON."),
) -> None:
    """The planned runs of every campaign: state, channel, start time, dependencies, run, reason."""
    from rich.table import Table

    from labctl.db import campaigns as q

    database = open_db(db)
    cid = None
    if campaign is not None:
        try:
            cid = int(q.campaign(database, campaign)["id"])
        except KeyError:
            fail(f"no campaign {campaign!r} in {database.url}")
    rows = q.queue(database, campaign_id=cid)
    if as_json:
        print_json(
            [
                {k: r[k] for k in ("id", "campaign", "key", "state", "station", "channel", "pool", "priority")}
                | {
                    "at_unix": r["not_before_unix"],
                    "after": r["after"],
                    "run_id": r["run_id"],
                    "reason": r["reason"],
                    "attempts": r["attempts"],
                    "claimed_by": r["claimed_by"],
                }
                for r in rows
            ]
        )
        return
    t = Table("campaign:run", "state", "station/channel", "prio", "start", "after", "run", "reason")
    for r in rows:
        where = r["channel"] or f"pool of {len(r['pool'] or [])}"
        t.add_row(
            f"{r['campaign']}:{r['key']}",
            r["state"],
            f"{r['station']}/{where}",
            str(r["priority"]),
            _when(r["not_before_unix"]),
            ", ".join(r["after"] or []) or "-",
            "-" if r["run_id"] is None else str(r["run_id"]),
            r["reason"] or "",
        )
    out.print(t)


def _find(database: Any, ref: str) -> dict[str, Any] | None:
    from labctl.db import campaigns as q

    try:
        return q.find(database, ref)
    except KeyError:
        return None
    except LookupError as e:
        fail(f"{e}: write CAMPAIGN:KEY")


def _planned_or_fail(database: Any, ref: str) -> dict[str, Any]:
    """The planned run ``ref`` names, or exit 2 saying where to look."""
    row = _find(database, ref)
    if row is None:
        fail(f"no planned run {ref!r} in {database.url} (`labctl queue` lists them)")
    return row


@user_errors
def cancel(
    run: str = typer.Argument(..., help="A planned run (CAMPAIGN:KEY or KEY, see `labctl queue`) or a run id."),
    db: str | None = DB_OPTION,
) -> None:
    """Cancel a planned run: at once if it has not started, else at its next step boundary (cell off)."""
    from labctl.db import campaigns as q

    database = open_db(db)
    row = _planned_or_fail(database, run)
    what = q.cancel(database, int(row["id"]))
    name = f"{row['campaign']}:{row['key']}"
    if what == "cancelled":
        out.print(f"{name}: cancelled")
    elif what == "requested":
        out.print(f"{name}: cancel requested; its worker stops it at the next step boundary (cell off)")
    else:
        fail(f"{name} has already ended ({row['state']})")


@user_errors
def pause(
    run: str = typer.Argument(..., help="A running planned run (CAMPAIGN:KEY, KEY or run id)."),
    db: str | None = DB_OPTION,
) -> None:
    """Pause a running planned run at its next step boundary; the cell is off until `labctl resume`."""
    from labctl.db import campaigns as q

    database = open_db(db)
    row = _planned_or_fail(database, run)
    cycler = None if row["run_id"] is None else (database.run(int(row["run_id"]))["meta"] or {}).get("cycler")
    if cycler is not None and not cycler.get("pause"):
        fail(
            f"{row['campaign']}:{row['key']} runs on battery-cycler channel {row['channel']} ({cycler['instrument']} "
            f"{cycler['address']}), whose vendor API has no pause: the job goes on; `labctl cancel` stops it"
        )
    if row["state"] not in ("claimed", "running") or not q.set_control(database, int(row["id"]), "pause"):
        fail(f"{row['campaign']}:{row['key']} is {row['state']}: only a running run can be paused")
    out.print(f"{row['campaign']}:{row['key']}: pause requested (at the next step boundary, cell off)")


@user_errors
def resume(
    run: str = typer.Argument(..., help="A paused planned run (CAMPAIGN:KEY or KEY), or an interrupted run's id."),
    db: str | None = DB_OPTION,
    speed: str = typer.Option("max", help="Simulation speed for a simulated run: max, or a factor of wall time."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Resume a paused run (at once, by its worker) or an interrupted one (from its last checkpoint, the gap on
    record, the OCV measured first)."""
    from labctl.cli import lab
    from labctl.db import campaigns as q

    database = open_db(db)
    row = _find(database, run)
    if row is not None:
        name = f"{row['campaign']}:{row['key']}"
        if row["state"] == "paused" or (row["state"] == "running" and row["control"] == "pause"):
            q.set_control(database, int(row["id"]), "resume")
            out.print(f"{name}: resume requested; its worker continues it")
            return
        if row["state"] == "interrupted" or (
            row["run_id"] is not None and database.run(int(row["run_id"]))["status"] == "interrupted"
        ):
            out.print(
                f"{name} (run {row['run_id']}) is interrupted: the worker of station {row['station']} resumes it "
                f"on its channel when it starts (`labctl worker --station FILE`)"
            )
            return
        fail(f"{name} is {row['state']}: only a paused or interrupted run can be resumed")
    ref = run.strip()
    if not (ref.isascii() and ref.isdigit()) or not 0 < int(ref) <= RUN_ID_MAX:
        fail(f"no planned run {run!r} in {database.url} (`labctl queue` lists them; a run id is a number)")
    database.close()
    lab.resume(run_id=int(run), db=db, speed=speed, as_json=as_json)


_STATUS_STYLE = {
    "running": "green",
    "paused": "cyan",
    "claimed": "cyan",
    "stalled": "yellow",
    "interrupted": "bold red",
    "failed": "red",
    "safety": "red",
    "aborted": "yellow",
    "completed": "dim",
}


#: status words on a narrow terminal
_SHORT = {
    "completed": "done",
    "running": "run",
    "interrupted": "intr",
    "stalled": "stall",
    "paused": "pause",
    "claimed": "claim",
    "aborted": "abort",
    "failed": "fail",
    "safety": "trip",
}


def _end_time(unix: float | None, now: float) -> str:
    """An estimated end as a lab clock reads it: HH:MM today, else MM-DD HH:MM."""
    if unix is None:
        return "-"
    when = time.localtime(unix)
    return time.strftime("%H:%M" if when[:3] == time.localtime(now)[:3] else "%m-%d %H:%M", when)


def _grid_table(rows: list[Any], width: int | None = None) -> Any:
    """The channel grid; on a narrow terminal (80 columns) the protocol column is left out and the
    text columns are shortened, never the numbers."""
    from rich import box
    from rich.table import Table

    width = out.width if width is None else width
    wide = width >= 118
    now = time.time()
    t = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
        caption=None if wide else "narrow terminal: no protocol column (--json has everything)",
    )
    t.add_column("channel", no_wrap=True, max_width=None if wide else 12, overflow="ellipsis")
    t.add_column("cell", no_wrap=True, max_width=12 if wide else 8, overflow="ellipsis")
    t.add_column("run", justify="right", no_wrap=True, min_width=3)
    if wide:
        t.add_column("protocol", no_wrap=True, max_width=22, overflow="ellipsis")
    t.add_column("status", no_wrap=True, min_width=4 if not wide else 7)
    t.add_column("step", no_wrap=True, max_width=18 if wide else 9, overflow="ellipsis")
    t.add_column("cyc", justify="right", no_wrap=True, min_width=3)
    t.add_column("V", justify="right", no_wrap=True, min_width=5)
    t.add_column("mA", justify="right", no_wrap=True, min_width=5)
    t.add_column("elapsed", justify="right", no_wrap=True, min_width=5)
    t.add_column("ends", no_wrap=True, min_width=5)
    for r in rows:
        cells = [
            f"{r.station}/{r.channel}" if r.station else r.channel,
            r.cell or "-",
            "-" if r.run_id is None else str(r.run_id),
            *([r.protocol or "-"] if wide else []),
            f"[{_STATUS_STYLE.get(r.status, 'white')}]{r.status if wide else _SHORT.get(r.status, r.status)}[/]",
            "-" if r.step is None else f"{r.step_index} {r.step}",
            "-" if r.cycle is None else str(r.cycle),
            "-" if r.voltage is None else f"{r.voltage:.4f}" if wide else f"{r.voltage:.3f}",
            "-" if r.current is None else f"{r.current * 1e3:.3g}",
            fmt_duration(r.elapsed_s),
            "-" if r.status not in ("running", "paused", "stalled") else _end_time(r.estimated_end_unix, now),
        ]
        t.add_row(*cells)
    if not rows:
        t.caption = "no channel is busy"
    return t


@user_errors
def status(
    db: str | None = DB_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the grid as JSON (one object per channel)."),
    watch: bool = typer.Option(False, "--watch", help="Keep the grid on screen, refreshed (Ctrl-C ends)."),
    interval: float = typer.Option(2.0, help="Seconds between refreshes with --watch."),
) -> None:
    """The live channel grid: channel, cell, run, step, cycle, last voltage and current, elapsed, estimated end."""
    from labctl.app.grid import channel_grid

    database = open_db(db)
    if as_json:
        print_json([r.to_dict() for r in channel_grid(database)])
        return
    if not watch:
        out.print(_grid_table(channel_grid(database)))
        return
    if not (interval > 0 and interval < 3600):
        fail("--interval: give seconds between 0 and 3600")
    from rich.live import Live

    try:
        with Live(_grid_table(channel_grid(database)), console=out, refresh_per_second=4) as live:
            while True:
                time.sleep(interval)
                live.update(_grid_table(channel_grid(database)))
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    app.command()(schedule)
    app.command()(worker)
    app.command()(queue)
    app.command()(pause)
    app.command()(resume)
    app.command()(cancel)
    app.command()(status)
