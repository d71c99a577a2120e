"""Neware BTS cyclers: step files, refusals, the emulated 8-channel BTS against the in-process
simulator, injected faults, and a labctl killed mid-harvest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.app.controller import SimSettings, run_protocol
from labctl.app.cycler_run import run_on_cycler
from labctl.app.cycler_translate import translate
from labctl.app.results import analyze_and_store
from labctl.app.station import StationError, load_station_text
from labctl.core.clock import VirtualClock
from labctl.core.errors import ProtocolError
from labctl.db import Database
from labctl.drivers.cycler import CyclerCC, CyclerProgram
from labctl.drivers.neware import BtsClient, parse_step_xml, to_step_xml
from labctl.drivers.techniques import Recording
from labctl.protocols import load_protocol, load_protocol_text
from labctl.simulators.emulators.neware import NewareEmulator

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "labctl" / "studies" / "mg_anode" / "library"
PRESET, SEED = "br-mg", 3


def _lib(name: str, *edits: tuple[str, str]) -> object:
    text = (LIB / f"{name}.yaml").read_text()
    for a, b in edits:
        assert a in text
        text = text.replace(a, b)
    return load_protocol_text(text, source=f"{name}.yaml")


SHORT = {
    "symmetric": lambda: _lib("symmetric-0.5mA", ("max_cycles: 5000", "max_cycles: 6")),
    "aurbach": lambda: _lib("aurbach-ce"),
    "ce-longterm": lambda: _lib("ce-longterm-0.5mA", ("times: 2000", "times: 6")),
}


def _station(em: NewareEmulator, tmp: Path, **opts: object) -> object:
    extra = "".join(f", {k}: {v}" for k, v in opts.items())
    chans = "\n".join(f"  N{c}: {{cycler: bts, address: 27-1-{c}}}" for c in range(1, 9))
    text = (
        f"instruments:\n  bts: {{driver: neware, host: 127.0.0.1, port: {em.port}, "
        f"step_folder: '{tmp / 'steps'}', channels: 8{extra}}}\nchannels:\n{chans}\n"
    )
    return load_station_text(text, source="station.yaml")


@pytest.fixture
def emulator():
    em = NewareEmulator(clock=VirtualClock(), preset=PRESET, seed=SEED, channels=8)
    yield em
    em.close()


# ------------------------------------------------------------------------------ step files
def test_step_files_of_the_library_read_back_exactly() -> None:
    for name in ("symmetric-0.5mA", "aurbach-ce", "ce-longterm-0.5mA", "ce-multi-current", "full-cell-0.1C"):
        tr = translate(load_protocol(LIB / f"{name}.yaml"), cell_remark="labctl cell: kind=asymmetric")
        assert parse_step_xml(to_step_xml(tr.program)) == tr.program


def test_aurbach_is_cc_steps_and_a_loop() -> None:
    tr = translate(load_protocol(LIB / "aurbach-ce.yaml"))
    kinds = [s.kind for s in tr.program.steps]
    assert kinds == ["rest", "cc", "cc", "cc", "loop", "cc"]
    loop = tr.program.steps[4]
    assert (loop.first, loop.count) == (3, 20)
    xml = to_step_xml(tr.program)
    assert 'Step_Type="5"' in xml and '<Cycle_Count Value="20"' in xml


@settings(max_examples=60, deadline=None)
@given(
    i=st.floats(1e-7, 0.1) | st.floats(-0.1, -1e-7),
    dur=st.floats(1.0, 1e7),
    q=st.floats(1e-6, 1e4),
    v=st.floats(-5, 5),
    dt=st.floats(0.01, 3600),
)
def test_cc_step_values_survive_the_file(i: float, dur: float, q: float, v: float, dt: float) -> None:
    prog = CyclerProgram((CyclerCC(i, dur, q, v, Recording(dt=dt, dv=0.005)),))
    back = parse_step_xml(to_step_xml(prog)).steps[0]
    assert back.current == pytest.approx(i, rel=1e-14)
    assert back.duration == pytest.approx(dur, rel=1e-14)
    assert back.charge == pytest.approx(q, rel=1e-14)
    assert back.voltage_limit == pytest.approx(v, rel=1e-14, abs=1e-15)


@pytest.mark.parametrize("name", ["eis-rt", "tafel", "dip-coat", "eis-temperature", "eis-cycling"])
def test_steps_a_cycler_cannot_run_are_refused_with_position_and_hint(name: str) -> None:
    with pytest.raises(ProtocolError) as e:
        translate(load_protocol(LIB / f"{name}.yaml"))
    text = str(e.value)
    assert f"{name}.yaml:" in text and "potentiostat channel of the same campaign" in text
    assert all(i.line for i in e.value.issues)


def test_cli_refuses_before_anything_is_sent(emulator: NewareEmulator, tmp_path: Path) -> None:
    st_file = tmp_path / "station.yaml"
    st_file.write_text(
        f"instruments:\n  bts: {{driver: neware, host: 127.0.0.1, port: {emulator.port}, step_folder: '{tmp_path}'}}\n"
        "channels:\n  N1: {cycler: bts, address: 27-1-1}\n"
    )
    db = tmp_path / "x.db"
    r = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "run", str(LIB / "eis-rt.yaml"), "--station", str(st_file),
         "--channel", "N1", "--db", f"sqlite:///{db}"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "eis-rt.yaml:" in r.stderr + r.stdout and "potentiostat channel" in r.stderr + r.stdout
    assert emulator.log == []  # not even a connect
    assert not list(tmp_path.glob("*.xml"))


def test_station_cycler_channels_are_checked() -> None:
    base = "instruments:\n  bts: {driver: neware}\n  p: {driver: sim, preset: br-mg}\nchannels:\n"
    with pytest.raises(StationError, match="needs its address"):
        load_station_text(base + "  N1: {cycler: bts}\n")
    with pytest.raises(StationError, match="already channel N1"):
        load_station_text(base + "  N1: {cycler: bts, address: 27-1-1}\n  N2: {cycler: bts, address: 27-1-1}\n")
    with pytest.raises(StationError, match="not a cycler"):
        load_station_text(base + "  N1: {cycler: p, address: 27-1-1}\n")
    ok = load_station_text(base + "  N1: {cycler: bts, address: 27-1-1}\n  N2: {cycler: bts, address: 27-1-2}\n")
    assert ok.channel("N2").cycler == "bts"


# ------------------------------------------------------------------------------ same data
def _compare(db: Database, a: int, b: int, last_dt: float = 0.2) -> None:
    """Same samples, steps and analysed numbers; ``last_dt``: how far the run's final sample may be
    off (the engine interpolates a short's crossing, labctl sees the cycler's next recorded sample)."""
    x, y = db.samples(a), db.samples(b)
    assert len(x["t"]) == len(y["t"]) > 0
    assert abs(x["t"][-1] - y["t"][-1]) <= last_dt
    x = {k: v[:-1] for k, v in x.items()}
    y = {k: v[:-1] for k, v in y.items()}
    np.testing.assert_array_equal(x["step_index"], y["step_index"])
    np.testing.assert_array_equal(x["cycle"], y["cycle"])
    np.testing.assert_allclose(x["t"], y["t"], atol=0.2)  # a capacity limit met on the cycler's own count
    np.testing.assert_allclose(x["voltage"], y["voltage"], atol=1e-4)
    np.testing.assert_allclose(x["current"], y["current"], rtol=1e-5, atol=1e-12)  # the sample at a crossing
    np.testing.assert_allclose(x["charge"], y["charge"], rtol=1e-4, atol=1e-6)
    sx, sy = db.steps(a), db.steps(b)
    assert [(s["path"], s["label"], s["kind"], s["cycle"], s["n_samples"]) for s in sx] == [
        (s["path"], s["label"], s["kind"], s["cycle"], s["n_samples"]) for s in sy
    ]
    assert [s["end_reason"] for s in sx] == [s["end_reason"] for s in sy]
    ra = {(r["name"], r["step_index"]): r["value"] for r in analyze_and_store(db, a)}
    rb = {(r["name"], r["step_index"]): r["value"] for r in analyze_and_store(db, b)}
    assert ra.keys() == rb.keys() and ra
    for k, v in ra.items():
        if v is None or rb[k] is None:
            assert v is rb[k], k
        else:
            assert v == pytest.approx(rb[k], rel=2e-4, abs=1e-9), k


def test_library_protocols_on_an_emulated_8_channel_neware_match_the_simulator(
    emulator: NewareEmulator, tmp_path: Path
) -> None:
    station = _station(emulator, tmp_path)
    db = Database("sqlite://")
    for n, (_name, make) in enumerate(SHORT.items(), start=1):
        proto = make()
        cyc = run_on_cycler(proto, db=db, station=station, channel=f"N{n + 2}", poll=0.01)
        assert cyc.status == "completed", cyc.end_reason
        sim = run_protocol(proto, db=db, sim=SimSettings(PRESET, seed=SEED), channel="sim")
        assert sim.status == "completed"
        assert cyc.n_samples == sim.n_samples
        _compare(db, cyc.run_id, sim.run_id)
        (job,) = db.cycler_jobs(run_id=cyc.run_id)
        assert job["state"] == "completed" and job["cursor"] == str(cyc.n_samples)
        assert job["channel"] == f"27-1-{n + 2}" and job["job"] == f"27-1-{n + 2}:1"
    assert len(emulator.starts) == 3


def test_symmetric_short_circuit_is_watched_by_labctl(tmp_path: Path) -> None:
    # the library's symmetric protocol as written, on a cell whose life is hours, not weeks: it shorts,
    # labctl sees it in the harvested data and stops the job, as the engine ends the repeat
    preset = tmp_path / "short-lived.yaml"
    preset.write_text("base: br-mg\nname: short-lived\nsymmetric:\n  life: {0.5 mA/cm2: 12 h, 5 mA/cm2: 3 h}\n")
    emulator = NewareEmulator(clock=VirtualClock(), preset=str(preset), seed=SEED, channels=8)
    proto = load_protocol(LIB / "symmetric-0.5mA.yaml")
    db = Database("sqlite://")
    try:
        cyc = run_on_cycler(proto, db=db, station=_station(emulator, tmp_path), channel="N1", poll=0.01)
    finally:
        emulator.close()
    sim = run_protocol(proto, db=db, sim=SimSettings(str(preset), seed=SEED))
    assert "short circuit at" in cyc.end_reason and "short circuit at" in sim.end_reason, (cyc, sim)
    assert cyc.status == "completed"
    assert cyc.n_samples == sim.n_samples
    _compare(db, cyc.run_id, sim.run_id, last_dt=10.0)  # one recording interval
    assert any(e["kind"] == "short_circuit" for e in db.events(cyc.run_id))
    assert any(e["kind"] == "cycler" and "labctl stopped job" in e["message"] for e in db.events(cyc.run_id))
    t_cyc = next(e["t"] for e in db.events(cyc.run_id) if e["kind"] == "short_circuit")
    t_sim = next(e["t"] for e in db.events(sim.run_id) if e["kind"] == "short_circuit")
    assert t_cyc == pytest.approx(t_sim, abs=10.0)  # the engine interpolates the crossing, labctl sees samples
    # in virtual time the cycler already ran on past the short: those points are not part of the run
    assert any("not recorded" in m for _, m in _events(db, cyc.run_id))
    assert db.n_samples(cyc.run_id) < emulator.chl[1].cols.n


# ------------------------------------------------------------------------------ faults
def _events(db: Database, run_id: int) -> list[tuple[str, str]]:
    return [(e["kind"], e["message"]) for e in db.events(run_id)]


def test_start_answered_false(emulator: NewareEmulator, tmp_path: Path) -> None:
    emulator.inject("start_false")
    db = Database("sqlite://")
    o = run_on_cycler(SHORT["ce-longterm"](), db=db, station=_station(emulator, tmp_path), channel="N1", poll=0.01)
    assert o.status == "failed" and "start answered 'false'" in o.end_reason
    assert db.run(o.run_id)["status"] == "failed"
    (job,) = db.cycler_jobs(run_id=o.run_id)
    assert job["state"] == "refused" and job["job"] is None
    assert any(k == "error" and "refused to start" in m for k, m in _events(db, o.run_id))
    assert emulator.chl[1].state == "finish" and db.n_samples(o.run_id) == 0


def test_channel_in_protect_state(emulator: NewareEmulator, tmp_path: Path) -> None:
    emulator.inject("protect", channel=2, after=8 * 3600.0)
    db = Database("sqlite://")
    o = run_on_cycler(SHORT["ce-longterm"](), db=db, station=_station(emulator, tmp_path), channel="N2", poll=0.01)
    assert o.status == "safety" and "protect" in o.end_reason, o.end_reason
    t = db.samples(o.run_id)["t"]
    assert t[-1] == pytest.approx(8 * 3600.0, abs=11.0)
    assert any(k == "protect" for k, _ in _events(db, o.run_id))
    assert db.cycler_jobs(run_id=o.run_id)[0]["state"] == "failed"
    assert db.steps(o.run_id)[-1]["end_reason"] == "safety"


def test_wrong_sub_device_id(emulator: NewareEmulator, tmp_path: Path) -> None:
    emulator.inject("wrong_subdevid", on="download")
    db = Database("sqlite://")
    o = run_on_cycler(SHORT["ce-longterm"](), db=db, station=_station(emulator, tmp_path), channel="N1", poll=0.01)
    assert o.status == "failed" and "another channel" in o.end_reason and "27-2-1" in o.end_reason
    assert db.n_samples(o.run_id) == 0  # nothing filed under the wrong cell
    assert db.cycler_jobs(run_id=o.run_id)[0]["state"] == "unknown"
    assert any(k == "error" for k, _ in _events(db, o.run_id))


def test_slow_and_partial_replies_are_retried_without_loss(emulator: NewareEmulator, tmp_path: Path) -> None:
    station = _station(emulator, tmp_path, timeout=0.5, page_size=1000)
    db = Database("sqlite://")
    ref = run_on_cycler(SHORT["ce-longterm"](), db=db, station=station, channel="N1", poll=0.01)
    emulator.inject("slow", on="download", delay=0.2, count=2)  # within the timeout: just slow
    emulator.inject("partial", on="download", count=1)
    emulator.inject("slow", on="inquire", delay=0.8, count=1, skip=1)  # past the timeout, once the job runs
    o = run_on_cycler(SHORT["ce-longterm"](), db=db, station=station, channel="N2", poll=0.01)
    assert o.status == "completed", o.end_reason
    assert o.n_samples == ref.n_samples == db.n_samples(o.run_id)
    links = [m for k, m in _events(db, o.run_id) if k == "link"]
    assert any("within 0.5 s" in m for m in links) and any("mid-reply" in m for m in links), links
    np.testing.assert_array_equal(db.samples(o.run_id)["voltage"], db.samples(ref.run_id)["voltage"])


def test_a_link_that_stays_down_leaves_the_run_interrupted_and_resumable(
    emulator: NewareEmulator, tmp_path: Path
) -> None:
    station = _station(emulator, tmp_path, timeout=0.5, page_size=500)
    db = Database("sqlite://")
    emulator.inject("partial", on="download", count=4)
    o = run_on_cycler(SHORT["ce-longterm"](), db=db, station=station, channel="N1", poll=0.01, retries=3)
    assert o.status == "interrupted" and "lost the cycler link" in o.end_reason
    assert db.cycler_jobs(run_id=o.run_id)[0]["state"] == "running"
    again = run_on_cycler(SHORT["ce-longterm"](), db=db, station=station, channel="N1", poll=0.01)
    assert again.run_id == o.run_id and again.status == "completed"
    assert len(emulator.starts) == 1
    assert db.n_samples(o.run_id) == emulator.chl[1].cols.n


# ------------------------------------------------------------------------------ SIGKILL mid-harvest
def _committed(url: str) -> int:
    import sqlalchemy as sa

    try:
        with Database(url) as db, db.engine.connect() as c:
            return int(c.execute(sa.text("select coalesce(sum(n_samples), 0) from runs")).scalar() or 0)
    except Exception:
        return 0


def test_sigkill_mid_harvest_then_restart_continues_from_the_cursor(tmp_path: Path) -> None:
    station = tmp_path / "station.yaml"
    station.write_text(
        f"instruments:\n  bts: {{driver: neware, step_folder: '{tmp_path / 'steps'}', page_size: 150, poll: 0.01}}\n"
        "channels:\n  N1: {cycler: bts, address: 27-1-1}\n"
    )
    emulated = tmp_path / "emulated.yaml"
    proto = tmp_path / "ce.yaml"
    proto.write_text((LIB / "ce-longterm-0.5mA.yaml").read_text().replace("times: 2000", "times: 15"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    emu = subprocess.Popen(
        [sys.executable, "-m", "labctl.cli", "emulate", "--station", str(station), "--preset", PRESET, "--seed",
         str(SEED), "--speed", "max", "--write", str(emulated), "--seconds", "120"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=env,
    )  # fmt: skip
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    cmd = [sys.executable, "-m", "labctl.cli", "run", str(proto), "--station", str(emulated), "--channel", "N1",
           "--db", url]  # fmt: skip
    try:
        deadline = time.time() + 30
        while not emulated.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert emulated.exists()
        run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=env)
        deadline = time.time() + 40
        while _committed(url) < 2500 and time.time() < deadline and run.poll() is None:
            time.sleep(0.02)
        assert run.poll() is None, "the harvest ended before it could be killed"
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=10)
        before = _committed(url)
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        em = load_station_text(emulated.read_text())
        client = BtsClient("127.0.0.1", int(em.instruments["bts"].options["port"]), timeout=5)
        client.connect()
        (addr,) = [a for a in client.getdevinfo() if a.name == "27-1-1"]
        testid, count = client.inquiredf(addr)
        _, everything = client.download(addr, testid, 1, count)
        client.close()
    finally:
        emu.send_signal(signal.SIGINT)
        emu.wait(timeout=20)
    assert testid == 1  # one start, never a second
    with Database(url) as db:
        (run_row,) = db.runs()
        rid = run_row["id"]
        assert run_row["status"] == "completed"
        s = db.samples(rid)
        assert 0 < before < len(s["t"]) == count  # killed mid-harvest; nothing lost, nothing doubled
        np.testing.assert_array_equal(s["t"], everything["testtime"])
        np.testing.assert_array_equal(s["voltage"], everything["volt"])
        assert any(e["kind"] == "resume" for e in db.events(rid))
        (job,) = db.cycler_jobs(run_id=rid)
        assert job["state"] == "completed" and job["cursor"] == str(count)
        steps = db.steps(rid)
        assert [x["step_index"] for x in steps] == list(range(1, len(steps) + 1))
        assert all(x["end_reason"] != "interrupted" for x in steps)
        assert sum(x["n_samples"] for x in steps) == count


# ------------------------------------------------------------------------------ never a second start
class _Crashing:
    """A driver that dies at a chosen moment (like a labctl killed there), the rest the real one."""

    def __init__(self, real: object, after_start: bool = False, after_pages: int | None = None) -> None:
        self.real, self.after_start, self.after_pages = real, after_start, after_pages

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    def submit(self, *a: object, **k: object) -> str:
        job = self.real.submit(*a, **k)
        if self.after_start:
            raise KeyboardInterrupt  # the start went out, its answer never got stored
        return job

    def harvest(self, job: str, cursor: str | None) -> object:
        if self.after_pages == 0:
            raise KeyboardInterrupt
        h = self.real.harvest(job, cursor)
        if self.after_pages is not None and len(h.block):
            self.after_pages -= 1  # pages with data: the emulated test may still be starting
        return h


def _driver(em: NewareEmulator, tmp: Path, **kw: object) -> object:
    from labctl.drivers.neware import NewareCycler

    d = NewareCycler(port=em.port, step_folder=str(tmp / "steps"), **kw)
    d.connect()
    return d


def test_a_start_whose_answer_was_lost_is_found_by_its_barcode(emulator: NewareEmulator, tmp_path: Path) -> None:
    station = _station(emulator, tmp_path)
    db = Database("sqlite://")
    proto = SHORT["ce-longterm"]()
    first = run_on_cycler(
        proto, db=db, station=station, channel="N1", cycler=_Crashing(_driver(emulator, tmp_path), True)
    )
    assert first.status == "interrupted"
    (row,) = db.cycler_jobs()
    assert row["state"] == "submitting" and row["job"] is None
    o = run_on_cycler(proto, db=db, station=station, channel="N1", poll=0.01)
    assert o.run_id == row["run_id"] and o.status == "completed"
    assert len(emulator.starts) == 1 and db.n_samples(o.run_id) == emulator.chl[1].cols.n
    assert db.cycler_jobs()[0]["job"] == "27-1-1:1"


def test_ctrl_c_while_harvesting_leaves_the_job_running_and_the_run_resumable(
    emulator: NewareEmulator, tmp_path: Path
) -> None:
    station = _station(emulator, tmp_path)
    db = Database("sqlite://")
    proto = SHORT["ce-longterm"]()
    crash = _Crashing(_driver(emulator, tmp_path, page_size=300), after_pages=4)
    o = run_on_cycler(proto, db=db, station=station, channel="N1", poll=0.01, cycler=crash)
    assert o.status == "interrupted" and "Ctrl-C" in o.end_reason
    assert 0 < db.n_samples(o.run_id) < emulator.chl[1].cols.n
    from labctl.app.controller import UserError
    from labctl.app.resume import resume_run

    with pytest.raises(UserError, match="--from-run"):
        resume_run(db, o.run_id)
    again = run_on_cycler(proto, db=db, station=station, channel="N1", poll=0.01)
    assert again.status == "completed" and again.run_id == o.run_id
    ref = run_on_cycler(proto, db=db, station=station, channel="N2", poll=0.01)
    np.testing.assert_array_equal(db.samples(o.run_id)["t"], db.samples(ref.run_id)["t"])
    np.testing.assert_allclose(
        db.samples(o.run_id)["charge"], db.samples(ref.run_id)["charge"], rtol=1e-12
    )  # sums split by pages
    assert [s["end_reason"] for s in db.steps(o.run_id)] == [s["end_reason"] for s in db.steps(ref.run_id)]
    assert len(emulator.starts) == 2  # N1 once, N2 once


def test_instruments_survey_reads_cycler_channels(emulator: NewareEmulator, tmp_path: Path) -> None:
    from labctl.app.station import survey

    (row,) = survey(_station(emulator, tmp_path), VirtualClock())
    assert row["kind"] == "cycler" and row["channel"] == "N1"
    assert row["state"]["channels"] == "8" and "27-1-8" in row["state"]["finish"]


@pytest.mark.postgres
def test_a_cycler_run_on_postgresql(emulator: NewareEmulator, tmp_path: Path, pg_url: str) -> None:
    db = Database(pg_url)
    o = run_on_cycler(SHORT["ce-longterm"](), db=db, station=_station(emulator, tmp_path), channel="N4", poll=0.01)
    assert o.status == "completed" and db.n_samples(o.run_id) == emulator.chl[4].cols.n
    (job,) = db.cycler_jobs(run_id=o.run_id)
    assert job["state"] == "completed" and job["cursor"] == str(o.n_samples)
    db.close()


def test_a_paced_emulator_is_harvested_while_it_runs(tmp_path: Path) -> None:
    from labctl.core.clock import ScaledClock

    em = NewareEmulator(clock=ScaledClock(20000.0), preset=PRESET, seed=SEED, channels=8)
    seen: list[tuple[int, str]] = []
    try:
        db = Database("sqlite://")
        o = run_on_cycler(
            _lib("ce-longterm-0.5mA", ("times: 2000", "times: 2")),
            db=db,
            station=_station(em, tmp_path, page_size=200),
            channel="N5",
            poll=0.05,
            on_progress=lambda p: seen.append((p.n_samples, em.chl[5].state)),
        )
    finally:
        em.close()
    assert o.status == "completed" and o.n_samples == em.chl[5].cols.n
    assert seen[0][1] == "working" and seen[0][0] < o.n_samples  # samples harvested while the test ran
    assert [n for n, _ in seen] == sorted(n for n, _ in seen)
