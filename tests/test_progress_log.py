"""Progress without a terminal (nohup, systemd, a pipe): plain log lines at a steady interval."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from labctl.cli.run import ProgressLog
from labctl.core.clock import ScaledClock, VirtualClock

LINE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) run (\d+): step (\d+) rest, cycle (\d+), test time ([^,]+), "
    r"([\d,]+) samples, estimated end (\S+) \(in ([^)]+)\)$"
)

SLOW = """name: slow
cell: {kind: symmetric, working: Mg, counter: Mg, area: 1 cm2}
steps:
  - rest: {duration: 2 h, record_every: 1 s}
"""


def test_a_run_without_a_terminal_logs_progress_lines_at_the_interval(tmp_path: Path) -> None:
    proto = tmp_path / "slow.yaml"
    proto.write_text(SLOW)
    db = tmp_path / "lab.sqlite"
    cmd = [sys.executable, "-m", "labctl.cli", "run", str(proto), "--sim", "--preset", "bare-mg"]
    cmd += ["--speed", "6000", "--progress-interval", "0.15", "--db", f"sqlite:///{db}"]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    wall = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert "run 1: completed" in r.stdout
    lines = [ln for ln in r.stderr.splitlines() if LINE.match(ln)]
    assert r.stderr.splitlines()[0].startswith("run 1 started (slow, simulated")
    # 2 h of test time at 6000x is 1.2 s of wall time: a line every 0.15 s or so, never a flood
    assert 3 <= len(lines) <= wall / 0.15 + 2, r.stderr
    samples = [int(LINE.match(ln).group(6).replace(",", "")) for ln in lines]  # type: ignore[union-attr]
    assert samples == sorted(samples) and samples[0] < samples[-1] <= 7200
    assert all(LINE.match(ln).group(2) == "1" for ln in lines)  # type: ignore[union-attr]
    assert "\x1b[" not in r.stderr  # no terminal escapes in the log


class _Mono:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_log_writes_one_line_per_interval(capsys) -> None:  # type: ignore[no-untyped-def]
    log = ProgressLog(60.0, ScaledClock(10.0), duration=36_000.0)
    mono = _Mono()
    log._mono = mono
    log._next = 60.0
    log.run_id = 7
    p = SimpleNamespace(step_index=2, kind="rest", label=None, cycle=3, t_test=0.0, n_samples=0)
    for k in range(1, 601):  # a block every second of wall time for 10 minutes
        mono.t = float(k)
        p.t_test, p.n_samples = 10.0 * k, k
        log.update(p)
    assert log.lines == 10
    text = capsys.readouterr().err
    assert "run 7: step 2 rest, cycle 3, test time 100.0 min, 600 samples" in text  # the 10th line: t = 600 s x 10
    assert "(in 0 s)" not in text.splitlines()[0] and "estimated end" in text


def test_progress_log_in_virtual_time_names_the_estimated_test_time() -> None:
    log = ProgressLog(1.0, VirtualClock(), duration=7200.0)
    p = SimpleNamespace(step_index=1, kind="rest", label="ocv", cycle=0, t_test=3600.0, n_samples=3600)
    assert log.line(p).endswith(
        "step 1 rest ocv, cycle 0, test time 60.0 min, 3,600 samples, estimated end at test time 2.00 h (virtual time)"
    )
