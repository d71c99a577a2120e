"""The command line as a user meets it: exit codes, messages, nothing half-written."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl.cli import app
from labctl.studies.mg_anode import LIBRARY_DIR

ROOT = Path(__file__).resolve().parent.parent
LIB = LIBRARY_DIR
LABCTL = [sys.executable, "-m", "labctl.cli"]

SHORT = """name: short-symmetric
description: three cycles at 0.5 mA/cm2, for tests
cell:
  kind: symmetric
  id: S-TEST-1
  working: Br-Mg
  area: 1.267 cm2
safety: {voltage: [-2.5 V, 2.5 V], current: 20 mA}
steps:
  - rest: {duration: 1 h, record_every: 60 s}
  - repeat:
      times: 3
      steps:
        - galvanostatic: {current_density: -0.5 mA/cm2, duration: 1 h, record_every: {time: 10 s, voltage: 5 mV}}
        - galvanostatic: {current_density: 0.5 mA/cm2, duration: 1 h, record_every: {time: 10 s, voltage: 5 mV}}
"""


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lab.sqlite'}"


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def n_runs(url: str) -> int:
    path = url.removeprefix("sqlite:///")
    if not os.path.exists(path):
        return 0
    with sqlite3.connect(path) as c:
        try:
            return c.execute("select count(*) from runs").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def test_validate_library_ok():
    r = invoke("validate", *[str(p) for p in sorted(LIB.glob("*.yaml"))])
    assert r.exit_code == 0, r.output
    assert r.output.count("ok") >= 15


def test_validate_bad_file_exit_2_with_position(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SHORT.replace("duration: 1 h, record_every: 60 s", "duration: 1 h, record_evry: 60 s"))
    r = subprocess.run([*LABCTL, "validate", str(bad)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert f"{bad}:10:" in r.stderr
    assert "record_evry" in r.stderr and "record_every" in r.stderr  # did-you-mean
    assert "Traceback" not in r.stderr + r.stdout


@pytest.mark.parametrize(
    "change,needle",
    [
        (("duration: 1 h, record_every: 60 s", "duration: 1 mA, record_every: 60 s"), "duration"),
        (("times: 3", "until: short_circuit"), "bound"),
        (("duration: 1 h, record_every: 60 s", "duration: -1 h, record_every: 60 s"), "duration"),
        (("- rest:", "- restt:"), "restt"),
    ],
)
def test_run_bad_protocol_writes_nothing(tmp_path: Path, db_url: str, change, needle):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SHORT.replace(*change))
    r = invoke("run", str(bad), "--sim", "--preset", "br-mg", "--db", db_url)
    assert r.exit_code == 2, r.output
    assert needle in r.output
    assert "Traceback" not in r.output
    assert n_runs(db_url) == 0


def test_run_missing_preset_file_writes_nothing(tmp_path: Path, db_url: str):
    p = tmp_path / "p.yaml"
    p.write_text(SHORT)
    r = invoke("run", str(p), "--sim", "--preset", str(tmp_path / "nope.yaml"), "--db", db_url)
    assert r.exit_code == 2, r.output
    assert "nope.yaml" in r.output
    assert n_runs(db_url) == 0


def test_run_show_export_roundtrip(tmp_path: Path, db_url: str):
    p = tmp_path / "p.yaml"
    p.write_text(SHORT)
    r = invoke("run", str(p), "--sim", "--preset", "br-mg", "--seed", "3", "--db", db_url, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout[r.stdout.index("{") :])
    run_id = out["run_id"]
    assert out["status"] == "completed" and out["duration_h"] == pytest.approx(7.0)

    r = invoke("runs", "--db", db_url, "--json")
    rows = json.loads(r.stdout)
    assert rows[0]["id"] == run_id and rows[0]["status"] == "completed"

    r = invoke("show", str(run_id), "--db", db_url, "--json")
    shown = json.loads(r.stdout)
    assert len(shown["steps"]) == 7
    assert [s["cycle"] for s in shown["steps"]] == [0, 1, 1, 2, 2, 3, 3]

    csv_path = tmp_path / "run.csv"
    r = invoke("export", str(run_id), "--format", "csv", "--out", str(csv_path), "--db", db_url)
    assert r.exit_code == 0, r.output
    lines = csv_path.read_text().splitlines()
    header = [ln for ln in lines if ln.startswith("#")]
    assert any("current sign" in h and "negative" in h for h in header)
    assert any(h.startswith("# cycle:") for h in header)
    rows = list(csv.DictReader([ln for ln in lines if not ln.startswith("#")]))
    assert {
        "Test Time / s",
        "Unix Time / s",
        "Voltage / V",
        "Current / A",
        "Cycle Count / 1",
        "Step Count / 1",
        "Step Index / 1",
    } <= set(rows[0])
    assert len(rows) == out["samples"]
    plating = [r for r in rows if float(r["Current / A"]) < -1e-4]
    assert plating and all(float(r["Voltage / V"]) < 0 for r in plating[5:50])
    # step index: both plating steps of cycles 1..3 share one protocol position
    assert {r["Step Index / 1"] for r in plating} == {"2"}
    last = rows[-1]
    assert float(last["Test Time / s"]) == pytest.approx(7 * 3600, abs=1)
    assert float(last["Charging Capacity / Ah"]) == pytest.approx(0.5e-3 * 1.267, rel=1e-3)

    pq = tmp_path / "run.parquet"
    r = invoke("export", str(run_id), "--format", "parquet", "--out", str(pq), "--db", db_url)
    assert r.exit_code == 0, r.output
    import pyarrow.parquet as pqm

    table = pqm.read_table(pq)
    assert table.num_rows == out["samples"]
    assert b"labctl.2" in table.schema.metadata

    # --from-run: the exact stored protocol text, same seed => identical data
    r = invoke("run", "--from-run", str(run_id), "--sim", "--db", db_url, "--json")
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout[r.stdout.index("{") :])
    assert again["samples"] == out["samples"]


def test_unknown_run_is_a_user_error(db_url: str):
    invoke("runs", "--db", db_url)
    for cmd in (["show", "999"], ["export", "999", "--out", "x.csv"]):
        r = invoke(*cmd, "--db", db_url)
        assert r.exit_code == 2
        assert "no run 999" in r.output


def test_export_to_a_missing_folder_is_a_user_error(tmp_path: Path, db_url: str):
    p = tmp_path / "p.yaml"
    p.write_text(SHORT.replace("times: 3", "times: 1"))
    assert invoke("run", str(p), "--sim", "--preset", "br-mg", "--db", db_url).exit_code == 0
    r = invoke("export", "1", "--out", str(tmp_path / "nope" / "x.csv"), "--db", db_url)
    assert r.exit_code == 2 and "does not exist" in r.output
    assert not (tmp_path / "nope").exists()


def test_schema_is_json():
    r = invoke("schema")
    assert r.exit_code == 0
    schema = json.loads(r.stdout)
    assert "steps" in json.dumps(schema)


def test_ctrl_c_marks_run_aborted_and_keeps_samples(tmp_path: Path, db_url: str):
    """SIGINT to a real `labctl run` process: cell off, committed samples kept, run aborted with why."""
    p = tmp_path / "long.yaml"
    p.write_text(SHORT.replace("times: 3", "times: 500"))
    proc = subprocess.Popen(
        [*LABCTL, "run", str(p), "--sim", "--preset", "br-mg", "--speed", "20000", "--db", db_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    path = db_url.removeprefix("sqlite:///")
    deadline = time.time() + 60
    n = 0
    while time.time() < deadline:
        time.sleep(0.5)
        if os.path.exists(path):
            try:
                with sqlite3.connect(path) as c:
                    n = c.execute("select count(*) from samples").fetchone()[0]
            except sqlite3.OperationalError:
                n = 0
            if n > 100:
                break
    assert n > 100, "the run never committed samples"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    with sqlite3.connect(path) as c:
        status, reason = c.execute("select status, end_reason from runs").fetchone()
        kept = c.execute("select count(*) from samples").fetchone()[0]
    assert status == "aborted"
    assert "Ctrl-C" in reason
    assert kept >= n


def test_setpoint_outside_stage_range_is_a_user_error(tmp_path: Path, db_url: str):
    p = tmp_path / "hot.yaml"
    p.write_text(
        SHORT.replace(
            "safety: {voltage: [-2.5 V, 2.5 V], current: 20 mA}",
            "safety: {voltage: [-2.5 V, 2.5 V], current: 20 mA, temperature: 200 degC}",
        ).replace("  - rest: {duration: 1 h, record_every: 60 s}", "  - temperature: {setpoint: 150 degC}")
    )
    r = invoke("run", str(p), "--sim", "--preset", "br-mg", "--db", db_url)
    assert r.exit_code == 2, r.output
    assert f"{p}:10:" in r.output and "outside the stage's range" in r.output
    assert n_runs(db_url) == 0


@pytest.mark.parametrize(
    "body,needle",
    [
        ("name: mine\nbase: br-mg\nkinetics: {j0: -0.5 uA/cm2}\n", "j0"),
        ("name: mine\nbase: br-mg\nimpedance: {rct: 5 mA}\n", "rct"),
    ],
)
def test_bad_user_preset_is_a_user_error(tmp_path: Path, db_url: str, body: str, needle: str):
    proto = tmp_path / "p.yaml"
    proto.write_text(SHORT)
    preset = tmp_path / "mine.yaml"
    preset.write_text(body)
    r = invoke("run", str(proto), "--sim", "--preset", str(preset), "--db", db_url)
    assert r.exit_code == 2, r.output
    assert f"{preset}:3:" in r.output and needle in r.output
    assert "Traceback" not in r.output
    assert n_runs(db_url) == 0


def test_a_simulated_run_without_a_preset_is_a_user_error(tmp_path: Path, db_url: str):
    p = tmp_path / "p.yaml"
    p.write_text(SHORT)
    r = invoke("run", str(p), "--sim", "--db", db_url)
    assert r.exit_code == 2 and "available presets: bare-mg, br-mg" in r.output
    assert n_runs(db_url) == 0
