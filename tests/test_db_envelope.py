"""The voltage envelope stored beside the samples (labctl.db.envelope, table trace_buckets): written
by the run writer in the samples' transaction, equal to the samples' own min/max per bucket, never
ahead of them, rebuilt for runs that have none."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from labctl.db import Database, StorageError, envelope
from labctl.db.schema import ENVELOPE_BUCKET, SAMPLE_ID_BITS, trace_buckets

P = ENVELOPE_BUCKET


@pytest.fixture(params=["sqlite", "core", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path, monkeypatch):
    if request.param == "core":  # the SQLAlchemy Core path other dialects take
        monkeypatch.setattr(envelope, "_driver", lambda conn: None)
    if request.param in ("sqlite", "core"):
        return f"sqlite:///{tmp_path}/env.sqlite"
    return request.getfixturevalue("pg_url")


def _open(db: Database):
    rec = db.open_run(protocol_name="p", protocol_text="x", channel="c", simulated=True)
    rec.step_started(0, path="0", kind="rest", label=None, cycle=0, params={}, t=0.0)
    return rec


def _add(rec, n0: int, v: np.ndarray) -> int:
    t = np.arange(n0, n0 + v.size, dtype=float) * 0.5
    rec.samples(0, 0, t, v, np.zeros(v.size), np.zeros(v.size))
    return n0 + v.size


def _expected(v: np.ndarray) -> list[tuple]:
    """What every bucket must hold, from the samples themselves (NaN left out)."""
    out = []
    for b in range(0, v.size, P):
        seg = v[b : b + P]
        num = seg[~np.isnan(seg)]
        out.append(
            (
                b * 0.5,
                (b + seg.size - 1) * 0.5,
                float(num.min()) if num.size else None,
                float(num.max()) if num.size else None,
            )
        )
    return out


def _stored(db: Database, run_id: int, n: int):
    with db.transaction() as conn:
        return envelope.read(conn, run_id, n)


def test_buckets_equal_the_samples_for_uneven_blocks_and_commits(url):
    """Blocks of any length, committed in batches of any size: the last bucket of each commit is
    extended by the next, and every bucket ends up the exact min/max of its samples."""
    rng = np.random.default_rng(7)
    with Database(url) as db:
        rec = _open(db)
        n, parts = 0, []
        for k, m in enumerate([1, 1023, 1, 5000, 700, 3, 2048, 1500, 999]):
            v = 0.1 * rng.normal(size=m)
            if k == 3:
                v[1000:2100] = np.nan  # a whole bucket with no number, and parts of two others
            if k == 6:
                v[17] = 2.4  # a one-sample spike
            n = _add(rec, n, v)
            parts.append(v)
            if k % 2 == 0:
                rec.flush()
            # the envelope never runs ahead of the samples: it always adds up to what is committed
            assert _stored(db, rec.run_id, db.n_samples(rec.run_id)) is not None
        rec.flush()
        v = np.concatenate(parts)
        got = _stored(db, rec.run_id, n)
        assert got == _expected(v)
        assert max(g[3] for g in got if g[3] is not None) == pytest.approx(2.4)
        assert any(g[2] is None and g[3] is None for g in got)
        rec.close()


def test_a_failed_commit_leaves_neither_samples_nor_buckets(tmp_path, monkeypatch):
    with Database(f"sqlite:///{tmp_path}/crash.sqlite") as db:
        rec = _open(db)
        n = _add(rec, 0, np.full(1500, 0.1))
        rec.flush()
        before = _stored(db, rec.run_id, n)

        def fail_after(conn, *a):
            real(conn, *a)  # the buckets are written, then the transaction fails
            raise RuntimeError("disk on fire")

        real = envelope.append
        monkeypatch.setattr(envelope, "append", fail_after)
        _add(rec, n, np.full(3000, -1.0))
        with pytest.raises(StorageError):
            rec.flush()
        assert db.n_samples(rec.run_id) == n
        assert _stored(db, rec.run_id, n) == before
        with db.transaction() as conn:
            rows = conn.execute(sa.select(sa.func.count()).select_from(trace_buckets)).scalar()
        assert rows == 2
        rec.close()


def test_a_run_without_an_envelope_is_rebuilt_and_then_extended(url, monkeypatch):
    """A run recorded before the table existed (no rows): the writer adds nothing to it; rebuild
    computes it from the samples; later commits extend the rebuilt one."""
    rng = np.random.default_rng(1)
    with Database(url) as db:
        rec = _open(db)
        v1 = rng.normal(size=2500)
        v1[100] = np.nan  # a missing voltage is left out (PostgreSQL would call NaN the maximum)
        n = _add(rec, 0, v1)
        rec.flush()
        base = rec.run_id << SAMPLE_ID_BITS
        with db.transaction(write=True) as conn:
            conn.execute(trace_buckets.delete().where(trace_buckets.c.run_id == rec.run_id))
        v2 = rng.normal(size=1000)
        n = _add(rec, n, v2)
        rec.flush()
        assert _stored(db, rec.run_id, n) is None  # not extended: it would claim samples it lacks
        with db.transaction() as conn:
            assert conn.execute(sa.select(trace_buckets.c.id).where(trace_buckets.c.id >= base)).first() is None
        with db.transaction(write=True) as conn:
            n_rebuilt, built = envelope.rebuild(conn, rec.run_id)
        v = np.concatenate([v1, v2])
        assert n_rebuilt == n and built == _expected(v) == _stored(db, rec.run_id, n)
        real_scan = envelope.scan
        monkeypatch.setattr(envelope, "scan", None)  # built by another request meanwhile: not again
        with db.transaction(write=True) as conn:
            assert envelope.rebuild(conn, rec.run_id, if_missing=True) == (n, built)
        monkeypatch.setattr(envelope, "scan", real_scan)
        v3 = rng.normal(size=1200)
        v3[5] = -1.9
        n = _add(rec, n, v3)
        rec.flush()
        assert _stored(db, rec.run_id, n) == _expected(np.concatenate([v, v3]))
        with db.transaction(write=True) as conn, pytest.raises(KeyError):
            envelope.rebuild(conn, 999)
        rec.close()


def test_a_resumed_run_extends_its_envelope(url):
    """An interrupted run taken over again (``reopen_run``, as `labctl resume` and workers do):
    the new writer extends the partly filled last bucket where the old one stopped."""
    rng = np.random.default_rng(5)
    with Database(url) as db:
        rec = _open(db)
        v1 = rng.normal(size=1500)
        n = _add(rec, 0, v1)
        rec.finish("interrupted", "SIGTERM", 0.0)
        again, info = db.reopen_run(rec.run_id)
        assert info["n_samples"] == n
        v2 = rng.normal(size=700)
        v2[-1] = 3.0
        n = _add(again, n, v2)
        again.flush()
        assert _stored(db, rec.run_id, n) == _expected(np.concatenate([v1, v2]))
        again.close()
