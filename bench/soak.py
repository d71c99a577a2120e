"""Soak: 16 simulated channels cycling for a week of virtual time, with faults on a schedule.

    python bench/soak.py [--channels 16] [--days 7] [--record 60] [--db postgres|sqlite]
                         [--instrument-faults 14] [--outages 4] [--seed 0] [--kill]

Every channel runs galvanostatic cycling (1 h charge, 1 h discharge, ``--record`` s between
samples) on the shared virtual clock, the 16 engines in their threads as ``labctl`` runs them.
Faults, drawn from ``--seed``:

* instrument link faults on every channel (``--instrument-faults`` per channel over the run,
  at random virtual times): the simulated potentiostat's link breaks mid-step (a
  TransportError or a DeviceTimeout) and refuses to connect for a random 0..25 s of virtual
  time; the engine's fault policy (cell off, step closed with its samples, reconnect with
  backoff 4 s / 8 s / 16 s, step run again) takes over.  On the last channel the link is lost
  for good on day 5: that run must end ``failed`` with the reason, its samples kept.
* storage outages (``--outages``, PostgreSQL only): the database refuses connections and every
  backend of the soak database is terminated for 2..6 s of wall time
  (``ALTER DATABASE ... ALLOW_CONNECTIONS false`` + ``pg_terminate_backend``); the writers
  spill to their local files and write them back when it returns.

With ``--kill`` the 16 channels run in a child process that is SIGKILLed at a random virtual
day (1.5 .. 5.5); the parent replays any spill file the child left, resumes every interrupted
run (``labctl.app.resume.resume_run``: OCV measured, continued from the last checkpoint; no
link faults after the resume) and checks that every sample committed before the kill is still
there, with ids and test time continuing across the gap.

At the end, for every run, what the engine handed to the recorder is compared with what the
database holds: sample count, ids (one contiguous range), test time (never going back),
steps (their sample counts add up); "lost" must be 0.  The ratio printed is committed /
measured samples against the floor 1.0 (nothing lost), plus the speed-up of virtual time
over wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from typing import Any

import numpy as np

PG_ADMIN = os.environ.get("LABCTL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


class LinkFaults:
    """A simulated potentiostat whose link fails at given virtual times (the simulator hook).

    ``schedule``: (virtual time, down seconds, kind) sorted; at the first ``read`` after a fault
    time the handle raises (``disconnect``: TransportError, ``silent``: DeviceTimeout) and
    ``connect`` fails until ``down`` virtual seconds have passed (``down = inf``: for good).
    """

    def __init__(self, inner: Any, clock: Any, schedule: list[tuple[float, float, str]]) -> None:
        self.inner = inner
        self.clock = clock
        self.schedule = list(schedule)
        self.capabilities = inner.capabilities
        self.down_until = -1.0
        self.fired: list[tuple[float, str]] = []
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _due(self) -> tuple[float, float, str] | None:
        if self.schedule and self.clock.now() >= self.schedule[0][0]:
            return self.schedule.pop(0)
        return None

    def _raise(self, kind: str) -> None:
        from labctl.drivers.contracts import DeviceTimeout
        from labctl.drivers.transport import TransportError

        if kind == "silent":
            raise DeviceTimeout("simulated potentiostat sent nothing for 5 s (soak fault)")
        raise TransportError("sim://soak: read failed, the link is closed or broken (soak fault)")

    def connect(self, timeout: float = 10.0) -> None:
        if self.clock.now() < self.down_until:
            self.refused += 1
            from labctl.drivers.transport import TransportError

            raise TransportError("sim://soak: could not open: connection refused (soak fault)")
        self.inner.connect(timeout)

    def close(self) -> None:
        self.inner.close()

    def cell_off(self) -> None:
        self.inner.cell_off()

    def start(self, technique: Any) -> Any:
        if self.clock.now() < self.down_until:
            self._raise("disconnect")
        return _Handle(self, self.inner.start(technique))


class _Handle:
    def __init__(self, dev: LinkFaults, inner: Any) -> None:
        self.dev, self.inner = dev, inner

    @property
    def state(self) -> Any:
        return self.inner.state

    @property
    def end(self) -> Any:
        return self.inner.end

    def read(self, timeout: float = 5.0) -> Any:
        due = self.dev._due()
        if due is not None:
            _t, down, kind = due
            self.dev.down_until = self.dev.clock.now() + down
            self.dev.fired.append((self.dev.clock.now(), kind))
            self.inner.stop()
            self.dev._raise(kind)
        return self.inner.read(timeout)

    def stop(self) -> None:
        self.inner.stop()


PROTOCOL = """name: soak
cell: {{kind: symmetric, working: Mg, area: 1.267 cm2}}
safety: {{voltage: [-3 V, 3 V], current: 20 mA}}
steps:
  - repeat:
      times: {cycles}
      steps:
        - galvanostatic: {{current: 0.5 mA, duration: 1 h, record_every: {record:g} s}}
        - galvanostatic: {{current: -0.5 mA, duration: 1 h, record_every: {record:g} s}}
"""


def _pg_database() -> tuple[str, str] | None:
    import sqlalchemy as sa

    name = f"labctl_soak_{uuid.uuid4().hex[:8]}"
    try:
        eng = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        eng.dispose()
    except Exception as e:
        print(f"PostgreSQL unavailable ({type(e).__name__}: {e})")
        return None
    base = PG_ADMIN.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


def _pg_drop(name: str) -> None:
    import sqlalchemy as sa

    eng = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        c.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    eng.dispose()


class PgOutages(threading.Thread):
    """Takes the soak database away ``n`` times while the channels run (wall time)."""

    def __init__(self, name: str, n: int, rng: np.random.Generator, stop: threading.Event) -> None:
        super().__init__(daemon=True, name="soak-outages")
        self.name_db, self.n, self.rng, self.stop = name, n, rng, stop
        self.done: list[tuple[float, float]] = []

    def run(self) -> None:
        import sqlalchemy as sa

        eng = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        t0 = time.monotonic()
        for _ in range(self.n):
            if self.stop.wait(float(self.rng.uniform(1.0, 5.0))):
                break
            down = float(self.rng.uniform(2.0, 6.0))
            with eng.connect() as c:
                c.execute(sa.text(f'ALTER DATABASE "{self.name_db}" ALLOW_CONNECTIONS false'))
                c.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        f"WHERE datname = '{self.name_db}' AND pid <> pg_backend_pid()"
                    )
                )
            start = time.monotonic() - t0
            self.stop.wait(down)
            with eng.connect() as c:
                c.execute(sa.text(f'ALTER DATABASE "{self.name_db}" ALLOW_CONNECTIONS true'))
            self.done.append((start, down))
        eng.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--record", type=float, default=60.0, help="s between samples")
    ap.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    ap.add_argument("--instrument-faults", type=int, default=14, help="link faults per channel over the run")
    ap.add_argument("--outages", type=int, default=4, help="database outages (PostgreSQL)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", action="store_true", help="show the writers' outage log lines")
    ap.add_argument("--kill", action="store_true", help="SIGKILL the channels' process mid-way, then resume")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--spill", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.kill:
        return kill_and_resume(a, argv or sys.argv[1:])
    if not a.verbose:
        import logging

        logging.getLogger("labctl").setLevel(logging.CRITICAL)

    import tempfile

    import sqlalchemy as sa

    from labctl.app.controller import SimSettings, build_sim_channel
    from labctl.core.clock import SharedVirtualClock
    from labctl.db import Database
    from labctl.db.schema import SAMPLE_ID_BITS
    from labctl.engine.channels import Channel, ChannelGroup
    from labctl.engine.runner import Engine
    from labctl.protocols import load_protocol_text

    rng = np.random.default_rng(a.seed)
    horizon = a.days * 86400.0
    cycles = round(horizon / 7200.0)
    protocol = load_protocol_text(PROTOCOL.format(cycles=cycles, record=a.record), source="soak.yaml")
    tmp = tempfile.mkdtemp(prefix="labctl-soak-")
    pg: tuple[str, str] | None = None
    if a.url:
        pass
    elif a.db == "postgres":
        pg = _pg_database()
        if pg is None:
            if os.environ.get("LABCTL_REQUIRE_PG") == "1":
                return 1
            print("falling back to SQLite, without storage outages")
    url = a.url or (pg[1] if pg else f"sqlite:///{tmp}/soak.sqlite")
    db = Database(url, commit_interval=0.5)
    db.spill_dir = __import__("pathlib").Path(a.spill or tmp) / "spill"
    db.outage_wait = 120.0
    clock = SharedVirtualClock(start_unix=1_700_000_000.0)
    channels: list[Channel] = []
    faulty: dict[str, LinkFaults] = {}
    recorders: dict[str, Any] = {}
    for k in range(a.channels):
        name = f"ch{k + 1:02d}"
        devices = build_sim_channel(protocol, clock, SimSettings("br-mg", seed=a.seed * 1000 + k))
        times = np.sort(rng.uniform(3600.0, horizon - 3600.0, a.instrument_faults))
        sched = [(float(t), float(rng.uniform(0.0, 25.0)), str(rng.choice(["disconnect", "silent"]))) for t in times]
        if k == a.channels - 1 and a.channels > 1:
            lost = 5 * 86400.0 if horizon > 5 * 86400.0 else 0.7 * horizon
            sched = [s for s in sched if s[0] < lost] + [(lost, float("inf"), "disconnect")]
        devices.potentiostat = LinkFaults(devices.potentiostat, clock, sched)
        devices.extras = {"instruments": {"potentiostat": f"sim-{name}"}, "channel": name}
        faulty[name] = devices.potentiostat
        rec = db.open_run(
            protocol_name=protocol.name,
            protocol_text=protocol.text,
            channel=name,
            simulated=True,
            seed=a.seed * 1000 + k,
            preset="br-mg",
            started_unix=clock.unix(0.0),
        )
        recorders[name] = rec
        channels.append(Channel(name, Engine(protocol, devices, clock, rec)))
    group = ChannelGroup(clock, channels)
    stop = threading.Event()
    outages = PgOutages(pg[0], a.outages, rng, stop) if pg and a.outages else None
    print(
        f"soak: {a.channels} channels x {a.days:g} days of virtual time ({cycles} cycles, a sample every "
        f"{a.record:g} s), {a.instrument_faults} link faults per channel, "
        f"{a.outages if outages else 0} database outages, {'PostgreSQL' if url.startswith('postgresql') else 'SQLite'}",
        flush=True,
    )
    w0 = time.monotonic()
    group.start()
    if outages is not None:
        outages.start()
    last = w0
    while not group.join(timeout=0.2 if a.child else 0.5):
        if a.child:
            print(f"@day {clock.now() / 86400:.3f}", flush=True)
        if time.monotonic() - last > 15:
            last = time.monotonic()
            print(f"  {last - w0:6.0f} s wall, virtual day {clock.now() / 86400:.2f}", flush=True)
    wall = time.monotonic() - w0
    stop.set()
    if outages is not None:
        outages.join()
    for rec in recorders.values():
        rec.close()
    # ---------------------------------------------------------------- what survived
    measured = committed = lost = doubled = 0
    problems: list[str] = []
    faults_fired = reconnects = 0
    statuses: dict[str, int] = {}
    for c in channels:
        out = c.outcome
        if out is None:
            problems.append(f"{c.name}: no outcome ({c.error!r})")
            continue
        run_id = out.run_id
        statuses[out.status] = statuses.get(out.status, 0) + 1
        with db.engine.connect() as conn:
            ids = np.array(
                [
                    r[0]
                    for r in conn.execute(
                        sa.text("SELECT id FROM samples WHERE run_id = :r ORDER BY id"), {"r": run_id}
                    )
                ],
                dtype=np.int64,
            )
        t = db.samples(run_id, columns=["t"])["t"]
        n = int(out.n_samples)
        measured += n
        committed += len(ids)
        expect = (int(run_id) << SAMPLE_ID_BITS) + np.arange(n, dtype=np.int64)
        missing = np.setdiff1d(expect, ids).size
        extra = len(ids) - (n - missing)
        lost += missing
        doubled += max(0, extra)
        if len(t) and np.any(np.diff(t) < 0):
            problems.append(f"{c.name}: test time goes back")
        steps = db.steps(run_id)
        if sum(int(s["n_samples"] or 0) for s in steps) != len(ids):
            problems.append(f"{c.name}: step sample counts do not add up to the samples")
        ev = db.events(run_id)
        faults_fired += sum(1 for e in ev if e["kind"] == "instrument_fault")
        reconnects += sum(1 for e in ev if e["kind"] == "reconnected")
        run = db.run(run_id)
        if run["status"] != out.status:
            problems.append(f"{c.name}: database status {run['status']} != engine status {out.status}")
        if c.name == channels[-1].name and a.channels > 1:
            print(f"  {c.name} (link lost for good on day 5): {run['status']}: {run['end_reason'][:160]}")
    spills = list(db.spill_dir.glob("*.spill")) if db.spill_dir and db.spill_dir.exists() else []
    storage_events = 0
    with db.engine.connect() as conn:
        storage_events = int(conn.execute(sa.text("SELECT count(*) FROM events WHERE kind = 'storage'")).scalar() or 0)
    db.close()
    if pg:
        _pg_drop(pg[0])
    virtual = clock.now()
    print(f"wall {wall:.1f} s for {virtual / 86400:.2f} virtual days: {virtual / wall:,.0f}x real time")
    print(f"runs: {statuses}")
    print(
        f"instrument link faults: {faults_fired} fired, {reconnects} reconnected "
        f"(connections refused during backoff: {sum(f.refused for f in faulty.values())})"
    )
    if outages is not None:
        print(
            f"database outages: {len(outages.done)} ({', '.join(f'{d:.1f} s' for _, d in outages.done)}), "
            f"storage events {storage_events}, spill files left {len(spills)}"
        )
    print(f"samples measured {measured:,}, committed {committed:,}, lost {lost}, doubled {doubled}")
    for p in problems:
        print("PROBLEM:", p)
    ratio = committed / measured if measured else 0.0
    ok = lost == 0 and doubled == 0 and not problems and not spills
    print(f"ratio committed/measured = {ratio:.6f} (floor 1.0): {'PASS' if ok and ratio >= 1.0 else 'FAIL'}")
    return 0 if ok else 1


def kill_and_resume(a: argparse.Namespace, argv: list[str]) -> int:
    """Run the channels in a child process, SIGKILL it mid-way, resume every run, check."""
    import signal
    import subprocess
    import tempfile
    from pathlib import Path

    import sqlalchemy as sa

    from labctl.app.controller import SimSettings
    from labctl.app.resume import resume_run
    from labctl.db import Database
    from labctl.db.schema import SAMPLE_ID_BITS
    from labctl.db.spill import replay_spill

    rng = np.random.default_rng(a.seed + 1)
    tmp = tempfile.mkdtemp(prefix="labctl-soak-kill-")
    pg = _pg_database() if a.db == "postgres" else None
    url = pg[1] if pg else f"sqlite:///{tmp}/soak.sqlite"
    kill_day = float(rng.uniform(1.5, min(5.5, 0.8 * a.days)))
    args = [x for x in argv if x != "--kill"]
    child = subprocess.Popen(
        [sys.executable, __file__, *args, "--child", "--url", url, "--spill", tmp, "--outages", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    stop = threading.Event()
    outages = PgOutages(pg[0], a.outages, rng, stop) if pg and a.outages else None
    day = 0.0
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("@day "):
            if outages is not None and not outages.is_alive() and not outages.done:
                outages.start()  # once the runs exist: a run cannot start without its database
            day = float(line.split()[1])
            if day >= kill_day:
                child.send_signal(signal.SIGKILL)
                break
        elif not line.startswith("  "):
            print("child:", line.rstrip())
    child.wait()
    stop.set()
    if outages is not None:
        outages.join()
    print(
        f"SIGKILL at virtual day {day:.2f} (exit {child.returncode}); database outages meanwhile: "
        f"{len(outages.done) if outages is not None else 0}"
    )
    db = Database(url, commit_interval=0.5)
    replayed = 0
    for f in sorted((Path(tmp) / "spill").glob("*.spill")) if (Path(tmp) / "spill").exists() else []:
        replayed += replay_spill(db, f)

    def ids_of(run_id: int) -> np.ndarray:
        with db.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id FROM samples WHERE run_id = :r ORDER BY id"), {"r": run_id})
            return np.array([r[0] for r in rows], dtype=np.int64)

    before = {r["id"]: ids_of(r["id"]) for r in db.runs()}
    statuses_before = {r["id"]: db.run(r["id"])["status"] for r in db.runs()}
    print(
        f"after the kill: {sum(len(v) for v in before.values()):,} samples committed, spill replayed {replayed:,}; "
        f"runs {dict((s, list(statuses_before.values()).count(s)) for s in set(statuses_before.values()))}"
    )
    w0 = time.monotonic()
    outcomes = {}
    for run_id, status in statuses_before.items():
        if status == "interrupted":
            run = db.run(run_id)
            outcomes[run_id] = resume_run(db, run_id, sim=SimSettings("br-mg", seed=int(run["seed"] or 0)), speed="max")
    wall = time.monotonic() - w0
    lost = 0
    problems: list[str] = []
    total = 0
    for run_id, old in before.items():
        new = ids_of(run_id)
        total += len(new)
        lost += np.setdiff1d(old, new).size
        base = int(run_id) << SAMPLE_ID_BITS
        if len(new) and not np.array_equal(new, base + np.arange(len(new), dtype=np.int64)):
            problems.append(f"run {run_id}: ids are not one contiguous range")
        t = db.samples(run_id, columns=["t"])["t"]
        if len(t) and np.any(np.diff(t) < 0):
            problems.append(f"run {run_id}: test time goes back")
        if sum(int(s["n_samples"] or 0) for s in db.steps(run_id)) != len(new):
            problems.append(f"run {run_id}: step sample counts do not add up")
        if not any(e["kind"] == "gap" for e in db.events(run_id)) and run_id in outcomes:
            problems.append(f"run {run_id}: no gap event")
    final = {}
    for r in db.runs():
        final[r["status"]] = final.get(r["status"], 0) + 1
    db.close()
    if pg:
        _pg_drop(pg[0])
    print(f"resumed {len(outcomes)} runs in {wall:.1f} s; final: {final}")
    print(f"samples now {total:,}; committed before the kill and lost: {lost}")
    for p in problems:
        print("PROBLEM:", p)
    ok = lost == 0 and not problems and final.get("interrupted", 0) == 0 and child.returncode == -9 and outcomes
    print(f"committed-before-kill kept = {1.0 if lost == 0 else 0.0:.6f} (floor 1.0): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
