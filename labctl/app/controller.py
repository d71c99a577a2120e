"""The controller: builds a channel (devices + clock + recorder) and runs a protocol on it.

This is the Python API behind ``labctl run``; notebooks and the scheduler use it
directly::

    from labctl.app.controller import SimSettings, run_protocol
    outcome = run_protocol("symmetric-0.5mA", sim=SimSettings("my-preset", seed=1))

A protocol is a path or the name of a protocol in a registered library; a preset is the
name of a preset in a registered preset folder or the path of a preset file
(:func:`labctl.simulators.presets.available_presets`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from labctl.drivers import registry
from labctl.drivers.contracts import ChannelDevices
from labctl.core.clock import Clock, clock_for_speed
from labctl.core.interrupts import termination_as_interrupt
from labctl.core.limits import ResourceLimits
from labctl.engine.program import walk
from labctl.engine.runner import Engine, PreflightError, Progress, RunOutcome


class UserError(Exception):
    """A mistake the user can fix (bad option, missing file): message, exit code 2, no traceback."""


@dataclass
class SimSettings:
    """A simulated channel: the preset (name or file, required to simulate), seed and replicate cell."""

    preset: str | None
    seed: int = 0
    replicate: int = 0


def protocol_needs(protocol: Any) -> dict[str, bool]:
    kinds = {s.kind for s in walk(protocol.steps)}
    automated = any(s.kind == "dip_coat" and s.mode == "automated" for s in walk(protocol.steps))
    return {
        "stage": "temperature" in kinds,
        "dip_coater": automated,
        "manual": any(s.kind == "dip_coat" and s.mode == "manual" for s in walk(protocol.steps)),
    }


def cell_attributes(protocol: Any, preset: Any | None = None) -> dict:
    """The cell as analysis needs it: the protocol's cell section (kind, area_cm2, cathode_mass_g,
    electrodes, and eis_model / sei when it states them) and, for a simulated run, the preset's
    ``cell:`` section over it (label, anode, eis_model, sei): the simulated cell is what the preset says."""
    attrs = {k: v for k, v in protocol.cell.model_dump().items() if v is not None}
    if preset is not None:
        attrs.update(preset.cell.attributes())
    return attrs


def _no_preset_error() -> UserError:
    from labctl.simulators.presets import available_presets

    names = sorted(available_presets())
    listed = ", ".join(names) if names else "none registered (install a study, or give a file)"
    return UserError(
        f"a simulated run needs a preset: --preset NAME or --preset FILE.yaml (available presets: {listed})"
    )


def load_sim_preset(sim: SimSettings) -> Any:
    """The preset of ``sim``, validated (its ``cell.eis_model`` circuits parsed); a clear error when none is given."""
    from labctl.analysis import AnalysisError
    from labctl.analysis.circuit import parse_circuit
    from labctl.core.errors import ProtocolError
    from labctl.simulators.presets import load_preset

    if sim.preset is None or (isinstance(sim.preset, str) and not sim.preset.strip()):
        raise _no_preset_error()
    preset = load_preset(sim.preset)
    model = preset.cell.eis_model
    for text in [model] if isinstance(model, str) else [m for _, m in (model or ())]:
        try:
            parse_circuit(text)
        except AnalysisError as e:
            raise ProtocolError.single(
                str(sim.preset),
                f"the EIS model is not a valid circuit: {e}",
                "write e.g. 'R0-p(R1,CPE1)-p(R2,CPE2)'",
                field="cell.eis_model",
            ) from None
    return preset


def build_sim_channel(protocol: Any, clock: Clock, sim: SimSettings) -> ChannelDevices:
    """Simulated potentiostat (+ stage, + dip coater when the protocol needs them)."""
    preset = load_sim_preset(sim)
    needs = protocol_needs(protocol)
    stage = None
    if needs["stage"]:
        stage = registry.create("temperature_stage", "sim", clock=clock, seed=sim.seed)
    coater = registry.create("dip_coater", "sim", clock=clock) if needs["dip_coater"] else None
    cell = protocol.cell
    pstat = registry.create(
        "potentiostat",
        "sim",
        clock=clock,
        preset=preset,
        cell_kind=cell.kind,
        area_cm2=cell.area_cm2,
        cathode_mass_g=cell.cathode_mass_g,
        seed=sim.seed,
        replicate=sim.replicate,
        stage=stage,
    )
    for dev in (pstat, stage, coater):
        if dev is not None:
            dev.connect()
    return ChannelDevices(pstat, stage, coater)


def build_driver_channel(
    protocol: Any,
    clock: Clock,
    driver: str,
    options: dict[str, str],
    stage: str | None = None,
    stage_options: dict[str, str] | None = None,
) -> ChannelDevices:
    """Devices from the driver registry (entry points), e.g. a third-party potentiostat."""
    try:
        pstat = registry.create("potentiostat", driver, clock=clock, **options)
        st = registry.create("temperature_stage", stage, clock=clock, **(stage_options or {})) if stage else None
    except registry.UnknownDriver as e:
        raise UserError(str(e)) from None
    pstat.connect()
    if st is not None:
        st.connect()
    return ChannelDevices(pstat, st, None)


def close_devices(devices: ChannelDevices) -> None:
    """Close every device of a channel (the potentiostat's close turns the cell off)."""
    try:
        devices.potentiostat.close()
    finally:
        for dev in (devices.stage, devices.dip_coater):
            if dev is not None:
                dev.close()


def check_run_allowed(protocol: Any, db: Any | None, limits: ResourceLimits | None = None) -> Any:
    """Refuse a run before anything is built or written: a read-only database, or a protocol over ``limits``.

    Returns the :class:`labctl.protocols.RunEstimate`.  Raises :class:`UserError` (read-only database)
    or :class:`labctl.core.errors.ProtocolError` (over a limit, with the numbers and the option).
    """
    from labctl.protocols import check_limits

    if db is not None and getattr(db, "read_only", False):
        raise UserError(
            f"the database {db.url} is read-only (an archive): it can be listed, shown, exported and analysed, "
            "not recorded into (hint: run with --db pointing at a writable database)"
        )
    folder = None
    path = getattr(db, "sqlite_path", None) if db is not None else None
    if path:
        folder = Path(path).expanduser().parent
    return check_limits(protocol, limits or ResourceLimits.from_env(), db_folder=folder)


def run_protocol(
    protocol: Any,
    *,
    db: Any | None = None,
    sim: SimSettings | None = None,
    devices: ChannelDevices | None = None,
    clock: Clock | None = None,
    speed: str | float | None = "max",
    channel: str = "sim-1",
    operator: Any | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
    meta: dict | None = None,
    limits: ResourceLimits | None = None,
) -> RunOutcome:
    """Run ``protocol`` (a path or a validated model) and record it in ``db`` (a :class:`db.Database`).

    With ``sim`` and no ``devices``, a simulated channel is built from the preset.  Before any
    device is built and any run row written, the run is checked against ``limits`` (default
    :meth:`ResourceLimits.from_env`: steps, samples, database growth against the free space of
    a SQLite database's folder) and the database must be writable; each is a user error.
    """
    from labctl.protocols import load_protocol

    try:
        if isinstance(protocol, (str, Path)):
            protocol = load_protocol(protocol, max_steps=None if limits is None else limits.max_steps)
        check_run_allowed(protocol, db, limits)
    except BaseException:
        if devices is not None:
            close_devices(devices)
        raise
    clock = clock or clock_for_speed(speed)
    if devices is None:
        if sim is None:
            raise UserError("no devices: pass sim settings (--sim) or a driver (--driver)")
        devices = build_sim_channel(protocol, clock, sim)
    if operator is None and protocol_needs(protocol)["manual"] and sim is not None:
        from labctl.app.operator import SimulatedOperator

        operator = SimulatedOperator(clock, seed=sim.seed)
    engine = Engine(protocol, devices, clock, None, operator=operator, on_progress=on_progress, on_coating=None)
    try:
        engine.preflight()
    except PreflightError as e:
        for dev in (devices.potentiostat, devices.stage, devices.dip_coater):
            if dev is not None:
                dev.close()
        raise UserError(str(e)) from None
    recorder = None
    coatings: list[dict] = []
    if db is not None:
        cell = protocol.cell
        preset_name = None if sim is None else str(sim.preset)
        attrs = cell_attributes(protocol, None if sim is None else load_sim_preset(sim))
        recorder = db.open_run(
            protocol_name=protocol.name,
            protocol_text=protocol.text,
            protocol_source=protocol.source,
            cell_label=cell.id,
            cell_kind=cell.kind,
            cell_attrs=attrs,
            channel=channel,
            simulated=sim is not None,
            seed=None if sim is None else sim.seed,
            preset=preset_name,
            started_unix=clock.unix(clock.now()),
            meta={**(meta or {}), "cell": attrs, **({"replicate": sim.replicate} if sim is not None else {})},
        )
    if on_start is not None:
        on_start(None if recorder is None else recorder.run_id)
    watcher = None
    if recorder is not None:
        engine.rec = recorder
        watcher = control_watcher(db, recorder, engine, clock)
    engine.on_coating = coatings.append
    try:
        with termination_as_interrupt():  # SIGTERM/SIGHUP end the run like Ctrl-C, cell off, resumable
            if watcher is not None:
                watcher.start()
            outcome = engine.run()
    finally:
        if watcher is not None:
            watcher.stop()
        try:
            close_devices(devices)
        finally:
            if recorder is not None:
                recorder.close()
    if db is not None:
        for c in coatings:
            for label in c["cells"]:
                db.add_coating(cell_label=label, **{k: v for k, v in c.items() if k != "cells"})
    return outcome


def control_watcher(db: Any, recorder: Any, engine: Engine, clock: Clock, t0: float | None = None) -> Any:
    """Applies the dashboard's pause/resume/cancel requests to ``engine`` (see labctl.app.control);
    ``t0``: the clock reading at test time 0 (default: now), for the acknowledging event."""
    from labctl.app.control import ControlWatcher

    if not hasattr(db, "transaction"):  # a stand-in database without SQL: nobody can send requests
        return None
    origin = clock.now() if t0 is None else t0

    def applied(req: Any) -> None:
        recorder.event(
            max(0.0, clock.now() - origin),
            "control_applied",
            f"{req.action} applied (request #{req.seq})",
            {"action": req.action, "seq": req.seq},
        )

    return ControlWatcher(db, recorder.run_id, engine, on_applied=applied)
