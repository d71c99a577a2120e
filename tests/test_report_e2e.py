"""End to end: protocols run on the simulated instruments into SQLite, then reported (API and CLI)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from labctl.db import Database
from labctl.cli import app
from labctl.app.controller import SimSettings, run_protocol
from labctl.reports import RunView, compare_runs, write_report
from labctl.studies.mg_anode import LIBRARY_DIR

LIBRARY = LIBRARY_DIR

SYMMETRIC = """
name: report-e2e
description: Short symmetric-cell test for the report (rest, EIS, Tafel, 8 cycles of 30 min each way).
cell: {kind: symmetric, id: E2E-S1, working: Br-Mg, counter: Br-Mg, area: 1.267 cm2}
safety: {voltage: [-2.5 V, 2.5 V], current: 20 mA}
steps:
  - rest: {duration: 10 min, record_every: 60 s}
  - eis: {f_start: 100 kHz, f_end: 1 Hz, points_per_decade: 8, amplitude: 10 mV}
  - tafel: {rest: 1 min, span: 150 mV, scan_rate: 1 mV/s, step: 1 mV}
  - repeat:
      times: 8
      steps:
        - galvanostatic: {current_density: -0.5 mA/cm2, duration: 30 min, record_every: {time: 10 s, voltage: 5 mV}}
        - galvanostatic: {current_density: 0.5 mA/cm2, duration: 30 min, record_every: {time: 10 s, voltage: 5 mV}}
"""


def _pngs_ok(index: Path) -> set[str]:
    out = index.parent
    pngs = {p.name for p in out.glob("*.png")}
    assert set(re.findall(r'<img src="([^"]+\.png)"', index.read_text())) == pngs
    for name in pngs:
        with Image.open(out / name) as im:
            im.verify()
        with Image.open(out / name) as im:
            w, h = im.size
        assert 600 <= w <= 2500 and 400 <= h <= 2000, (name, w, h)
        assert (out / name).stat().st_size > 10_000
    return pngs


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One database with a short symmetric test on both presets and a 4-cycle full cell."""
    d = tmp_path_factory.mktemp("lab")
    proto = d / "report-e2e.yaml"
    proto.write_text(SYMMETRIC)
    full = d / "full-cell-short.yaml"
    full.write_text((LIBRARY / "full-cell-0.1C.yaml").read_text().replace("times: 100", "times: 4"))
    url = "sqlite:///" + str(d / "lab.sqlite")
    db = Database(url)
    ids = {
        "br": run_protocol(proto, db=db, sim=SimSettings("br-mg", 0, 0)).run_id,
        "bare": run_protocol(proto, db=db, sim=SimSettings("bare-mg", 0, 0)).run_id,
        "full": run_protocol(full, db=db, sim=SimSettings("br-mg", 0, 0)).run_id,
    }
    yield db, url, ids, d
    db.close()


def test_symmetric_run_report(lab, tmp_path):
    db, _, ids, _ = lab
    index = write_report(db, ids["br"], tmp_path / "br")
    pngs = _pngs_ok(index)
    assert pngs == {"voltage_time.png", "nyquist.png", "bode.png", "tafel.png", "hysteresis.png"}
    html = index.read_text()
    for name in ("Rs", "Rct", "j0", "hysteresis"):
        assert f"<td>{name}</td>" in html
    assert "report-e2e" in html and "E2E-S1" in html and "completed" in html
    view = RunView(db, ids["br"])
    assert view.spectra and view.spectra[0].circuit  # the fit curve is drawn
    j0 = view.result_value("j0")
    assert j0["value"] == pytest.approx(0.66e-6, rel=0.3)


def test_full_cell_report(lab, tmp_path):
    db, _, ids, _ = lab
    index = write_report(db, ids["full"], tmp_path / "full", zoom_cycles=[1, 2])
    pngs = _pngs_ok(index)
    assert {"voltage_time.png", "ce_capacity.png", "voltage_capacity.png", "dqdv.png"} <= pngs
    assert "hysteresis.png" not in pngs
    html = index.read_text()
    assert "capacity_discharge_first" in html and "mAh/g" in html


def test_compare_bare_vs_br(lab, tmp_path):
    db, _, ids, _ = lab
    index = compare_runs(db, [ids["bare"], ids["br"]], tmp_path / "cmp")
    pngs = _pngs_ok(index)
    assert {"voltage_time.png", "voltage_profiles.png", "nyquist.png", "tafel.png", "hysteresis.png"} <= pngs
    html = index.read_text()
    assert "bare-mg / E2E-S1" in html and "br-mg / E2E-S1" in html


def test_cli_report_and_compare(lab, tmp_path):
    _, url, ids, _ = lab
    runner = CliRunner()
    r = runner.invoke(
        app, ["report", str(ids["br"]), "--out", str(tmp_path / "a"), "--cycles", "1,2,7-8"], env={"LABCTL_DB": url}
    )
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "a" / "index.html")
    r = runner.invoke(app, ["report", str(ids["br"]), "--out", str(tmp_path / "b"), "--db", url, "--json"])
    assert r.exit_code == 0, r.stderr
    files = json.loads(r.stdout)
    assert str(tmp_path / "b" / "index.html") in files
    assert all(Path(f).exists() for f in files) and any(f.endswith("nyquist.png") for f in files)
    r = runner.invoke(
        app, ["compare", str(ids["br"]), str(ids["bare"]), "--out", str(tmp_path / "c"), "--db", url, "--json"]
    )
    assert r.exit_code == 0, r.stderr
    assert any(f.endswith("voltage_profiles.png") for f in json.loads(r.stdout))


def test_cli_user_errors(lab, tmp_path):
    _, url, ids, _ = lab
    runner = CliRunner()
    r = runner.invoke(app, ["report", "9999", "--out", str(tmp_path / "x"), "--db", url])
    assert r.exit_code == 2
    assert "no run 9999" in r.stderr and "Traceback" not in r.stderr + r.stdout
    r = runner.invoke(app, ["compare", str(ids["br"]), "9999", "--out", str(tmp_path / "y"), "--db", url])
    assert r.exit_code == 2 and "no run 9999" in r.stderr
    r = runner.invoke(app, ["report", str(ids["br"]), "--out", str(tmp_path / "z"), "--db", url, "--cycles", "1,x"])
    assert r.exit_code == 2 and "--cycles" in r.stderr
    r = runner.invoke(
        app,
        ["compare", str(ids["br"]), str(ids["bare"]), "--out", str(tmp_path / "w"), "--db", url, "--label", "only one"],
    )
    assert r.exit_code == 2 and "label" in r.stderr
    assert not (tmp_path / "x").exists()
