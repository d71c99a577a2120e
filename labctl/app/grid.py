"""The live channel grid behind ``labctl status``: what every channel is doing now.

One :class:`ChannelRow` per channel that holds a planned run (claimed, running, paused) and
per run being recorded outside a campaign: its cell, run, step, cycle, last voltage and
current, elapsed test time, an estimated end, and how old its heartbeat is.  A run whose
owner is gone shows as ``interrupted`` (see :mod:`labctl.db.liveness`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa


@dataclass
class ChannelRow:
    station: str | None
    channel: str
    cell: str | None
    run_id: int | None
    protocol: str | None
    status: str  # running | paused | claimed | interrupted
    step: str | None  # the current step's label or kind
    step_index: int | None
    cycle: int | None
    voltage: float | None
    current: float | None
    elapsed_s: float | None
    estimated_end_unix: float | None
    heartbeat_age_s: float | None
    planned: str | None = None  # CAMPAIGN:KEY

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_duration(steps: Any) -> float | None:
    """Planned test time of ``steps`` (s) from their durations, repeats and limits; None when unbounded."""
    total = 0.0
    for s in steps:
        kind = getattr(s, "kind", None)
        if kind == "repeat":
            body = estimate_duration(s.steps)
            n = s.times if s.times is not None else s.max_cycles
            est = None if body is None or n is None else body * n
            if s.max_duration is not None:
                est = s.max_duration if est is None else min(est, s.max_duration)
            if est is None:
                return None
            total += est
        elif getattr(s, "steps", None):  # a group
            sub = estimate_duration(s.steps)
            if sub is None:
                return None
            total += sub
        elif kind == "dip_coat":
            total += float(s.immersion or 0) + float(s.rinse or 0)
        elif kind == "aurbach_ce":
            i = abs(float(s.current or 0)) or None
            if i is None:
                return None
            total += (s.reservoir + 2 * s.cycles * s.cycle_capacity) / i + float(s.max_strip_duration or 0)
        elif getattr(s, "duration", None) is not None:
            total += float(s.duration)
    return total


def channel_grid(db: Any, *, now: float | None = None) -> list[ChannelRow]:
    """Every busy channel of ``db`` (a :class:`labctl.db.Database`), sorted by station and channel."""
    from labctl.db import campaigns as q
    from labctl.db.liveness import effective_status
    from labctl.db.schema import SAMPLE_ID_BITS, cells, protocols, runs, samples, steps

    now = time.time() if now is None else now
    out: list[ChannelRow] = []
    held = {int(r["run_id"]): r for r in q.queue(db, states=("running", "paused", "claimed")) if r["run_id"]}
    claimed = [r for r in q.queue(db, states=("claimed",)) if r["run_id"] is None]
    with db.transaction() as conn:
        rows = conn.execute(
            sa.select(
                runs.c.id,
                runs.c.status,
                runs.c.channel,
                runs.c.started_unix,
                runs.c.n_samples,
                runs.c.owner,
                runs.c.heartbeat_unix,
                runs.c.meta,
                protocols.c.name,
                protocols.c.text,
                cells.c.label,
            )
            .select_from(
                runs.join(protocols, runs.c.protocol_id == protocols.c.id).outerjoin(
                    cells, runs.c.cell_id == cells.c.id
                )
            )
            .where(sa.or_(runs.c.status == "running", runs.c.id.in_(list(held) or [-1])))
        ).all()
        for r in rows:
            status, _ = effective_status(r.status, r.owner, r.heartbeat_unix)
            p = held.get(int(r.id))
            if p is not None and p["state"] == "paused":
                status = "paused"
            if status not in ("running", "paused", "interrupted"):
                continue
            st = conn.execute(
                sa.select(steps.c.step_index, steps.c.kind, steps.c.label, steps.c.cycle)
                .where(steps.c.run_id == r.id)
                .order_by(steps.c.step_index.desc())
                .limit(1)
            ).first()
            last = None
            if r.n_samples:
                last = conn.execute(
                    sa.select(samples.c.t, samples.c.voltage, samples.c.current, samples.c.cycle).where(
                        samples.c.id == (int(r.id) << SAMPLE_ID_BITS) + int(r.n_samples) - 1
                    )
                ).first()
            est_end = None
            try:
                from labctl.protocols import load_protocol_text

                d = estimate_duration(load_protocol_text(r.text, source=f"run-{r.id}").steps)
                est_end = None if d is None else float(r.started_unix) + d
            except Exception:
                est_end = None
            meta = r.meta or {}
            out.append(
                ChannelRow(
                    station=(p or {}).get("station") or meta.get("station"),
                    channel=str(r.channel),
                    cell=r.label,
                    run_id=int(r.id),
                    protocol=r.name,
                    status=status,
                    step=None if st is None else (st.label or st.kind),
                    step_index=None if st is None else int(st.step_index),
                    cycle=(None if st is None else int(st.cycle)) if last is None else int(last.cycle),
                    voltage=None if last is None else float(last.voltage),
                    current=None if last is None else float(last.current),
                    elapsed_s=None if last is None else float(last[0]),
                    estimated_end_unix=est_end,
                    heartbeat_age_s=None if r.heartbeat_unix is None else max(0.0, now - float(r.heartbeat_unix)),
                    planned=None if p is None else f"{p['campaign']}:{p['key']}",
                )
            )
    for c in claimed:
        out.append(
            ChannelRow(
                station=c["station"],
                channel=str(c["channel"]),
                cell=(c["spec"] or {}).get("cell"),
                run_id=None,
                protocol=(c["spec"] or {}).get("protocol"),
                status="claimed",
                step=None,
                step_index=None,
                cycle=None,
                voltage=None,
                current=None,
                elapsed_s=None,
                estimated_end_unix=None,
                heartbeat_age_s=None if c["heartbeat_unix"] is None else max(0.0, now - float(c["heartbeat_unix"])),
                planned=f"{c['campaign']}:{c['key']}",
            )
        )
    out.sort(key=lambda row: (row.station or "", row.channel))
    return out
