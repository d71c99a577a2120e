"""Storage outages: the database unreachable mid-run, then back.  Samples go to a spill file and
are written back in order, exactly once; a database that never returns keeps them in the file,
which `replay_spill` writes later; a deleted SQLite file is noticed, not written into the void."""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from labctl.db import Database, StorageError
from labctl.db.schema import SAMPLE_ID_BITS
from labctl.db.spill import replay_spill


class Outage:
    """Makes every write transaction of ``db`` fail as a lost connection while ``down``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.down = False
        self.failures = 0
        self._tx = db._tx

        @contextlib.contextmanager
        def tx(write: bool = False):
            if write and self.down:
                self.failures += 1
                raise sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))
            with self._tx(write=write) as conn:
                yield conn

        db._tx = tx  # type: ignore[method-assign]


def _open(db: Database):
    rec = db.open_run(protocol_name="p", protocol_text="x", channel="ch1", simulated=True)
    rec.step_started(1, path="1", kind="galvanostatic", label=None, cycle=0, params={}, t=0.0)
    return rec


def _write(rec, k0: int, k1: int) -> None:
    for k in range(k0, k1):
        t = np.arange(k * 100, (k + 1) * 100, dtype=float)
        rec.samples(1, 0, t, t, t, t)


def _check_exact(db: Database, run_id: int, n: int) -> None:
    assert db.n_samples(run_id) == n
    got = db.samples(run_id, columns=["t"])["t"]
    assert np.array_equal(got, np.arange(n, dtype=float))  # in order, none lost, none doubled
    with db.engine.connect() as c:
        ids = [r[0] for r in c.execute(sa.text("select id from samples where run_id = :r order by id"), {"r": run_id})]
    assert ids == [(run_id << SAMPLE_ID_BITS) + i for i in range(n)]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_outage_mid_run_spills_and_replays_exactly_once(backend, tmp_path: Path, request):
    url = f"sqlite:///{tmp_path / 'lab.sqlite'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    with Database(url, commit_interval=0.05) as db:
        db.spill_dir = tmp_path / "spill"
        outage = Outage(db)
        rec = _open(db)
        _write(rec, 0, 50)
        rec.flush()
        outage.down = True
        _write(rec, 50, 300)  # measured while the database is down: the run goes on
        time.sleep(1.0)
        assert outage.failures > 0
        spills = list((tmp_path / "spill").glob("run-*.spill"))
        assert len(spills) == 1 and spills[0].stat().st_size > 0
        outage.down = False
        _write(rec, 300, 400)
        rec.step_ended(1, t=39999.0, end_reason="duration", detail="", n_samples=40000, charge=0.0)
        rec.finish("completed", "protocol completed", time.time())
        _check_exact(db, rec.run_id, 40000)
        assert not list((tmp_path / "spill").glob("*.spill"))  # written back, then removed
        assert db.run(rec.run_id)["status"] == "completed"
        assert any(e["kind"] == "storage" and "spill file" in e["message"] for e in db.events(rec.run_id))


def test_a_database_that_never_returns_keeps_the_spill_for_a_later_replay(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    with Database(url, commit_interval=0.05) as db:
        db.spill_dir = tmp_path / "spill"
        db.outage_wait = 0.5
        outage = Outage(db)
        rec = _open(db)
        _write(rec, 0, 10)
        rec.flush()
        outage.down = True
        _write(rec, 10, 60)
        with pytest.raises(StorageError, match=r"kept in .*run-\d+-\d+\.spill .*labctl spill replay"):
            rec.finish("completed", "protocol completed", time.time())
        (spill,) = (tmp_path / "spill").glob("*.spill")
        outage.down = False
        assert db.n_samples(rec.run_id) == 1000
        assert replay_spill(db, spill) == 5000
        _check_exact(db, rec.run_id, 6000)
        assert not spill.exists()


def test_a_deleted_sqlite_file_is_noticed_not_written_into_the_void(tmp_path: Path):
    folder = tmp_path / "data"
    folder.mkdir()
    with Database(f"sqlite:///{folder / 'lab.sqlite'}", commit_interval=0.05) as db:
        db.spill_dir = tmp_path / "spill"
        db.outage_wait = 0.3
        rec = _open(db)
        _write(rec, 0, 10)
        rec.flush()
        shutil.rmtree(folder)
        _write(rec, 10, 20)
        with pytest.raises(StorageError, match="is gone"):
            rec.finish("completed", "protocol completed", time.time())
        (spill,) = (tmp_path / "spill").glob("*.spill")
        assert spill.stat().st_size > 0  # the samples measured after the deletion are kept
