"""What goes into a run comes back out: on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.db import SAMPLE_COLUMNS, Database, StorageError


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/labctl.sqlite"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def db(db_url):
    database = Database(db_url)
    yield database
    database.close()


def open_run(db: Database, **kw):
    args = dict(
        protocol_name="aurbach-ce",
        protocol_text="name: aurbach-ce\nsteps: []\n",
        protocol_source="protocols/library/aurbach.yaml",
        cell_label="MG-042",
        cell_kind="asymmetric",
        cell_attrs={"area_cm2": 1.267},
        channel="ch1",
        simulated=True,
        seed=7,
        preset="mg-bhfip",
        started_unix=1_790_000_000.0,
        meta={"station": "bench-1"},
    )
    args.update(kw)
    return db.open_run(**args)


def block(rng, n, t0, *, temperature=True, eis=False):
    t = t0 + np.arange(n) * 0.5
    cols = dict(
        t=t,
        voltage=rng.normal(0.1, 0.05, n),
        current=rng.normal(1e-3, 1e-5, n),
        charge=np.cumsum(rng.normal(5e-4, 1e-6, n)),
    )
    cols["temperature"] = rng.normal(25, 0.1, n) if temperature else None
    cols["frequency"] = np.logspace(5, -1, n) if eis else None
    cols["z_re"] = rng.uniform(10, 100, n) if eis else None
    cols["z_im"] = -rng.uniform(0, 50, n) if eis else None
    return cols


def expected_columns(blocks):
    """Concatenate (step, cycle, cols) blocks the way the database should return them."""
    out = {c: [] for c in SAMPLE_COLUMNS}
    for step, cycle, cols in blocks:
        n = len(cols["t"])
        out["step_index"].append(np.full(n, step, np.int64))
        out["cycle"].append(np.full(n, cycle, np.int64))
        for c in SAMPLE_COLUMNS[2:]:
            out[c].append(cols[c] if cols[c] is not None else np.full(n, np.nan))
    return {c: np.concatenate(v) if v else np.zeros(0) for c, v in out.items()}


def assert_samples_equal(got, want):
    assert set(got) == set(want)
    for c in want:
        assert got[c].shape == want[c].shape, c
        assert np.array_equal(got[c], want[c], equal_nan=True), c
    assert got["step_index"].dtype == np.int64 and got["cycle"].dtype == np.int64
    assert got["t"].dtype == np.float64


def test_a_run_round_trips_exactly(db):
    rng = np.random.default_rng(1)
    rec = open_run(db)
    blocks = []
    t = 0.0
    for step in range(3):
        rec.step_started(
            step,
            path=f"{step}/cycle 1/0",
            kind="cp",
            label=f"step {step}",
            cycle=1,
            params={"current": 1e-3, "limits": {"voltage_above": 1.0}},
            t=t,
        )
        for k in range(4):
            cols = block(rng, 257 + 13 * k, t, temperature=(k % 2 == 0), eis=(step == 2))
            rec.samples(step, 1, **cols)
            blocks.append((step, 1, cols))
            t = cols["t"][-1] + 0.5
        n = sum(len(b[2]["t"]) for b in blocks if b[0] == step)
        rec.step_ended(step, t=t, end_reason="voltage_above", detail="V > 1.0 V", n_samples=n, charge=0.25)
    rec.event(12.5, "safety", "temperature high", {"T": 61.2, "limit": 60})
    rec.event(13.0, "note", "operator checked the cell")
    rec.finish("completed", "complete", 1_790_000_100.0)

    want = expected_columns(blocks)
    assert_samples_equal(db.samples(rec.run_id), want)
    assert db.n_samples(rec.run_id) == len(want["t"])

    steps = db.steps(rec.run_id)
    assert [s["step_index"] for s in steps] == [0, 1, 2]
    assert steps[1]["path"] == "1/cycle 1/0" and steps[1]["label"] == "step 1"
    assert steps[1]["params"] == {"current": 1e-3, "limits": {"voltage_above": 1.0}}
    assert steps[2]["end_reason"] == "voltage_above" and steps[2]["end_detail"] == "V > 1.0 V"
    assert steps[0]["n_samples"] == int(np.sum(want["step_index"] == 0)) and steps[0]["charge"] == 0.25
    assert steps[0]["t_start"] == 0.0 and steps[0]["t_end"] is not None

    ev = db.events(rec.run_id)
    assert [(e["t"], e["kind"], e["message"]) for e in ev] == [
        (12.5, "safety", "temperature high"),
        (13.0, "note", "operator checked the cell"),
    ]
    assert ev[0]["data"] == {"T": 61.2, "limit": 60} and ev[1]["data"] is None

    run = db.run(rec.run_id)
    assert run["status"] == "completed" and run["end_reason"] == "complete"
    assert run["ended_unix"] == 1_790_000_100.0 and run["started_unix"] == 1_790_000_000.0
    assert run["protocol"] == "aurbach-ce" and run["cell"] == "MG-042" and run["channel"] == "ch1"
    assert run["simulated"] is True and run["seed"] == 7 and run["preset"] == "mg-bhfip"
    assert run["meta"] == {"station": "bench-1"}
    assert run["protocol_text"] == "name: aurbach-ce\nsteps: []\n"
    assert run["protocol_hash"] == run["protocol_sha256"] == hashlib.sha256(run["protocol_text"].encode()).hexdigest()
    assert run["protocol_source"] == "protocols/library/aurbach.yaml"
    assert run["cell_kind"] == "asymmetric" and run["cell_attrs"] == {"area_cm2": 1.267}

    listed = db.runs()
    assert listed[0]["id"] == rec.run_id and listed[0]["n_samples"] == len(want["t"])
    assert {
        "id",
        "status",
        "protocol",
        "cell",
        "channel",
        "simulated",
        "seed",
        "preset",
        "started",
        "ended",
        "end_reason",
        "n_samples",
    } <= set(listed[0])


def test_one_step_columns_and_chunks(db):
    rng = np.random.default_rng(2)
    rec = open_run(db)
    blocks = []
    for step in range(4):
        rec.step_started(step, path=str(step), kind="ocp", label=None, cycle=step // 2, params={}, t=step * 100.0)
        cols = block(rng, 1000 + step, step * 100.0)
        rec.samples(step, step // 2, **cols)
        blocks.append((step, step // 2, cols))
    rec.finish("completed", "complete", time.time())
    want = expected_columns(blocks)

    one = db.samples(rec.run_id, step_index=2)
    mask = want["step_index"] == 2
    assert_samples_equal(one, {c: v[mask] for c, v in want.items()})
    only = db.samples(rec.run_id, columns=["voltage", "cycle"])
    assert list(only) == ["voltage", "cycle"]
    assert np.array_equal(only["voltage"], want["voltage"]) and np.array_equal(only["cycle"], want["cycle"])
    assert len(db.samples(rec.run_id, step_index=99)["t"]) == 0

    chunks = list(db.iter_samples(rec.run_id, chunk_rows=777))
    assert max(len(c["t"]) for c in chunks) <= 777
    assert_samples_equal({c: np.concatenate([ch[c] for ch in chunks]) for c in SAMPLE_COLUMNS}, want)
    with pytest.raises(ValueError):
        db.samples(rec.run_id, columns=["volts"])


def test_samples_of_a_step_without_step_row_are_found(db):
    rec = open_run(db)
    rec.samples(5, 0, t=[0.0, 1.0], voltage=[1.0, 2.0], current=[0.0, 0.0], charge=[0.0, 0.0])
    rec.samples(6, 0, t=[2.0], voltage=[3.0], current=[0.0], charge=[0.0])
    rec.finish("completed", "complete", time.time())
    assert db.samples(rec.run_id, step_index=6)["voltage"].tolist() == [3.0]


def test_empty_run_and_unknown_run(db):
    rec = open_run(db, cell_label=None)
    rec.finish("aborted", "operator", time.time())
    assert db.n_samples(rec.run_id) == 0
    assert len(db.samples(rec.run_id)["t"]) == 0
    assert list(db.iter_samples(rec.run_id)) == []
    assert db.run(rec.run_id)["cell"] is None
    for call in (db.run, db.n_samples, db.samples):
        with pytest.raises(KeyError):
            call(rec.run_id + 1000)


def test_non_finite_values_and_json_of_numpy(db):
    rec = open_run(db, meta={"gain": np.float64(2.5), "n": np.int64(3), "arr": np.arange(3), "bad": float("nan")})
    t = np.array([0.0, 1.0, 2.0, 3.0])
    v = np.array([np.nan, np.inf, -np.inf, -0.0])
    rec.samples(0, 0, t, v, t * 0, t * 0, temperature=np.array([1.0, np.nan, 3.0, np.nan]))
    rec.finish("completed", "complete", time.time())
    got = db.samples(rec.run_id)
    assert np.isnan(got["voltage"][0]) and got["voltage"][1] == np.inf and got["voltage"][2] == -np.inf
    assert got["voltage"][3] == 0.0
    assert np.array_equal(got["temperature"], [1.0, np.nan, 3.0, np.nan], equal_nan=True)
    assert db.run(rec.run_id)["meta"] == {"gain": 2.5, "n": 3, "arr": [0, 1, 2], "bad": None}
    with pytest.raises(TypeError):
        open_run(db, meta={"x": object()})


def test_protocols_are_deduplicated_by_hash(db):
    a = open_run(db, protocol_text="steps: [rest]")
    b = open_run(db, protocol_text="steps: [rest]", protocol_name="renamed")
    c = open_run(db, protocol_text="steps: [rest, cp]")
    for rec in (a, b, c):
        rec.finish("completed", "complete", time.time())
    ra, rb, rc = (db.run(r.run_id) for r in (a, b, c))
    assert ra["protocol_id"] == rb["protocol_id"] != rc["protocol_id"]
    assert rb["protocol"] == "aurbach-ce"  # the first name stored for this text
    assert ra["cell_id"] == rc["cell_id"]


def test_cell_attributes_merge(db):
    open_run(db, cell_label="C1", cell_kind=None, cell_attrs={"area_cm2": 1.0}).close()
    r = open_run(db, cell_label="C1", cell_kind="symmetric", cell_attrs={"electrolyte": "MgTFSI"})
    r.close()
    run = db.run(r.run_id)
    assert run["cell_kind"] == "symmetric"
    assert run["cell_attrs"] == {"area_cm2": 1.0, "electrolyte": "MgTFSI"}


def test_results_replace_on_reanalysis(db):
    rec = open_run(db)
    rec.finish("completed", "complete", time.time())
    rid = rec.run_id
    db.add_results(
        rid,
        [
            {"name": "ce", "value": 0.91, "unit": "", "method": "aurbach", "analysis_version": "1"},
            {"name": "ce", "value": 0.5, "step_index": 3, "method": "aurbach"},
            {
                "name": "r_ct",
                "value": 12.0,
                "unit": "ohm",
                "uncertainty": 0.4,
                "method": "randles",
                "data": {"residual": np.array([0.1, -0.1])},
            },
        ],
    )
    db.add_results(rid, [{"name": "ce", "value": 0.93, "method": "aurbach", "analysis_version": "2"}])
    db.add_results(rid, [{"name": "ce", "value": 0.92, "method": "other"}])
    rows = db.results(rid)
    ce = sorted(
        (r["method"], r["step_index"] if r["step_index"] is not None else -1, r["value"], r["analysis_version"])
        for r in rows
        if r["name"] == "ce"
    )
    assert ce == [("aurbach", -1, 0.93, "2"), ("aurbach", 3, 0.5, None), ("other", -1, 0.92, None)]
    rct = next(r for r in rows if r["name"] == "r_ct")
    assert rct["data"] == {"residual": [0.1, -0.1]} and rct["uncertainty"] == 0.4 and rct["created_unix"] > 0
    with pytest.raises(KeyError):
        db.add_results(rid + 99, [{"name": "x"}])
    with pytest.raises(TypeError):
        db.add_results(rid, [{"name": "x", "valeu": 1}])


def test_coatings(db):
    rec = open_run(db)
    rec.close()
    first = db.add_coating(
        cell_label="MG-042",
        run_id=rec.run_id,
        step_index=0,
        solution="PEO in ACN",
        concentration="2 vol%",
        rinse_solution="DME",
        immersion_start=100.0,
        immersion_end=160.0,
        rinse_start=170.0,
        rinse_end=180.0,
        operator="ab",
        planned_immersion_s=60.0,
        planned_rinse_s=10.0,
        deviations=[{"stage": "immersion", "delta_s": 0.4}],
        mode="automatic",
    )
    second = db.add_coating(cell_label="MG-042", immersion_start=50.0, mode="manual")
    db.add_coating(cell_label="OTHER")
    got = db.coatings("MG-042")
    assert [c["id"] for c in got] == [second, first]
    assert got[1]["deviations"] == [{"stage": "immersion", "delta_s": 0.4}]
    assert got[1]["solution"] == "PEO in ACN" and got[1]["concentration"] == "2 vol%"
    assert got[1]["immersion_end"] - got[1]["immersion_start"] == 60.0
    with pytest.raises(TypeError):
        db.add_coating(cell_label="x", colour="red")


def test_writer_error_surfaces_on_next_call_and_finish(db):
    rec = open_run(db)
    rec.step_started(0, path="0", kind="cp", label=None, cycle=0, params={}, t=0.0)
    rec.step_started(0, path="0", kind="cp", label=None, cycle=0, params={}, t=0.0)  # duplicate
    with pytest.raises(StorageError) as err:
        rec.flush(timeout=30)
    assert err.value.__cause__ is not None and "step" in repr(err.value.__cause__).lower()
    with pytest.raises(StorageError):
        rec.samples(0, 0, [0.0], [0.0], [0.0], [0.0])
    with pytest.raises(StorageError) as err2:
        rec.finish("completed", "complete", time.time())
    assert err2.value.__cause__ is err.value.__cause__
    assert db.run(rec.run_id)["status"] == "failed"
    rec.close()  # already reported: does not raise again


def test_close_without_finish_flushes_and_marks_aborted(db):
    rec = open_run(db)
    rec.samples(0, 0, np.arange(5.0), np.ones(5), np.zeros(5), np.zeros(5))
    rec.event(1.0, "note", "x")
    rec.close()
    rec.close()
    assert db.n_samples(rec.run_id) == 5 and len(db.events(rec.run_id)) == 1
    run = db.run(rec.run_id)
    assert run["status"] == "aborted" and run["end_reason"] == "recorder closed before finish"
    with pytest.raises(RuntimeError):
        rec.samples(0, 0, [0.0], [0.0], [0.0], [0.0])
    rec.flush()  # nothing left to flush: returns


def test_database_close_closes_open_recorders(db_url):
    database = Database(db_url)
    rec = open_run(database)
    rec.samples(0, 0, np.arange(3.0), np.ones(3), np.zeros(3), np.zeros(3))
    database.close()
    assert rec.closed
    with Database(db_url) as again:
        assert again.n_samples(rec.run_id) == 3


def test_flush_makes_samples_visible_to_other_connections(db, db_url):
    rec = open_run(db)
    rec.samples(0, 0, np.arange(10.0), np.ones(10), np.zeros(10), np.zeros(10))
    rec.flush()
    with Database(db_url) as reader:
        assert reader.n_samples(rec.run_id) == 10
        assert reader.run(rec.run_id)["status"] == "running"
    rec.finish("completed", "complete", time.time())


def test_invalid_calls_fail_in_the_caller(db):
    rec = open_run(db)
    with pytest.raises(ValueError):
        rec.samples(0, 0, [0.0, 1.0], [0.0], [0.0, 0.0], [0.0, 0.0])
    with pytest.raises(ValueError):
        rec.samples(0, 0, [0.0], [0.0], None, [0.0])
    with pytest.raises(TypeError):
        rec.event(0.0, "x", "y", {"bad": object()})
    with pytest.raises(ValueError):
        rec.finish("done", "x", 0.0)
    rec.samples(0, 0, [], [], [], [])  # empty block: nothing to do
    rec.finish("completed", "complete", time.time())
    assert db.n_samples(rec.run_id) == 0


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_blocks_round_trip(db, data):
    floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
    rec = open_run(db)
    blocks = []
    n_blocks = data.draw(st.integers(1, 5))
    step = 0
    for _ in range(n_blocks):
        step += data.draw(st.integers(0, 1))
        n = data.draw(st.integers(1, 40))

        def col(n=n):
            return np.array(data.draw(st.lists(floats, min_size=n, max_size=n)), dtype=np.float64)

        cols = {c: col() for c in ("t", "voltage", "current", "charge")}
        for c in ("temperature", "frequency", "z_re", "z_im"):
            cols[c] = col() if data.draw(st.booleans()) else None
        cycle = data.draw(st.integers(0, 10_000))
        rec.samples(step, cycle, **cols)
        blocks.append((step, cycle, cols))
    rec.finish("completed", "complete", time.time())
    want = expected_columns(blocks)
    got = db.samples(rec.run_id)
    for c in SAMPLE_COLUMNS:  # -0.0 may come back as 0.0 (SQLite stores integral reals as integers)
        assert np.array_equal(got[c], want[c], equal_nan=True), c
    # the stored voltage envelope (one bucket here): NaN left out, infinities kept
    from labctl.db import envelope

    with db.transaction() as conn:
        (t0, t1, lo, hi), *rest = envelope.read(conn, rec.run_id, len(want["t"]))
    v = want["voltage"][~np.isnan(want["voltage"])]
    assert not rest and (lo, hi) == ((v.min(), v.max()) if v.size else (None, None))
    t = want["t"]
    assert [t0, t1] == [None if np.isnan(x) else x for x in (t[0], t[-1])]


def test_in_memory_sqlite():
    with Database("sqlite://") as mem:
        rec = open_run(mem)
        rec.samples(0, 0, np.arange(4.0), np.ones(4), np.zeros(4), np.zeros(4))
        rec.finish("completed", "complete", time.time())
        assert mem.samples(rec.run_id)["t"].tolist() == [0.0, 1.0, 2.0, 3.0]
