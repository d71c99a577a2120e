"""Station files: the instruments of a lab bench and the channels built from them.

::

    name: bench-1
    instruments:
      pstat1: {driver: methodscript, port: "socket://127.0.0.1:7001"}       # any pyserial URL
      smu1:   {driver: keithley2450, resource: "TCPIP::127.0.0.1::5025::SOCKET", visa_library: "@py"}
      tc1:    {driver: lakeshore335, resource: "GPIB0::12::INSTR", visa_library: "lakeshore.yaml@sim", loop: 1}
    channels:
      A: {potentiostat: pstat1, stage: tc1}
      B: {potentiostat: smu1}

Every key of an instrument other than ``driver``, ``limits``, ``reconnect`` and
``max_overshoot`` is passed to the driver's factory (its options).  ``reconnect`` sets the
fault policy of the instrument when its link fails mid-run (``{attempts: 3, delay: 4 s,
factor: 2, connect_timeout: 5 s}`` by default, ``false``: end the run at once; see
:mod:`labctl.engine.faults`); ``max_overshoot`` (stages, e.g. ``5 K``) trips safety when a
reading exceeds the set point by more.  ``limits`` narrow what the instrument may do on this bench
(``current: 10 mA``, ``voltage: [-2 V, 2 V]``, ``temperature: [10 degC, 70 degC]``), and
preflight refuses a protocol that needs more.  A relative ``visa_library`` file
(``lakeshore.yaml@sim``) is resolved against the station file's folder.  A station may
list instruments that no channel uses.

Errors name the file, line, column and field: an unknown driver, a driver of the wrong
kind for its role, a channel naming an unknown instrument, an instrument used by two
channels, an address that does not open (when the channel is opened).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from labctl.core.errors import Issue, ProtocolError, did_you_mean, validate_with_positions
from labctl.core.units import UnitError, parse_quantity
from labctl.core.yamlio import Positions, decode_text, load_yaml
from labctl.drivers import registry
from labctl.drivers.contracts import CONNECT_TIMEOUT, ChannelDevices, DeviceError

#: channel role -> registry kind
ROLES = {"potentiostat": "potentiostat", "stage": "temperature_stage", "dip_coater": "dip_coater"}
#: a cycler channel: one channel of a multi-channel battery cycler (``cycler: NAME, address: ...``)
CYCLER_ROLE = "cycler"


class StationError(ProtocolError):
    """A station file that cannot be used, or an instrument of it that cannot be opened."""


class Limits(BaseModel):
    """What an instrument may do on this bench (narrower than what it can do)."""

    model_config = ConfigDict(extra="forbid")

    current: float | None = Field(None, description="largest |current|, e.g. '10 mA'")
    voltage: tuple[float, float] | None = Field(None, description="voltage window, e.g. [-2 V, 2 V]")
    temperature: tuple[float, float] | None = Field(None, description="stage range, e.g. [10 degC, 70 degC]")

    @field_validator("current", mode="before")
    @classmethod
    def _current(cls, v: Any) -> Any:
        return None if v is None else _quantity(v, "current")

    @field_validator("voltage", mode="before")
    @classmethod
    def _voltage(cls, v: Any) -> Any:
        return None if v is None else _pair(v, "voltage")

    @field_validator("temperature", mode="before")
    @classmethod
    def _temperature(cls, v: Any) -> Any:
        return None if v is None else _pair(v, "temperature")


def _quantity(v: Any, dim: str) -> float:
    from labctl.core.errors import custom_error

    try:
        return parse_quantity(v, dim)
    except UnitError as e:
        raise custom_error(e.message, e.hint) from None


def _pair(v: Any, dim: str) -> tuple[float, float]:
    from labctl.core.errors import custom_error

    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise custom_error(
            f"expected [low, high], got {v!r}",
            f"write e.g. {'[-2 V, 2 V]' if dim == 'voltage' else '[10 degC, 70 degC]'}",
        )
    lo, hi = (_quantity(x, dim) for x in v)
    if not lo < hi:
        raise custom_error(f"the low end {lo:g} is not below the high end {hi:g}", "write [low, high]")
    return (lo, hi)


class Instrument(BaseModel):
    model_config = ConfigDict(extra="allow")

    driver: str = Field(description="driver name (entry point), e.g. methodscript, keithley2450, lakeshore335, sim")
    limits: Limits | None = None
    reconnect: Any = Field(
        None,
        description="fault policy when the link fails mid-run: {attempts: 3, delay: 4 s, factor: 2, "
        "connect_timeout: 5 s} (the defaults), or false to end the run at the first link fault",
    )
    max_overshoot: float | None = Field(
        None, description="stages: a reading this far above the set point (K) trips safety, e.g. '5 K'"
    )
    data_dir: str | None = Field(
        None,
        description="cyclers: the folder where the cycler PC's data files (Neware .ndax) are visible to "
        "labctl (a share), e.g. /mnt/bts/data; a job's final data are read from its file there",
    )
    ndax_timeout: float | None = Field(
        None,
        description="cyclers with data_dir: how long to wait at a job's end for its data file (default 60 s), "
        "e.g. '2 min'; then the data harvested by download are the final data",
    )

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir(cls, v: Any) -> Any:
        from labctl.core.errors import custom_error

        if v is None:
            return None
        if not isinstance(v, str) or not v.strip():
            raise custom_error(
                f"data_dir must be a folder path, got {v!r}",
                "write e.g. data_dir: /mnt/bts/data (where the BTS PC's .ndax files are visible)",
            )
        return v.strip()

    @field_validator("ndax_timeout", mode="before")
    @classmethod
    def _ndax_timeout(cls, v: Any) -> Any:
        from labctl.core.errors import custom_error

        if v is None:
            return None
        try:
            x = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else parse_quantity(v, "time")
        except (UnitError, TypeError, ValueError):
            raise custom_error(f"ndax_timeout must be a duration, got {v!r}", "write e.g. ndax_timeout: 60 s") from None
        if not x > 0:
            raise custom_error(f"ndax_timeout must be positive, got {v!r}", "write e.g. ndax_timeout: 60 s")
        return x

    @field_validator("reconnect", mode="after")
    @classmethod
    def _reconnect(cls, v: Any) -> Any:
        from labctl.core.errors import custom_error
        from labctl.core.units import UnitError
        from labctl.engine.faults import ReconnectPolicy

        try:
            return None if v is None else ReconnectPolicy.from_options(v)
        except UnitError as e:
            raise custom_error(e.message, e.hint) from None
        except (ValueError, TypeError) as e:
            raise custom_error(str(e), "write e.g. reconnect: {attempts: 3, delay: 4 s, factor: 2}") from None

    @field_validator("max_overshoot", mode="before")
    @classmethod
    def _overshoot(cls, v: Any) -> Any:
        from labctl.core.errors import custom_error

        if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)):
            x = v
        else:
            text = str(v).strip()
            for unit in ("degC", "K"):
                if text.endswith(unit):
                    text = text[: -len(unit)].strip()
                    break
            try:
                x = float(text)
            except ValueError:
                raise custom_error(
                    f"expected a temperature difference like '5 K', got {v!r}", "write e.g. 5 K"
                ) from None
        if x is not None and not x > 0:
            raise custom_error(f"max_overshoot must be positive, got {v!r}", "write e.g. 5 K")
        return x

    @property
    def options(self) -> dict[str, Any]:
        opts = dict(self.model_extra or {})
        for key in ("data_dir", "ndax_timeout"):
            if getattr(self, key) is not None:
                opts[key] = getattr(self, key)
        return opts


class ChannelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    potentiostat: str | None = Field(None, description="instrument name of the channel's potentiostat")
    stage: str | None = Field(None, description="instrument name of its temperature stage")
    dip_coater: str | None = Field(None, description="instrument name of its dip coater")
    cycler: str | None = Field(None, description="instrument name of the battery cycler this channel is on")
    address: str | None = Field(
        None, description="the cycler's channel address, e.g. 27-1-3 (Neware devid-subdevid-chlid)"
    )

    @property
    def is_cycler(self) -> bool:
        return self.cycler is not None


class Station(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str | None = None
    instruments: dict[str, Instrument]
    channels: dict[str, ChannelSpec] = Field(default_factory=dict)

    # set by the loader
    source: str = Field("<station>", exclude=True)
    folder: str = Field(".", exclude=True)
    positions: Any = Field(None, exclude=True)

    def where(self, *path: Any) -> tuple[int | None, int | None]:
        pos: Positions | None = self.positions
        if pos is None:
            return None, None
        p = tuple(path)
        line, col = pos.key_positions.get(p) or pos.get(p) or pos.nearest(p)
        return line, col

    def issue(self, path: tuple[Any, ...], message: str, hint: str) -> Issue:
        line, col = self.where(*path)
        return Issue(self.source, line, col, ".".join(str(x) for x in path), message, hint)

    def channel(self, name: str) -> ChannelSpec:
        if name not in self.channels:
            dym = did_you_mean(name, list(self.channels))
            raise StationError.single(
                self.source,
                f"the station has no channel {name!r}",
                dym or f"its channels: {', '.join(self.channels) or 'none'}",
                line=1,
                col=1,
                field="channels",
            )
        return self.channels[name]

    def driver_options(self, name: str) -> dict[str, Any]:
        """The factory options of instrument ``name``, relative file paths resolved."""
        opts = self.instruments[name].options
        data_dir = opts.get("data_dir")
        if isinstance(data_dir, str) and not Path(data_dir).is_absolute() and not _windows_path(data_dir):
            opts["data_dir"] = str(Path(self.folder) / data_dir)
        lib = opts.get("visa_library")
        if isinstance(lib, str) and "@" in lib:
            path, _, backend = lib.rpartition("@")
            if path and not Path(path).is_absolute():
                opts["visa_library"] = f"{Path(self.folder) / path}@{backend}"
        return opts


def _windows_path(p: str) -> bool:
    return "\\" in p or ":" in p[:3]


def _kind_of(driver: str) -> list[str]:
    return [kind for kind in registry.GROUPS if driver in registry.available(kind)]


def _check(station: Station) -> None:
    issues: list[Issue] = []
    for name, inst in station.instruments.items():
        if not _kind_of(inst.driver):
            names = sorted({n for k in registry.GROUPS for n in registry.available(k)})
            dym = did_you_mean(inst.driver, names)
            issues.append(
                station.issue(
                    ("instruments", name, "driver"),
                    f"unknown driver {inst.driver!r}",
                    (dym + " " if dym else "") + f"installed drivers: {', '.join(names)}",
                )
            )
        for key in ("data_dir", "ndax_timeout"):
            kinds = _kind_of(inst.driver)
            if getattr(inst, key) is not None and kinds and "cycler" not in kinds:
                issues.append(
                    station.issue(
                        ("instruments", name, key),
                        f"{key} belongs to a battery cycler; {name!r} ({inst.driver}) is a "
                        f"{kinds[0].replace('_', ' ')} driver",
                        f"remove {key} here, or set it on the cycler instrument (e.g. driver: neware)",
                    )
                )
        if inst.ndax_timeout is not None and inst.data_dir is None:
            issues.append(
                station.issue(
                    ("instruments", name, "ndax_timeout"),
                    "ndax_timeout without data_dir: there is no folder to wait for the data file in",
                    "add data_dir: (the share where the BTS PC writes its .ndax files), or remove ndax_timeout",
                )
            )
    used: dict[str, str] = {}
    addresses: dict[tuple[str, str], str] = {}
    for ch, spec in station.channels.items():
        if spec.cycler is not None:
            _check_cycler_channel(station, ch, spec, addresses, issues)
            continue
        if spec.address is not None:
            issues.append(
                station.issue(("channels", ch, "address"), "an address belongs to a cycler channel", "add cycler: NAME")
            )
        roles = {r: getattr(spec, r) for r in ROLES if getattr(spec, r) is not None}
        if not roles:
            issues.append(
                station.issue(
                    ("channels", ch), "a channel needs at least a potentiostat", "write e.g. {potentiostat: pstat1}"
                )
            )
        for role, inst_name in roles.items():
            path = ("channels", ch, role)
            if inst_name not in station.instruments:
                dym = did_you_mean(inst_name, list(station.instruments))
                issues.append(
                    station.issue(
                        path,
                        f"no instrument named {inst_name!r}",
                        dym or f"instruments: {', '.join(station.instruments)}",
                    )
                )
                continue
            if inst_name in used:
                issues.append(
                    station.issue(
                        path,
                        f"instrument {inst_name!r} is already used by channel {used[inst_name]}",
                        "give each channel its own instrument (one instrument, one channel)",
                    )
                )
            used[inst_name] = ch
            kinds = _kind_of(station.instruments[inst_name].driver)
            if kinds and ROLES[role] not in kinds:
                issues.append(
                    station.issue(
                        path,
                        f"{inst_name!r} ({station.instruments[inst_name].driver}) is a "
                        f"{kinds[0].replace('_', ' ')} driver, not a {role.replace('_', ' ')}",
                        f"use it as {_role_for(kinds[0])}, or pick a {role.replace('_', ' ')} here",
                    )
                )
    if issues:
        raise StationError(issues)


def _check_cycler_channel(
    station: Station, ch: str, spec: ChannelSpec, addresses: dict[tuple[str, str], str], issues: list[Issue]
) -> None:
    """A cycler channel: its instrument is a cycler, it has an address, used by one channel only,
    and no potentiostat/stage/dip coater (a cycler runs the whole protocol itself)."""
    name = str(spec.cycler)
    others = [r for r in ROLES if getattr(spec, r) is not None]
    if others:
        issues.append(
            station.issue(
                ("channels", ch, others[0]),
                f"a cycler channel has no {others[0].replace('_', ' ')}: the cycler runs the whole protocol",
                "make it a separate channel",
            )
        )
    if name not in station.instruments:
        dym = did_you_mean(name, list(station.instruments))
        issues.append(
            station.issue(("channels", ch, "cycler"), f"no instrument named {name!r}", dym or "check the name")
        )
        return
    kinds = _kind_of(station.instruments[name].driver)
    if kinds and "cycler" not in kinds:
        issues.append(
            station.issue(
                ("channels", ch, "cycler"),
                f"{name!r} ({station.instruments[name].driver}) is a {kinds[0].replace('_', ' ')} driver, not a cycler",
                f"use it as {_role_for(kinds[0])}, or pick a cycler here",
            )
        )
    if not spec.address:
        issues.append(
            station.issue(("channels", ch), "a cycler channel needs its address", "write e.g. address: 27-1-1")
        )
        return
    key = (name, str(spec.address))
    if key in addresses:
        issues.append(
            station.issue(
                ("channels", ch, "address"),
                f"{name} channel {spec.address} is already channel {addresses[key]}",
                "give each channel its own cycler address",
            )
        )
    addresses[key] = ch


def _role_for(kind: str) -> str:
    if kind == "cycler":
        return "cycler"
    return next(r for r, k in ROLES.items() if k == kind)


def load_station_text(text: str, source: str = "<station>", folder: str | Path = ".") -> Station:
    try:
        data, positions = load_yaml(text, source)
    except ProtocolError as e:
        raise StationError(e.issues) from None
    if not isinstance(data, dict):
        raise StationError.single(
            source,
            "a station file is a mapping with 'instruments' and 'channels'",
            "start with 'instruments:'",
            line=1,
            col=1,
        )
    try:
        station = validate_with_positions(Station, data, positions, source)
    except ProtocolError as e:
        raise StationError(e.issues) from None
    station.source = source
    station.folder = str(folder)
    station.positions = positions
    _check(station)
    return station


def load_station(path: str | Path) -> Station:
    p = Path(path)
    if not p.is_file():
        raise StationError.single(
            str(p), "no such station file", "check the path (a YAML file with instruments: and channels:)"
        )
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise StationError.single(
            str(p), f"cannot read the station file: {e.strerror or e}", "check the permissions"
        ) from None
    try:
        text = decode_text(raw, str(p))
    except ProtocolError as e:
        raise StationError(e.issues) from None
    return load_station_text(text, source=str(p), folder=p.resolve().parent)


def station_json_schema() -> dict[str, Any]:
    schema = Station.model_json_schema()
    schema["title"] = "labctl station"
    return schema


# --------------------------------------------------------------------------- opening instruments
def open_instrument(
    station: Station, name: str, clock: Any, *, timeout: float = CONNECT_TIMEOUT, transcript: str | Path | None = None
) -> Any:
    """Create and connect instrument ``name``; a :class:`StationError` naming it if it does not answer."""
    inst = station.instruments[name]
    kind = _kind_of(inst.driver)[0]
    opts = station.driver_options(name)
    line, col = station.where("instruments", name)
    if transcript is not None:
        opts = _recording(station, name, kind, inst.driver, opts, transcript)
    try:
        dev = registry.create(kind, inst.driver, clock=clock, **opts)
    except TypeError as e:
        raise StationError.single(
            station.source,
            f"instrument {name} ({inst.driver}): {e}",
            "check the instrument's options against its driver's documentation",
            line=line,
            col=col,
            field=f"instruments.{name}",
        ) from None
    try:
        dev.connect(timeout=timeout)
    except (DeviceError, OSError) as e:
        _close_quietly(dev)
        address = opts.get("port") or opts.get("resource") or opts.get("host") or "its address"
        raise StationError.single(
            station.source,
            f"instrument {name} ({inst.driver} at {address}) did not open: {e}",
            "check the cable, the address and that the instrument is on",
            line=line,
            col=col,
            field=f"instruments.{name}",
        ) from None
    if inst.limits is not None:
        _apply_limits(dev, inst.limits)
    return dev


ADDRESS_KEYS = ("port", "baudrate", "resource", "visa_library", "read_termination", "write_termination")


def link_parameter(factory: Any) -> str | None:
    """The keyword a driver takes a ready transport under (``transport`` or ``link``), if any."""
    import inspect

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None
    return next((k for k in ("transport", "link") if k in params), None)


def _recording(
    station: Station, name: str, kind: str, driver: str, opts: dict[str, Any], transcript: str | Path
) -> dict[str, Any]:
    """Options that give the driver its link wrapped in a transcript recorder (``--transcript``)."""
    from labctl.drivers.transports import RecordingTransport, open_transport

    key = link_parameter(registry.load(kind, driver))
    if key is None:
        raise StationError.single(
            station.source,
            f"instrument {name} ({driver}): its driver takes no transport, so its traffic cannot be recorded",
            "run without --transcript for this channel",
            field=f"instruments.{name}",
        )
    spec = {k: v for k, v in opts.items() if k in ("port", "baudrate", "resource", "visa_library")}
    rest = {k: v for k, v in opts.items() if k not in ADDRESS_KEYS}
    Path(transcript).parent.mkdir(parents=True, exist_ok=True)
    return {**rest, key: RecordingTransport(open_transport(spec), str(transcript))}


def _apply_limits(dev: Any, limits: Limits) -> None:
    caps = getattr(dev, "capabilities", None)
    if caps is not None:
        lo, hi = caps.current_range
        vlo, vhi = caps.voltage_range
        if limits.current is not None:
            lo, hi = max(lo, -limits.current), min(hi, limits.current)
        if limits.voltage is not None:
            vlo, vhi = max(vlo, limits.voltage[0]), min(vhi, limits.voltage[1])
        dev.capabilities = dataclasses.replace(caps, current_range=(lo, hi), voltage_range=(vlo, vhi))
    if limits.temperature is not None and hasattr(dev, "range_c"):
        tlo, thi = dev.range_c
        dev.range_c = (max(tlo, limits.temperature[0]), min(thi, limits.temperature[1]))


def _close_quietly(dev: Any) -> None:
    try:
        dev.close()
    except Exception:
        pass


def open_channel(
    station: Station,
    channel: str,
    clock: Any,
    *,
    timeout: float = CONNECT_TIMEOUT,
    transcript_dir: str | Path | None = None,
) -> ChannelDevices:
    """The devices of ``channel``, connected; anything opened is closed again if one fails."""
    spec = station.channel(channel)
    if spec.cycler is not None:
        raise StationError.single(
            station.source,
            f"channel {channel} is a cycler channel: the cycler runs the protocol itself",
            "run it with labctl.app.cycler_run.run_on_cycler (labctl run --station F --channel X does)",
            field=f"channels.{channel}",
        )
    opened: dict[str, Any] = {}
    try:
        for role in ROLES:
            name = getattr(spec, role)
            if name is None:
                continue
            tr = None if transcript_dir is None else Path(transcript_dir) / f"{channel}-{name}.jsonl"
            opened[role] = open_instrument(station, name, clock, timeout=timeout, transcript=tr)
    except BaseException:
        for dev in opened.values():
            _close_quietly(dev)
        raise
    if "potentiostat" not in opened:
        raise StationError.single(
            station.source,
            f"channel {channel} has no potentiostat",
            "add 'potentiostat: NAME' to the channel",
            field=f"channels.{channel}",
        )
    roles = {r: getattr(spec, r) for r in ROLES if getattr(spec, r)}
    policies = {r: station.instruments[n].reconnect for r, n in roles.items() if station.instruments[n].reconnect}
    overshoot = station.instruments[spec.stage].max_overshoot if spec.stage else None
    return ChannelDevices(
        opened["potentiostat"],
        opened.get("stage"),
        opened.get("dip_coater"),
        extras={
            "station": station.name or station.source,
            "channel": channel,
            "instruments": roles,
            "reconnect": policies,
            "max_overshoot": overshoot,
        },
    )


def identify(dev: Any) -> str:
    ident = getattr(dev, "identify", None)
    return str(ident()) if callable(ident) else type(dev).__name__


def read_state(dev: Any) -> dict[str, str]:
    """What an instrument says about itself, with units, by queries only (nothing is changed)."""
    out: dict[str, str] = {}
    state = getattr(dev, "read_state", None)
    if callable(state):
        out.update({str(k): str(v) for k, v in state().items()})
    elif hasattr(dev, "read_temperature"):
        out["temperature"] = f"{float(dev.read_temperature()):.2f} degC"
    if "cell" not in out and hasattr(dev, "cell_on"):
        out["cell"] = "on" if dev.cell_on else "off"
    return out


def survey(station: Station, clock: Any, *, timeout: float = CONNECT_TIMEOUT) -> list[dict[str, Any]]:
    """Identify every instrument of the station and read its state (``labctl instruments``)."""
    rows = []
    for name, inst in station.instruments.items():
        dev = open_instrument(station, name, clock, timeout=timeout)
        try:
            rows.append(
                {
                    "instrument": name,
                    "driver": inst.driver,
                    "kind": _kind_of(inst.driver)[0],
                    "identity": identify(dev),
                    "state": read_state(dev),
                    "channel": next(
                        (
                            ch
                            for ch, spec in station.channels.items()
                            if name in (spec.potentiostat, spec.stage, spec.dip_coater, spec.cycler)
                        ),
                        None,
                    ),
                }
            )
        finally:
            _release(dev)
    return rows


def _release(dev: Any) -> None:
    """Let go of an instrument without changing it: ``release()`` where the driver has it (close()
    turns a potentiostat's cell off, which must not happen to a cell another run is using)."""
    release = getattr(dev, "release", None)
    try:
        if callable(release):
            release()
        elif not hasattr(dev, "cell_off"):
            dev.close()
    except Exception:
        pass
