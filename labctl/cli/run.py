"""``labctl validate``, ``labctl schema`` and ``labctl run``: protocols in, runs out.

``validate`` imports the protocol models (pydantic, pint) and nothing else; ``run``
imports the engine, the drivers and the database when it is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from labctl.cli.common import (
    EXIT_ABORTED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USER,
    RUN_ID_MAX,
    err,
    fail,
    fmt_duration,
    get_run,
    open_db,
    out,
    print_error,
    print_json,
    user_errors,
)
from labctl.core.limits import DEFAULT_MAX_SAMPLES, DEFAULT_MAX_STEPS, ENV_MAX_SAMPLES, ENV_MAX_STEPS

#: Seeds are stored as SQL BIGINT; replicates feed a 32-bit seed word.
MAX_SEED = 2**63 - 1
MAX_REPLICATE = 2**32 - 1

if TYPE_CHECKING:
    from labctl.core.contracts import Operator


MAX_STEPS_HELP = (
    f"Refuse protocols of more steps than this, once for_each is expanded (default {DEFAULT_MAX_STEPS:,}; "
    f"env {ENV_MAX_STEPS})."
)
MAX_SAMPLES_HELP = (
    f"Refuse runs estimated to record more samples than this (default {DEFAULT_MAX_SAMPLES:,}; env {ENV_MAX_SAMPLES})."
)


@user_errors
def validate(
    files: list[Path] = typer.Argument(..., help="Protocol files to check."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON."),
    max_steps: int = typer.Option(DEFAULT_MAX_STEPS, "--max-steps", envvar=ENV_MAX_STEPS, min=1, help=MAX_STEPS_HELP),
    max_samples: int = typer.Option(
        DEFAULT_MAX_SAMPLES, "--max-samples", envvar=ENV_MAX_SAMPLES, min=1, help=MAX_SAMPLES_HELP
    ),
) -> None:
    """Check protocol files: every error with file:line:col, field, message and a hint; and the size of a run."""
    from labctl.core.errors import ProtocolError
    from labctl.core.limits import ResourceLimits
    from labctl.protocols import check_limits, load_protocol

    limits = ResourceLimits(max_steps=max_steps, max_samples=max_samples, check_disk=False)
    results: list[dict[str, Any]] = []
    failed = False
    for f in files:
        try:
            p = load_protocol(f, max_steps=max_steps)
            est = check_limits(p, limits)
            results.append(
                {"file": str(f), "ok": True, "name": p.name, "steps": len(p.steps), "estimate": est.as_dict()}
            )
            if not as_json:
                size = f"{est.steps:,} steps, up to {est.samples:,.0f} samples" if est.samples < 1e15 else ""
                out.print(f"[green]ok[/]  {f}  ({p.name}, {len(p.steps)} top-level steps; {size})")
        except ProtocolError as e:
            failed = True
            results.append({"file": str(f), "ok": False, "errors": [vars(i) for i in e.issues]})
            if not as_json:
                print_error(str(e))
    if as_json:
        print_json(results)
    if failed:
        raise typer.Exit(EXIT_USER)


def schema(
    preset: bool = typer.Option(False, "--preset", help="The schema of simulator preset files instead."),
    station: bool = typer.Option(False, "--station", help="The schema of station files instead."),
    campaign: bool = typer.Option(False, "--campaign", help="The schema of campaign files instead."),
) -> None:
    """Print the JSON Schema of protocol files (or preset, station or campaign files) for editor autocompletion."""
    if campaign:
        from labctl.app.lab.campaign import campaign_json_schema

        print_json(campaign_json_schema())
        return
    if station:
        from labctl.app.station import station_json_schema

        print_json(station_json_schema())
        return
    if preset:
        from labctl.simulators.presets import preset_json_schema

        print_json(preset_json_schema())
        return
    from labctl.protocols import json_schema

    print_json(json_schema())


def parse_driver_opts(pairs: list[str]) -> dict[str, str]:
    """``["port=/dev/ttyUSB0", "baud=9600"]`` -> ``{"port": "/dev/ttyUSB0", "baud": "9600"}``."""
    opts = {}
    for p in pairs:
        if "=" not in p:
            fail(f"--driver-opt {p!r}: expected KEY=VALUE")
        k, v = p.split("=", 1)
        opts[k.strip()] = v.strip()
    return opts


@user_errors
def run(
    protocol: Path | None = typer.Argument(None, help="Protocol YAML file."),
    sim: bool = typer.Option(False, "--sim", help="Run on simulated instruments."),
    preset: str | None = typer.Option(None, help="Simulator preset: a registered preset's name or a preset YAML file."),
    seed: int | None = typer.Option(None, min=0, max=MAX_SEED, help="Random seed of the simulation (default 0)."),
    replicate: int = typer.Option(
        0, min=0, max=MAX_REPLICATE, help="Replicate cell number (a different simulated cell of the same kind)."
    ),
    speed: str = typer.Option("max", help="Simulation speed: max, or a factor of wall time (e.g. 100)."),
    db: str | None = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL (default: embedded SQLite)."),
    channel: str | None = typer.Option(None, help="Channel name recorded with the run."),
    from_run: int | None = typer.Option(
        None, "--from-run", min=1, max=RUN_ID_MAX, help="Re-run the exact protocol text of an earlier run."
    ),
    driver: str | None = typer.Option(None, help="Potentiostat driver name (entry point) for hardware runs."),
    driver_opt: list[str] = typer.Option([], "--driver-opt", help="Driver option KEY=VALUE (repeatable)."),
    operator: str | None = typer.Option(None, help="Who runs the manual steps (recorded with dip-coat logs)."),
    station: Path | None = typer.Option(None, "--station", help="Station file: run on one of its channels."),
    transcript: Path | None = typer.Option(
        None,
        "--transcript",
        help="Folder for raw instrument traffic (one timestamped transcript per instrument; see replay-transcript).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
    max_steps: int = typer.Option(DEFAULT_MAX_STEPS, "--max-steps", envvar=ENV_MAX_STEPS, min=1, help=MAX_STEPS_HELP),
    max_samples: int = typer.Option(
        DEFAULT_MAX_SAMPLES, "--max-samples", envvar=ENV_MAX_SAMPLES, min=1, help=MAX_SAMPLES_HELP
    ),
    no_disk_check: bool = typer.Option(
        False, "--no-disk-check", help="Run even if the estimated database growth exceeds the free disk space."
    ),
    progress_interval: float = typer.Option(
        60.0,
        "--progress-interval",
        min=0.01,
        max=86400.0,
        help="Seconds between progress lines in the log when stderr is not a terminal (nohup, systemd).",
    ),
) -> None:
    """Run a protocol; prints the run id, shows progress, records every sample.

    Before anything opens or is recorded, the run's size is checked: steps, samples and database growth
    against the free disk space (see --max-steps, --max-samples, --no-disk-check).
    """
    from rich.progress import Progress

    from labctl.app.controller import (
        SimSettings,
        build_driver_channel,
        build_sim_channel,
        check_run_allowed,
        load_sim_preset,
        run_protocol,
    )
    from labctl.core.clock import Clock, WallClock, clock_for_speed
    from labctl.core.limits import ResourceLimits
    from labctl.db import StorageError
    from labctl.protocols import check_limits, load_protocol, load_protocol_text

    if sum((sim, bool(driver), station is not None)) != 1:
        fail(
            "choose where to run: --sim for simulated instruments, --station FILE --channel NAME for a station's "
            "channel, or --driver NAME for one instrument"
        )
    if station is not None and not channel:
        fail("--station needs --channel NAME (one of the station's channels)")
    if transcript is not None and station is None:
        fail("--transcript records a station's instruments: use it with --station FILE --channel NAME")
    from labctl.app.notify import RunNotifier

    notifier = RunNotifier.from_config()  # the config file's notify: section; a bad file stops here
    clock: Clock
    if sim:
        try:
            clock = clock_for_speed(speed)
        except ValueError as e:
            fail(f"--speed: {e}")
    else:
        if speed != "max":
            fail("--speed is for simulated runs; hardware runs in real time")
        clock = WallClock()
    database = None
    prior: dict[str, Any] = {}
    if from_run is not None:
        if protocol is not None:
            fail("give either a protocol file or --from-run, not both")
        database = open_db(db)
        prior = get_run(database, from_run)
        source = f"run-{from_run}:{prior.get('protocol_source') or 'protocol'}"
        proto = load_protocol_text(prior["protocol_text"], source=source, max_steps=max_steps)
    elif protocol is None:
        fail("missing protocol file (or --from-run RUN)")
    else:
        proto = load_protocol(protocol, max_steps=max_steps)
    limits = ResourceLimits(max_steps=max_steps, max_samples=max_samples, check_disk=not no_disk_check)
    estimate = check_limits(proto, limits)  # steps and samples, before any instrument opens (disk: run_protocol)
    if station is not None and not sim and not driver:
        from labctl.app.station import load_station

        st = load_station(station)
        assert channel is not None
        if st.channel(channel).cycler is not None:
            _run_cycler(proto, st, station, channel, db if database is None else database, from_run, as_json, notifier)
            return
    settings = None
    if sim:
        settings = SimSettings(
            preset=preset or prior.get("preset"),
            seed=seed if seed is not None else (prior.get("seed") or 0),
            replicate=replicate,
        )
        load_sim_preset(settings)  # a bad preset is a user error before anything is written
        database = database or open_db(db)
        check_run_allowed(proto, database, limits)  # read-only database, disk space: before any device
        devices = build_sim_channel(proto, clock, settings)
    elif station is not None:
        from labctl.app.station import identify, load_station, open_channel

        st = load_station(station)
        assert channel is not None
        st.channel(channel)  # an unknown channel is a user error before anything opens
        database = database or open_db(db)
        check_run_allowed(proto, database, limits)
        devices = open_channel(st, channel, clock, transcript_dir=transcript)
        roles = {"potentiostat": devices.potentiostat, "stage": devices.stage, "dip_coater": devices.dip_coater}
        used: dict[str, str] = devices.extras["instruments"]  # type: ignore[assignment]
        station_meta = {
            "station": st.name or str(station),
            "station_file": str(station),
            "channel": channel,
            "instruments": {
                role: {
                    "name": name,
                    "driver": st.instruments[name].driver,
                    "identity": identify(roles[role]),
                    "options": st.driver_options(name),
                }
                for role, name in used.items()
            },
        }
    else:
        assert driver is not None  # not --sim, so --driver was given (checked above)
        driver_opts = parse_driver_opts(driver_opt)
        database = database or open_db(db)
        check_run_allowed(proto, database, limits)
        devices = build_driver_channel(proto, clock, driver, driver_opts)
    meta: dict[str, Any] = {"from_run": from_run} if from_run else {}
    if station is not None:
        meta.update(station_meta)
    cols = progress_columns()
    # Without a terminal (nohup, systemd, a pipe) rich draws nothing: progress goes to the log as lines.
    log = None if err.is_terminal else ProgressLog(progress_interval, clock, estimate.duration)
    with Progress(*cols, console=err, transient=False, disable=as_json or log is not None) as bar:
        task = bar.add_task("starting", cycle=0, t="0 s", n=0)

        run_ids: list[int] = []

        def on_start(run_id: int | None) -> None:
            run_ids.extend([run_id] if run_id is not None else [])
            where = f", simulated, preset {settings.preset}, seed {settings.seed}" if settings else ""
            if log is not None:
                log.run_id = run_id
                print_error(f"run {run_id} started ({proto.name}{where}) in {database.url}")
                return
            bar.console.print(f"run [bold]{run_id}[/] started ({proto.name}{where}) in {database.url}")

        def on_progress(p: Any) -> None:
            if log is not None:
                log.update(p)
                return
            bar.update(
                task,
                description=f"step {p.step_index} {p.kind}{' ' + p.label if p.label else ''}",
                cycle=p.cycle,
                t=fmt_duration(p.t_test),
                n=p.n_samples,
            )

        op: Operator | None = None
        if not sim:
            from labctl.app.operator import ConsoleOperator

            op = ConsoleOperator(clock, name=operator)
        elif operator:
            from labctl.app.operator import SimulatedOperator

            assert settings is not None
            op = SimulatedOperator(clock, name=operator, seed=settings.seed)
        try:
            outcome = run_protocol(
                proto,
                db=database,
                sim=settings,
                devices=devices,
                clock=clock,
                operator=op,
                channel=channel or driver or "sim-1",
                on_progress=on_progress,
                on_start=on_start,
                meta=meta or None,
                limits=limits,
            )
        except StorageError as e:
            notify_run_end(notifier, database, run_ids, None)
            storage_failed(database, run_ids[0] if run_ids else None, e)
        except BaseException:
            notify_run_end(notifier, database, run_ids, None)
            raise
    finish_run(outcome, database, as_json, notifier, run_ids)


def progress_columns() -> list[Any]:
    """The live progress line of a run: step, cycle, test time, samples, wall time."""
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    return [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("cycle {task.fields[cycle]}"),
        TextColumn("t = {task.fields[t]}"),
        TextColumn("{task.fields[n]:,} samples"),
        TimeElapsedColumn(),
    ]


def finish_run(outcome: Any, database: Any, as_json: bool, notifier: Any, run_ids: list[int]) -> None:
    """Print how the run ended (a line, or JSON), notify, and exit with the status's code."""
    summary = {
        "run_id": outcome.run_id,
        "status": outcome.status,
        "end_reason": outcome.end_reason,
        "duration_s": outcome.duration,
        "duration_h": outcome.duration / 3600,
        "samples": outcome.n_samples,
        "steps": len(outcome.steps),
        "db": str(database.url),
    }
    if as_json:
        print_json(summary)
    else:
        colour = {"completed": "green", "aborted": "yellow"}.get(outcome.status, "red")
        out.print(
            f"run {outcome.run_id}: [{colour}]{outcome.status}[/] - {outcome.end_reason}; "
            f"{fmt_duration(outcome.duration)} of test time, {outcome.n_samples:,} samples"
        )
    notify_run_end(notifier, database, run_ids, outcome)
    if outcome.status == "aborted":
        raise typer.Exit(EXIT_ABORTED)
    if outcome.status == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)
    if outcome.status != "completed":
        raise typer.Exit(EXIT_FAILED)


def storage_failed(database: Any, run_id: int | None, exc: BaseException) -> NoReturn:
    """The database failed during a run: say so plainly (never "completed"), record what can be, exit 1.

    The engine turned the cell off before the recorder reported the failure; samples the database
    could not take are in the spill file the message names (``labctl spill replay``).
    """
    import os

    path = getattr(database, "sqlite_path", None)
    if path and not os.path.exists(path):
        note = f"; the database file {path} is gone"
    elif run_id is None:
        note = ""
    else:
        try:
            marked = database.mark_interrupted(run_id, f"storage failed: {exc}"[:500])
            note = "; the run is marked interrupted" if marked else ""
        except Exception:
            note = "; its status could not be recorded (`labctl runs` shows it interrupted once its heartbeat stops)"
    print_error(
        f"error: run {run_id}: the database failed during the run, which did not complete (cell off){note}: {exc}"
    )
    raise typer.Exit(EXIT_FAILED)


class ProgressLog:
    """Progress as plain log lines, one every ``interval`` seconds of wall time (for runs without a terminal).

    Each line: UTC time, run, step, cycle, test time, samples, and the estimated end (from the
    protocol's estimated test time, an upper bound; in wall time unless the run is in virtual time).
    """

    def __init__(self, interval: float, clock: Any, duration: float | None) -> None:
        import time

        self.interval = float(interval)
        self.clock = clock
        self.duration = duration
        self.run_id: int | None = None
        self._mono = time.monotonic
        self._next = self._mono() + self.interval
        self.lines = 0

    def update(self, p: Any) -> None:
        now = self._mono()
        if now < self._next:
            return
        self._next = now + self.interval
        print_error(self.line(p))
        self.lines += 1

    def line(self, p: Any) -> str:
        import datetime as dt

        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        step = f"step {p.step_index} {p.kind}{' ' + p.label if p.label else ''}"
        text = (
            f"{stamp} run {self.run_id}: {step}, cycle {p.cycle}, test time {fmt_duration(p.t_test)}, "
            f"{p.n_samples:,} samples"
        )
        if self.duration is not None:
            left = max(self.duration - p.t_test, 0.0)
            factor = getattr(self.clock, "factor", None)
            if factor is None and getattr(self.clock, "virtual", False):
                text += f", estimated end at test time {fmt_duration(self.duration)} (virtual time)"
            else:
                wall_left = left / (factor or 1.0)
                try:
                    end = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=wall_left)).strftime("%Y-%m-%dT%H:%M:%SZ")
                except OverflowError:
                    end = "beyond the year 9999"
                text += f", estimated end {end} (in {fmt_duration(wall_left)})"
        return text


def notify_run_end(notifier: Any, database: Any, run_ids: list[int], outcome: Any) -> None:
    """Send the run's end to the config's notify targets (when it asks for it) and say how it went.

    The run is over and recorded; this only keeps the process alive until the messages are out
    (at most ``notifier.max_wait`` s; Ctrl-C gives up on them)."""
    if notifier is None or not run_ids:
        return
    notifier.run_ended_in(database, run_ids[0], outcome)
    try:
        notifier.join(1.0)
        if notifier.pending:
            print_error(f"sending notifications (at most {notifier.max_wait:.0f} s; Ctrl-C to give up on them)")
        deliveries = notifier.join(notifier.max_wait)
    except KeyboardInterrupt:
        deliveries = notifier.deliveries
    for d in deliveries:
        ok = f"notified by {d.channel}: {d.target} ({d.detail})"
        print_error(ok if d.ok else f"warning: notification by {d.channel} failed: {d.target}: {d.detail}")
    if notifier.pending:
        print_error(f"warning: {notifier.pending} notification(s) not sent; given up")


def _run_cycler(
    proto: Any,
    st: Any,
    station: Path,
    channel: str,
    db: Any,
    from_run: int | None,
    as_json: bool,
    notifier: Any = None,
) -> None:
    """``labctl run --station F --channel X`` on a cycler channel: submit (or find the job), watch, harvest."""
    from rich.progress import Progress

    from labctl.app.cycler_run import run_on_cycler
    from labctl.app.cycler_translate import translate

    translate(proto)  # a step the cycler cannot run: exit 2 before the database or the cycler is touched
    database = db if hasattr(db, "open_run") else open_db(db)
    meta: dict[str, Any] = {"station": st.name or str(station), "station_file": str(station), "channel": channel}
    if from_run:
        meta["from_run"] = from_run
    cols = progress_columns()
    with Progress(*cols, console=err, transient=False, disable=as_json) as bar:
        task = bar.add_task("submitting", cycle=0, t="0 s", n=0)

        def on_start(run_id: int | None) -> None:
            bar.console.print(f"run [bold]{run_id}[/] on cycler channel {channel} ({proto.name}) in {database.url}")

        def on_progress(p: Any) -> None:
            bar.update(
                task,
                description=f"step {p.step_index} {p.kind}",
                cycle=p.cycle,
                t=fmt_duration(p.t_test),
                n=p.n_samples,
            )

        poll = float(st.instruments[st.channel(channel).cycler].options.get("poll", 10.0))
        outcome = run_on_cycler(
            proto,
            db=database,
            station=st,
            channel=channel,
            poll=poll,
            on_start=on_start,
            on_progress=on_progress,
            meta=meta,
        )
    finish_run(outcome, database, as_json, notifier, [] if outcome.run_id is None else [outcome.run_id])


def register(app: typer.Typer) -> None:
    """Add ``validate``, ``schema`` and ``run`` to ``app``."""
    app.command()(validate)
    app.command()(schema)
    app.command()(run)
