"""The dip-coat timing log: stages timed against cell ids, deviations, the record on later runs."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl.db import Database
from labctl.drivers.contracts import ChannelDevices
from labctl.cli import app
from labctl.core.clock import VirtualClock, WallClock
from labctl.app.controller import SimSettings, run_protocol
from labctl.engine.runner import Engine
from labctl.app.operator import ConsoleOperator, SimulatedOperator
from labctl.protocols import load_protocol_text
from labctl.simulators.dipcoater import SimulatedDipCoater
from tests.fakes import FakePotentiostat
from labctl.studies.mg_anode import LIBRARY_DIR

ROOT = Path(__file__).resolve().parent.parent

COAT = """name: coat
cell: {{kind: symmetric, id: BrMg-T1, working: Br-Mg, area: 1.267 cm2}}
steps:
  - dip_coat:
      solution: 1-bromopropane in DME
      concentration: 2 vol%
      immersion: 1 h
      rinse: 1 min
      mode: {mode}
      operator: Ana
      tolerance: 60 s
"""


def test_manual_late_confirmation_is_a_deviation():
    clock = VirtualClock(start_unix=1_700_000_000)
    # delays after each planned time: immersion start, removal (+5 min late), rinse start, rinse end (+2 s)
    op = SimulatedOperator(clock, delays=[3.0, 300.0, 4.0, 2.0])
    coatings = []
    eng = Engine(
        load_protocol_text(COAT.format(mode="manual"), "coat.yaml"),
        ChannelDevices(FakePotentiostat(clock)),
        clock,
        operator=op,
        on_coating=coatings.append,
    )
    out = eng.run()
    assert out.status == "completed"
    (rec,) = coatings
    assert rec["cells"] == ["BrMg-T1"] and rec["operator"] == "Ana" and rec["mode"] == "manual"
    assert rec["immersion_end"] - rec["immersion_start"] == pytest.approx(3600 + 300)
    assert rec["rinse_end"] - rec["rinse_start"] == pytest.approx(62)
    (dev,) = rec["deviations"]
    assert dev["stage"] == "immersion" and dev["delta_s"] == pytest.approx(300)
    assert "late by 300 s" in dev["note"]
    assert any(e[1] == "deviation" for e in out.events)
    assert len(op.prompts) == 4 and "Immerse BrMg-T1" in op.prompts[0]


def test_automated_mode_drives_the_dip_coater():
    clock = VirtualClock(start_unix=0)
    coater = SimulatedDipCoater(clock)
    coater.connect()
    coatings = []
    eng = Engine(
        load_protocol_text(COAT.format(mode="automated"), "coat.yaml"),
        ChannelDevices(FakePotentiostat(clock), dip_coater=coater),
        clock,
        on_coating=coatings.append,
    )
    assert eng.run().status == "completed"
    rec = coatings[0]
    assert rec["immersion_end"] - rec["immersion_start"] == pytest.approx(3600, abs=60)
    assert rec["deviations"] == []
    assert len(coater.log) >= 4


def test_coating_record_shows_on_later_runs_of_the_cell(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    db = Database(url)
    run_protocol(load_protocol_text(COAT.format(mode="manual"), "coat.yaml"), db=db, sim=SimSettings("br-mg", 1))
    later = (LIBRARY_DIR / "eis-rt.yaml").read_text()
    later = later.replace("kind: symmetric", "kind: symmetric\n  id: BrMg-T1", 1)
    out = run_protocol(load_protocol_text(later, "eis-rt.yaml"), db=db, sim=SimSettings("br-mg", 1))
    db.close()
    r = CliRunner().invoke(app, ["show", str(out.run_id), "--db", url, "--json"])
    shown = json.loads(r.stdout)
    (coat,) = shown["coatings"]
    assert coat["cell_label"] == "BrMg-T1" and coat["concentration"] == "2 vol%"
    assert coat["solution"] == "1-bromopropane in DME"
    r = CliRunner().invoke(app, ["show", str(out.run_id), "--db", url])
    assert "coating: 2 vol% 1-bromopropane in DME" in r.stdout


def test_console_operator_confirms_on_enter():
    rfd, wfd = os.pipe()
    stream = os.fdopen(rfd)
    op = ConsoleOperator(WallClock(), name="Ana", stream=stream)
    threading.Timer(0.3, lambda: os.write(wfd, b"\n")).start()
    t = op.confirm("Immerse BrMg-T1", due=None)
    assert t >= 0.25
    os.close(wfd)
