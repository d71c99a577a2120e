"""One clock for engine, drivers and simulators.

Nothing in labctl calls ``time.sleep`` or ``time.time`` directly: a :class:`Clock`
is passed in.  On hardware it is a :class:`WallClock`; in simulation a
:class:`VirtualClock` (``--speed max``: time jumps, 1,610 h replay in seconds) or a
:class:`ScaledClock` (``--speed 100``: virtual time runs 100x wall time).

``now()`` is seconds since the clock's epoch (a float, monotonic).  ``unix(t)``
converts a clock reading to Unix time, so exports can carry both.
"""

from __future__ import annotations

import math
import time
from typing import Any, Protocol, runtime_checkable


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


#: The factors ``--speed N`` accepts: slower than 1/1000 of wall time or faster than a million
#: times wall time is no use (``max`` is faster still) and breaks time arithmetic at the extremes.
SPEED_RANGE = (1e-3, 1e6)


def parse_speed(speed: str | float | None) -> float | None:
    """``max`` (or None) -> None (virtual time); ``wall`` -> 1.0; a number in :data:`SPEED_RANGE` -> it.

    Raises :class:`ValueError` with a message for anything else (``nan``, ``inf``, ``1e-300``, ``-5``).
    """
    if speed is None or str(speed).strip().lower() == "max":
        return None
    text = str(speed).strip().lower()
    if text in {"wall", "realtime", "real"}:
        return 1.0
    lo, hi = SPEED_RANGE
    try:
        factor = float(text)
    except ValueError:
        raise ValueError(f"{speed!r} is not a number; use 'max' or a factor such as 100") from None
    if not (math.isfinite(factor) and lo <= factor <= hi):
        raise ValueError(f"{speed!r} is out of range: use 'max' or a factor between {lo:g} and {hi:g}")
    return factor


def clock_for_speed(speed: str | float | None) -> Clock:
    """``max`` (or None) -> VirtualClock; a number -> ScaledClock; ``1``/``wall`` -> wall-paced.

    Raises :class:`ValueError` (see :func:`parse_speed`) for a factor it cannot use.
    """
    factor = parse_speed(speed)
    if factor is None:
        return VirtualClock()
    return ScaledClock(factor)


class _Participant:
    """One thread's seat at a :class:`SharedVirtualClock` (see :meth:`SharedVirtualClock.participant`)."""

    __slots__ = ("active", "name", "waiting_until", "wake")

    def __init__(self, name: str) -> None:
        self.name = name
        self.waiting_until: float | None = None
        self.active = True
        self.wake: Any = None  # the threading.Event that ends this seat's wait early


class SharedVirtualClock:
    """Virtual time shared by several channels running in threads of one process.

    Each channel thread holds a seat (:meth:`participant`, registered by whoever starts
    the threads, *before* any of them runs, then :meth:`bind` in the thread).  Time
    advances only when every seated thread is asleep, and then to the earliest wake-up
    time among them: a discrete-event scheduler over threads.  Each channel therefore
    sees exactly the clock readings it would see alone on a :class:`VirtualClock`, and
    its data is byte-identical to the same run alone.

    A seated thread that waits for something other than time (a paused channel waiting
    for resume) steps aside with :meth:`detached` so the others go on.
    """

    virtual = True

    def __init__(self, start_unix: float | None = None) -> None:
        import threading

        self._t = 0.0
        self._unix0 = time.time() if start_unix is None else float(start_unix)
        self._cv = threading.Condition()
        self._seats: list[_Participant] = []
        self._local = threading.local()

    # --------------------------------------------------------------- seats
    def participant(self, name: str = "") -> _Participant:
        """Register a seat now (from the thread that starts the channels)."""
        seat = _Participant(name)
        with self._cv:
            self._seats.append(seat)
        return seat

    def bind(self, seat: _Participant) -> None:
        """The calling thread sleeps on ``seat`` from now on."""
        self._local.seat = seat

    def leave(self, seat: _Participant) -> None:
        """``seat``'s thread is done: time no longer waits for it."""
        with self._cv:
            if seat in self._seats:
                self._seats.remove(seat)
            seat.active = False
            self._advance_locked()
        if getattr(self._local, "seat", None) is seat:
            self._local.seat = None

    class _Detached:
        def __init__(self, clock: SharedVirtualClock, seat: _Participant) -> None:
            self.clock, self.seat = clock, seat

        def __enter__(self) -> None:
            with self.clock._cv:
                self.clock._seats.remove(self.seat)
                self.clock._advance_locked()

        def __exit__(self, *exc: object) -> None:
            with self.clock._cv:
                self.clock._seats.append(self.seat)

    def detached(self) -> SharedVirtualClock._Detached:
        """``with clock.detached():`` the calling thread waits outside virtual time."""
        seat = self._seat()
        return SharedVirtualClock._Detached(self, seat)

    def _seat(self) -> _Participant:
        seat: _Participant | None = getattr(self._local, "seat", None)
        if seat is None or not seat.active:
            raise RuntimeError(
                "this thread has no seat at the shared virtual clock: "
                "register one with participant() and bind() it in the thread"
            )
        return seat

    def _advance_locked(self) -> None:
        seats = self._seats
        if seats and all(s.waiting_until is not None and not (s.wake is not None and s.wake.is_set()) for s in seats):
            t = min(s.waiting_until for s in seats if s.waiting_until is not None)
            if t > self._t:
                self._t = t
            self._cv.notify_all()

    # --------------------------------------------------------------- Clock
    def now(self) -> float:
        return self._t

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.sleep_until(self._t + seconds)

    def sleep_until(self, t: float) -> None:
        seat = self._seat()
        with self._cv:
            if t <= self._t:
                return
            seat.waiting_until = t
            self._advance_locked()
            while self._t < t:
                self._cv.wait()
            seat.waiting_until = None

    def sleep_until_or(self, t: float, event: Any) -> bool:
        """Sleep until ``t`` or until ``event`` is set with :meth:`notify`; True when the event ended it.

        While the event is set the seat counts as awake, so time cannot pass the moment it was set."""
        seat = self._seat()
        with self._cv:
            if event.is_set():
                return True
            if t <= self._t:
                return False
            seat.waiting_until, seat.wake = t, event
            self._advance_locked()
            while self._t < t and not event.is_set():
                self._cv.wait()
            seat.waiting_until, seat.wake = None, None
            return bool(event.is_set())

    def notify(self, event: Any) -> None:
        """Set ``event`` and wake the seat sleeping on it (:meth:`sleep_until_or`)."""
        with self._cv:
            event.set()
            self._cv.notify_all()

    def unix(self, t: float) -> float:
        return self._unix0 + t

    def horizon(self) -> float:
        return float("inf")


def sleep_until_or(clock: Clock, t: float, event: Any) -> bool:
    """Let clock time pass until ``t`` or until ``event`` (a ``threading.Event``) is set, whichever
    comes first; True when the event ended the wait.  Set the event with :func:`notify` so a
    thread sleeping on a :class:`SharedVirtualClock` wakes at the virtual moment it was set."""
    if isinstance(clock, SharedVirtualClock):
        return clock.sleep_until_or(t, event)
    if event.is_set():
        return True
    if isinstance(clock, VirtualClock):  # a lone virtual clock: nobody else sets the event while time jumps
        clock.sleep_until(t)
        return bool(event.is_set())
    remaining = t - clock.now()
    if remaining == float("inf"):
        event.wait()
        return True
    scale = getattr(clock, "factor", 1.0) or 1.0
    return bool(event.wait(max(0.0, remaining / scale)))


def notify(clock: Clock, event: Any) -> None:
    """Set ``event``, waking whoever waits on it in :func:`sleep_until_or`."""
    if isinstance(clock, SharedVirtualClock):
        clock.notify(event)
    else:
        event.set()


def wait_for(clock: Clock, event: object, poll: float = 0.25) -> None:
    """Wait until ``event`` (a ``threading.Event``) is set, letting other channels' time go on."""
    detached = getattr(clock, "detached", None)
    if callable(detached):
        with detached():
            event.wait()  # type: ignore[attr-defined]
        return
    while not event.wait(poll):  # type: ignore[attr-defined]
        pass
