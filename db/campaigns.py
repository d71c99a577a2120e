"""The campaign queue: campaigns, their planned runs, and the state transitions between them.

A planned run moves through these states (every move is one conditional UPDATE, so two
workers, threads or PCs never both win the same transition, on SQLite and PostgreSQL)::

    waiting --(its `at:` came and every `after:` run is done)--> due --(a worker claims it)--> claimed
    claimed --(the run row is created, in the same transaction)--> running <--> paused
    running --> done | failed | cancelled | interrupted
    interrupted --(a worker resumes it)--> running;   claimed with its worker gone --> due
    waiting --(an `after:` run failed or was cancelled, or its start was missed)--> failed

``start_ok`` says the run's start time has come (the scheduler sets it when the run's job
fires within the campaign's misfire limit); runs without ``at:`` have it from the start.
``control`` carries a user's pause/resume/cancel request to the worker running the run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from labctl.db.liveness import owner_gone
from labctl.db.schema import MAX_RUN_ID, campaigns, planned_runs, runs

#: States a planned run never leaves.
FINAL_STATES = ("done", "failed", "cancelled")
#: States in which a worker holds the run.
HELD_STATES = ("claimed", "running", "paused")
CONTROLS = ("pause", "resume", "cancel")


class CampaignExists(ValueError):
    """A campaign of that name is already in the database."""


def add_campaign(
    db: Any,
    *,
    name: str,
    text: str,
    sha256: str,
    source: str | None,
    misfire_limit_s: float,
    runs_: Sequence[dict[str, Any]],
    now: float | None = None,
) -> tuple[int, dict[str, int]]:
    """Store a campaign and its planned runs in one transaction; ``(campaign_id, {key: planned_id})``.

    Each of ``runs_`` has: key, spec (a JSON-able dict), station, channel, pool, priority,
    at (unix or None), after (list of keys).  Nothing is stored when the name is taken.
    """
    now = time.time() if now is None else now
    with db.transaction(write=True) as conn:
        if conn.execute(sa.select(campaigns.c.id).where(campaigns.c.name == name)).first() is not None:
            raise CampaignExists(name)
        cid = int(
            conn.execute(
                campaigns.insert().values(
                    name=name,
                    text=text,
                    sha256=sha256,
                    source=source,
                    created_unix=now,
                    misfire_limit_s=float(misfire_limit_s),
                )
            ).inserted_primary_key[0]
        )
        ids: dict[str, int] = {}
        for r in runs_:
            start_ok = r.get("at") is None
            state = "due" if start_ok and not r.get("after") else "waiting"
            ids[r["key"]] = int(
                conn.execute(
                    planned_runs.insert().values(
                        campaign_id=cid,
                        key=r["key"],
                        spec=r["spec"],
                        station=r["station"],
                        channel=r.get("channel"),
                        pool=r.get("pool"),
                        state=state,
                        priority=int(r.get("priority") or 0),
                        not_before_unix=r.get("at"),
                        start_ok=start_ok,
                        after=list(r.get("after") or []),
                        created_unix=now,
                        attempts=0,
                    )
                ).inserted_primary_key[0]
            )
    return cid, ids


def campaign(db: Any, ref: int | str) -> dict[str, Any]:
    """A campaign by id or name; ``KeyError`` when there is none."""
    col = campaigns.c.id if isinstance(ref, int) else campaigns.c.name
    with db.transaction() as conn:
        row = conn.execute(sa.select(campaigns).where(col == ref)).mappings().first()
    if row is None:
        raise KeyError(ref)
    return dict(row)


def campaigns_list(db: Any) -> list[dict[str, Any]]:
    with db.transaction() as conn:
        return [dict(r) for r in conn.execute(sa.select(campaigns).order_by(campaigns.c.id)).mappings()]


def _select() -> sa.Select:
    return sa.select(planned_runs, campaigns.c.name.label("campaign")).select_from(
        planned_runs.join(campaigns, planned_runs.c.campaign_id == campaigns.c.id)
    )


def queue(
    db: Any, *, campaign_id: int | None = None, states: Iterable[str] | None = None, station: str | None = None
) -> list[dict[str, Any]]:
    """Planned runs (with their campaign's name), in campaign then insertion order."""
    q = _select().order_by(planned_runs.c.campaign_id, planned_runs.c.id)
    if campaign_id is not None:
        q = q.where(planned_runs.c.campaign_id == campaign_id)
    if states is not None:
        q = q.where(planned_runs.c.state.in_(list(states)))
    if station is not None:
        q = q.where(planned_runs.c.station == station)
    with db.transaction() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def planned(db: Any, planned_id: int) -> dict[str, Any]:
    """One planned run; ``KeyError`` when there is none."""
    with db.transaction() as conn:
        row = conn.execute(_select().where(planned_runs.c.id == planned_id)).mappings().first()
    if row is None:
        raise KeyError(planned_id)
    return dict(row)


def find(db: Any, ref: str) -> dict[str, Any]:
    """A planned run by ``CAMPAIGN:KEY``, by ``KEY`` (unique across campaigns), or by run id (digits).

    Raises ``KeyError`` (nothing matches) or ``LookupError`` (a KEY in several campaigns).
    """
    ref = ref.strip()
    q = _select()
    if ref.isascii() and ref.isdigit():
        if int(ref) > MAX_RUN_ID:  # no such run (and more than SQL's BIGINT holds)
            raise KeyError(ref)
        q = q.where(planned_runs.c.run_id == int(ref))
    elif ":" in ref:
        camp, _, key = ref.rpartition(":")
        q = q.where(campaigns.c.name == camp, planned_runs.c.key == key)
    else:
        q = q.where(planned_runs.c.key == ref)
    with db.transaction() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings()]
    if not rows:
        raise KeyError(ref)
    if len(rows) > 1:
        raise LookupError(f"{ref!r} names runs in campaigns {', '.join(sorted({r['campaign'] for r in rows}))}")
    return rows[0]


def transition(db: Any, planned_id: int, from_states: Sequence[str], to_state: str, **values: Any) -> bool:
    """Move a planned run to ``to_state`` if it is in one of ``from_states`` (atomic); True if it moved."""
    with db.transaction(write=True) as conn:
        return _transition(conn, planned_id, from_states, to_state, **values)


def _transition(conn: Connection, planned_id: int, from_states: Sequence[str], to_state: str, **values: Any) -> bool:
    res = conn.execute(
        planned_runs.update()
        .where(planned_runs.c.id == planned_id, planned_runs.c.state.in_(list(from_states)))
        .values(state=to_state, **values)
    )
    return bool(res.rowcount == 1)


def start_time_came(db: Any, planned_id: int) -> bool:
    """The scheduler's job for this run fired in time: its start is allowed (then :func:`release_ready`)."""
    with db.transaction(write=True) as conn:
        res = conn.execute(
            planned_runs.update()
            .where(planned_runs.c.id == planned_id, planned_runs.c.state == "waiting")
            .values(start_ok=True)
        )
        moved = bool(res.rowcount == 1)
        cid = conn.execute(sa.select(planned_runs.c.campaign_id).where(planned_runs.c.id == planned_id)).scalar()
    if cid is not None:
        release_ready(db, campaign_id=int(cid))
    return moved


def start_missed(db: Any, planned_id: int, reason: str, now: float | None = None) -> bool:
    """The run's start was missed beyond the misfire limit: it fails, with ``reason``, never silently."""
    now = time.time() if now is None else now
    moved = transition(db, planned_id, ("waiting", "due"), "failed", reason=reason, ended_unix=now)
    if moved:
        row = planned(db, planned_id)
        release_ready(db, campaign_id=int(row["campaign_id"]))
    return moved


def release_ready(db: Any, *, campaign_id: int | None = None, now: float | None = None) -> list[int]:
    """Waiting runs whose start came and whose ``after:`` runs are all done become due; those whose
    ``after:`` run failed or was cancelled fail with that reason.  Returns the ids made due."""
    now = time.time() if now is None else now
    released: list[int] = []
    with db.transaction(write=True) as conn:
        waiting = sa.select(planned_runs.c.id).where(planned_runs.c.state == "waiting")
        if campaign_id is not None:
            waiting = waiting.where(planned_runs.c.campaign_id == campaign_id)
        if conn.execute(waiting.limit(1)).first() is None:
            return released
        q = sa.select(planned_runs.c.id, planned_runs.c.campaign_id, planned_runs.c.key, planned_runs.c.state)
        if campaign_id is not None:
            q = q.where(planned_runs.c.campaign_id == campaign_id)
        state = {(r.campaign_id, r.key): r.state for r in conn.execute(q)}
        changed = True
        while changed:
            changed = False
            wq = sa.select(
                planned_runs.c.id, planned_runs.c.campaign_id, planned_runs.c.after, planned_runs.c.start_ok
            ).where(planned_runs.c.state == "waiting")
            if campaign_id is not None:
                wq = wq.where(planned_runs.c.campaign_id == campaign_id)
            for r in conn.execute(wq).all():
                deps = [(r.campaign_id, k) for k in (r.after or [])]
                bad = [k for k in deps if state.get(k) in ("failed", "cancelled")]
                if bad:
                    why = "; ".join(f"after: {k[1]} ended {state[k]}" for k in bad)
                    if _transition(conn, r.id, ("waiting",), "failed", reason=why, ended_unix=now):
                        changed = True
                        _set_state(state, conn, r.id, "failed")
                elif (
                    r.start_ok
                    and all(state.get(k) == "done" for k in deps)
                    and _transition(conn, r.id, ("waiting",), "due")
                ):
                    released.append(int(r.id))
                    _set_state(state, conn, r.id, "due")
    return released


def _set_state(state: dict[tuple[int, str], str], conn: Connection, planned_id: int, value: str) -> None:
    r = conn.execute(
        sa.select(planned_runs.c.campaign_id, planned_runs.c.key).where(planned_runs.c.id == planned_id)
    ).one()
    state[(r.campaign_id, r.key)] = value


def due_for(db: Any, station: str, channels: Iterable[str], *, page: int = 64) -> list[dict[str, Any]]:
    """Due runs a worker of ``station`` may start on one of ``channels``: highest priority first,
    then the earliest start time, then campaign order.  Each row gets ``fits``: the channels it may take.

    Read a page at a time, and only until there are as many as free channels (a queue of
    thousands costs one small query per hand-over, not a scan)."""
    free = set(channels)
    if not free:
        return []
    q = (
        _select()
        .where(planned_runs.c.state == "due", planned_runs.c.station == station)
        .order_by(
            planned_runs.c.priority.desc(),
            planned_runs.c.not_before_unix.is_(None),
            planned_runs.c.not_before_unix,
            planned_runs.c.id,
        )
    )
    out: list[dict[str, Any]] = []
    offset = 0
    with db.transaction() as conn:
        while len(out) < len(free):
            rows = [dict(r) for r in conn.execute(q.limit(page).offset(offset)).mappings()]
            for r in rows:
                fits = [c for c in (r["pool"] or [r["channel"]]) if c in free]
                if fits:
                    r["fits"] = fits
                    out.append(r)
            if len(rows) < page:
                break
            offset += page
    return out


def claim(db: Any, planned_id: int, channel: str, owner: str, now: float | None = None) -> bool:
    """Claim a due run for ``channel``: only one claimer ever wins (``UPDATE ... WHERE state='due'``)."""
    now = time.time() if now is None else now
    with db.transaction(write=True) as conn:
        res = conn.execute(
            planned_runs.update()
            .where(planned_runs.c.id == planned_id, planned_runs.c.state == "due")
            .values(
                state="claimed",
                channel=channel,
                claimed_by=owner,
                claimed_unix=now,
                heartbeat_unix=now,
                attempts=planned_runs.c.attempts + 1,
            )
        )
        return bool(res.rowcount == 1)


def link_run(conn: Connection, planned_id: int, run_id: int, owner: str, now: float | None = None) -> None:
    """Inside the transaction that creates run ``run_id``: the claimed planned run becomes ``running``.

    Raises ``RuntimeError`` (rolling the run back) when the claim is no longer this owner's."""
    now = time.time() if now is None else now
    res = conn.execute(
        planned_runs.update()
        .where(
            planned_runs.c.id == planned_id,
            planned_runs.c.state == "claimed",
            planned_runs.c.claimed_by == owner,
        )
        .values(state="running", run_id=run_id, started_unix=now, heartbeat_unix=now)
    )
    if res.rowcount != 1:
        raise RuntimeError(f"planned run {planned_id} is no longer claimed by {owner}")


def finish(db: Any, planned_id: int, state: str, reason: str, now: float | None = None) -> bool:
    """A held run ended: ``done``, ``failed``, ``cancelled`` or ``interrupted``; dependents are released."""
    now = time.time() if now is None else now
    moved = transition(
        db,
        planned_id,
        (*HELD_STATES, "interrupted"),
        state,
        reason=reason,
        ended_unix=now if state in FINAL_STATES else None,
        control=None,
    )
    if moved and state in FINAL_STATES:
        row = planned(db, planned_id)
        release_ready(db, campaign_id=int(row["campaign_id"]))
    return moved


def _close_interrupted_run(db: Any, run_id: int, reason: str, now: float) -> None:
    """End an interrupted run row (``aborted``, with an event) so it no longer reads as resumable."""
    from labctl.db.schema import events

    with db.transaction(write=True) as conn:
        row = conn.execute(
            sa.select(runs.c.status, runs.c.owner, runs.c.heartbeat_unix, runs.c.started_unix).where(
                runs.c.id == run_id
            )
        ).first()
        if row is None or row.status not in ("running", "interrupted"):
            return
        if row.status == "running" and not owner_gone(row.owner, row.heartbeat_unix):
            return  # someone still records it
        conn.execute(
            runs.update()
            .where(runs.c.id == run_id, runs.c.status.in_(["running", "interrupted"]))
            .values(status="aborted", end_reason=reason, ended_unix=row.heartbeat_unix or now)
        )
        t_last = conn.execute(sa.select(sa.func.max(events.c.t)).where(events.c.run_id == run_id)).scalar()
        conn.execute(
            events.insert().values(run_id=run_id, t=float(t_last or 0.0), kind="abort", message=reason, data=None)
        )


def set_control(db: Any, planned_id: int, control: str | None) -> bool:
    """Ask the worker holding the run to pause, resume or cancel it (False when no worker holds it)."""
    if control is not None and control not in CONTROLS:
        raise ValueError(control)
    with db.transaction(write=True) as conn:
        res = conn.execute(
            planned_runs.update()
            .where(planned_runs.c.id == planned_id, planned_runs.c.state.in_(HELD_STATES))
            .values(control=control)
        )
        return bool(res.rowcount == 1)


def cancel(db: Any, planned_id: int, reason: str = "cancelled by the user", now: float | None = None) -> str:
    """Cancel a planned run: at once when it has not started (``cancelled``), else by asking its worker
    (``requested``); ``final`` when it had already ended."""
    now = time.time() if now is None else now
    if transition(db, planned_id, ("waiting", "due", "interrupted"), "cancelled", reason=reason, ended_unix=now):
        row = planned(db, planned_id)
        if row["run_id"] is not None:  # an interrupted run that will not be resumed: it ends here
            _close_interrupted_run(db, int(row["run_id"]), f"interrupted; {reason} (not resumed)", now)
        release_ready(db, campaign_id=int(row["campaign_id"]))
        return "cancelled"
    if set_control(db, planned_id, "cancel"):
        return "requested"
    return "final"


def heartbeat(db: Any, planned_ids: Sequence[int], owner: str, now: float | None = None) -> None:
    if not planned_ids:
        return
    now = time.time() if now is None else now
    with db.transaction(write=True) as conn:
        conn.execute(
            planned_runs.update()
            .where(planned_runs.c.id.in_(list(planned_ids)), planned_runs.c.claimed_by == owner)
            .values(heartbeat_unix=now)
        )


def controls(db: Any, planned_ids: Sequence[int]) -> dict[int, str | None]:
    """The pending control request of each of ``planned_ids``."""
    if not planned_ids:
        return {}
    with db.transaction() as conn:
        rows = conn.execute(
            sa.select(planned_runs.c.id, planned_runs.c.control).where(planned_runs.c.id.in_(list(planned_ids)))
        ).all()
    return {int(r.id): r.control for r in rows}


def clear_control(db: Any, planned_id: int, control: str) -> None:
    with db.transaction(write=True) as conn:
        conn.execute(
            planned_runs.update()
            .where(planned_runs.c.id == planned_id, planned_runs.c.control == control)
            .values(control=None)
        )


def orphans(db: Any, station: str, *, stale_after: float | None = None) -> list[dict[str, Any]]:
    """Planned runs of ``station`` held by a worker that is gone (or left ``interrupted``), with the
    status of their run row (``run_status``)."""
    kw = {} if stale_after is None else {"stale_after": stale_after}
    rows = queue(db, states=(*HELD_STATES, "interrupted"), station=station)
    out = []
    for r in rows:
        if r["state"] != "interrupted" and not owner_gone(r["claimed_by"], r["heartbeat_unix"], **kw):
            continue
        r["run_status"] = None
        if r["run_id"] is not None:
            with db.transaction() as conn:
                r["run_status"] = conn.execute(sa.select(runs.c.status).where(runs.c.id == r["run_id"])).scalar()
        out.append(r)
    return out


def take_over(db: Any, planned_id: int, owner: str, from_states: Sequence[str], now: float | None = None) -> bool:
    """A worker takes over an orphaned run (to resume it): it becomes the run's claimer."""
    now = time.time() if now is None else now
    with db.transaction(write=True) as conn:
        res = conn.execute(
            planned_runs.update()
            .where(planned_runs.c.id == planned_id, planned_runs.c.state.in_(list(from_states)))
            .values(
                state="running",
                claimed_by=owner,
                claimed_unix=now,
                heartbeat_unix=now,
                attempts=planned_runs.c.attempts + 1,
            )
        )
        return bool(res.rowcount == 1)


def pending(db: Any, *, station: str | None = None, campaign_id: int | None = None) -> int:
    """How many planned runs have not ended (waiting, due, held or interrupted)."""
    q = sa.select(sa.func.count()).select_from(planned_runs).where(planned_runs.c.state.not_in(FINAL_STATES))
    if station is not None:
        q = q.where(planned_runs.c.station == station)
    if campaign_id is not None:
        q = q.where(planned_runs.c.campaign_id == campaign_id)
    with db.transaction() as conn:
        return int(conn.execute(q).scalar_one())
