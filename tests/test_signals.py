"""SIGTERM and SIGHUP (what systemd, schedulers and a closed terminal send) end a run like Ctrl-C:
cell off, committed samples kept, the step closed with its samples, status and reason recorded."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import SHORT

ROOT = Path(__file__).resolve().parent.parent


def _wait_for_samples(path: str, proc: subprocess.Popen, least: int = 100) -> int:
    deadline = time.time() + 60
    n = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if os.path.exists(path):
            try:
                with sqlite3.connect(path) as c:
                    n = c.execute("select count(*) from samples").fetchone()[0]
            except sqlite3.OperationalError:
                n = 0
            if n > least:
                break
    return n


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_termination_signal_ends_the_run_cleanly_and_resumably(tmp_path: Path, sig: signal.Signals):
    p = tmp_path / "long.yaml"
    p.write_text(SHORT.replace("times: 3", "times: 500"))
    db = tmp_path / "lab.sqlite"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labctl.cli",
            "run",
            str(p),
            "--sim",
            "--preset",
            "br-mg",
            "--speed",
            "20000",
            "--db",
            f"sqlite:///{db}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    n = _wait_for_samples(str(db), proc)
    assert n > 100, "the run never committed samples"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in stderr, "\n".join(stderr.splitlines()[-12:])
    with sqlite3.connect(db) as c:
        status, reason = c.execute("select status, end_reason from runs").fetchone()
        kept = c.execute("select count(*) from samples").fetchone()[0]
        last_step = c.execute(
            "select end_reason, n_samples, step_index from steps order by step_index desc limit 1"
        ).fetchone()
        in_last = c.execute("select count(*) from samples where step_index = ?", (last_step[2],)).fetchone()[0]
        n_checkpoints = c.execute("select count(*) from checkpoints").fetchone()[0]
        events = [r[0] for r in c.execute("select kind from events")]
    assert status == "interrupted"
    assert sig.name in reason and "resumable" in reason
    assert kept >= n
    # the step cut by the signal is closed, counting the samples it holds
    assert last_step[0] == "aborted" and last_step[1] == in_last
    assert n_checkpoints > 0
    assert "abort" in events
