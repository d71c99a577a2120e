"""``labctl emulate --station FILE``: an emulator for every instrument of a station.

Each driver with an emulator registers a factory under the entry-point group
``labctl.emulators`` (same name as the driver).  A factory is called as
``factory(options, clock=..., preset=..., seed=..., plan=...)`` with the instrument's station
options and its fault plan (:mod:`labctl.simulators.emulators.faults`, ``None``: no faults;
``labctl emulate --fault NAME=PLAN``) and returns an object with ``entry`` (the options a station needs to reach the
emulator instead of the instrument, e.g. ``{"port": "socket://127.0.0.1:40123"}``) and
``close()``.  The emulated station is the original with those addresses swapped in, so a
whole rehearsal (``labctl run PROTOCOL --station emulated.yaml --channel A``) runs the real
drivers over real transports, hardware-free.  Instruments whose driver is in-process
(``sim``) are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from labctl.app.station import Station, StationError

GROUP = "labctl.emulators"
IN_PROCESS = {"sim"}


def emulator_factory(driver: str) -> Any | None:
    for ep in entry_points(group=GROUP):
        if ep.name == driver:
            return ep.load()
    return None


@dataclass
class EmulatedStation:
    station: Station
    servers: dict[str, Any] = field(default_factory=dict)
    instruments: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_yaml(self) -> str:
        """The station file to use: same channels, instruments pointing at the emulators."""
        from io import StringIO

        from ruamel.yaml import YAML

        doc: dict[str, Any] = {"name": f"{self.station.name or 'station'} (emulated)"}
        doc["instruments"] = self.instruments
        doc["channels"] = {
            name: {k: v for k, v in spec.model_dump().items() if v is not None}
            for name, spec in self.station.channels.items()
        }
        out = StringIO()
        y = YAML()
        y.default_flow_style = None
        y.dump(doc, out)
        return out.getvalue()

    def close(self) -> None:
        for s in self.servers.values():
            s.close()


def emulate_station(
    station: Station, clock: Any, *, preset: str, seed: int = 0, faults: dict[str, Any] | None = None
) -> EmulatedStation:
    """Start an emulator for every instrument that needs one (a :class:`StationError` names any that has none).

    ``faults``: instrument name -> :class:`~labctl.simulators.emulators.faults.FaultPlan` (or its text)."""
    plans = parse_faults(station, faults or {})
    em = EmulatedStation(station)
    try:
        for name, inst in station.instruments.items():
            opts = station.driver_options(name)
            entry: dict[str, Any] = {"driver": inst.driver, **opts}
            if inst.limits is not None:
                entry["limits"] = _limits_yaml(inst.limits)
            if inst.reconnect is not None:
                p = inst.reconnect
                entry["reconnect"] = {
                    "attempts": p.attempts,
                    "delay": f"{p.delay:g} s",
                    "factor": p.factor,
                    "connect_timeout": f"{p.connect_timeout:g} s",
                }
            if inst.max_overshoot is not None:
                entry["max_overshoot"] = f"{inst.max_overshoot:g} K"
            if inst.driver not in IN_PROCESS:
                factory = emulator_factory(inst.driver)
                if factory is None:
                    line, col = station.where("instruments", name, "driver")
                    raise StationError.single(
                        station.source,
                        f"instrument {name}: driver {inst.driver!r} has no emulator",
                        "emulators exist for the drivers listed by `labctl emulate --list`",
                        line=line,
                        col=col,
                        field=f"instruments.{name}.driver",
                    )
                if name in plans:
                    server = factory(opts, clock=clock, preset=preset, seed=seed, plan=plans[name])
                else:
                    server = factory(opts, clock=clock, preset=preset, seed=seed)
                em.servers[name] = server
                for key in ("port", "resource", "visa_library", "host"):
                    entry.pop(key, None)
                entry.update(server.entry)
            em.instruments[name] = entry
    except BaseException:
        em.close()
        raise
    return em


def parse_faults(station: Station, faults: dict[str, Any]) -> dict[str, Any]:
    """Instrument name -> FaultPlan; a StationError for an unknown instrument, an in-process one,
    a plan that does not parse, or a stage fault on an instrument that is no stage."""
    from labctl.simulators.emulators.faults import STAGE_KINDS, FaultPlan, FaultSpecError, parse_plan

    out: dict[str, Any] = {}
    for name, plan in faults.items():
        if name not in station.instruments:
            raise StationError.single(
                station.source,
                f"--fault names no instrument of the station: {name!r}",
                f"its instruments: {', '.join(station.instruments)}",
                field="instruments",
            )
        inst = station.instruments[name]
        if inst.driver in IN_PROCESS:
            raise StationError.single(
                station.source,
                f"--fault {name}: {name} ({inst.driver}) runs in-process, without an emulator to inject faults into",
                "inject faults into an instrument with a real driver (methodscript, keithley2450, lakeshore335)",
                field=f"instruments.{name}",
            )
        if not isinstance(plan, FaultPlan):
            try:
                plan = parse_plan(str(plan))
            except FaultSpecError as e:
                raise StationError.single(
                    station.source, f"--fault {name}: {e}", "see `labctl emulate --help`", field=f"instruments.{name}"
                ) from None
        stage_kinds = plan.kinds() & set(STAGE_KINDS)
        if stage_kinds and "temperature_stages" not in _groups_of(inst.driver):
            raise StationError.single(
                station.source,
                f"--fault {name}: {', '.join(sorted(stage_kinds))} is a temperature-stage fault, "
                f"and {name} ({inst.driver}) is no stage",
                "inject it into the channel's stage",
                field=f"instruments.{name}",
            )
        out[name] = plan
    return out


def _groups_of(driver: str) -> set[str]:
    return {ep.group.rpartition(".")[2] for g in _DEVICE_GROUPS for ep in entry_points(group=g) if ep.name == driver}


_DEVICE_GROUPS = ("labctl.potentiostats", "labctl.temperature_stages", "labctl.dip_coaters")


def _limits_yaml(limits: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if limits.current is not None:
        out["current"] = f"{limits.current * 1e3:g} mA"
    if limits.voltage is not None:
        out["voltage"] = [f"{v:g} V" for v in limits.voltage]
    if limits.temperature is not None:
        out["temperature"] = [f"{v:g} degC" for v in limits.temperature]
    return out


def available() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


class _Served:
    """An emulator object served on loopback for one instrument: ``emulator`` and ``close()``
    (``_shutdown`` names the emulator's own method that stops it serving)."""

    _em: Any
    _shutdown = "close"

    @property
    def emulator(self) -> Any:
        return self._em

    def close(self) -> None:
        getattr(self._em, self._shutdown)()


class GrblEmulator:
    """Entry point ``grbl``: a GRBL controller emulator on loopback TCP."""

    def __init__(self, options: dict[str, Any], *, clock: Any, preset: str, seed: int = 0, plan: Any = None) -> None:
        from labctl.simulators.emulators.grbl import GrblMachine, GrblTcpServer

        self._server = GrblTcpServer(GrblMachine(clock), plan=plan)
        self.entry = {"port": self._server.url}

    @property
    def plan(self) -> Any:
        return self._server.plan

    def close(self) -> None:
        self._server.close()


class MethodScriptEmulatorFactory(_Served):
    """Entry point ``methodscript``: an EmStat emulator on loopback TCP (``model`` option: es4_lr, es4_hr,
    espico; default es4_lr), its cell from the station's preset."""

    def __init__(self, options: dict[str, Any], *, clock: Any, preset: str, seed: int = 0, plan: Any = None) -> None:
        from labctl.simulators.emulators.methodscript import MethodScriptEmulator

        self._em = MethodScriptEmulator(
            str(options.get("model") or "es4_lr"), preset=preset, seed=seed, clock=clock, noise=True, plan=plan
        )
        port = self._em.serve_tcp()
        self.entry = {"port": f"socket://127.0.0.1:{port}"}


class NewareEmulatorFactory(_Served):
    """Entry point ``neware``: a Neware BTS API emulator on loopback TCP (options ``channels``,
    default 8, ``devid``, ``subdevid``), its cells simulated with the station's preset and seed.
    The emulated station reads step files where labctl writes them (``bts_folder`` cleared); with
    ``data_dir`` the emulated BTS PC writes each ended test's ``.ndax`` there (the station's share)."""

    def __init__(self, options: dict[str, Any], *, clock: Any, preset: str, seed: int = 0) -> None:
        from labctl.simulators.emulators.neware import NewareEmulator

        self._em = NewareEmulator(
            clock=clock,
            preset=preset,
            seed=seed,
            channels=int(options.get("channels", 8)),
            devid=int(options.get("devid", 27)),
            subdevid=int(options.get("subdevid", 1)),
            data_dir=options.get("data_dir"),
        )
        self.entry = {"host": "127.0.0.1", "port": self._em.port, "bts_folder": None}


class Keithley2450EmulatorFactory(_Served):
    """Entry point ``keithley2450``: a Keithley 2450 SCPI emulator on loopback TCP (VISA raw socket, ``@py``)."""

    _shutdown = "stop"

    def __init__(self, options: dict[str, Any], *, clock: Any, preset: str, seed: int = 0, plan: Any = None) -> None:
        from labctl.simulators.emulators.scpi2450 import Keithley2450Emulator

        self._em = Keithley2450Emulator(clock, preset=preset, seed=seed, plan=plan)
        self._em.start()
        self.entry = {"resource": self._em.resource, "visa_library": "@py"}


class LakeShoreEmulatorFactory(_Served):
    """Entry point ``lakeshore335``: a Lake Shore 335 emulator on loopback TCP (VISA raw socket, ``@py``)."""

    _shutdown = "stop"

    def __init__(self, options: dict[str, Any], *, clock: Any, preset: str, seed: int = 0, plan: Any = None) -> None:
        from labctl.simulators.emulators.lakeshore import LakeShoreEmulator

        self._em = LakeShoreEmulator(clock, seed=seed, plan=plan)
        self._em.start()
        self.entry = {"resource": self._em.resource, "visa_library": "@py"}
