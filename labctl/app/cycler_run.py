"""Runs on battery-cycler channels: submit once, watch, harvest into the normal run records.

::

    from labctl.app.cycler_run import run_on_cycler
    outcome = run_on_cycler("ce-longterm-0.5mA", db=db, station=station, channel="N1")

``run_on_cycler(protocol, *, db, station, channel, clock=None, poll=10.0, ...) -> RunOutcome``
(the outcome shape of :func:`labctl.app.controller.run_protocol`):

1. translates the protocol (:mod:`labctl.app.cycler_translate`; a step the cycler cannot
   run is a :class:`~labctl.core.errors.ProtocolError` before anything is written or sent);
2. finds an unfinished job of the same protocol on the same cycler channel in the database
   (``cycler_jobs``): then it takes its run over (``Database.reopen_run``) and continues
   harvesting after the samples already committed - no second start;
3. otherwise opens a run, writes a ``cycler_jobs`` row (state ``submitting``, a unique
   barcode) *before* sending the start, writes the step file into the cycler's step folder,
   starts it and stores the job id;
4. harvests pages into the run's :class:`~labctl.db.RunRecorder`: every cycler data point is
   one sample (``charge`` from the cycler's own capacity counter, signed by labctl's current
   convention); cycler step numbers become labctl steps (``step_started``/``step_ended`` with
   the protocol's paths and labels), loop iterations become cycles as
   :mod:`labctl.core.conventions` defines them.  After each page it stores a checkpoint (the
   harvest cursor and the mapping state) and the cursor in ``cycler_jobs``;
5. at the job's end (completed, stopped or protection), when the cycler's data folder is
   visible (``data_dir:`` on the instrument), waits for the job's ``.ndax`` there, reads it
   (:func:`labctl.importers.neware.read_neware_rows`) and reconciles it with the harvested
   samples: the rows both have are compared, rows ``download`` never delivered are recorded
   from the file (after the last harvested one, never twice); an event ``final_data`` names
   the source of the final data.  No file within ``ndax_timeout``, or no reader: ``download``'s
   data are final, and the event says why;
6. ends with the job: completed, stopped, the cycler's protection (status ``safety``), a
   refused start, or a link that stays down (status ``interrupted``: the job goes on on the
   cycler, the same call continues it).  labctl never switches a cycler cell off itself
   except by ``stop`` when one of its host-side watches (short circuit, max_duration) ends
   the run; the cycler keeps its cells safe.

A restart is exact: the resume position is the number of committed samples (one per cycler
point), the mapping state is the last checkpoint's, replayed over the points committed after it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labctl.app.cycler_translate import Translation, cell_remark, translate
from labctl.core.contracts import NullRecorder
from labctl.core.interrupts import Terminated, termination_as_interrupt
from labctl.drivers.contracts import DeviceError, JobRefused, JobState, WrongChannelReply
from labctl.drivers.cycler import CyclerCC
from labctl.engine.runner import Progress, RunOutcome, StepOutcome

ACTIVE = ("submitting", "running", "paused")
MAP_VERSION = 1


@dataclass
class _Open:
    index: int
    seq: int
    stepid: int
    t_start: float
    n: int = 0
    q: float = 0.0
    t_last: float = 0.0
    v_last: float = float("nan")
    steptime_last: float = 0.0
    i_last: float | None = None


@dataclass
class _Stop:
    reason: str
    t: float


@dataclass
class Mapper:
    """Cycler points -> labctl steps, cycles and samples (a plain state machine, checkpointed)."""

    tr: Translation
    step_counter: int = 0
    cycle: int = 0
    iters: dict[int, int] = field(default_factory=dict)
    loop_t0: dict[int, float] = field(default_factory=dict)
    open: _Open | None = None
    short_since: float | None = None
    skip_started_upto: int = 0  # step rows already in the database (restart)
    outcomes: list[StepOutcome] = field(default_factory=list)
    events: list[tuple[float, str, str]] = field(default_factory=list)
    stopped: _Stop | None = None
    n_recorded: int = 0

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        o = self.open
        return {
            "version": MAP_VERSION,
            "program": self.tr.digest,
            "step_counter": self.step_counter,
            "cycle": self.cycle,
            "iters": {str(k): v for k, v in self.iters.items()},
            "loop_t0": {str(k): v for k, v in self.loop_t0.items()},
            "open": None if o is None else {**vars(o)},
            "short_since": self.short_since,
        }

    def load(self, s: dict[str, Any]) -> None:
        if s.get("program") != self.tr.digest or s.get("version") != MAP_VERSION:
            raise ValueError("the checkpoint belongs to another protocol text")
        self.step_counter = int(s["step_counter"])
        self.cycle = int(s["cycle"])
        self.iters = {int(k): int(v) for k, v in s["iters"].items()}
        self.loop_t0 = {int(k): float(v) for k, v in s["loop_t0"].items()}
        self.open = None if s["open"] is None else _Open(**s["open"])
        self.short_since = s.get("short_since")

    # ------------------------------------------------------------------ mapping
    def _render(self, template: str) -> str:
        if "{" not in template:
            return template.replace("}}", "}")
        return template.format(**{f"L{k}": v for k, v in self.iters.items()})

    def _event(self, rec: Any, t: float, kind: str, message: str, data: dict | None = None) -> None:
        self.events.append((t, kind, message))
        rec.event(t, kind, message, data)

    def _enter(self, rec: Any, stepid: int, seq: int, t: float, prev: int | None) -> bool:
        """A new cycler step began at test time ``t``; False when a host watch ends the run here."""
        info = self.tr.steps.get(stepid)
        if info is None:
            raise DeviceError(f"the cycler reports step {stepid}, which the submitted step file does not have")
        reset = False
        for lp in info.loops:
            li = self.tr.loops[lp]
            if reset or lp not in self.iters:
                self.iters[lp] = 1
                self.loop_t0[lp] = t
                reset = True
            elif stepid == li.first and prev is not None and li.first <= prev <= li.last:
                if li.max_duration is not None and t - self.loop_t0[lp] >= li.max_duration:
                    msg = f"{self._render(li.path)}: reached max_duration={li.max_duration / 3600:g} h"
                    self._event(rec, t, "repeat", msg)
                    self.stopped = _Stop(msg, t)
                    return False
                self.iters[lp] += 1
                reset = True
            else:
                continue
            if li.innermost:
                self.cycle += 1
        for lp in [k for k in self.iters if k not in info.loops]:
            del self.iters[lp]
            self.loop_t0.pop(lp, None)
        for kind, message in info.events:
            self._event(rec, t, kind, self._render(message))
        self.step_counter += 1
        idx = self.step_counter
        if idx > self.skip_started_upto:
            rec.step_started(
                idx,
                path=self._render(info.path),
                kind=info.kind,
                label=info.label,
                cycle=self.cycle,
                params=info.params,
                t=t,
            )
        self.open = _Open(idx, seq, stepid, t, t_last=t)
        self.short_since = None
        return True

    def close_step(self, rec: Any, why: str | None = None, detail: str = "") -> None:
        o = self.open
        if o is None:
            return
        info = self.tr.steps[o.stepid]
        reason = why or _end_reason(info.step, o)
        rec.step_ended(o.index, t=o.t_last, end_reason=reason, detail=detail, n_samples=o.n, charge=o.q)
        self.outcomes.append(StepOutcome(o.index, info.kind, reason, detail, o.t_start, o.t_last, o.n, o.q, o.v_last))
        if info.aurbach_strip and reason != "charge":
            self._event(
                rec,
                o.t_last,
                "aurbach",
                f"cycle {self.cycle}: strip ended early ({reason}); the reservoir is exhausted",
            )
        self.open = None

    def feed(self, rec: Any, h: Any) -> int:
        """Record one harvest page; the number of points recorded (fewer when a host watch ended the run)."""
        b = h.block
        n = len(b)
        if n == 0 or self.stopped is not None:
            return 0
        seq = h.extra["step_seq"]
        stepid = np.asarray(h.step)
        cap = h.extra["capacity_mAh"]
        steptime = h.extra["step_time"]
        cuts = np.flatnonzero(np.diff(seq)) + 1
        bounds = [0, *cuts.tolist(), n]
        done = 0
        for a, z in itertools.pairwise(bounds):
            s, sid = int(seq[a]), int(stepid[a])
            if self.open is None or self.open.seq != s:
                prev = None if self.open is None else self.open.stepid
                t_begin = float(b.t[a]) - float(steptime[a])
                self.close_step(rec)
                if not self._enter(rec, sid, s, t_begin, prev):
                    return done
            o = self.open
            assert o is not None
            info = self.tr.steps[sid]
            t, v, i = b.t[a:z], b.voltage[a:z], b.current[a:z]
            z_cut = z
            if info.short is not None:
                k = self._short(t, v, i, info.short)
                if k is not None:
                    z_cut = a + k + 1
                    t, v, i = t[: k + 1], v[: k + 1], i[: k + 1]
            if isinstance(info.step, CyclerCC):  # the cycler's own capacity counter, signed by labctl's convention
                q = float(np.sign(info.step.current)) * cap[a:z_cut] * 3.6
            else:  # rest, CV: integrated like the engine does (the counter is unsigned)
                from labctl.engine.conditions import step_charge

                q = step_charge(t, i, o.t_last if o.n else o.t_start, o.i_last, o.q)
            rec.samples(o.index, self.cycle, t, v, i, q)
            self.n_recorded += len(t)
            o.n += len(t)
            o.q = float(q[-1])
            o.t_last, o.v_last, o.steptime_last = float(t[-1]), float(v[-1]), float(steptime[z_cut - 1])
            o.i_last = float(i[-1])
            done += len(t)
            if z_cut < z:
                msg = f"short circuit detected in cycle {self.cycle} at {o.t_last / 3600:.2f} h"
                self._event(rec, o.t_last, "short_circuit", msg, {"cycle": self.cycle, "t_test": o.t_last})
                self.close_step(rec, "short_circuit")
                self.stopped = _Stop(f"protocol completed; short circuit at {o.t_last / 3600:.2f} h", o.t_last)
                return done
        return done

    def _short(self, t: np.ndarray, v: np.ndarray, i: np.ndarray, short: tuple[float, float]) -> int | None:
        below, hold = short
        low = (np.abs(v) < below) & (i != 0)
        for k in range(len(t)):
            if low[k]:
                if self.short_since is None:
                    self.short_since = float(t[k])
                if float(t[k]) - self.short_since >= hold:
                    return k
            else:
                self.short_since = None
        return None


def _end_reason(step: Any, o: _Open) -> str:
    """Which limit ended a step, from its last sample (the cycler reports no reason per point)."""
    tol = 1e-6
    kind = getattr(step, "kind", "")
    if kind == "cc":
        if step.voltage_limit is not None and (
            (step.current > 0 and o.v_last >= step.voltage_limit - tol)
            or (step.current < 0 and o.v_last <= step.voltage_limit + tol)
        ):
            return "voltage_above" if step.current > 0 else "voltage_below"
        if step.duration is not None and o.steptime_last >= step.duration - tol:
            return "duration"
        return "charge" if step.charge is not None else "duration"
    if kind == "cv":
        if step.duration is not None and o.steptime_last >= step.duration - tol:
            return "duration"
        return "current_below"
    return "duration"


# ---------------------------------------------------------------------------------- the run
def _station_channel(station: Any, channel: str) -> tuple[str, str]:
    from labctl.app.station import StationError

    spec = station.channel(channel)
    if spec.cycler is None:
        raise StationError.single(
            station.source,
            f"channel {channel} has no cycler",
            "write e.g. {cycler: bts1, address: 27-1-1}",
            field=f"channels.{channel}",
        )
    return spec.cycler, str(spec.address)


def run_on_cycler(
    protocol: Any,
    *,
    db: Any,
    station: Any,
    channel: str,
    clock: Any | None = None,
    poll: float = 10.0,
    retries: int = 3,
    on_progress: Callable[[Progress], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
    meta: dict | None = None,
    cycler: Any | None = None,
    on_created: Callable[[Any, int], None] | None = None,
    control: Callable[[], tuple[str, str] | None] | None = None,
) -> RunOutcome:
    """Run ``protocol`` (a path, library name or model) on cycler channel ``channel`` of ``station``.

    ``poll``: seconds of wall time between status queries while nothing new arrived.
    ``retries``: consecutive link failures tolerated (each followed by a reconnect) before the
    run is left ``interrupted`` (the job goes on on the cycler; call again to continue).
    ``cycler``: an already connected driver (tests); default: the station's instrument, opened here.
    ``on_created(conn, run_id)``: runs in the transaction that creates a new run (a campaign links
    its planned run there).  ``control()``: asked between polls (keep it cheap); it returns None or
    ``(action, reason)``: ``cancel`` stops the job on the cycler (the run ends ``aborted``),
    ``interrupt`` stops watching (the job goes on; the run is left ``interrupted``, resumable),
    ``pause``/``resume`` pause or continue the job where the vendor allows (``supports_pause``),
    ``note`` records ``reason`` as an event.
    """
    from labctl.core.clock import WallClock
    from labctl.protocols import load_protocol

    if isinstance(protocol, (str, Path)):
        protocol = load_protocol(protocol)
    clock = clock or WallClock()
    instrument, address = _station_channel(station, channel)
    tr = translate(protocol, cell_remark=cell_remark(protocol))  # refusals before anything is written
    owned = cycler is None
    if cycler is None:
        from labctl.app.station import open_instrument

        cycler = open_instrument(station, instrument, clock)
    sha = hashlib.sha256(cycler.step_file_text(tr.program).encode("utf-8")).hexdigest()
    holder: dict[str, Any] = {}
    try:
        with termination_as_interrupt():
            return _run(
                protocol, tr, sha, db, station, channel, instrument, address, cycler, clock, poll, retries,
                on_progress, on_start, meta, holder, on_created, control,
            )  # fmt: skip
    except KeyboardInterrupt as e:
        rec, mapper = holder.get("rec"), holder.get("mapper")
        if rec is None or rec.closed or mapper is None:
            raise
        why = "Ctrl-C" if not isinstance(e, Terminated) else e.signame
        reason = (
            f"labctl stopped watching ({why}); the job goes on on the cycler - run the same command again "
            f"to continue harvesting"
        )
        mapper._event(rec, _t(mapper), "interrupted", reason)
        return _end(db, rec, mapper, clock, "interrupted", reason, mapper.n_recorded, close=False)
    except DeviceError as e:  # while resuming (replay, job lookup): the run stays resumable
        rec, mapper = holder.get("rec"), holder.get("mapper")
        if rec is None or rec.closed or mapper is None:
            raise
        reason = f"cycler link error: {e}; run the same command again to continue"
        mapper._event(rec, _t(mapper), "link", reason)
        return _end(db, rec, mapper, clock, "interrupted", reason, mapper.n_recorded, close=False)
    finally:
        if owned:
            cycler.close()


def _run(
    protocol: Any,
    tr: Translation,
    sha: str,
    db: Any,
    station: Any,
    channel: str,
    instrument: str,
    address: str,
    cycler: Any,
    clock: Any,
    poll: float,
    retries: int,
    on_progress: Callable[[Progress], None] | None,
    on_start: Callable[[int | None], None] | None,
    meta: dict | None,
    holder: dict[str, Any],
    on_created: Callable[[Any, int], None] | None = None,
    control: Callable[[], tuple[str, str] | None] | None = None,
) -> RunOutcome:
    from labctl.app.controller import UserError, cell_attributes

    if True:
        if address not in cycler.channels():
            from labctl.app.station import StationError

            line, col = station.where("channels", channel, "address")
            raise StationError.single(
                station.source,
                f"cycler {instrument} has no channel {address}",
                f"its channels: {', '.join(cycler.channels())}",
                line=line,
                col=col,
                field=f"channels.{channel}.address",
            )
        db.reap_interrupted()
        row = next(
            (
                r
                for r in reversed(db.cycler_jobs(instrument=instrument, channel=address))
                if r["state"] in ACTIVE and db.run(r["run_id"])["status"] in ("interrupted", "running")
            ),
            None,
        )
        if row is not None and row["step_file_sha"] != sha:
            raise UserError(
                f"cycler channel {instrument} {address} still runs run {row['run_id']} (job {row['job']}) "
                f"of another protocol: stop that job on the cycler first, or choose another channel"
            )
        mapper = Mapper(tr)
        holder["mapper"] = mapper
        resumed = row is not None
        if row is not None:
            run_id = int(row["run_id"])
            if db.run(run_id)["status"] == "running":
                raise UserError(f"run {run_id} on {instrument} {address} is being harvested by a live labctl process")
            open_steps = [s["step_index"] for s in db.steps(run_id) if s["t_end"] is None]
            rec, info = db.reopen_run(run_id)
            holder["rec"] = rec
            for idx in open_steps:
                db.reopen_step(run_id, idx)
            last = db.last_checkpoint(run_id)
            if last is not None:
                mapper.load(last["mapper"])
                cursor = int(last["cursor"])
            else:
                cursor = 0
            mapper.skip_started_upto = int(info["max_step"])
            committed = int(info["n_samples"])
            rec.event(
                info["t_last"], "resume", f"labctl restarted: harvesting job {row['job']} after point {committed}"
            )
            job_row = int(row["id"])
            job = row["job"]
            if on_start is not None:
                on_start(run_id)
            if job is None:  # killed between the start and its answer: look it up, never start again
                job = cycler.find_job(address, row["barcode"])
                if job is None:
                    db.update_cycler_job(job_row, state="refused", detail="the start never reached the cycler")
                    return _end(
                        db, rec, mapper, clock, "failed", "the start never reached the cycler; nothing ran", committed
                    )
                db.update_cycler_job(job_row, job=job, state="running")
            if committed > cursor:  # points committed after the last checkpoint: replay them silently
                null = NullRecorder()
                while cursor < committed:
                    h = cycler.harvest(job, str(cursor))
                    take = min(len(h.block), committed - cursor)
                    if take == 0:  # points recorded from the job's .ndax (download never had them)
                        rows = _read_rows(_data_file(cycler, job, row["barcode"]))
                        if isinstance(rows, str):
                            break
                        for fh in _file_pages(db, run_id, rows, cursor, committed, 1 << 30):
                            mapper.feed(null, fh)
                        cursor = committed
                        break
                    mapper.feed(null, _head(h, take))
                    cursor += take
                mapper.outcomes.clear()
                mapper.events.clear()
            cursor = committed
            mapper.n_recorded = committed
        else:
            cell = protocol.cell
            attrs = cell_attributes(protocol, None)
            rec = db.open_run(
                protocol_name=protocol.name,
                protocol_text=protocol.text,
                protocol_source=protocol.source,
                cell_label=cell.id,
                cell_kind=cell.kind,
                cell_attrs=attrs,
                channel=channel,
                simulated=False,
                seed=None,
                preset=None,
                started_unix=clock.unix(clock.now()),
                meta={
                    **(meta or {}),
                    "cell": attrs,
                    "cycler": {
                        "instrument": instrument,
                        "address": address,
                        "pause": bool(getattr(cycler, "supports_pause", False)),
                    },
                },
                on_created=on_created,
            )
            holder["rec"] = rec
            run_id = int(rec.run_id)
            if on_start is not None:
                on_start(run_id)
            barcode = f"labctl-{run_id}"
            job_row = db.add_cycler_job(
                run_id=run_id,
                instrument=instrument,
                channel=address,
                barcode=barcode,
                step_file=None,
                step_file_sha=sha,
            )
            try:
                _local, remote, _ = cycler.write_step_file(tr.program, barcode)
                db.update_cycler_job(job_row, step_file=remote)
                job = cycler.submit(address, tr.program, barcode=barcode, step_file=remote)
            except DeviceError as e:
                found = None if isinstance(e, JobRefused) else _lookup(cycler, address, barcode)
                if found is None:
                    db.update_cycler_job(job_row, state="refused", detail=str(e))
                    rec.event(0.0, "error", f"cycler start failed: {e}")
                    return _end(db, rec, mapper, clock, "failed", f"cycler start failed: {e}", 0)
                rec.event(0.0, "link", f"the start's answer was lost ({e}); the cycler runs it as job {found}")
                job = found
            db.update_cycler_job(job_row, job=job, state="running")
            rec.event(
                0.0, "cycler", f"started job {job} on {instrument} {address} (step file {remote}, barcode {barcode})"
            )
            cursor = 0
        barcode = str(row["barcode"]) if row is not None else barcode
        return _watch(
            db, rec, mapper, cycler, job, job_row, cursor, clock, poll, retries, on_progress, tr, resumed, control,
            barcode,
        )  # fmt: skip


def _lookup(cycler: Any, address: str, barcode: str) -> str | None:
    """After a start whose answer was lost: the job it started, if it did (found by its barcode)."""
    try:
        cycler.reconnect()
        job: str | None = cycler.find_job(address, barcode)
        return job
    except DeviceError:
        return None


def _head(h: Any, k: int) -> Any:
    from labctl.drivers.contracts import Harvest

    return Harvest(
        h.block.head(k),
        h.step[:k],
        h.cycle[:k],
        str(int(h.cursor) - len(h.block) + k),
        {x: v[:k] for x, v in h.extra.items()},
    )


def _watch(
    db: Any,
    rec: Any,
    mapper: Mapper,
    cycler: Any,
    job: str,
    job_row: int,
    cursor: int,
    clock: Any,
    poll: float,
    retries: int,
    on_progress: Callable[[Progress], None] | None,
    tr: Translation,
    resumed: bool,
    control: Callable[[], tuple[str, str] | None] | None = None,
    barcode: str = "",
) -> RunOutcome:
    failures = 0
    n_total = cursor
    while True:
        try:
            st = cycler.status(job)
            while True:
                h = cycler.harvest(job, str(cursor))
                if len(h.block) == 0:
                    break
                done = mapper.feed(rec, h)
                cursor += len(h.block)
                n_total += done
                if done < len(h.block) or mapper.stopped is not None:
                    break
                if tr.max_duration is not None and mapper.open is not None and mapper.open.t_last > tr.max_duration:
                    mapper.stopped = _Stop(
                        f"safety limit: max_duration {tr.max_duration / 3600:g} h reached", mapper.open.t_last
                    )
                    break
                rec.checkpoint(mapper.open.t_last if mapper.open else 0.0, {"cursor": cursor, "mapper": mapper.state()})
                rec.flush()
                db.update_cycler_job(job_row, cursor=str(cursor))
                if on_progress is not None and mapper.open is not None:
                    o = mapper.open
                    info = tr.steps[o.stepid]
                    on_progress(Progress(o.index, info.path, info.kind, info.label, mapper.cycle, o.t_last, n_total))
            failures = 0
        except DeviceError as e:
            if isinstance(e, WrongChannelReply):
                msg = f"the cycler answered for another channel: {e}; nothing of it was recorded"
                mapper._event(rec, _t(mapper), "error", msg)
                db.update_cycler_job(job_row, state="unknown", detail=msg)
                return _end(db, rec, mapper, clock, "failed", msg, n_total)
            failures += 1
            mapper._event(rec, _t(mapper), "link", f"cycler link error ({failures}/{retries}): {e}")
            if failures > retries:
                msg = (
                    f"lost the cycler link: {e}; job {job} goes on on the cycler - run the same command again "
                    f"to continue harvesting"
                )
                db.update_cycler_job(job_row, detail=msg)
                rec.flush()
                return _end(db, rec, mapper, clock, "interrupted", msg, n_total, close=False)
            time.sleep(min(poll, 1.0))
            with contextlib.suppress(DeviceError):
                cycler.reconnect()
            continue
        if mapper.stopped is not None:
            try:
                cycler.stop(job)
                mapper._event(rec, mapper.stopped.t, "cycler", f"labctl stopped job {job}: {mapper.stopped.reason}")
            except DeviceError as e:
                mapper._event(rec, mapper.stopped.t, "error", f"could not stop job {job}: {e}")
            skipped = cursor - n_total
            status = "safety" if mapper.stopped.reason.startswith("safety") else "completed"
            mapper.close_step(rec)
            db.update_cycler_job(job_row, state="stopped", cursor=str(cursor), detail=mapper.stopped.reason)
            if skipped > 0:
                mapper._event(
                    rec, _t(mapper), "cycler", f"{skipped} point(s) the cycler measured after that end are not recorded"
                )
            return _end(db, rec, mapper, clock, status, mapper.stopped.reason, n_total)
        if st.state in (JobState.COMPLETED, JobState.STOPPED, JobState.FAILED):
            if getattr(cycler, "data_dir", None) is not None and mapper.stopped is None:
                filled = _final_data(db, rec, mapper, cycler, job, job_row, barcode, cursor)
                cursor += filled
                n_total += filled
            mapper.close_step(
                rec,
                None if st.state is JobState.COMPLETED else ("aborted" if st.state is JobState.STOPPED else "safety"),
            )
            if st.state is JobState.COMPLETED:
                status, reason, state = "completed", "protocol completed", "completed"
            elif st.state is JobState.STOPPED:
                status, reason, state = "aborted", f"the job was stopped on the cycler ({st.detail})", "stopped"
            else:
                status, reason, state = "safety", f"the cycler ended the job: {st.detail}", "failed"
                mapper._event(rec, _t(mapper), "protect", reason)
            db.update_cycler_job(job_row, state=state, cursor=str(cursor), detail=st.detail)
            return _end(db, rec, mapper, clock, status, reason, n_total)
        deadline = time.monotonic() + poll
        while True:  # wait for the next poll; a control request ends the wait
            request = None if control is None else control()
            if request is not None:
                ended = _apply_control(db, rec, mapper, cycler, job, job_row, cursor, clock, n_total, request)
                if ended is not None:
                    return ended
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, 0.1))


# ---------------------------------------------------------------------------------- the .ndax
def _data_file(cycler: Any, job: str, barcode: str) -> Path | None:
    try:
        path: Path | None = cycler.data_file(job, barcode)
        return path
    except (DeviceError, OSError):
        return None


def _read_rows(path: Path | None) -> Any:
    """The file's rows, or why there are none (a str)."""
    from labctl.importers.base import ImportFileError
    from labctl.importers.neware import read_neware_rows

    if path is None:
        return "no .ndax"
    try:
        return read_neware_rows(path)
    except ImportFileError as e:
        return str(e)


def file_times(rows: Any, c: int, t_db: np.ndarray | None) -> np.ndarray:
    """Test times of a record's rows on the run's clock: anchored at the last harvested row
    (point ``c``, time ``t_db[c - 1]``) the file also has, spaced by the file's own times (its Unix
    times where present, ms resolution)."""
    u = rows.unix if rows.unix is not None else rows.test_time
    known = np.flatnonzero(rows.index <= c)
    if c == 0 or known.size == 0 or t_db is None:
        return np.asarray(u - u[0] + rows.step_time[0], dtype=np.float64)
    k = int(known[-1])
    return np.asarray(u - u[k] + t_db[int(rows.index[k]) - 1], dtype=np.float64)


@dataclass
class Reconciliation:
    """What a record file says about the points harvested so far (:func:`reconcile`)."""

    verified: int  # harvested points the file also has
    differ: int  # of those, how many differ (beyond float32 and the file's ms)
    first_differ: int | None  # the first such point number
    missing_in_file: int  # harvested points the file lacks
    fill: int  # points after the harvested ones the file has without a gap (to record from it)
    after_gap: int  # file rows after a gap in its point numbers (not recorded)


def reconcile(rows: Any, t: np.ndarray, voltage: np.ndarray, current: np.ndarray) -> Reconciliation:
    """Compare a record's rows (:class:`~labctl.importers.neware.NewareRows`) with the harvested points
    (``t`` s, ``voltage`` V, ``current`` A, one per point, point 1 first)."""
    cursor = len(t)
    both = rows.index <= cursor
    bad, first = 0, None
    if cursor and np.any(both):
        k = rows.index[both] - 1
        tf = file_times(rows, cursor, t)[both]
        ok = (
            np.isclose(rows.voltage[both], voltage[k], rtol=1e-6, atol=1e-9)
            & np.isclose(rows.current_ma[both] * 1e-3, current[k], rtol=1e-6, atol=1e-12)
            & (np.abs(tf - t[k]) <= 2e-3 + 1e-9 * np.abs(t[k]))
        )
        bad = int(np.count_nonzero(~ok))
        first = None if bad == 0 else int(rows.index[both][np.argmin(ok)])
    n_both = int(np.count_nonzero(both))
    after = rows.index[~both]
    run = 0
    if after.size:
        exp = np.arange(cursor + 1, cursor + 1 + after.size)
        run = int(after.size if np.array_equal(after, exp) else np.argmin(after == exp))
    return Reconciliation(n_both, bad, first, cursor - n_both, run, int(after.size) - run)


def _file_pages(db: Any, run_id: int, rows: Any, lo: int, hi: int, page: int) -> Any:
    """Harvest pages of the file's points ``lo+1 .. hi`` (point numbers; contiguous in the file)."""
    from labctl.drivers.contracts import Harvest
    from labctl.drivers.techniques import SampleBlock

    t = file_times(rows, lo, db.samples(run_id, columns=["t"])["t"] if lo else None)
    first = int(np.searchsorted(rows.index, lo + 1))
    for a in range(first, first + (hi - lo), page):
        z = min(a + page, first + (hi - lo))
        yield Harvest(
            SampleBlock(t[a:z], rows.voltage[a:z], rows.current_ma[a:z] * 1e-3),
            rows.step_index[a:z],
            rows.cycle[a:z],
            str(int(rows.index[z - 1])),
            extra={
                "step_seq": rows.step[a:z],
                "capacity_mAh": rows.charge_mah[a:z] + rows.discharge_mah[a:z],
                "energy_mWh": rows.charge_mwh[a:z] + rows.discharge_mwh[a:z],
                "step_time": rows.step_time[a:z],
            },
        )


def _final_data(
    db: Any, rec: Any, mapper: Mapper, cycler: Any, job: str, job_row: int, barcode: str, cursor: int
) -> int:
    """Reconcile the job's harvested points with its ``.ndax``; the number of points filled from the file."""
    folder, wait = cycler.data_dir, float(getattr(cycler, "ndax_timeout", 60.0))
    run_id = int(rec.run_id)
    rec.flush()
    deadline = time.monotonic() + wait
    path = _data_file(cycler, job, barcode)
    while path is None and time.monotonic() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        path = _data_file(cycler, job, barcode)
    t = _t(mapper)
    if path is None:
        why = f"no .ndax of job {job} appeared in {folder} within {wait:g} s"
        mapper._event(rec, t, "final_data", f"final data: download alone ({cursor} points); {why}",
                      {"source": "download", "points": cursor, "reason": why})  # fmt: skip
        return 0
    rows = _read_rows(path)
    if isinstance(rows, str):
        mapper._event(rec, t, "final_data", f"final data: download alone ({cursor} points); {rows}",
                      {"source": "download", "points": cursor, "file": str(path), "reason": rows})  # fmt: skip
        return 0
    n_file = len(rows.index)
    if cursor:
        s = db.samples(run_id, columns=["t", "voltage", "current"])
        r = reconcile(rows, s["t"], s["voltage"], s["current"])
    else:
        r = reconcile(rows, np.zeros(0), np.zeros(0), np.zeros(0))
    run = r.fill
    filled = 0
    if run:
        page = int(getattr(cycler, "page_size", 5000) or 5000)
        for h in _file_pages(db, run_id, rows, cursor, cursor + run, page):
            done = mapper.feed(rec, h)
            filled += done
            rec.checkpoint(mapper.open.t_last if mapper.open else 0.0,
                           {"cursor": cursor + filled, "mapper": mapper.state(), "source": "ndax"})  # fmt: skip
            rec.flush()
            db.update_cycler_job(job_row, cursor=str(cursor + filled))
            if done < len(h.block) or mapper.stopped is not None:
                break
    parts = [f"{cursor} point(s) harvested by download"]
    if cursor:
        parts.append(
            "all agree with the file (float32)"
            if r.differ == 0
            else f"{r.differ} differ from the file (first: point {r.first_differ})"
        )
    if r.missing_in_file:
        parts.append(f"{r.missing_in_file} of them are not in the file")
    parts.append(f"{filled} point(s) filled from the file" if filled else "none filled from the file")
    if r.after_gap:
        parts.append(f"{r.after_gap} file row(s) after a gap in its point numbers not recorded")
    source = "ndax" if r.differ == 0 and r.missing_in_file == 0 else "download+ndax" if filled else "download"
    mapper._event(
        rec,
        _t(mapper),
        "final_data",
        f"final data: {path.name} ({n_file} rows, {rows.reader}): " + "; ".join(parts),
        {"source": source, "file": str(path), "rows_file": n_file, "verified": r.verified,
         "differ": r.differ, "filled": filled},
    )  # fmt: skip
    return filled


def _apply_control(
    db: Any,
    rec: Any,
    mapper: Mapper,
    cycler: Any,
    job: str,
    job_row: int,
    cursor: int,
    clock: Any,
    n_total: int,
    request: tuple[str, str],
) -> RunOutcome | None:
    """A user's request while a job runs: the run's outcome when it ends the run, else None."""
    action, reason = request
    t = _t(mapper)
    if action == "cancel":
        try:
            cycler.stop(job)
        except DeviceError as e:
            mapper._event(rec, t, "error", f"could not stop job {job}: {e}")
            return None
        mapper._event(rec, t, "abort", f"{reason}: labctl stopped job {job} on the cycler")
        mapper.close_step(rec, "aborted")
        db.update_cycler_job(job_row, state="stopped", cursor=str(cursor), detail=reason)
        return _end(db, rec, mapper, clock, "aborted", reason, n_total)
    if action == "interrupt":
        mapper._event(rec, t, "interrupted", f"{reason}; job {job} goes on on the cycler")
        rec.flush()
        return _end(db, rec, mapper, clock, "interrupted", reason, n_total, close=False)
    if action in ("pause", "resume"):
        try:
            (cycler.pause if action == "pause" else cycler.resume)(job)
            mapper._event(rec, t, action, f"{reason}: job {job} {'paused' if action == 'pause' else 'continued'}")
        except DeviceError as e:
            mapper._event(rec, t, "error", f"{action} of job {job} refused: {e}")
        return None
    mapper._event(rec, t, action if action != "note" else "control", reason)
    return None


def _t(mapper: Mapper) -> float:
    if mapper.open is not None:
        return mapper.open.t_last
    return mapper.outcomes[-1].t_end if mapper.outcomes else 0.0


def _end(
    db: Any, rec: Any, mapper: Mapper, clock: Any, status: str, reason: str, n: int, *, close: bool = True
) -> RunOutcome:
    if close:
        mapper.close_step(rec)
    t_end = _t(mapper)
    rec.finish(status, reason, clock.unix(clock.now()))
    rec.close()
    return RunOutcome(rec.run_id, status, reason, t_end, n, mapper.outcomes, mapper.events)
