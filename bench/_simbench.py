"""How fast the simulator generates data: ``python -m bench._simbench``.

Times symmetric-cell cycling at 0.5 mA/cm2 (1 h each way) for a given number of hours
of virtual time, sample generation only (no engine, no database), at 1 s recording and
at 10 s + 5 mV recording.
"""

from __future__ import annotations

import argparse
import time

from labctl.drivers.techniques import ConstantCurrent, Limits, Recording
from labctl.core.clock import VirtualClock
from labctl.simulators.potentiostat import SimulatedPotentiostat

__all__ = ["cycle_symmetric", "main"]


def cycle_symmetric(
    hours: float,
    record: Recording,
    *,
    preset: str = "br-mg",
    j_ma_cm2: float = 0.5,
    area_cm2: float = 1.267,
    seed: int = 0,
) -> tuple[float, int, float]:
    """Cycle for ``hours`` of virtual time; returns (CPU seconds, samples, virtual hours reached).

    The short-circuit limit is not set, so the cell keeps cycling through its short.
    """
    clock = VirtualClock(0.0)
    p = SimulatedPotentiostat(clock, preset=preset, area_cm2=area_cm2, seed=seed)
    p.connect()
    i = j_ma_cm2 * 1e-3 * area_cm2
    n = 0
    sign = 1
    t0 = time.process_time()
    while clock.now() < hours * 3600.0:
        for block in p.run(ConstantCurrent(sign * i, Limits(duration=3600.0), record)):
            n += len(block)
        sign = -sign
    return time.process_time() - t0, n, clock.now() / 3600.0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=1610.0)
    args = ap.parse_args(argv)
    for label, rec in (("1 s", Recording(dt=1.0)), ("10 s + 5 mV", Recording(dt=10.0, dv=0.005))):
        cpu, n, h = cycle_symmetric(args.hours, rec)
        print(
            f"{h:,.0f} h of 0.5 mA/cm2 cycling, recording every {label}: {n:,} samples in {cpu:.2f} s CPU "
            f"({n / cpu / 1e6:.1f} M samples/s)"
        )


if __name__ == "__main__":
    main()
