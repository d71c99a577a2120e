"""``labctl validate``, ``labctl schema`` and ``labctl run``: protocols in, runs out.

``validate`` imports the protocol models (pydantic, pint) and nothing else; ``run``
imports the engine, the drivers and the database when it is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from labctl.cli.common import (
    EXIT_ABORTED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USER,
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

if TYPE_CHECKING:
    from labctl.core.contracts import Operator


@user_errors
def validate(
    files: list[Path] = typer.Argument(..., help="Protocol files to check."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON."),
) -> None:
    """Check protocol files: every error with file:line:col, field, message and a hint."""
    from labctl.core.errors import ProtocolError
    from labctl.protocols import load_protocol

    results: list[dict[str, Any]] = []
    failed = False
    for f in files:
        try:
            p = load_protocol(f)
            results.append({"file": str(f), "ok": True, "name": p.name, "steps": len(p.steps)})
            if not as_json:
                out.print(f"[green]ok[/]  {f}  ({p.name}, {len(p.steps)} top-level steps)")
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
) -> None:
    """Print the JSON Schema of protocol files (or preset or station files) for editor autocompletion."""
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
    seed: int | None = typer.Option(None, help="Random seed of the simulation (default 0)."),
    replicate: int = typer.Option(0, help="Replicate cell number (a different simulated cell of the same kind)."),
    speed: str = typer.Option("max", help="Simulation speed: max, or a factor of wall time (e.g. 100)."),
    db: str | None = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL (default: embedded SQLite)."),
    channel: str | None = typer.Option(None, help="Channel name recorded with the run."),
    from_run: int | None = typer.Option(None, "--from-run", help="Re-run the exact protocol text of an earlier run."),
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
) -> None:
    """Run a protocol; prints the run id, shows progress, records every sample."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from labctl.app.controller import SimSettings, build_driver_channel, build_sim_channel, run_protocol
    from labctl.core.clock import Clock, WallClock, clock_for_speed
    from labctl.protocols import load_protocol, load_protocol_text

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
        except ValueError:
            fail(f"--speed {speed!r}: use 'max' or a positive number such as 100")
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
        proto = load_protocol_text(prior["protocol_text"], source=source)
    elif protocol is None:
        fail("missing protocol file (or --from-run RUN)")
    else:
        proto = load_protocol(protocol)
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
        devices = build_sim_channel(proto, clock, settings)  # validates the preset before anything is written
    elif station is not None:
        from labctl.app.station import identify, load_station, open_channel

        st = load_station(station)
        assert channel is not None
        st.channel(channel)  # an unknown channel is a user error before anything opens
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
        devices = build_driver_channel(proto, clock, driver, parse_driver_opts(driver_opt))
    if database is None:
        database = open_db(db)
    meta: dict[str, Any] = {"from_run": from_run} if from_run else {}
    if station is not None:
        meta.update(station_meta)
    cols = [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("cycle {task.fields[cycle]}"),
        TextColumn("t = {task.fields[t]}"),
        TextColumn("{task.fields[n]:,} samples"),
        TimeElapsedColumn(),
    ]
    with Progress(*cols, console=err, transient=False, disable=as_json) as bar:
        task = bar.add_task("starting", cycle=0, t="0 s", n=0)

        run_ids: list[int] = []

        def on_start(run_id: int | None) -> None:
            run_ids.extend([run_id] if run_id is not None else [])
            where = f", simulated, preset {settings.preset}, seed {settings.seed}" if settings else ""
            bar.console.print(f"run [bold]{run_id}[/] started ({proto.name}{where}) in {database.url}")

        def on_progress(p: Any) -> None:
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
            )
        except BaseException:
            notify_run_end(notifier, database, run_ids, None)
            raise
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
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from labctl.app.cycler_run import run_on_cycler
    from labctl.app.cycler_translate import translate

    translate(proto)  # a step the cycler cannot run: exit 2 before the database or the cycler is touched
    database = db if hasattr(db, "open_run") else open_db(db)
    meta: dict[str, Any] = {"station": st.name or str(station), "station_file": str(station), "channel": channel}
    if from_run:
        meta["from_run"] = from_run
    cols = [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("cycle {task.fields[cycle]}"),
        TextColumn("t = {task.fields[t]}"),
        TextColumn("{task.fields[n]:,} samples"),
        TimeElapsedColumn(),
    ]
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
    summary = {
        "run_id": outcome.run_id,
        "status": outcome.status,
        "end_reason": outcome.end_reason,
        "duration_s": outcome.duration,
        "samples": outcome.n_samples,
        "steps": len(outcome.steps),
        "db": str(database.url),
    }
    if as_json:
        print_json(summary)
    else:
        out.print(f"run {outcome.run_id}: {outcome.status} - {outcome.end_reason}; {outcome.n_samples:,} samples")
    if outcome.run_id is not None:
        notify_run_end(notifier, database, [outcome.run_id], outcome)
    if outcome.status == "aborted":
        raise typer.Exit(EXIT_ABORTED)
    if outcome.status == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)
    if outcome.status != "completed":
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add ``validate``, ``schema`` and ``run`` to ``app``."""
    app.command()(validate)
    app.command()(schema)
    app.command()(run)
