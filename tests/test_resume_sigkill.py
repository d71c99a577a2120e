"""Resume after a crash: `labctl run` killed with SIGKILL at random moments, then resumed from its
last checkpoint.  No committed sample lost or duplicated (checked by id and by time), counters
continue across the gap, the gap and the OCV measurement are on record."""

from __future__ import annotations

import multiprocessing.process
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from labctl.app.resume import resume_run
from labctl.db import Database
from labctl.db.schema import SAMPLE_ID_BITS
from tests import forked_cli
from tests.test_cli import SHORT

ROOT = Path(__file__).resolve().parent.parent
TRIALS = 10  # per backend
CYCLES = 40
PROTOCOL = SHORT.replace("times: 3", f"times: {CYCLES}")


def _start(url: str, proto: Path) -> multiprocessing.process.BaseProcess:
    argv = ["run", str(proto), "--sim", "--preset", "br-mg", "--seed", "5", "--speed", "40000", "--db", url]
    return forked_cli.start(argv, str(ROOT))  # a process of its own, without the start-up


def _committed(db: Database) -> int:
    try:
        with db.engine.connect() as c:
            return int(c.execute(sa.text("select coalesce(sum(n_samples), 0) from runs")).scalar() or 0)
    except sa.exc.OperationalError:
        return 0


def _kill_at_random(url: str, proto: Path, rng: random.Random) -> None:
    proc = _start(url, proto)
    db = Database(url)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and _committed(db) == 0:
            time.sleep(0.05)
        assert _committed(db) > 0, "the run never committed samples"
        time.sleep(rng.uniform(0.0, 2.5))  # a random moment of the run
        assert proc.pid is not None and proc.is_alive(), f"labctl run ended before the kill ({proc.exitcode})"
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
        assert proc.exitcode == -signal.SIGKILL
    finally:
        db.close()


def _check_resumed(url: str) -> None:
    with Database(url) as db:
        (run,) = db.runs()
        assert run["status"] == "interrupted", run  # its owner is gone: never shown as running
        before = db.n_samples(run["id"])
        ids_before = _ids(db, run["id"])
        out = resume_run(db, run["id"])
        assert out.status == "completed", out.end_reason
        rid = run["id"]
        n = db.n_samples(rid)
        ids = _ids(db, rid)
        base = rid << SAMPLE_ID_BITS
        # by id: one contiguous range, nothing lost (the committed ones are still there) or doubled
        assert np.array_equal(ids, base + np.arange(n))
        assert np.array_equal(ids[: len(ids_before)], ids_before) and n > before
        data = db.samples(rid, columns=["t", "step_index", "cycle"])
        t = data["t"]
        # by time: test time never goes back, across the gap too
        assert np.all(np.diff(t) >= 0)
        steps = db.steps(rid)
        # every cycle completed both of its galvanostatic steps exactly once
        done = [s for s in steps if s["kind"] == "galvanostatic" and s["end_reason"] == "duration"]
        cycles = sorted(s["cycle"] for s in done)
        assert cycles == sorted(list(range(1, CYCLES + 1)) * 2)
        assert [s["step_index"] for s in steps] == list(range(1, len(steps) + 1))
        for s in steps:  # each step's samples carry its own index, its counts add up
            k = int(np.count_nonzero(data["step_index"] == s["step_index"]))
            assert s["n_samples"] == k, s
        kinds = [e["kind"] for e in db.events(rid)]
        assert "gap" in kinds and "resume" in kinds
        assert any(s["label"] == "resume:ocv" and s["n_samples"] > 0 for s in steps)


def _ids(db: Database, run_id: int) -> np.ndarray:
    with db.engine.connect() as c:
        rows = c.execute(sa.text("select id from samples where run_id = :r order by id"), {"r": run_id}).all()
    return np.array([r[0] for r in rows], dtype=np.int64)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkill_then_resume_sqlite(tmp_path: Path, trial: int):
    proto = tmp_path / "cycling.yaml"
    proto.write_text(PROTOCOL)
    url = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    _kill_at_random(url, proto, random.Random(1000 + trial))
    _check_resumed(url)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkill_then_resume_postgres(tmp_path: Path, pg_url: str, trial: int):
    proto = tmp_path / "cycling.yaml"
    proto.write_text(PROTOCOL)
    _kill_at_random(pg_url, proto, random.Random(2000 + trial))
    _check_resumed(pg_url)


def test_a_completed_run_is_not_resumable(tmp_path: Path):
    from labctl.app.controller import SimSettings, UserError, run_protocol
    from labctl.protocols import load_protocol_text

    with Database(f"sqlite:///{tmp_path / 'lab.sqlite'}") as db:
        out = run_protocol(load_protocol_text(SHORT, source="short.yaml"), db=db, sim=SimSettings("br-mg"))
        with pytest.raises(UserError, match="completed, not interrupted"):
            resume_run(db, out.run_id)


def test_on_interrupt_end_measures_the_ocv_and_ends_the_run(tmp_path: Path):
    """A protocol that says `on_interrupt: end` is not continued after a crash."""
    proto = tmp_path / "cycling.yaml"
    proto.write_text(PROTOCOL.replace("steps:", "on_interrupt: end\nsteps:", 1))
    url = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    _kill_at_random(url, proto, random.Random(7))
    with Database(url) as db:
        (run,) = db.runs()
        before = db.n_samples(run["id"])
        out = resume_run(db, run["id"])
        assert out.status == "aborted" and "on_interrupt: end" in out.end_reason
        steps = db.steps(run["id"])
        assert steps[-1]["label"] == "resume:ocv" and db.n_samples(run["id"]) == before + steps[-1]["n_samples"]
        assert db.run(run["id"])["status"] == "aborted"
