"""Campaign files: many runs (protocol x cell x channel or pool, replicates), when and in which order.

::

    name: overnight-2026-12-02
    stations: [bench16.yaml]          # station files (relative to this file); runs name their station
    misfire_limit: 1 h                # a start missed by more than this fails instead of starting late
    start: "+10 min"                  # default `at:` of every run (ISO time, "+DURATION" or "now")
    cells:                            # the cells the runs use (a run's cell: must be one of these)
      S1: {preset: my-preset}         # the simulator preset of a simulated cell
      S2: {preset: my-preset}
      S3: {preset: my-preset}
    runs:
      - key: coat                     # unique; replicates get -r1, -r2, ...
        protocol: dip-coat            # a library protocol's name, or a file relative to this one
        cell: S1
        channel: A1                   # pinned to one channel; or pool: [A1, A2] (default: any channel)
      - key: sym
        protocol: symmetric-0.5mA
        cells: [S1, S2, S3]             # one cell per replicate
        replicates: 3
        after: [coat]                 # starts when coat is done (all its replicates)
        priority: 10                  # higher first when runs wait for a channel

:func:`load_campaign` validates everything before anything is queued: protocols, presets,
stations, channels and cells exist; every protocol passes preflight on every channel it may
run on; no two runs pinned to one channel can overlap; ``after:`` has no cycle; no start time
is in the past by more than the misfire limit.  Every problem is reported as
``file:line:col: field: message (hint: ...)``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from labctl.core.errors import Issue, ProtocolError, did_you_mean, validate_with_positions
from labctl.core.units import UnitError, parse_quantity
from labctl.core.yamlio import Positions, load_yaml

#: Default misfire limit (s): how late a missed start may still begin.
MISFIRE_LIMIT_S = 3600.0


class CampaignError(ProtocolError):
    """A campaign file that cannot be queued (file:line:col issues)."""


def _duration(v: Any, what: str) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        raise ValueError(f"{what} needs a unit, e.g. '30 min'")
    try:
        return parse_quantity(v, "time")
    except UnitError as e:
        raise ValueError(str(e)) from None


class CellEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: str | None = Field(None, description="simulator preset of this cell (on simulated channels)")
    notes: str | None = None


class RunEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="unique name of the run in the campaign; replicates get -r1, -r2, ...")
    protocol: str = Field(description="a library protocol's name, or a protocol file relative to the campaign file")
    preset: str | None = Field(None, description="simulator preset (simulated channels); default: the cell's")
    cell: str | None = Field(None, description="the cell (one of cells:), for a single replicate")
    cells: list[str] | None = Field(None, description="one cell per replicate")
    station: str | None = Field(None, description="station name; default: the campaign's only station")
    channel: str | None = Field(None, description="pin the run to this channel")
    pool: list[str] | str | None = Field(None, description="channels it may run on ('all': any; the default)")
    replicates: int = Field(1, ge=1, le=1000)
    seed: int = Field(0, ge=0, le=2**31 - 1, description="random seed of replicate 1; replicate r uses seed + r - 1")
    priority: int = Field(0, ge=-1000, le=1000, description="higher runs first when runs wait for a channel")
    at: str | None = Field(None, description="start time: ISO 8601 ('2026-12-02T19:00'), '+10 min', or 'now'")
    after: list[str] = Field(default_factory=list, description="runs (keys) that must be done first")

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        v = v.strip()
        if not v or any(c.isspace() for c in v) or ":" in v:
            raise ValueError("a key is one word without ':' (e.g. sym-bare)")
        return v

    @model_validator(mode="after")
    def _exclusive(self) -> RunEntry:
        if self.channel is not None and self.pool is not None:
            raise ValueError("give either channel: (pinned) or pool: (any of several), not both")
        if self.cell is not None and self.cells is not None:
            raise ValueError("give either cell: or cells:, not both")
        if self.cells is not None and len(self.cells) != self.replicates:
            raise ValueError(f"cells: lists {len(self.cells)} cells for {self.replicates} replicates (one each)")
        if self.cell is not None and self.replicates > 1:
            raise ValueError("one cell cannot run several replicates at once: list cells: [...], one per replicate")
        return self


class CampaignModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="campaign name (unique in the database)")
    description: str | None = None
    stations: list[str] = Field(min_length=1, description="station files, relative to the campaign file")
    misfire_limit: Any = Field(
        None, description="a start missed by more than this (e.g. '1 h') fails instead of starting late"
    )
    start: str | None = Field(None, description="default at: of every run")
    cells: dict[str, CellEntry] = Field(default_factory=dict)
    runs: list[RunEntry] = Field(min_length=1)

    @field_validator("misfire_limit")
    @classmethod
    def _limit(cls, v: Any) -> Any:
        if v is None:
            return None
        s = _duration(v, "misfire_limit")
        if s < 0:
            raise ValueError("misfire_limit cannot be negative")
        return s


@dataclass
class PlannedRun:
    """One run of a campaign, as the queue stores it (``spec``)."""

    key: str
    protocol: str  # library name or absolute path
    preset: str | None
    cell: str | None
    station: str
    channel: str | None
    pool: list[str] | None
    replicate: int  # 0-based replicate cell number (the simulator's replicate)
    seed: int
    priority: int
    at: float | None  # unix time
    after: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlannedRun:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Campaign:
    name: str
    text: str
    source: str
    folder: Path
    misfire_limit_s: float
    model: CampaignModel
    stations: dict[str, Any]  # name -> labctl.app.station.Station
    station_files: dict[str, str]  # name -> path
    positions: Positions
    now: float
    _planned: list[PlannedRun] = field(default_factory=list, repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def expand(self) -> list[PlannedRun]:
        """Every planned run (replicates expanded), in file order."""
        return list(self._planned)


# --------------------------------------------------------------------------- loading
def _where(pos: Positions, *path: Any) -> tuple[int | None, int | None]:
    return pos.nearest(tuple(path))


def _issue(c: Campaign | None, pos: Positions, source: str, path: tuple[Any, ...], message: str, hint: str) -> Issue:
    line, col = _where(pos, *path)
    fld = ""
    for p in path:
        fld += f"[{p}]" if isinstance(p, int) else (f".{p}" if fld else str(p))
    return Issue(source, line, col, fld, message, hint)


def parse_time(text: str, now: float) -> float:
    """``at:`` text -> unix time: ISO 8601 (naive = local time), ``+DURATION`` or ``now``."""
    t = str(text).strip()
    if t.lower() == "now":
        return now
    if t.startswith("+"):
        return now + _duration(t[1:].strip(), "a relative start")
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{t!r} is not a time; write '2026-12-02T19:00', '+30 min' or 'now'") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # local time
    return dt.timestamp()


def load_campaign_text(
    text: str, source: str = "<campaign>", folder: str | Path = ".", *, now: float | None = None, preflight: bool = True
) -> Campaign:
    """Validate campaign ``text``; :class:`CampaignError` lists every problem (file:line:col)."""
    now = time.time() if now is None else now
    try:
        data, pos = load_yaml(text, source)
    except ProtocolError as e:
        raise CampaignError(e.issues) from None
    if not isinstance(data, dict):
        raise CampaignError.single(
            source, "a campaign file is a mapping with name:, stations: and runs:", "start with 'name:'", line=1, col=1
        )
    try:
        model = validate_with_positions(CampaignModel, data, pos, source)
    except ProtocolError as e:
        raise CampaignError(e.issues) from None
    folder = Path(folder)
    issues: list[Issue] = []

    def issue(path: tuple[Any, ...], message: str, hint: str) -> None:
        issues.append(_issue(None, pos, source, path, message, hint))

    # stations
    from labctl.app.station import load_station

    stations: dict[str, Any] = {}
    station_files: dict[str, str] = {}
    for i, f in enumerate(model.stations):
        p = Path(f) if Path(f).is_absolute() else folder / f
        try:
            st = load_station(p)
        except ProtocolError as e:
            issue(("stations", i), f"station file {f!r}: {e.issues[0].message}", e.issues[0].hint or "check the path")
            continue
        name = st.name or p.stem
        if name in stations:
            issue(("stations", i), f"two station files are named {name!r}", "give each station its own name:")
            continue
        stations[name] = st
        station_files[name] = str(p.resolve())
    limit = MISFIRE_LIMIT_S if model.misfire_limit is None else float(model.misfire_limit)
    camp = Campaign(model.name, text, source, folder, limit, model, stations, station_files, pos, now)
    if issues:
        raise CampaignError(issues)

    planned: list[PlannedRun] = []
    by_entry: dict[str, list[str]] = {}
    where_key: dict[str, tuple[Any, ...]] = {}
    protocols: dict[str, Any] = {}
    for i, r in enumerate(model.runs):
        base = ("runs", i)
        proto_ref = _protocol_ref(r.protocol, folder)
        if proto_ref not in protocols:
            protocols[proto_ref] = _load_protocol(proto_ref, lambda m, h, b=base: issue((*b, "protocol"), m, h))
        if r.station is None:
            if len(stations) != 1:
                issue(base, "which station? the campaign has several", f"add station: (one of {', '.join(stations)})")
                continue
            station_name = next(iter(stations))
        elif r.station not in stations:
            dym = did_you_mean(r.station, list(stations))
            issue((*base, "station"), f"unknown station {r.station!r}", dym or f"stations: {', '.join(stations)}")
            continue
        else:
            station_name = r.station
        st = stations[station_name]
        channels = list(st.channels)
        pool: list[str] | None = None
        if r.channel is not None:
            if r.channel not in st.channels:
                dym = did_you_mean(r.channel, channels)
                issue(
                    (*base, "channel"),
                    f"station {station_name} has no channel {r.channel!r}",
                    dym or f"its channels: {', '.join(channels)}",
                )
                continue
        elif r.pool is None or r.pool == "all":
            pool = channels
        elif isinstance(r.pool, str):
            issue((*base, "pool"), f"pool: {r.pool!r} is not a list of channels", "write pool: [A1, A2] or pool: all")
            continue
        else:
            bad = [(j, c) for j, c in enumerate(r.pool) if c not in st.channels]
            for j, c in bad:
                dym = did_you_mean(c, channels)
                issue(
                    (*base, "pool", j),
                    f"station {station_name} has no channel {c!r}",
                    dym or f"its channels: {', '.join(channels)}",
                )
            if bad:
                continue
            if not r.pool:
                issue((*base, "pool"), "an empty pool", "list at least one channel")
                continue
            pool = list(dict.fromkeys(r.pool))
        cells: list[str | None] = list(r.cells) if r.cells is not None else [r.cell] * r.replicates
        bad_cell = False
        for j, label in enumerate(cells):
            if label is not None and label not in model.cells:
                path = (*base, "cells", j) if r.cells is not None else (*base, "cell")
                dym = did_you_mean(label, list(model.cells))
                issue(
                    path,
                    f"unknown cell {label!r}",
                    dym or f"declare it under cells: (known: {', '.join(model.cells) or 'none'})",
                )
                bad_cell = True
        if bad_cell:
            continue
        at_text = r.at if r.at is not None else model.start
        at: float | None = None
        if at_text is not None:
            at_path = (*base, "at") if r.at is not None else ("start",)
            try:
                at = parse_time(at_text, now)
            except ValueError as e:
                issue(at_path, str(e), "write '2026-12-02T19:00', '+30 min' or 'now'")
                continue
            late = now - at
            if late > limit:
                issue(
                    at_path,
                    f"the start time is {_fmt_s(late)} in the past, beyond the misfire limit of {_fmt_s(limit)}",
                    "give a later time, or raise misfire_limit: if a late start is acceptable",
                )
                continue
        keys = [r.key] if r.replicates == 1 else [f"{r.key}-r{k + 1}" for k in range(r.replicates)]
        if r.key in by_entry or any(k in where_key for k in keys):
            issue((*base, "key"), f"key {r.key!r} is used twice", "give each run its own key")
            continue
        by_entry[r.key] = keys
        for k, key in enumerate(keys):
            cell = cells[k]
            preset = r.preset or (model.cells[cell].preset if cell is not None else None)
            where_key[key] = base
            planned.append(
                PlannedRun(
                    key=key,
                    protocol=proto_ref,
                    preset=preset,
                    cell=cell,
                    station=station_name,
                    channel=r.channel,
                    pool=pool,
                    replicate=k,
                    seed=r.seed + k,
                    priority=r.priority,
                    at=at,
                    after=[],
                )
            )
    # after: references -> expanded keys
    entry_of = {p.key: i for i, p in enumerate(planned)}
    for i, r in enumerate(model.runs):
        if r.key not in by_entry:
            continue
        deps: list[str] = []
        for j, a in enumerate(r.after):
            if a in by_entry:
                deps.extend(by_entry[a])
            elif a in entry_of:
                deps.append(a)
            else:
                dym = did_you_mean(a, list(by_entry) + list(entry_of))
                issue(("runs", i, "after", j), f"no run {a!r} in this campaign", dym or "name a key of runs:")
        for key in by_entry[r.key]:
            planned[entry_of[key]].after = list(dict.fromkeys(deps))
    if issues:
        raise CampaignError(issues)
    _check_cycles(planned, model, pos, source, issues)
    if issues:
        raise CampaignError(issues)
    _check_overlaps(planned, protocols, where_key, pos, source, issues)
    if preflight:
        _preflight(planned, protocols, stations, where_key, pos, source, issues)
    if issues:
        raise CampaignError(issues)
    camp._planned = planned
    return camp


def load_campaign(path: str | Path, *, now: float | None = None, preflight: bool = True) -> Campaign:
    """Load and validate a campaign file (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise CampaignError.single(str(p), "no such campaign file", "check the path (a YAML file with runs:)")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise CampaignError.single(str(p), f"cannot read the file: {e}", "check the file") from None
    return load_campaign_text(text, source=str(p), folder=p.resolve().parent, now=now, preflight=preflight)


def campaign_json_schema() -> dict[str, Any]:
    schema = CampaignModel.model_json_schema()
    schema["title"] = "labctl campaign"
    return schema


def _fmt_s(s: float) -> str:
    from labctl.core.formatting import fmt_duration

    return fmt_duration(s)


def _protocol_ref(name: str, folder: Path) -> str:
    """A protocol reference as stored: a library name stays a name, a file becomes an absolute path."""
    p = Path(name)
    if not p.is_absolute():
        p = folder / name
    if p.is_file():
        return str(p.resolve())
    return name


def _load_protocol(ref: str, report: Any) -> Any:
    from labctl.protocols import library, load_protocol

    try:
        return load_protocol(ref)
    except ProtocolError as e:
        if not Path(ref).exists():
            dym = did_you_mean(ref, list(library()))
            report(
                f"unknown protocol {ref!r}",
                (dym + " " if dym else "") + "give a library protocol's name or a file relative to the campaign",
            )
        else:
            report(f"the protocol does not validate: {e.issues[0]}", "fix the protocol file")
        return None


def _check_cycles(
    planned: list[PlannedRun], model: CampaignModel, pos: Positions, source: str, issues: list[Issue]
) -> None:
    deps = {p.key: p.after for p in planned}
    state: dict[str, int] = {}
    entry_index = {r.key: i for i, r in enumerate(model.runs)}

    def entry_for(key: str) -> int:
        for k, i in entry_index.items():
            if key == k or key.startswith(k + "-r"):
                return i
        return 0

    def visit(k: str, stack: list[str]) -> list[str] | None:
        state[k] = 1
        for d in deps.get(k, []):
            if state.get(d) == 1:
                return [*stack[stack.index(d) :], d] if d in stack else [k, d]
            if state.get(d) is None:
                found = visit(d, [*stack, d])
                if found:
                    return found
        state[k] = 2
        return None

    for p in planned:
        if state.get(p.key) is None:
            cyc = visit(p.key, [p.key])
            if cyc:
                i = entry_for(cyc[0])
                issues.append(
                    _issue(
                        None,
                        pos,
                        source,
                        ("runs", i, "after"),
                        f"after: makes a cycle: {' -> '.join(cyc)}",
                        "a run cannot wait, directly or not, for itself: remove one of these after: entries",
                    )
                )
                return


def _ancestors(planned: list[PlannedRun]) -> dict[str, set[str]]:
    deps = {p.key: set(p.after) for p in planned}
    out: dict[str, set[str]] = {}

    def anc(k: str) -> set[str]:
        if k not in out:
            out[k] = set()
            acc: set[str] = set()
            for d in deps.get(k, ()):
                acc |= {d} | anc(d)
            out[k] = acc
        return out[k]

    for k in deps:
        anc(k)
    return out


def _check_overlaps(
    planned: list[PlannedRun],
    protocols: dict[str, Any],
    where_key: dict[str, tuple[Any, ...]],
    pos: Positions,
    source: str,
    issues: list[Issue],
) -> None:
    """Two runs pinned to one channel must be ordered (after:) or apart in time by the first's longest duration."""
    anc = _ancestors(planned)
    pinned: dict[tuple[str, str], list[PlannedRun]] = {}
    for p in planned:
        if p.channel is not None:
            pinned.setdefault((p.station, p.channel), []).append(p)
    for (_, ch), group in pinned.items():
        for a_i, a in enumerate(group):
            for b in group[a_i + 1 :]:
                if a.key in anc[b.key] or b.key in anc[a.key]:
                    continue
                if a.at is not None and b.at is not None:
                    first, second = (a, b) if a.at <= b.at else (b, a)
                    proto = protocols.get(first.protocol)
                    longest = getattr(getattr(proto, "safety", None), "max_duration", None)
                    if (
                        longest is not None
                        and first.at is not None
                        and second.at is not None
                        and first.at + float(longest) <= second.at
                    ):
                        continue
                line, col = _where(pos, *where_key[b.key], "channel")
                issues.append(
                    Issue(
                        source,
                        line,
                        col,
                        f"runs[{where_key[b.key][1]}].channel",
                        f"runs {a.key} and {b.key} are both pinned to channel {ch} and may run at the same time",
                        "give them a pool: of channels, order them with after:, or start the second after the "
                        "first's max_duration",
                    )
                )
                return


def channel_is_simulated(station: Any, channel: str) -> bool:
    """The channel's potentiostat is the simulator (its cell comes from a preset)."""
    spec = station.channels[channel]
    return bool(spec.potentiostat is not None and station.instruments[spec.potentiostat].driver == "sim")


def channel_is_cycler(station: Any, channel: str) -> bool:
    """The channel is a battery cycler's channel (the cycler runs the whole protocol itself)."""
    return station.channels[channel].cycler is not None


def _config(station: Any, spec: Any) -> tuple[Any, ...]:
    """What preflight depends on in a channel: its instruments' drivers, options and limits."""
    out: list[Any] = []
    for role in ("potentiostat", "stage", "dip_coater", "cycler"):
        name = getattr(spec, role)
        inst = None if name is None else station.instruments[name]
        out.append(None if inst is None else repr(inst.model_dump()))
    return tuple(out)


def _preflight(
    planned: list[PlannedRun],
    protocols: dict[str, Any],
    stations: dict[str, Any],
    where_key: dict[str, tuple[Any, ...]],
    pos: Positions,
    source: str,
    issues: list[Issue],
) -> None:
    """Every protocol against every channel it may run on (simulated channels are built and checked by
    the engine's preflight; a hardware channel's instrument is checked by its worker before the run starts)."""
    from labctl.app.controller import SimSettings, UserError, build_sim_channel, close_devices, protocol_needs
    from labctl.core.clock import VirtualClock
    from labctl.engine.runner import Engine, PreflightError

    done: set[tuple[Any, ...]] = set()
    reported: set[str] = set()
    for p in planned:
        proto = protocols.get(p.protocol)
        if proto is None:
            continue
        st = stations[p.station]
        entry = where_key[p.key]
        for ch in p.pool or [p.channel or ""]:
            spec = st.channels[ch]
            sig = (p.protocol, p.preset, p.seed if p.preset is None else 0, p.station, _config(st, spec))
            if sig in done or p.key in reported:
                continue
            done.add(sig)
            needs = protocol_needs(proto)
            problem = None
            if spec.cycler is not None:
                problem = _cycler_refusal(proto, st, p.station, ch)
            elif needs["stage"] and spec.stage is None:
                problem = f"channel {ch} of station {p.station} has no temperature stage, and the protocol needs one"
            elif needs["dip_coater"] and spec.dip_coater is None:
                problem = f"channel {ch} of station {p.station} has no dip coater, and the protocol needs one"
            elif channel_is_simulated(st, ch):
                if p.preset is None:
                    problem = (
                        f"channel {ch} is simulated and run {p.key} has no preset: give preset: (or a cell with one)"
                    )
                else:
                    clock = VirtualClock()
                    try:
                        devices = build_sim_channel(proto, clock, SimSettings(p.preset, p.seed, p.replicate))
                    except (ProtocolError, UserError) as e:
                        first = e.issues[0] if isinstance(e, ProtocolError) else e
                        line, col = _where(pos, *entry, "preset")
                        issues.append(
                            Issue(source, line, col, f"runs[{entry[1]}].preset", f"preset {p.preset!r}: {first}", "")
                        )
                        reported.add(p.key)
                        continue
                    try:
                        Engine(proto, devices, clock).preflight()
                    except PreflightError as e:
                        problem = f"on channel {ch}: {e}"
                    finally:
                        close_devices(devices)
            if problem:
                line, col = _where(pos, *entry, "protocol")
                issues.append(Issue(source, line, col, f"runs[{entry[1]}].protocol", problem, ""))
                reported.add(p.key)


def _cycler_refusal(proto: Any, station: Any, station_name: str, channel: str) -> str | None:
    """Why ``proto`` cannot run on cycler channel ``channel`` (the first step the cycler cannot run,
    with a potentiostat channel to pin it to instead), or None when it can."""
    from labctl.app.cycler_translate import translate

    try:
        translate(proto)
    except ProtocolError as e:
        first = e.issues[0]
        where = f"{Path(first.source).name}:{first.line}:{first.col}" if first.line is not None else first.source
        others = [c for c, sp in station.channels.items() if sp.cycler is None]
        instead = (
            f"pin it to a potentiostat channel (channel: {others[0]}, or pool: [{', '.join(others[:4])}])"
            if others
            else "run it on a potentiostat channel (this station has none: add one, or another station)"
        )
        more = f" (and {len(e.issues) - 1} more)" if len(e.issues) > 1 else ""
        return (
            f"channel {channel} of station {station_name} is a battery-cycler channel "
            f"({station.channels[channel].cycler}), which cannot run step {first.field} ({where}): "
            f"{first.message}{more}; {instead}"
        )
    return None
