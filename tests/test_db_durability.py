"""Crashes, concurrent recorders and back-pressure: the writer as a sink that does not lose data."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from labctl.db import Database
from labctl.db.schema import SAMPLE_ID_BITS

ROOT = Path(__file__).resolve().parents[1]


def open_run(db: Database, channel: str = "ch1"):
    return db.open_run(protocol_name="p", protocol_text="steps: []", channel=channel, simulated=True)


def run_child(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def values(n0: int, n: int) -> np.ndarray:
    return np.arange(n0, n0 + n, dtype=np.float64)


CHILD_CRASH = """
    import os, sys, time
    import numpy as np
    from labctl.db import Database
    db = Database(sys.argv[1], commit_interval=0.05)
    rec = db.open_run(protocol_name="p", protocol_text="x", channel="ch1", simulated=True)
    rec.step_started(0, path="0", kind="cp", label=None, cycle=0, params={}, t=0.0)
    for k in range(30):
        v = np.arange(k * 1000, (k + 1) * 1000, dtype=float)
        rec.samples(0, 0, v, v, v, v)
    rec.flush()
    print(rec.run_id, flush=True)
    for k in range(30, 2000):   # keep writing; the process dies mid-run
        v = np.arange(k * 1000, (k + 1) * 1000, dtype=float)
        rec.samples(0, 0, v, v, v, v)
        if sys.argv[2] == "exit" and k == 60:
            os._exit(1)
        if sys.argv[2] == "wait" and k == 40:
            print("writing", flush=True)
"""


def check_after_crash(url: str, path: Path, run_id: int) -> None:
    with Database(url) as db:
        n = db.n_samples(run_id)
        assert n >= 30_000
        got = db.samples(run_id, columns=["t", "voltage"])
        assert len(got["t"]) == n  # the sample counter is committed with the samples
        assert np.array_equal(got["t"], values(0, n)) and np.array_equal(got["voltage"], values(0, n))
        # the process died with the run "running": its owner is gone, so it reads as interrupted
        assert db.run(run_id)["status"] == "interrupted"
        # Not locked: another run can be written and read at once.
        rec = open_run(db)
        rec.samples(0, 0, values(0, 10), values(0, 10), values(0, 10), values(0, 10))
        rec.finish("completed", "complete", time.time())
        assert db.n_samples(rec.run_id) == 10
    con = sqlite3.connect(path, timeout=0.5, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    con.execute("COMMIT")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_committed_samples_survive_os_exit_mid_run(tmp_path):
    path = tmp_path / "crash.sqlite"
    url = f"sqlite:///{path}"
    proc = run_child(CHILD_CRASH, url, "exit")
    assert proc.returncode == 1, proc.stderr
    check_after_crash(url, path, int(proc.stdout.split()[0]))


def test_committed_samples_survive_sigkill_while_writing(tmp_path):
    path = tmp_path / "kill.sqlite"
    url = f"sqlite:///{path}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD_CRASH), url, "wait"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_id = int(proc.stdout.readline())
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.05)  # the writer thread is committing batches now
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    proc.stdout.close()
    proc.stderr.close()
    check_after_crash(url, path, run_id)


def test_atexit_flushes_a_recorder_left_open(tmp_path):
    url = f"sqlite:///{tmp_path}/atexit.sqlite"
    proc = run_child(
        """
        import sys, numpy as np
        from labctl.db import Database
        db = Database(sys.argv[1], commit_interval=3600)
        rec = db.open_run(protocol_name="p", protocol_text="x", channel="ch1", simulated=True)
        v = np.arange(12345, dtype=float)
        rec.samples(0, 0, v, v, v, v)
        print(rec.run_id)
    """,
        url,
    )
    assert proc.returncode == 0, proc.stderr
    with Database(url) as db:
        run_id = int(proc.stdout.split()[0])
        assert db.n_samples(run_id) == 12345
        assert db.run(run_id)["status"] == "aborted"


def test_commit_interval_bounds_what_a_crash_can_lose(tmp_path):
    url = f"sqlite:///{tmp_path}/interval.sqlite"
    with Database(url, commit_interval=0.1) as db:
        rec = open_run(db)
        rec.samples(0, 0, values(0, 100), values(0, 100), values(0, 100), values(0, 100))
        with Database(url) as reader:
            deadline = time.monotonic() + 10
            while reader.n_samples(rec.run_id) < 100 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert reader.n_samples(rec.run_id) == 100  # committed without any flush
        rec.finish("completed", "complete", time.time())


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_recorders_at_once(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path}/multi.sqlite" if backend == "sqlite" else request.getfixturevalue("pg_url")
    with Database(url, commit_interval=0.01, commit_rows=500) as db:
        recs = [open_run(db, "ch1"), open_run(db, "ch2")]
        errors = []

        def produce(rec, offset):
            try:
                for k in range(40):
                    v = values(offset + k * 100, 100)
                    rec.samples(k // 10, 0, v, v + 0.5, v, v)
                    time.sleep(0.001)
                rec.finish("completed", "complete", time.time())
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=produce, args=(r, i * 1_000_000)) for i, r in enumerate(recs)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not errors
        for i, rec in enumerate(recs):
            got = db.samples(rec.run_id)
            want = values(i * 1_000_000, 4000)
            assert np.array_equal(got["t"], want) and np.array_equal(got["voltage"], want + 0.5)
            assert np.array_equal(got["step_index"], np.repeat(np.arange(4), 1000))
            assert db.n_samples(rec.run_id) == 4000
            assert db.samples(rec.run_id, step_index=2)["t"][0] == i * 1_000_000 + 2000
            assert db.run(rec.run_id)["status"] == "completed"


def test_two_processes_write_one_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path}/procs.sqlite"
    Database(url).close()
    code = """
        import sys, time, numpy as np
        from labctl.db import Database
        db = Database(sys.argv[1], commit_interval=0.005, commit_rows=300)
        rec = db.open_run(protocol_name="p", protocol_text="x", channel=sys.argv[2], simulated=True)
        for k in range(50):
            v = np.arange(k * 200, (k + 1) * 200, dtype=float)
            rec.samples(0, 0, v, v, v, v)
            time.sleep(0.002)
        rec.finish("completed", "complete", time.time())
        print(rec.run_id)
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), url, f"ch{i}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    with Database(url) as db:
        for out, _ in outs:
            run_id = int(out.split()[0])
            assert np.array_equal(db.samples(run_id)["t"], values(0, 10_000))


def test_sample_ids_are_a_contiguous_range_per_run(tmp_path):
    path = tmp_path / "ids.sqlite"
    with Database(f"sqlite:///{path}") as db:
        a, b = open_run(db), open_run(db)
        for k in range(3):  # interleaved: b is above a, so a cannot use automatic rowids
            a.samples(0, 0, values(k * 10, 10), values(0, 10), values(0, 10), values(0, 10))
            b.samples(0, 0, values(k * 10, 10), values(0, 10), values(0, 10), values(0, 10))
            a.flush()
            b.flush()
        a.finish("completed", "complete", 0.0)
        b.finish("completed", "complete", 0.0)
    con = sqlite3.connect(path)
    for rec in (a, b):
        ids = [r[0] for r in con.execute("SELECT id FROM samples WHERE run_id = ? ORDER BY id", (rec.run_id,))]
        assert ids == list(range(rec.run_id << SAMPLE_ID_BITS, (rec.run_id << SAMPLE_ID_BITS) + 30))
    con.close()


def test_back_pressure_bounds_the_queue(tmp_path):
    with Database(f"sqlite:///{tmp_path}/bp.sqlite", max_queued_samples=1000) as db:
        rec = open_run(db)
        gate = threading.Event()
        real_add = rec._sink.add

        def slow_add(*args):
            gate.wait(30)
            real_add(*args)

        rec._sink.add = slow_add
        pushed = []

        def produce():
            for k in range(10):
                rec.samples(0, 0, values(k * 400, 400), values(0, 400), values(0, 400), values(0, 400))
                pushed.append(k)

        th = threading.Thread(target=produce)
        th.start()
        time.sleep(0.5)
        assert th.is_alive() and len(pushed) == 2  # 800 queued; the third block would exceed 1000
        gate.set()
        th.join(30)
        assert len(pushed) == 10
        rec.finish("completed", "complete", time.time())
        assert np.array_equal(db.samples(rec.run_id)["t"], values(0, 4000))


def test_samples_never_waits_on_sql(tmp_path):
    """A slow database does not slow the producer while the queue has room."""
    with Database(f"sqlite:///{tmp_path}/fast.sqlite") as db:
        rec = open_run(db)
        gate = threading.Event()
        real_add = rec._sink.add
        rec._sink.add = lambda *a: (gate.wait(30), real_add(*a))
        t0 = time.perf_counter()
        for k in range(50):
            rec.samples(0, 0, values(k * 1000, 1000), values(0, 1000), values(0, 1000), values(0, 1000))
        assert time.perf_counter() - t0 < 1.0
        gate.set()
        rec.finish("completed", "complete", time.time())
        assert db.n_samples(rec.run_id) == 50_000


def test_caller_may_reuse_its_buffers(tmp_path):
    with Database(f"sqlite:///{tmp_path}/reuse.sqlite") as db:
        rec = open_run(db)
        buf = np.zeros(100)
        for k in range(5):
            buf[:] = k
            rec.samples(0, 0, buf, buf, buf, buf)
        rec.finish("completed", "complete", time.time())
        assert np.array_equal(db.samples(rec.run_id)["t"], np.repeat(np.arange(5.0), 100))
