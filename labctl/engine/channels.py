"""Many channels in one process: one engine per channel, each in its own thread, one clock.

Threads, not asyncio: drivers do blocking I/O (pyserial, pyvisa) and simulators do
vectorised numpy work, and both stay unchanged; every instrument call already takes a
timeout, so a thread never hangs.  Each channel has its own stop token (the engine's
``abort``/``pause``); a failure in one channel is that channel's outcome and never
touches the others.

On a :class:`~labctl.core.clock.SharedVirtualClock` every channel holds a seat, taken
before any thread starts, so virtual time advances only when all channels sleep, and
each channel's data is byte-identical to the same run alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from labctl.core.clock import Clock, SharedVirtualClock
from labctl.engine.runner import Engine, EngineState, RunOutcome


@dataclass
class Channel:
    """One channel: a name and the engine that runs its protocol."""

    name: str
    engine: Engine
    outcome: RunOutcome | None = None
    error: BaseException | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def pause(self) -> None:
        self.engine.pause()

    def resume(self) -> None:
        self.engine.resume()

    def abort(self, reason: str = "aborted by the user") -> None:
        self.engine.abort(reason)

    @property
    def state(self) -> EngineState:
        return self.engine.state

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class ChannelGroup:
    """Runs several channels concurrently on one clock.

    >>> group = ChannelGroup(clock, [Channel("A", engine_a), Channel("B", engine_b)])
    >>> group.start(); group.join()
    >>> group["A"].outcome.status
    """

    def __init__(self, clock: Clock, channels: Iterable[Channel]) -> None:
        self.clock = clock
        self.channels = list(channels)
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must be unique, got {names}")
        for c in self.channels:
            if c.engine.clock is not clock:
                raise ValueError(f"channel {c.name}: its engine runs on another clock")

    def __getitem__(self, name: str) -> Channel:
        for c in self.channels:
            if c.name == name:
                return c
        raise KeyError(name)

    def start(self) -> None:
        clock = self.clock
        seats: list[Any] = [
            clock.participant(c.name) if isinstance(clock, SharedVirtualClock) else None for c in self.channels
        ]
        for c, seat in zip(self.channels, seats, strict=True):
            c._thread = threading.Thread(target=self._run, args=(c, seat), name=f"labctl-channel-{c.name}", daemon=True)
        for c in self.channels:
            assert c._thread is not None
            c._thread.start()

    def _run(self, channel: Channel, seat: Any) -> None:
        clock = self.clock
        if seat is not None:
            assert isinstance(clock, SharedVirtualClock)
            clock.bind(seat)
        try:
            channel.outcome = channel.engine.run()
        except BaseException as e:
            channel.error = e
        finally:
            if seat is not None:
                assert isinstance(clock, SharedVirtualClock)
                clock.leave(seat)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every channel; True when all have finished."""
        for c in self.channels:
            if c._thread is not None:
                c._thread.join(timeout)
        return not any(c.alive for c in self.channels)

    def abort_all(self, reason: str) -> None:
        for c in self.channels:
            c.abort(reason)

    def outcomes(self) -> dict[str, RunOutcome | None]:
        return {c.name: c.outcome for c in self.channels}
