"""Real-time pacing: 16 channels at 10 samples/s through MethodSCRIPT emulators over TCP.

Each channel is a real ``MethodScriptPotentiostat`` talking to its own emulated EmStat4 on
loopback, all 16 engines in one process (``ChannelGroup`` on the wall clock), each running
an open-circuit rest with a sample every 0.1 s.  Measured, per sample:

* lateness: wall time the engine got the sample minus the time it was scheduled for
  (technique start + k * 0.1 s, k = 1, 2, ...); the figure is the share within 20 ms (target >= 99.9 %);
* lost: samples expected (duration / 0.1 s per channel) minus samples recorded (target 0);
* CPU: process CPU seconds per wall second (both cores = 2.0).

``python bench/pacing.py [--minutes 10] [--channels 16]``; prints the figures and the
ratio of the within-20-ms share to its 99.9 % floor.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labctl.core.clock import WallClock
from labctl.core.contracts import NullRecorder
from labctl.drivers.contracts import ChannelDevices
from labctl.drivers.methodscript import MethodScriptPotentiostat
from labctl.engine.channels import Channel, ChannelGroup
from labctl.engine.runner import Engine
from labctl.protocols import load_protocol_text
from labctl.simulators.emulators.methodscript import MethodScriptEmulator

DT = 0.1


class LatencyRecorder(NullRecorder):
    def __init__(self, clock: WallClock) -> None:
        self.clock = clock
        self.t: list[np.ndarray] = []
        self.arrival: list[np.ndarray] = []
        self.starts: dict[int, float] = {}

    def step_started(self, index: int, **kw: object) -> None:
        self.starts[index] = float(kw["t"])  # type: ignore[arg-type]

    def samples(self, step_index: int, cycle: int, t: np.ndarray, *a: object, **k: object) -> None:
        now = self.clock.now()
        self.t.append(np.asarray(t, dtype=float))
        self.arrival.append(np.full(len(t), now))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--channels", type=int, default=16)
    args = ap.parse_args()
    seconds = args.minutes * 60
    clock = WallClock()
    proto = load_protocol_text(
        f"""name: pacing
cell: {{kind: symmetric, working: Mg, area: 1.267 cm2}}
steps:
  - rest: {{duration: {seconds:g} s, record_every: {DT:g} s}}
""",
        source="pacing.yaml",
    )
    emulators, channels, recs = [], [], []
    for k in range(args.channels):
        em = MethodScriptEmulator("es4_lr", preset="br-mg", seed=k, clock=clock, noise=True)
        port = em.serve_tcp()
        emulators.append(em)
        pstat = MethodScriptPotentiostat(clock, port=f"socket://127.0.0.1:{port}")
        pstat.connect(timeout=10)
        rec = LatencyRecorder(clock)
        recs.append(rec)
        channels.append(Channel(f"ch{k + 1}", Engine(proto, ChannelDevices(pstat), clock, rec)))
    group = ChannelGroup(clock, channels)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    w0 = time.monotonic()
    group.start()
    group.join()
    wall = time.monotonic() - w0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    for em in emulators:
        em.close()
    late_all, lost, n_all = [], 0, 0
    for ch, rec in zip(channels, recs, strict=True):
        assert ch.outcome is not None, ch.error
        t = np.concatenate(rec.t) if rec.t else np.zeros(0)
        arrival = np.concatenate(rec.arrival) if rec.arrival else np.zeros(0)
        expected = int(round(seconds / DT))  # the device records at DT, 2 DT, ..., the duration
        lost += max(0, expected - len(t))
        n_all += len(t)
        t_step = ch.engine._t0 + rec.starts.get(1, 0.0)
        scheduled = t_step + DT * (np.arange(len(t)) + 1)
        late_all.append(arrival - scheduled)
    late = np.concatenate(late_all)
    within = float(np.mean(np.abs(late) <= 0.020)) if len(late) else 0.0
    print(f"channels {args.channels}, {args.minutes:g} min at {1 / DT:g} samples/s each; wall {wall:.1f} s")
    print(f"samples {n_all:,}, lost {lost}")
    print(
        f"lateness: median {np.median(late) * 1e3:.1f} ms, p99 {np.percentile(late, 99) * 1e3:.1f} ms, "
        f"p99.9 {np.percentile(late, 99.9) * 1e3:.1f} ms, max {late.max() * 1e3:.1f} ms"
    )
    print(f"within 20 ms of schedule: {within * 100:.3f} %  (ratio to the 99.9 % floor: {within / 0.999:.4f})")
    print(f"CPU: {cpu:.1f} s in {wall:.1f} s = {cpu / wall:.2f} cores")


if __name__ == "__main__":
    main()
