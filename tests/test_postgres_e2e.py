"""The shared-lab path: a whole run recorded in PostgreSQL through the CLI, exported and analysed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl.cli import app
from labctl.studies.mg_anode import LIBRARY_DIR

LIB = LIBRARY_DIR


@pytest.mark.postgres
def test_run_export_analyze_on_postgres(pg_url: str, tmp_path: Path):
    runner = CliRunner()
    r = runner.invoke(
        app, ["run", str(LIB / "symmetric-5mA.yaml"), "--sim", "--preset", "bare-mg", "--db", pg_url, "--json"]
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout[r.stdout.index("{") :])
    assert out["status"] == "completed" and "short" in out["end_reason"]
    rows = json.loads(runner.invoke(app, ["runs", "--db", pg_url, "--json"]).stdout)
    assert rows[0]["id"] == out["run_id"] and rows[0]["n_samples"] == out["samples"]
    f = tmp_path / "run.csv"
    assert runner.invoke(app, ["export", str(out["run_id"]), "--out", str(f), "--db", pg_url]).exit_code == 0
    data = [ln for ln in f.read_text().splitlines() if not ln.startswith("#")]
    assert len(list(csv.DictReader(data))) == out["samples"]
    r = runner.invoke(app, ["analyze", str(out["run_id"]), "--db", pg_url, "--json"])
    assert r.exit_code == 0, r.output
    res = {x["name"]: x for x in json.loads(r.stdout)}
    assert res["t_short"]["value"] / 3600 == pytest.approx(194, rel=0.10)
    assert res["hysteresis"]["value"] * 1e3 == pytest.approx(225, rel=0.10)
