"""The channel grid: one row per channel with its latest run, live.

``channel_grid(db)`` answers "are the cells alive?" for every channel the database knows:
the channel's latest run (a channel is ``(station, channel)``; the station comes from
``runs.meta["station"]`` when the run was started from a station file), its live status,
the step and cycle it is in, the last committed sample's voltage and current, how long it
has run and when it should end.

It stays cheap on big databases: the latest run per channel is one ``GROUP BY`` over the
runs table, the step is found through the ``(run_id, step_index)`` unique index and the
last sample by its key (``samples.id = run_id * 2**40 + n_samples - 1``, committed in the
same transaction as ``runs.n_samples``), so the cost does not grow with the samples.

Statuses: the stored status (``completed``, ``aborted``, ``failed``, ``safety``,
``interrupted``) or, for a run marked ``running``: ``interrupted`` when its owner is gone
(:mod:`labctl.db.liveness`), ``stalled`` when its owner is alive but its writer has not
refreshed the heartbeat for ``stall_after`` seconds (the writer beats every 5 s and with
every commit, so a silent minute means the worker is stuck), else ``running``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from labctl.db.liveness import effective_status
from labctl.db.schema import SAMPLE_ID_BITS, campaigns, cells, planned_runs, protocols, runs, samples, steps

#: A running run whose heartbeat is older than this (s), its owner still alive, is ``stalled``.
STALL_AFTER = 30.0

__all__ = ["STALL_AFTER", "ChannelRow", "channel_grid", "expected_duration"]


@dataclass(frozen=True)
class ChannelRow:
    """One channel of the grid (times in s; ``estimated_end_unix`` and the sample fields may be None)."""

    station: str | None
    channel: str
    cell: str | None
    run_id: int
    protocol: str
    status: str
    step: str | None  # the current (last started) step: its label, else kind and path
    step_index: int | None
    cycle: int | None
    voltage: float | None
    current: float | None
    elapsed_s: float
    estimated_end_unix: float | None
    heartbeat_age_s: float | None
    planned: str | None = None  # CAMPAIGN:KEY when the run is a campaign's planned run
    n_samples: int = 0  # committed samples of the run (grows while it records)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def channel_grid(db: Any, *, now: float | None = None, stall_after: float = STALL_AFTER) -> list[ChannelRow]:
    """One :class:`ChannelRow` per channel of ``db`` (a :class:`labctl.db.Database`), sorted by
    station then channel (natural order: ``ch2`` before ``ch10``)."""
    now = time.time() if now is None else float(now)
    station_expr = runs.c.meta["station"].as_string()
    latest = sa.select(sa.func.max(runs.c.id).label("id")).group_by(runs.c.channel, station_expr).subquery("latest")
    q = (
        sa.select(
            runs.c.id,
            runs.c.status,
            runs.c.channel,
            station_expr.label("station"),
            runs.c.started_unix,
            runs.c.ended_unix,
            runs.c.n_samples,
            runs.c.owner,
            runs.c.heartbeat_unix,
            runs.c.protocol_id,
            protocols.c.name.label("protocol"),
            cells.c.label.label("cell"),
        )
        .select_from(
            runs.join(latest, latest.c.id == runs.c.id)
            .join(protocols, runs.c.protocol_id == protocols.c.id)
            .outerjoin(cells, runs.c.cell_id == cells.c.id)
        )
        .order_by(runs.c.id)
    )
    out: list[ChannelRow] = []
    with db.transaction() as conn:
        rows = conn.execute(q).all()
        plans = _planned(conn, [int(r.id) for r in rows])
        for r in rows:
            run_id = int(r.id)
            st = conn.execute(
                sa.select(steps.c.step_index, steps.c.kind, steps.c.label, steps.c.path, steps.c.cycle)
                .where(steps.c.run_id == run_id)
                .order_by(steps.c.step_index.desc())
                .limit(1)
            ).first()
            voltage = current = None
            n = int(r.n_samples or 0)
            if n > 0:
                last = conn.execute(
                    sa.select(samples.c.voltage, samples.c.current).where(
                        samples.c.id == (run_id << SAMPLE_ID_BITS) + n - 1
                    )
                ).first()
                if last is not None:
                    voltage, current = _finite(last.voltage), _finite(last.current)
            status = _status(r, now, stall_after)
            plan = plans.get(run_id)
            if plan is not None and plan[1] == "paused" and status == "running":
                status = "paused"  # held at a step boundary by `labctl pause`, cell off
            end = r.ended_unix if r.status != "running" else None
            elapsed = (float(end) if end is not None else now) - float(r.started_unix)
            estimated = None
            total = _protocol_duration(db, conn, int(r.protocol_id))
            if total is not None:
                estimated = float(r.started_unix) + total
            out.append(
                ChannelRow(
                    station=r.station,
                    channel=str(r.channel),
                    cell=r.cell,
                    run_id=run_id,
                    protocol=str(r.protocol),
                    status=status,
                    step=None if st is None else (st.label or f"{st.kind} {st.path}"),
                    step_index=None if st is None else int(st.step_index),
                    cycle=None if st is None else int(st.cycle),
                    voltage=voltage,
                    current=current,
                    elapsed_s=max(0.0, elapsed),
                    estimated_end_unix=estimated,
                    heartbeat_age_s=None if r.heartbeat_unix is None else max(0.0, now - float(r.heartbeat_unix)),
                    planned=None if plan is None else plan[0],
                    n_samples=n,
                )
            )
    out.sort(key=lambda c: (_natural(c.station or ""), _natural(c.channel)))
    return out


def _planned(conn: Any, run_ids: list[int]) -> dict[int, tuple[str, str]]:
    """run id -> ("CAMPAIGN:KEY", planned state) for the runs of campaigns among ``run_ids``."""
    if not run_ids:
        return {}
    q = (
        sa.select(planned_runs.c.run_id, campaigns.c.name, planned_runs.c.key, planned_runs.c.state)
        .select_from(planned_runs.join(campaigns, planned_runs.c.campaign_id == campaigns.c.id))
        .where(planned_runs.c.run_id.in_(run_ids))
    )
    return {int(r.run_id): (f"{r.name}:{r.key}", str(r.state)) for r in conn.execute(q)}


def _status(r: Any, now: float, stall_after: float) -> str:
    status, _why = effective_status(str(r.status), r.owner, r.heartbeat_unix)
    if status == "running" and r.heartbeat_unix is not None and now - float(r.heartbeat_unix) > stall_after:
        return "stalled"
    return status


def _finite(x: Any) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _natural(s: str) -> tuple:
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s))


# The expected duration of a protocol depends only on its text: cached by the text's sha256.
_DURATIONS: dict[str, float | None] = {}


def _protocol_duration(db: Any, conn: Any, protocol_id: int) -> float | None:
    sha = conn.execute(sa.select(protocols.c.sha256).where(protocols.c.id == protocol_id)).scalar()
    if sha is None:
        return None
    if sha not in _DURATIONS:
        text = conn.execute(sa.select(protocols.c.text).where(protocols.c.id == protocol_id)).scalar()
        total: float | None = None
        try:
            from labctl.protocols import load_protocol_text

            total = expected_duration(load_protocol_text(text or ""))
        except Exception:  # a protocol this labctl cannot read has no estimate
            total = None
        if len(_DURATIONS) > 1000:
            _DURATIONS.clear()
        _DURATIONS[sha] = total
    return _DURATIONS[sha]


def expected_duration(protocol: Any) -> float | None:
    """Seconds a protocol takes when every step runs to its planned end (durations, charges at
    the set current, sweeps at their scan rate, ``repeat`` counts; an ``until`` loop counts its
    bound).  None when some step's length is not known in advance (a step ended only by a
    voltage limit, a temperature step waiting for its band)."""
    return _steps_duration(protocol.steps)


def _steps_duration(step_list: Any) -> float | None:
    total = 0.0
    for s in step_list:
        d = _step_duration(s)
        if d is None:
            return None
        total += d
    return total


def _step_duration(s: Any) -> float | None:
    kind = s.kind
    if kind == "group":
        return _steps_duration(s.steps)
    if kind == "repeat":
        body = _steps_duration(s.steps)
        if body is None:
            return None
        n = s.times if s.times is not None else s.max_cycles
        bound = None if n is None else n * body
        if s.max_duration is not None:
            bound = s.max_duration if bound is None else min(bound, s.max_duration)
        return bound
    if kind == "rest":
        return float(s.duration)
    if kind == "potentiostatic":
        return float(s.duration)
    if kind == "galvanostatic":
        cands = []
        if s.duration is not None:
            cands.append(float(s.duration))
        if s.capacity is not None and s.current:
            cands.append(abs(float(s.capacity) / float(s.current)))
        return min(cands) if cands else None
    if kind == "aurbach_ce":
        i = abs(float(s.current or 0.0))
        if not i:
            return None
        # reservoir plated, cycles of strip + plate, then the reservoir stripped back (at most the bound)
        final = min(float(s.reservoir) / i, float(s.max_strip_duration))
        return float(s.reservoir) / i + 2 * s.cycles * float(s.cycle_capacity) / i + final
    if kind == "tafel":
        return float(s.rest) + 2 * float(s.span) / float(s.scan_rate)
    if kind == "lsv":
        return abs(float(s.end) - float(s.start)) / float(s.scan_rate)
    if kind == "cv":
        one = abs(s.vertex1 - s.start) + abs(s.vertex2 - s.vertex1) + abs(s.start - s.vertex2)
        return max(1, int(s.cycles)) * one / float(s.scan_rate)
    if kind == "eis":
        # points log-spaced; each takes about two periods and at least half a second
        decades = abs(math.log10(s.f_end / s.f_start))
        npts = max(1, round(decades * s.points_per_decade)) + 1
        lo, hi = math.log10(s.f_start), math.log10(s.f_end)
        freqs = [10 ** (lo + (hi - lo) * k / (npts - 1)) for k in range(npts)]
        return float(sum(max(2.0 / f, 0.5) for f in freqs))
    if kind == "dip_coat":
        return float(s.immersion) + float(s.rinse)
    return None  # temperature: waits for the band; unknown kinds
