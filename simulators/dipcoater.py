"""A simulated dip coater: lowers the sample holder into a bath and lifts it out, in clock time.

Each move takes ``depth_mm / speed_mm_s`` seconds of clock time (``clock.sleep``), and
every action is logged with its clock times, so the timing of a coating (1 h in
2 vol% 1-bromopropane/DME, then a rinse) can be checked against the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labctl.drivers.contracts import DeviceError

__all__ = ["SimulatedDipCoater", "DipAction"]


@dataclass(frozen=True)
class DipAction:
    """One move: ``action`` is "immerse" or "withdraw"; times are clock seconds."""

    action: str
    bath: str | None
    t_start: float
    t_end: float
    position_mm: float  # depth below the bath surface after the move (0 = clear of the liquid)


class SimulatedDipCoater:
    """Implements :class:`labctl.drivers.contracts.DipCoater`.

    ``baths``: if given, the bath names the coater knows; immersing into another one is
    a :class:`DeviceError`.  ``withdraw`` when already out is a no-op (safe to call twice).
    """

    def __init__(
        self,
        clock: Any,
        *,
        speed_mm_s: float = 1.0,
        depth_mm: float = 20.0,
        baths: list[str] | tuple[str, ...] | None = None,
    ) -> None:
        if not speed_mm_s > 0:
            raise ValueError(f"speed_mm_s must be positive, got {speed_mm_s!r}")
        if not depth_mm > 0:
            raise ValueError(f"depth_mm must be positive, got {depth_mm!r}")
        self.clock = clock
        self.speed_mm_s = float(speed_mm_s)
        self.depth_mm = float(depth_mm)
        self.baths = None if baths is None else tuple(baths)
        self.position_mm = 0.0
        self.bath: str | None = None
        self.connected = False
        self.log: list[DipAction] = []
        self.positions: list[tuple[float, float]] = [(float(clock.now()), 0.0)]

    @property
    def move_time(self) -> float:
        """Clock seconds of one immersion or withdrawal."""
        return self.depth_mm / self.speed_mm_s

    def connect(self, timeout: float = 10.0) -> None:
        self.connected = True

    def identify(self) -> str:
        return f"labctl-sim dip coater ({self.speed_mm_s:g} mm/s, depth {self.depth_mm:g} mm)"

    def immerse(self, bath: str) -> None:
        if not self.connected:
            raise DeviceError("simulated dip coater is not connected: call connect() first")
        if self.bath is not None:
            raise DeviceError(f"the holder is already immersed in {self.bath!r}: withdraw first")
        if self.baths is not None and bath not in self.baths:
            raise DeviceError(f"unknown bath {bath!r}; this coater holds: {', '.join(self.baths)}")
        self._move(self.depth_mm, "immerse", bath)
        self.bath = bath

    def withdraw(self) -> None:
        if self.bath is None:
            return
        bath = self.bath
        self._move(0.0, "withdraw", bath)
        self.bath = None

    def close(self) -> None:
        if self.connected and self.bath is not None:
            self.withdraw()
        self.connected = False

    def _move(self, target: float, action: str, bath: str) -> None:
        t0 = float(self.clock.now())
        self.clock.sleep(abs(target - self.position_mm) / self.speed_mm_s)
        t1 = float(self.clock.now())
        self.position_mm = target
        self.positions.append((t1, target))
        self.log.append(DipAction(action, bath, t0, t1, target))
