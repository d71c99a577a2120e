"""Issue 10, item 4: every injected instrument fault, through the emulators, the real drivers and
the engine, ends with the cell off and the reason on record (runs.end_reason and events).

Each test writes a station, serves it with ``labctl.app.emulate.emulate_station`` (a fault plan
injected into one emulator), opens the emulated station's channel with
``labctl.app.station.open_channel`` and runs a protocol with ``run_protocol`` into SQLite.
Instrument time runs 200x faster than wall time (ScaledClock), so the reconnect backoff
(4 s, 8 s, 16 s of instrument time) takes a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from labctl.app.controller import run_protocol
from labctl.app.emulate import emulate_station
from labctl.app.station import StationError, load_station_text, open_channel
from labctl.core.clock import ScaledClock
from labctl.db import Database
from labctl.protocols import load_protocol_text
from labctl.simulators.emulators.faults import Fault, FaultPlan, FaultSpecError, parse_plan

SPEED = 200.0
# silence_timeout is wall time: 3 s is 600 s of instrument time, so a loaded machine is not taken for a silent device
PSTAT = (
    "  pstat1: {driver: methodscript, port: /dev/ttyACM0, model: es4_lr, command_timeout: 0.3, silence_timeout: 3}\n"
)
STAGE = "  tc1: {driver: lakeshore335, resource: 'GPIB0::12::INSTR', io_timeout: 0.3, max_overshoot: 5 K}\n"

CP = """name: faults
cell: {kind: symmetric, working: Mg, area: 1.267 cm2}
steps:
  - rest: {duration: 5 s, record_every: 1 s}
  - galvanostatic: {current: 0.5 mA, duration: 60 s, record_every: 1 s}
  - rest: {duration: 5 s, record_every: 1 s}
"""

HEATED = """name: heated
cell: {kind: symmetric, working: Mg, area: 1.267 cm2}
steps:
  - temperature: {setpoint: 40 degC, band: 0.5 degC, hold: 60 s, timeout: 20 min, record_every: 10 s}
  - rest: {duration: 5 s, record_every: 1 s}
"""


class Bench:
    def __init__(self, tmp: Path, faults: dict[str, Any], *, stage: bool = False, pstat: str = PSTAT) -> None:
        text = "name: bench\ninstruments:\n" + pstat + (STAGE if stage else "")
        text += "channels:\n  A: {potentiostat: pstat1" + (", stage: tc1" if stage else "") + "}\n"
        self.clock = ScaledClock(SPEED)
        self.em = emulate_station(load_station_text(text, "bench.yaml"), self.clock, preset="br-mg", faults=faults)
        path = tmp / "emulated.yaml"
        path.write_text(self.em.to_yaml())
        self.station = load_station_text(path.read_text(), str(path))
        self.db = Database(f"sqlite:///{tmp / 'lab.sqlite'}", commit_interval=0.05)

    @property
    def pstat(self) -> Any:
        return self.em.servers["pstat1"].emulator

    @property
    def stage(self) -> Any:
        return self.em.servers["tc1"].emulator

    def run(self, protocol: str) -> tuple[Any, dict, list[dict]]:
        dev = open_channel(self.station, "A", self.clock, timeout=5)
        out = run_protocol(load_protocol_text(protocol, "p.yaml"), db=self.db, devices=dev, clock=self.clock)
        run = self.db.run(out.run_id)
        return out, run, self.db.events(out.run_id)

    def samples(self, run_id: int) -> dict[str, np.ndarray]:
        return self.db.samples(run_id)

    def close(self) -> None:
        self.db.close()
        self.em.close()


@pytest.fixture
def bench(tmp_path: Path):  # type: ignore[no-untyped-def]
    made: list[Bench] = []

    def make(faults: dict[str, Any], **kw: Any) -> Bench:
        b = Bench(tmp_path, faults, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def _kinds(events: list[dict]) -> list[str]:
    return [e["kind"] for e in events]


def _no_gaps_or_doubles(b: Bench, run_id: int, n: int) -> None:
    with b.db.transaction() as conn:
        ids = [
            r[0] for r in conn.execute(sa.text("SELECT id FROM samples WHERE run_id = :r ORDER BY id"), {"r": run_id})
        ]
    assert len(ids) == n
    assert ids == list(range(ids[0], ids[0] + n)), "sample ids are not one contiguous range"
    t = b.samples(run_id)["t"]
    assert np.all(np.diff(t) >= 0), "test time went back"


def _cell_off(emu: Any) -> None:
    assert emu.wait_idle(5.0), "the emulated device still runs a script"
    assert emu.cell_on is False


# --------------------------------------------------------------------------- link faults that heal
def test_a_disconnect_mid_step_reconnects_and_runs_the_step_again(bench) -> None:
    b = bench({"pstat1": FaultPlan([Fault("disconnect", at=20, duration=20.0)])})
    out, run, events = b.run(CP)
    assert out.status == "completed", out.end_reason
    kinds = _kinds(events)
    assert kinds.count("instrument_fault") == 1 and "reconnected" in kinds
    fault = next(e for e in events if e["kind"] == "instrument_fault")
    assert fault["message"].startswith("potentiostat pstat1: ")
    # connections are refused while the disconnect lasts (20 s): attempts fail until one comes through
    assert kinds.count("reconnect") == kinds.count("reconnect_failed") + 1
    assert kinds.count("reconnect_failed") == b.pstat.refused
    steps = b.db.steps(out.run_id)
    assert [s["end_reason"] for s in steps] == ["duration", "error", "duration", "duration"]
    cut = steps[1]
    assert "reconnecting; the step runs again" in cut["end_detail"] and cut["n_samples"] > 0
    _no_gaps_or_doubles(b, out.run_id, out.n_samples)
    assert run["status"] == "completed"
    _cell_off(b.pstat)


def test_a_silent_instrument_times_out_reconnects_when_it_answers_again(bench) -> None:
    # silent for 150 s of instrument time, longer than the driver's silence timeout (0.6 s wall = 120 s)
    b = bench({"pstat1": "silent@15+150"}, pstat=PSTAT.replace("silence_timeout: 3", "silence_timeout: 0.6"))
    out, _run, events = b.run(CP)
    assert out.status == "completed", out.end_reason
    fault = next(e for e in events if e["kind"] == "instrument_fault")
    assert "DeviceTimeout" in fault["message"] and "sent nothing" in fault["message"]
    assert "reconnected" in _kinds(events)
    assert [s["end_reason"] for s in b.db.steps(out.run_id)][1:3] == ["error", "duration"]
    _no_gaps_or_doubles(b, out.run_id, out.n_samples)
    _cell_off(b.pstat)


def test_garbage_bytes_are_rejected_counted_and_the_run_completes(bench) -> None:
    b = bench({"pstat1": "garbage@10x3"})
    out, _run, events = b.run(CP)
    assert out.status == "completed", out.end_reason
    garbage = [e for e in events if e["kind"] == "link_garbage"]
    assert sum(e["data"]["rejected"] for e in garbage) == 3
    assert "instrument_fault" not in _kinds(events)
    # nothing was lost: the garbage came between packages (a clean run stores 5 + 60 + 5)
    assert [s["n_samples"] for s in b.db.steps(out.run_id)] == [5, 60, 5]
    _no_gaps_or_doubles(b, out.run_id, 70)
    _cell_off(b.pstat)


def test_partial_lines_are_rejected_the_parser_resynchronises(bench) -> None:
    b = bench({"pstat1": "partial@12x2"})
    out, _run, events = b.run(CP)
    assert out.status == "completed", out.end_reason
    # packages 12 and 13 cut in half, 14 glued onto them: one line rejected, its three samples never arrived
    garbage = [e for e in events if e["kind"] == "link_garbage"]
    assert sum(e["data"]["rejected"] for e in garbage) == 1
    steps = b.db.steps(out.run_id)
    assert [s["end_reason"] for s in steps] == ["duration", "duration", "duration"]
    assert [s["n_samples"] for s in steps] == [5, 57, 5]
    _no_gaps_or_doubles(b, out.run_id, out.n_samples)
    _cell_off(b.pstat)


# --------------------------------------------------------------------------- faults that end the run
def test_a_link_that_never_comes_back_gives_up_after_the_backoff(bench) -> None:
    b = bench({"pstat1": "disconnect@20"})
    t0 = b.clock.now()
    out, run, events = b.run(CP)
    assert out.status == "failed"
    assert run["status"] == "failed"
    reason = run["end_reason"]
    assert reason.startswith("potentiostat pstat1: ") and "gave up after 3 reconnect attempt(s) over 28 s" in reason
    kinds = _kinds(events)
    assert kinds.count("reconnect") == 3 and kinds.count("reconnect_failed") == 3 and kinds[-1] == "error"
    assert b.clock.now() - t0 >= 28.0  # the backoff ran in instrument time
    # the device's own script turns the cell off at its end (on_finished: cell_off)
    _cell_off(b.pstat)


def test_an_error_reply_mid_loop_ends_the_run_with_the_code(bench) -> None:
    b = bench({"pstat1": "error@30:4205"})
    out, run, events = b.run(CP)
    assert out.status == "failed"
    assert run["end_reason"].startswith("potentiostat pstat1: MethodSCRIPT device error 4205")
    assert "reconnect" not in _kinds(events)  # the instrument said no: not a link problem
    assert any(e["kind"] == "error" and "4205" in e["message"] for e in events)
    steps = b.db.steps(out.run_id)
    assert steps[-1]["end_reason"] == "error" and steps[-1]["n_samples"] > 0
    _cell_off(b.pstat)


def test_a_stage_that_never_reaches_its_set_point_ends_at_the_settle_timeout(bench) -> None:
    b = bench({"tc1": "no_settle:3"}, stage=True)
    out, run, events = b.run(HEATED.replace("timeout: 20 min", "timeout: 5 min"))
    assert out.status == "failed"
    reason = run["end_reason"]
    assert "stage tc1 did not settle at 40 +- 0.5 degC within 5 min" in reason
    assert any(e["kind"] == "error" and "did not settle" in e["message"] for e in events)
    temps = b.samples(out.run_id)["temperature"]
    assert 35.0 < float(temps[-1]) < 38.0  # levelled off 3 K short
    assert b.stage.setpoint == pytest.approx(22.0 + 273.15, abs=0.5)  # handed back at room temperature
    _cell_off(b.pstat)


def test_overshoot_beyond_the_station_limit_trips_safety(bench) -> None:
    b = bench({"tc1": "overshoot:20"}, stage=True)
    out, run, events = b.run(HEATED)
    assert out.status == "safety"
    reason = run["end_reason"]
    assert "stage tc1: temperature" in reason and "overshot the set point 40 degC by more than 5 K" in reason
    temps = b.samples(out.run_id)["temperature"]
    assert float(temps[-1]) > 45.0 and float(np.max(temps[:-1])) <= 45.0  # the tripping reading is stored
    assert any(e["kind"] == "safety" for e in events)
    _cell_off(b.pstat)


def test_a_lost_stage_link_reconnects_and_the_temperature_step_runs_again(bench) -> None:
    b = bench({"tc1": "disconnect@20+5"}, stage=True)
    out, _run, events = b.run(HEATED)
    assert out.status == "completed", out.end_reason
    fault = next(e for e in events if e["kind"] == "instrument_fault")
    assert fault["message"].startswith("stage tc1: ")
    assert "reconnected" in _kinds(events)
    kinds = [s["kind"] for s in b.db.steps(out.run_id)]
    assert kinds == ["temperature", "temperature", "rest"]
    _cell_off(b.pstat)


# --------------------------------------------------------------------------- the plan and the policy as written
def test_fault_plans_read_from_text() -> None:
    p = parse_plan("disconnect@20+5, garbage@10x3, error@30:4205, no_settle:2, silent~600+30")
    d, g, e, n, s = p.faults
    assert (d.kind, d.at, d.duration) == ("disconnect", 20, 5.0)
    assert (g.kind, g.at, g.count) == ("garbage", 10, 3)
    assert (e.kind, e.code) == ("error", "4205")
    assert (n.kind, n.size) == ("no_settle", 2.0)
    assert (s.kind, s.after, s.duration) == ("silent", 600.0, 30.0)
    for bad, msg in [
        ("explode@3", "unknown fault kind 'explode'"),
        ("silent@", "cannot read fault"),
        ("garbage:3", "takes no"),
    ]:
        with pytest.raises(FaultSpecError, match=msg):
            parse_plan(bad)


def test_a_fault_for_a_stage_on_a_potentiostat_is_refused() -> None:
    st = load_station_text("instruments:\n" + PSTAT + "channels:\n  A: {potentiostat: pstat1}\n", "st.yaml")
    with pytest.raises(StationError, match="no_settle is a temperature-stage fault"):
        emulate_station(st, ScaledClock(SPEED), preset="br-mg", faults={"pstat1": "no_settle"})
    with pytest.raises(StationError, match="names no instrument of the station: 'pstat9'"):
        emulate_station(st, ScaledClock(SPEED), preset="br-mg", faults={"pstat9": "silent"})


def test_the_reconnect_policy_is_set_per_instrument_in_the_station(bench, tmp_path: Path) -> None:
    text = (
        "instruments:\n  pstat1: {driver: methodscript, port: /dev/ttyACM0, command_timeout: 0.3, "
        "silence_timeout: 0.6, reconnect: {attempts: 1, delay: 2 s}}\nchannels:\n  A: {potentiostat: pstat1}\n"
    )
    clock = ScaledClock(SPEED)
    em = emulate_station(load_station_text(text, "st.yaml"), clock, preset="br-mg", faults={"pstat1": "disconnect@10"})
    try:
        station = load_station_text(em.to_yaml(), "emulated.yaml")
        assert station.instruments["pstat1"].reconnect.attempts == 1
        with Database(f"sqlite:///{tmp_path / 'p.sqlite'}", commit_interval=0.05) as db:
            out = run_protocol(
                load_protocol_text(CP, "p.yaml"),
                db=db,
                devices=open_channel(station, "A", clock, timeout=5),
                clock=clock,
            )
            assert "gave up after 1 reconnect attempt(s) over 2 s" in db.run(out.run_id)["end_reason"]
    finally:
        em.close()
    with pytest.raises(StationError, match=r"st.yaml:2:\d+: instruments.p.reconnect: .*unknown reconnect key"):
        load_station_text("instruments:\n  p: {driver: sim, reconnect: {tries: 3}}\n", "st.yaml")


# --------------------------------------------------------------------------- rehearsing with the CLI
def test_labctl_emulate_with_a_fault_rehearses_it_end_to_end(tmp_path: Path) -> None:
    """`labctl emulate --fault` serves a faulty instrument; `labctl run` on it records the fault."""
    import json
    import re
    import threading
    import time

    from typer.testing import CliRunner

    from labctl.cli import app, lab

    # wall time here: the driver's default timeouts
    (tmp_path / "bench.yaml").write_text(
        "instruments:\n  pstat1: {driver: methodscript, port: /dev/ttyACM0}\nchannels:\n  A: {potentiostat: pstat1}\n"
    )
    (tmp_path / "p.yaml").write_text(
        CP.replace("duration: 60 s", "duration: 3 s").replace("duration: 5 s", "duration: 1 s")
    )
    em_path = tmp_path / "em.yaml"
    bad = CliRunner().invoke(
        app, ["emulate", "--station", str(tmp_path / "bench.yaml"), "--preset", "br-mg", "--fault", "pstat1=melt@3"]
    )
    assert bad.exit_code == 2 and "unknown fault kind 'melt'" in bad.output
    # the command itself, in a thread of this process (a second interpreter costs seconds to start)
    server = threading.Thread(
        target=lab.emulate,
        kwargs={
            "station": tmp_path / "bench.yaml",
            "preset": "br-mg",
            "seed": 0,
            "write": em_path,
            "seconds": 20.0,
            "speed": None,
            "fault": ["pstat1=garbage@2x2"],
        },
        daemon=True,
    )
    server.start()
    try:
        deadline = time.monotonic() + 30
        while not em_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert em_path.exists(), "no station written"
        db = f"sqlite:///{tmp_path / 'lab.sqlite'}"
        r = CliRunner().invoke(
            app, ["run", str(tmp_path / "p.yaml"), "--station", str(em_path), "--channel", "A", "--db", db, "--json"]
        )
        assert r.exit_code == 0, r.output[-2000:]
        # the emulator thread may print into the same captured stdout: take the run's JSON object
        m = re.search(r'\{\s*"run_id".*?\n\}', r.stdout, re.S)
        assert m is not None, r.stdout[-2000:]
        run_id = json.loads(m.group(0))["run_id"]
        with Database(db) as d:
            ev = [e for e in d.events(run_id) if e["kind"] == "link_garbage"]
            assert sum(e["data"]["rejected"] for e in ev) == 2
    finally:
        server.join(0)  # a daemon thread: it stops serving after its 20 s


# --------------------------------------------------------------------------- the same plan on a SCPI line server
@pytest.mark.parametrize("plan", ["disconnect@40+10", "partial@40", "garbage@40"])
def test_a_keithley_2450_link_fault_is_reconnected_and_the_output_is_off(plan: str, tmp_path: Path) -> None:
    """The line servers (2450, Lake Shore) take the same FaultPlan, counted in commands."""
    text = (
        "instruments:\n  smu1: {driver: keithley2450, resource: 'TCPIP::10.0.0.9::5025::SOCKET', io_timeout: 0.3}\n"
        "channels:\n  A: {potentiostat: smu1}\n"
    )
    clock = ScaledClock(SPEED)
    em = emulate_station(load_station_text(text, "st.yaml"), clock, preset="br-mg", faults={"smu1": plan})
    try:
        station = load_station_text(em.to_yaml(), "emulated.yaml")
        with Database(f"sqlite:///{tmp_path / 'k.sqlite'}", commit_interval=0.05) as db:
            out = run_protocol(
                load_protocol_text(CP, "p.yaml"),
                db=db,
                devices=open_channel(station, "A", clock, timeout=5),
                clock=clock,
            )
            events = db.events(out.run_id)
            assert out.status == "completed", out.end_reason
            fault = next(e for e in events if e["kind"] == "instrument_fault")
            assert fault["message"].startswith("potentiostat smu1: ")
            assert "reconnected" in _kinds(events)
        emu = em.servers["smu1"].emulator
        assert emu.plan.log and emu.output is False
    finally:
        em.close()


def test_a_dip_coater_that_drops_its_link_is_reconnected_and_the_coat_runs_again(tmp_path: Path) -> None:
    """The GRBL emulator takes the same plan (counted in replies); the engine's policy covers the coater."""
    text = (
        "instruments:\n  pstat1: {driver: sim, preset: br-mg}\n"
        "  coater: {driver: grbl, port: /dev/ttyUSB0, bath_z: -20, down_speed: 1200, up_speed: 1200}\n"
        "channels:\n  A: {potentiostat: pstat1, dip_coater: coater}\n"
    )
    coat = """name: coat
cell: {kind: symmetric, working: Br-Mg, area: 1.267 cm2}
steps:
  - dip_coat: {cells: [S1], solution: bath, concentration: 2 vol%, immersion: 1 min, rinse: 10 s, rinse_solution: DME,
               mode: automated, tolerance: 60 s}
  - rest: {duration: 5 s, record_every: 1 s}
"""
    clock = ScaledClock(SPEED)
    em = emulate_station(
        load_station_text(text, "st.yaml"), clock, preset="br-mg", faults={"coater": "disconnect@12+6"}
    )
    try:
        station = load_station_text(em.to_yaml(), "emulated.yaml")
        with Database(f"sqlite:///{tmp_path / 'c.sqlite'}", commit_interval=0.05) as db:
            out = run_protocol(
                load_protocol_text(coat, "coat.yaml"),
                db=db,
                devices=open_channel(station, "A", clock, timeout=5),
                clock=clock,
            )
            events = db.events(out.run_id)
            assert out.status == "completed", out.end_reason
            fault = next(e for e in events if e["kind"] == "instrument_fault")
            assert fault["message"].startswith("dip_coater coater: ")
            assert "reconnected" in _kinds(events)
            assert [s["kind"] for s in db.steps(out.run_id)] == ["dip_coat", "dip_coat", "rest"]
        assert em.servers["coater"].plan.log
    finally:
        em.close()
