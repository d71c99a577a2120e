"""The channel grid: one row per channel with its latest run, live status, last sample, end estimate."""

from __future__ import annotations

import time

import numpy as np
import pytest

from labctl.app.grid import channel_grid, expected_duration
from labctl.db import Database
from labctl.protocols import load_protocol, load_protocol_text

PROTO = """\
name: grid-test
cell: {kind: symmetric, working: Mg, counter: Mg, area: 1 cm2}
safety: {voltage: [-2.5 V, 2.5 V], current: 20 mA}
steps:
  - rest: {duration: 60 s, record_every: 10 s}
  - repeat:
      times: 3
      steps:
        - galvanostatic: {label: plate, current: -1 mA, duration: 100 s, record_every: 10 s}
        - galvanostatic: {label: strip, current: 1 mA, duration: 100 s, record_every: 10 s}
"""


def _open(db: Database, channel: str, *, station: str | None = None, cell: str = "c1", started: float | None = None):
    meta = {} if station is None else {"station": station}
    return db.open_run(
        protocol_name="grid-test",
        protocol_text=PROTO,
        cell_label=cell,
        channel=channel,
        simulated=True,
        started_unix=started,
        meta=meta,
    )


def test_expected_duration_of_protocols():
    assert expected_duration(load_protocol_text(PROTO)) == pytest.approx(60 + 3 * 200)
    # until-short loops count their bound (here max_cycles x 2 h, capped by max_duration 2000 h)
    p = load_protocol("symmetric-0.5mA")
    assert expected_duration(p) == pytest.approx(6 * 3600 + 2000 * 3600)


def test_one_row_per_channel_latest_run_last_sample(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'g.sqlite'}")
    t0 = time.time() - 100
    old = _open(db, "ch1", started=t0 - 1000)
    old.finish("completed", "complete", t0 - 500)
    old.close()
    rec = _open(db, "ch1", started=t0, cell="c2")
    rec.step_started(0, path="1", kind="rest", label=None, cycle=0, params={}, t=0.0)
    rec.step_ended(0, t=60.0, end_reason="duration", detail="", n_samples=0, charge=0.0)
    rec.step_started(1, path="2/cycle 1/1", kind="galvanostatic", label="plate", cycle=1, params={}, t=60.0)
    t = np.arange(5.0) + 60
    rec.samples(1, 1, t, np.array([0.1, 0.2, 0.3, 0.4, -0.05]), np.full(5, -1e-3), np.zeros(5))
    rec.flush()
    other = _open(db, "ch2", station="benchA", cell="c3")
    other.close()  # closed without finish: stays whatever the recorder leaves
    # the same channel name on another station is another channel
    _open(db, "ch1", station="benchA", cell="c4").flush()

    rows = channel_grid(db)
    keys = [(r.station, r.channel) for r in rows]
    assert keys == [(None, "ch1"), ("benchA", "ch1"), ("benchA", "ch2")]
    r = rows[0]
    assert r.run_id == rec.run_id and r.cell == "c2" and r.protocol == "grid-test"
    assert r.status == "running"
    assert r.step == "plate" and r.step_index == 1 and r.cycle == 1
    assert r.voltage == pytest.approx(-0.05) and r.current == pytest.approx(-1e-3)
    assert r.elapsed_s == pytest.approx(100, abs=5)
    assert r.estimated_end_unix == pytest.approx(t0 + 660)
    assert r.heartbeat_age_s is not None and r.heartbeat_age_s < 5
    rec.close()
    db.close()


def test_stalled_and_interrupted(tmp_path):
    import sqlalchemy as sa

    from labctl.db.schema import runs

    db = Database(f"sqlite:///{tmp_path / 'g.sqlite'}")
    a = _open(db, "alive")
    b = _open(db, "dead")
    a.flush()
    b.flush()
    now = time.time()
    with db.transaction(write=True) as conn:
        # our own process owns "alive" but its heartbeat stopped 2 minutes ago: stalled
        conn.execute(sa.update(runs).where(runs.c.id == a.run_id).values(heartbeat_unix=now - 120))
        # "dead" belongs to a process that no longer exists: interrupted
        conn.execute(
            sa.update(runs).where(runs.c.id == b.run_id).values(owner="no-such-host:1", heartbeat_unix=now - 120)
        )
    status = {r.channel: r.status for r in channel_grid(db, now=now)}
    assert status == {"alive": "stalled", "dead": "interrupted"}
    a.close()
    b.close()
    db.close()


def test_a_finished_run_keeps_its_elapsed_and_unknown_lengths_have_no_estimate(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'g.sqlite'}")
    t0 = time.time() - 5000
    rec = _open(db, "done", started=t0)
    rec.finish("completed", "complete", t0 + 1234)
    rec.close()
    stage = PROTO.replace("steps:\n", "steps:\n  - temperature: {setpoint: 40 degC, hold: 1 min}\n", 1)
    assert expected_duration(load_protocol_text(stage)) is None  # waits for the stage's band
    r2 = db.open_run(protocol_name="stage", protocol_text=stage, channel="stage", simulated=True)
    r2.flush()
    rows = {r.channel: r for r in channel_grid(db)}
    assert rows["done"].status == "completed" and rows["done"].elapsed_s == pytest.approx(1234)
    assert rows["stage"].estimated_end_unix is None and rows["stage"].voltage is None
    r2.close()
    db.close()
