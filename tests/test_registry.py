"""Drivers come from a registry (entry points), so a third party adds one without touching labctl."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from labctl.drivers import registry
from labctl.drivers.contracts import DipCoater, Potentiostat, TemperatureStage
from labctl.cli import app
from labctl.core.clock import VirtualClock
from labctl.drivers.conformance import check_potentiostat
from tests.fakes import FakePotentiostat


def test_simulators_are_registered_through_entry_points():
    assert "sim" in registry.available("potentiostat")
    assert "sim" in registry.available("temperature_stage")
    assert "sim" in registry.available("dip_coater")
    clock = VirtualClock()
    assert isinstance(registry.create("potentiostat", "sim", clock=clock, preset="br-mg"), Potentiostat)
    assert isinstance(registry.create("temperature_stage", "sim", clock=clock), TemperatureStage)
    assert isinstance(registry.create("dip_coater", "sim", clock=clock), DipCoater)


def test_unknown_driver_is_a_user_error(tmp_path: Path):
    p = tmp_path / "p.yaml"
    p.write_text("name: x\ncell: {kind: symmetric, working: Mg, area: 1 cm2}\nsteps:\n  - rest: {duration: 1 s}\n")
    r = CliRunner().invoke(app, ["run", str(p), "--driver", "nope", "--db", f"sqlite:///{tmp_path / 'l.sqlite'}"])
    assert r.exit_code == 2
    assert "no potentiostat driver named 'nope'" in r.output and "sim" in r.output


def test_third_party_driver_runs_a_protocol_in_real_time(tmp_path: Path):
    def factory(clock, dt="0.1", block="5"):
        return FakePotentiostat(clock, dt=float(dt), block=int(block))

    registry.register("potentiostat", "thirdparty-fake", factory)
    p = tmp_path / "p.yaml"
    p.write_text("""name: hw
cell: {kind: symmetric, working: Mg, area: 1 cm2}
steps:
  - rest: {duration: 1 s, record_every: 0.1 s}
  - galvanostatic: {current: 1 mA, duration: 1 s, record_every: 0.1 s}
""")
    url = f"sqlite:///{tmp_path / 'l.sqlite'}"
    r = CliRunner().invoke(
        app, ["run", str(p), "--driver", "thirdparty-fake", "--driver-opt", "dt=0.1", "--db", url, "--json"]
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout[r.stdout.index("{") :])
    assert out["status"] == "completed" and out["samples"] >= 20
    assert 1.5 < out["duration_s"] < 10  # wall clock, not virtual time
    rows = json.loads(CliRunner().invoke(app, ["runs", "--db", url, "--json"]).stdout)
    assert rows[0]["simulated"] in (False, 0)


def test_third_party_driver_keeps_the_handle_contract():
    def factory(clock, dt="0.1", block="5"):
        return FakePotentiostat(clock, dt=float(dt), block=int(block))

    registry.register("potentiostat", "thirdparty-fake", factory)
    check_potentiostat(
        registry.load("potentiostat", "thirdparty-fake"),
        clock=VirtualClock(),
        only=["contract", "connect", "start_returns_handle", "read_honours_timeout", "stop", "cell_off", "close"],
    )
