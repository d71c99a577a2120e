"""``labctl emulate --station FILE``: an emulator for every instrument of a station.

Each driver with an emulator registers a factory under the entry-point group
``labctl.emulators`` (same name as the driver).  A factory is called as
``factory(options, clock=..., preset=..., seed=...)`` with the instrument's station
options and returns an object with ``entry`` (the options a station needs to reach the
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


def emulate_station(station: Station, clock: Any, *, preset: str, seed: int = 0) -> EmulatedStation:
    """Start an emulator for every instrument that needs one (a :class:`StationError` names any that has none)."""
    em = EmulatedStation(station)
    try:
        for name, inst in station.instruments.items():
            opts = station.driver_options(name)
            entry: dict[str, Any] = {"driver": inst.driver, **opts}
            if inst.limits is not None:
                entry["limits"] = _limits_yaml(inst.limits)
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


class GrblEmulator:
    """Entry point ``grbl``: a GRBL controller emulator on loopback TCP."""

    def __init__(self, options: dict[str, Any], *, clock: Any, preset: str, seed: int = 0) -> None:
        from labctl.simulators.emulators.grbl import GrblMachine, GrblTcpServer

        self._server = GrblTcpServer(GrblMachine(clock))
        self.entry = {"port": self._server.url}

    def close(self) -> None:
        self._server.close()


class MethodScriptEmulatorFactory:
    """Entry point ``methodscript``: an EmStat emulator on loopback TCP (``model`` option: es4_lr, es4_hr,
    espico; default es4_lr), its cell from the station's preset."""

    def __init__(self, options: dict[str, Any], *, clock: Any, preset: str, seed: int = 0) -> None:
        from labctl.simulators.emulators.methodscript import MethodScriptEmulator

        self._em = MethodScriptEmulator(
            str(options.get("model") or "es4_lr"), preset=preset, seed=seed, clock=clock, noise=True
        )
        port = self._em.serve_tcp()
        self.entry = {"port": f"socket://127.0.0.1:{port}"}

    def close(self) -> None:
        self._em.close()


class NewareEmulatorFactory:
    """Entry point ``neware``: a Neware BTS API emulator on loopback TCP (options ``channels``,
    default 8, ``devid``, ``subdevid``), its cells simulated with the station's preset and seed.
    The emulated station reads step files where labctl writes them (``bts_folder`` cleared)."""

    def __init__(self, options: dict[str, Any], *, clock: Any, preset: str, seed: int = 0) -> None:
        from labctl.simulators.emulators.neware import NewareEmulator

        self._em = NewareEmulator(
            clock=clock,
            preset=preset,
            seed=seed,
            channels=int(options.get("channels", 8)),
            devid=int(options.get("devid", 27)),
            subdevid=int(options.get("subdevid", 1)),
        )
        self.entry = {"host": "127.0.0.1", "port": self._em.port, "bts_folder": None}

    @property
    def emulator(self) -> Any:
        return self._em

    def close(self) -> None:
        self._em.close()
