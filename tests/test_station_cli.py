"""A whole rehearsal hardware-free: `labctl emulate` serves a station's instruments, `labctl run
--station --channel` runs the real driver over TCP with a transcript, `labctl show` names the
instruments, `labctl instruments` surveys them, `labctl replay-transcript` re-executes the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from labctl.app.emulate import emulate_station
from labctl.app.station import load_station_text
from labctl.cli import app
from labctl.core.clock import WallClock

ROOT = Path(__file__).resolve().parent.parent
LABCTL = [sys.executable, "-m", "labctl.cli"]
STATION = """name: bench-1
instruments:
  ps1: {driver: methodscript, port: /dev/ttyACM0, model: es4_lr}
channels:
  A: {potentiostat: ps1}
"""
PROTOCOL = """name: short-cycle
cell: {kind: symmetric, id: S-1, working: Mg, area: 1.267 cm2}
steps:
  - rest: {duration: 3 s, record_every: 1 s}
  - galvanostatic: {current: 0.5 mA, duration: 3 s, record_every: 1 s}
  - galvanostatic: {current: -0.5 mA, duration: 3 s, record_every: 1 s}
"""


def labctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*LABCTL, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def labctl_here(*args: str) -> subprocess.CompletedProcess:
    """The same command through the typer app in this process (for the read-only commands, where
    a process of their own adds nothing but start-up time); an exception that escaped the command
    fails the test as a traceback would."""
    r = CliRunner().invoke(app, list(args))
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return subprocess.CompletedProcess([*LABCTL, *args], r.exit_code, r.stdout, r.stderr)


def test_rehearsal_on_an_emulated_station_with_transcript_and_replay(tmp_path: Path):
    em = emulate_station(load_station_text(STATION, source="bench.yaml"), WallClock(), preset="br-mg", seed=2)
    try:
        station = tmp_path / "emulated.yaml"
        station.write_text(em.to_yaml())
        proto = tmp_path / "p.yaml"
        proto.write_text(PROTOCOL)
        db = f"sqlite:///{tmp_path / 'lab.sqlite'}"
        r = labctl(
            "run",
            str(proto),
            "--station",
            str(station),
            "--channel",
            "A",
            "--transcript",
            str(tmp_path / "tr"),
            "--db",
            db,
            "--json",
        )
        assert r.returncode == 0, r.stderr[-2000:]
        run_id = json.loads(r.stdout)["run_id"]
        shown = json.loads(labctl_here("show", str(run_id), "--db", db, "--json").stdout)
        meta = shown["run"]["meta"]
        assert meta["channel"] == "A" and meta["instruments"]["potentiostat"]["driver"] == "methodscript"
        assert (
            "es4_lr" in meta["instruments"]["potentiostat"]["identity"].lower()
            or "emstat" in meta["instruments"]["potentiostat"]["identity"].lower()
        )
        assert "ps1 (methodscript)" in labctl_here("show", str(run_id), "--db", db).stdout
        survey = labctl_here("instruments", "--station", str(station), "--json")
        assert survey.returncode == 0, survey.stderr[-2000:]
        assert json.loads(survey.stdout)[0]["instrument"] == "ps1"
        (tr,) = (tmp_path / "tr").glob("A-ps1.jsonl")
    finally:
        em.close()
    # the instrument is gone: the transcript plays it back
    rp = labctl_here("replay-transcript", str(tr), "--run", str(run_id), "--db", db)
    assert rp.returncode == 0, rp.stderr[-2000:]
    n = shown["n_samples"]
    assert f"{n:,} samples (the run recorded {n:,})" in " ".join(rp.stdout.split())


def test_station_mistakes_are_user_errors(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(STATION.replace("methodscript", "methodscrpt"))
    r = labctl("instruments", "--station", str(bad))
    assert r.returncode == 2 and "bad.yaml:3:" in r.stderr and "did you mean 'methodscript'" in r.stderr
    assert "Traceback" not in r.stderr
    proto = tmp_path / "p.yaml"
    proto.write_text(PROTOCOL)
    good = tmp_path / "good.yaml"
    good.write_text(STATION.replace("/dev/ttyACM0", "socket://127.0.0.1:9"))
    r = labctl(
        "run", str(proto), "--station", str(good), "--channel", "A", "--db", f"sqlite:///{tmp_path / 'x.sqlite'}"
    )
    assert r.returncode == 2 and "instrument ps1 (methodscript at socket://127.0.0.1:9) did not open" in r.stderr
    assert not (tmp_path / "x.sqlite").exists() or "runs" not in r.stdout
    r = labctl("run", str(proto), "--station", str(good), "--channel", "Z")
    assert r.returncode == 2 and "no channel 'Z'" in r.stderr
