"""Control requests for a running run: pause, resume, cancel.

Whoever asks (the dashboard, a CLI) never touches the engine: it writes a *request* into
the database, and the process that owns the run applies it (:class:`ControlWatcher`,
started by :func:`labctl.app.controller.run_protocol`).  A request is

* an event of the run (kind ``control``, data ``{"action", "seq", "source"}``), so the
  run's history says who asked for what and when;
* the ``control`` key of the run's ``meta``: ``{"action", "seq", "requested_unix"}``,
  the latest request, which the owner polls (``seq`` counts requests, so the same action
  twice is two requests);
* and, where the campaign queue exists (table ``planned_runs`` with ``run_id`` and
  ``control`` columns), ``planned_runs.control`` of the planned run that became this run.

The owner acknowledges with an event ``control_applied`` (data ``{"action", "seq"}``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from labctl.db.schema import events, runs

#: What can be asked of a running run.
ACTIONS = ("pause", "resume", "cancel")

__all__ = ["ACTIONS", "ControlError", "ControlRequest", "ControlWatcher", "pending_control", "request_control"]


class ControlError(ValueError):
    """A request that cannot be made: unknown action, or the run is not running."""


@dataclass(frozen=True)
class ControlRequest:
    run_id: int
    action: str
    seq: int
    requested_unix: float


def _planned_runs(conn: Any) -> sa.Table | None:
    """The campaign queue table, when this database has one with the columns control needs."""
    if not sa.inspect(conn).has_table("planned_runs"):
        return None
    table = sa.Table("planned_runs", sa.MetaData(), autoload_with=conn)
    return table if {"run_id", "control"} <= set(table.c.keys()) else None


def request_control(db: Any, run_id: int, action: str, *, source: str = "dashboard") -> ControlRequest:
    """Ask the owner of running run ``run_id`` to ``action`` it (one of :data:`ACTIONS`).

    Raises ``KeyError(run_id)`` for an unknown run and :class:`ControlError` for an unknown
    action or a run that is not running.  Everything is written in one transaction.
    """
    if action not in ACTIONS:
        raise ControlError(f"unknown action {action!r}; choose from {', '.join(ACTIONS)}")
    now = time.time()
    with db.transaction(write=True) as conn:
        row = conn.execute(
            sa.select(runs.c.status, runs.c.meta, runs.c.started_unix).where(runs.c.id == run_id)
        ).first()
        if row is None:
            raise KeyError(run_id)
        if row.status != "running":
            raise ControlError(f"run {run_id} is {row.status}: only a running run can be told to {action}")
        meta = dict(row.meta or {})
        cycler = meta.get("cycler")
        if action == "pause" and isinstance(cycler, dict) and not cycler.get("pause"):
            raise ControlError(
                f"run {run_id} runs on battery-cycler channel {cycler.get('instrument')} {cycler.get('address')}, "
                "whose vendor API has no pause: the job goes on; cancel stops it"
            )
        seq = int((meta.get("control") or {}).get("seq", 0)) + 1
        meta["control"] = {"action": action, "seq": seq, "requested_unix": now}
        conn.execute(runs.update().where(runs.c.id == run_id).values(meta=meta))
        conn.execute(
            events.insert().values(
                run_id=run_id,
                t=max(0.0, now - float(row.started_unix)),
                kind="control",
                message=f"{action} requested by {source}",
                data={"action": action, "seq": seq, "source": source},
            )
        )
        planned = _planned_runs(conn)
        if planned is not None:
            conn.execute(planned.update().where(planned.c.run_id == run_id).values(control=action))
    return ControlRequest(int(run_id), action, seq, now)


def pending_control(db: Any, run_id: int) -> ControlRequest | None:
    """The latest control request of a run (None when there never was one)."""
    with db.transaction() as conn:
        meta = conn.execute(sa.select(runs.c.meta).where(runs.c.id == run_id)).scalar()
    c = (meta or {}).get("control")
    if not isinstance(c, dict) or c.get("action") not in ACTIONS:
        return None
    return ControlRequest(int(run_id), str(c["action"]), int(c.get("seq", 0)), float(c.get("requested_unix", 0.0)))


class ControlWatcher:
    """Applies a run's control requests to its engine: polls every ``interval`` s in a thread.

    ``engine`` has ``pause()``, ``resume()`` and ``abort(reason)``; ``recorder`` records the
    acknowledgement (``event(kind, message, t, data)``-style: see :meth:`_ack`).  Requests made
    before the watcher started are not replayed (a resumed run starts with a clean slate).
    """

    def __init__(self, db: Any, run_id: int, engine: Any, *, interval: float = 0.5, on_applied: Any = None) -> None:
        self.db, self.run_id, self.engine = db, int(run_id), engine
        self.interval = float(interval)
        self.on_applied = on_applied
        first = pending_control(db, run_id)
        self._seen = 0 if first is None else first.seq
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"labctl-control-{run_id}", daemon=True)

    def start(self) -> ControlWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5.0)

    def __enter__(self) -> ControlWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def poll(self) -> ControlRequest | None:
        """Apply the latest request if it is new; returns it (None when there was nothing new)."""
        req = pending_control(self.db, self.run_id)
        if req is None or req.seq <= self._seen:
            return None
        self._seen = req.seq
        if req.action == "pause":
            self.engine.pause()
        elif req.action == "resume":
            self.engine.resume()
        else:
            self.engine.abort("cancelled from the dashboard")
        if self.on_applied is not None:
            self.on_applied(req)
        return req

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # a database hiccup: try again at the next poll
                continue
