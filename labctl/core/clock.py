"""One clock for engine, drivers and simulators.

Nothing in labctl calls ``time.sleep`` or ``time.time`` directly: a :class:`Clock`
is passed in.  On hardware it is a :class:`WallClock`; in simulation a
:class:`VirtualClock` (``--speed max``: time jumps, 1,610 h replay in seconds) or a
:class:`ScaledClock` (``--speed 100``: virtual time runs 100x wall time).

``now()`` is seconds since the clock's epoch (a float, monotonic).  ``unix(t)``
converts a clock reading to Unix time, so exports can carry both.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """What engine, drivers and simulators need from time."""

    virtual: bool

    def now(self) -> float:
        """Seconds since the clock's epoch."""

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of clock time pass."""

    def sleep_until(self, t: float) -> None:
        """Let clock time pass until ``now() >= t``."""

    def unix(self, t: float) -> float:
        """Unix time of the clock reading ``t``."""

    def horizon(self) -> float:
        """How much clock time a producer may generate ahead in one block.

        A simulator uses it to size its blocks: unbounded for a virtual clock,
        about a quarter of a wall second for wall or scaled clocks, so progress and
        Ctrl-C stay responsive.
        """


class WallClock:
    """Real time.  Monotonic readings, anchored to Unix time at construction."""

    virtual = False

    def __init__(self) -> None:
        self._mono0 = time.monotonic()
        self._unix0 = time.time()

    def now(self) -> float:
        return time.monotonic() - self._mono0

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def sleep_until(self, t: float) -> None:
        self.sleep(t - self.now())

    def unix(self, t: float) -> float:
        return self._unix0 + t

    def horizon(self) -> float:
        return 0.25


class VirtualClock:
    """Simulated time that only moves when someone sleeps: as fast as the CPU allows.

    ``start_unix`` anchors the epoch to a Unix time (default: the wall time at
    construction) so exported Unix times look like a real run's.
    """

    virtual = True

    def __init__(self, start_unix: float | None = None) -> None:
        self._t = 0.0
        self._unix0 = time.time() if start_unix is None else float(start_unix)

    def now(self) -> float:
        return self._t

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._t += seconds

    def sleep_until(self, t: float) -> None:
        if t > self._t:
            self._t = t

    def advance(self, seconds: float) -> None:
        self.sleep(seconds)

    def unix(self, t: float) -> float:
        return self._unix0 + t

    def horizon(self) -> float:
        return float("inf")


class ScaledClock:
    """Virtual time running ``factor`` times faster than wall time (``--speed N``)."""

    virtual = True

    def __init__(self, factor: float, start_unix: float | None = None) -> None:
        if not factor > 0:
            raise ValueError("speed factor must be positive")
        self.factor = float(factor)
        self._mono0 = time.monotonic()
        self._unix0 = time.time() if start_unix is None else float(start_unix)

    def now(self) -> float:
        return (time.monotonic() - self._mono0) * self.factor

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.factor)

    def sleep_until(self, t: float) -> None:
        self.sleep(t - self.now())

    def unix(self, t: float) -> float:
        return self._unix0 + t

    def horizon(self) -> float:
        return 0.25 * self.factor


def clock_for_speed(speed: str | float | None) -> Clock:
    """``max`` (or None) -> VirtualClock; a number -> ScaledClock; ``1``/``wall`` -> wall-paced."""
    if speed is None or str(speed).lower() == "max":
        return VirtualClock()
    if str(speed).lower() in {"wall", "realtime", "real"}:
        return ScaledClock(1.0)
    return ScaledClock(float(speed))
