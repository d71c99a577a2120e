"""Commands of a lab with real instruments: ``instruments``, ``emulate``, ``resume``,
``replay-transcript`` and ``spill``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from labctl.cli.common import (
    EXIT_ABORTED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    RUN_ID_MAX,
    fail,
    fmt_duration,
    open_db,
    out,
    print_json,
    user_errors,
)


def _station(path: Path) -> Any:
    from labctl.app.station import load_station

    return load_station(path)


@user_errors
def instruments(
    station: Path = typer.Option(..., "--station", help="Station file (YAML: instruments and channels)."),
    timeout: float = typer.Option(10.0, help="Seconds each instrument has to answer."),
    as_json: bool = typer.Option(False, "--json", help="Print the survey as JSON."),
) -> None:
    """Identify every instrument of a station and read its state; changes nothing on any of them."""
    from rich.table import Table

    from labctl.app.station import survey
    from labctl.core.clock import WallClock

    rows = survey(_station(station), WallClock(), timeout=timeout)
    if as_json:
        print_json(rows)
        return
    t = Table("instrument", "driver", "channel", "identity", "state")
    for r in rows:
        t.add_row(
            r["instrument"],
            r["driver"],
            r["channel"] or "-",
            r["identity"],
            ", ".join(f"{k} {v}" for k, v in r["state"].items()),
        )
    out.print(t)


@user_errors
def emulate(
    station: Path = typer.Option(..., "--station", help="Station file whose instruments to emulate."),
    preset: str = typer.Option(..., help="Simulator preset of the emulated cells (a name or a preset file)."),
    seed: int = typer.Option(0, help="Random seed of the emulated cells."),
    write: Path | None = typer.Option(None, "--write", help="Write the emulated station file here."),
    seconds: float | None = typer.Option(None, help="Serve this long, then stop (default: until Ctrl-C)."),
    speed: str | None = typer.Option(
        None,
        help="Emulated time: max (virtual: a cycler test runs as fast as the CPU allows) or a factor.",
    ),
    fault: list[str] = typer.Option(
        [],
        "--fault",
        help="Inject faults to rehearse them: NAME=PLAN, e.g. pstat1=disconnect@20+5 (the 20th message, 5 s), "
        "pstat1=silent@40, pstat1=garbage@10x3, pstat1=partial@10, pstat1=error@30:4205, tc1=no_settle:2, "
        "tc1=overshoot@5:20; several faults of one instrument separated by ','. Repeatable.",
    ),
) -> None:
    """Serve an emulator for every instrument of a station and print the station file that reaches them."""
    from labctl.app.emulate import emulate_station
    from labctl.app.station import StationError
    from labctl.core.clock import Clock, WallClock, clock_for_speed
    from labctl.simulators.presets import load_preset

    load_preset(preset)  # a bad preset is a user error before anything is served
    clock: Clock = WallClock()
    if speed is not None:
        try:
            clock = clock_for_speed(speed)
        except ValueError:
            fail(f"--speed {speed!r}: use 'max' or a positive number such as 100")
    plans: dict[str, str] = {}
    for f in fault:
        name, eq, plan = f.partition("=")
        if not eq or not name.strip() or not plan.strip():
            raise StationError.single(
                "--fault", f"cannot read --fault {f!r}", "write NAME=PLAN, e.g. --fault pstat1=disconnect@20+5"
            )
        plans[name.strip()] = ",".join(p for p in (plans.get(name.strip()), plan.strip()) if p)
    em = emulate_station(_station(station), clock, preset=preset, seed=seed, faults=plans)
    try:
        text = em.to_yaml()
        if write is not None:
            write.write_text(text)
            out.print(f"emulated station written to {write}")
        out.print(text, markup=False, highlight=False)
        for name, plan in plans.items():
            out.print(f"faults planned for {name}: {plan}", markup=False, highlight=False)
        out.print("serving; Ctrl-C stops", style="dim")
        deadline = None if seconds is None else time.monotonic() + seconds
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        em.close()


def _exit_for(status: str) -> None:
    if status == "aborted":
        raise typer.Exit(EXIT_ABORTED)
    if status == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)
    if status != "completed":
        raise typer.Exit(EXIT_FAILED)


@user_errors
def resume(
    run_id: int = typer.Argument(..., min=1, max=RUN_ID_MAX, help="The interrupted run."),
    db: str | None = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL (default: embedded SQLite)."),
    speed: str = typer.Option("max", help="Simulation speed for a simulated run: max, or a factor of wall time."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Resume an interrupted run from its last checkpoint: the gap on record, the OCV measured first."""
    from labctl.app.resume import resume_run
    from labctl.core.clock import clock_for_speed

    try:
        clock = clock_for_speed(speed)
    except ValueError as e:
        fail(f"--speed: {e}")
    from labctl.app.notify import RunNotifier
    from labctl.cli.run import notify_run_end

    notifier = RunNotifier.from_config()  # the config file's notify: section; a bad file stops here
    database = open_db(db)
    outcome = resume_run(database, run_id, clock=clock)
    if as_json:
        print_json(
            {
                "run_id": outcome.run_id,
                "status": outcome.status,
                "end_reason": outcome.end_reason,
                "samples": outcome.n_samples,
                "duration_s": outcome.duration,
            }
        )
    else:
        out.print(
            f"run {run_id}: {outcome.status} - {outcome.end_reason}; {fmt_duration(outcome.duration)} of "
            f"test time, {outcome.n_samples:,} samples"
        )
    notify_run_end(notifier, database, [run_id], outcome)
    _exit_for(outcome.status)


@user_errors
def replay_transcript(
    transcript: Path = typer.Argument(..., help="Transcript recorded with `labctl run --transcript DIR`."),
    run_id: int = typer.Option(
        ..., "--run", min=1, max=RUN_ID_MAX, help="The run the transcript was recorded in (its protocol)."
    ),
    db: str | None = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL (default: embedded SQLite)."),
) -> None:
    """Play a transcript back as the instrument: the run's protocol re-executes through the same driver code,
    deterministically, on any computer."""
    from labctl.app.station import link_parameter
    from labctl.core.clock import VirtualClock
    from labctl.core.contracts import NullRecorder
    from labctl.drivers import registry
    from labctl.drivers.contracts import ChannelDevices, DeviceError
    from labctl.drivers.transports import TranscriptTransport
    from labctl.engine.runner import Engine
    from labctl.protocols import load_protocol_text

    if not transcript.is_file():
        fail(f"{transcript}: no such transcript file")
    database = open_db(db)
    from labctl.cli.common import get_run

    run = get_run(database, run_id)
    meta = run.get("meta") or {}
    pstat_info = (meta.get("instruments") or {}).get("potentiostat")
    if not pstat_info:
        fail(f"run {run_id} was not run on a station channel: it has no instrument to replay")
    driver = str(pstat_info["driver"])
    factory = registry.load("potentiostat", driver)
    key = link_parameter(factory)
    if key is None:
        fail(f"driver {driver!r} takes no transport: its traffic cannot be replayed")
    options = {
        k: v
        for k, v in (pstat_info.get("options") or {}).items()
        if k not in ("port", "resource", "visa_library", "baudrate")
    }
    clock = VirtualClock()
    pstat = factory(clock=clock, **options, **{key: TranscriptTransport(transcript)})
    proto = load_protocol_text(run["protocol_text"], source=f"run-{run_id}")
    try:
        pstat.connect(timeout=5)
        outcome = Engine(proto, ChannelDevices(pstat), clock, NullRecorder()).run()
    except DeviceError as e:
        fail(f"the replay diverged from the transcript: {e}")
    out.print(
        f"replayed run {run_id} through {driver}: {outcome.status} - {outcome.end_reason}; "
        f"{outcome.n_samples:,} samples (the run recorded {run['n_samples']:,})"
    )
    _exit_for(outcome.status)


spill_app = typer.Typer(help="Spill files: samples kept while the database was unreachable.", no_args_is_help=True)


@spill_app.command("replay")
@user_errors
def spill_replay(
    files: list[Path] = typer.Argument(..., help="Spill files (run-<id>-<pid>.spill)."),
    db: str | None = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL (default: embedded SQLite)."),
) -> None:
    """Write spill files into the database, in order, exactly once (what it already holds is skipped)."""
    from labctl.db.spill import replay_spill

    database = open_db(db)
    for f in files:
        if not f.is_file():
            fail(f"{f}: no such spill file")
        try:
            n = replay_spill(database, f)
        except ValueError as e:
            fail(str(e))
        out.print(f"{f}: {n:,} samples written")


def register(app: typer.Typer) -> None:
    app.command()(instruments)
    app.command()(emulate)
    app.command("replay-transcript")(replay_transcript)
    app.add_typer(spill_app, name="spill")
