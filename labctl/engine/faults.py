"""What the engine does when an instrument fails mid-run: the fault policy.

A **link fault** is a :class:`~labctl.drivers.contracts.DeviceError` without a device code:
the link closed or broke (:class:`~labctl.drivers.transport.TransportError`), the instrument
stopped answering (:class:`~labctl.drivers.contracts.DeviceTimeout`), or it sent nothing but
garbage.  On a link fault the engine

1. turns the cell off (as far as the link allows: a potentiostat whose link is down cannot
   be reached; a MethodSCRIPT script ends by itself and turns the cell off with its
   ``on_finished: cell_off``),
2. closes the step that was running with the samples it holds (``end_reason: error``), so
   no committed sample is lost,
3. reconnects with exponential backoff (:class:`ReconnectPolicy`: by default 3 attempts,
   4 s, 8 s and 16 s of instrument-clock time apart, 28 s in all), each attempt an event,
4. on success, confirms the cell is off and runs the cut step again from its start (the
   engine's step boundary: the same guarantee as ``labctl resume``, sample ids and test
   time continue); on giving up, the run ends ``failed`` with a reason naming the instrument,
   the fault and the attempts.

An **instrument-reported error** (a DeviceError with a device code: MethodSCRIPT ``!XXXX``,
a SCPI error) is not a link problem and would come back: the run ends at once with the code
in its reason.  A step that meets a link fault more than ``MAX_FAULTS_PER_STEP`` times in a
row (each time reconnected, each time failing again before it completes) ends the run: a
link that fails whenever it is used is not going to get better.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_POLICY", "MAX_FAULTS_PER_STEP", "ReconnectPolicy", "is_link_fault"]

#: link faults in a row (no step completed in between) after which the run ends
MAX_FAULTS_PER_STEP = 3


@dataclass(frozen=True)
class ReconnectPolicy:
    """Reconnect with backoff: ``attempts`` tries, the k-th after ``delay * factor**(k-1)``
    seconds of the run's clock (instrument time); each connect may take ``connect_timeout``
    s of wall time.  ``attempts: 0`` ends the run at the first link fault."""

    attempts: int = 3
    delay: float = 4.0
    factor: float = 2.0
    connect_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 0:
            raise ValueError(f"attempts must be 0 or more, got {self.attempts}")
        if not self.delay >= 0 or not self.factor >= 1.0:
            raise ValueError(f"delay must be >= 0 s and factor >= 1, got {self.delay}, {self.factor}")
        if not self.connect_timeout > 0:
            raise ValueError(f"connect_timeout must be positive, got {self.connect_timeout}")

    def delays(self) -> list[float]:
        return [self.delay * self.factor**k for k in range(self.attempts)]

    @classmethod
    def from_options(cls, raw: Any) -> ReconnectPolicy:
        """From a station's ``reconnect:`` mapping (numbers in s, or quantities like ``'4 s'``)."""
        from labctl.core.units import parse_quantity

        if raw is None:
            return DEFAULT_POLICY
        if raw is False:
            return cls(attempts=0)
        if not isinstance(raw, dict):
            raise ValueError("reconnect is a mapping, e.g. {attempts: 3, delay: 4 s, factor: 2}")
        unknown = set(raw) - {"attempts", "delay", "factor", "connect_timeout"}
        if unknown:
            raise ValueError(
                f"unknown reconnect key(s) {', '.join(sorted(unknown))}: use attempts, delay, factor, connect_timeout"
            )

        def seconds(v: Any) -> float:
            return float(v) if isinstance(v, (int, float)) else parse_quantity(v, "time")

        kw: dict[str, Any] = {}
        if "attempts" in raw:
            if not isinstance(raw["attempts"], int) or isinstance(raw["attempts"], bool):
                raise ValueError(f"reconnect.attempts is a whole number, got {raw['attempts']!r}")
            kw["attempts"] = raw["attempts"]
        if "delay" in raw:
            kw["delay"] = seconds(raw["delay"])
        if "factor" in raw:
            kw["factor"] = float(raw["factor"])
        if "connect_timeout" in raw:
            kw["connect_timeout"] = seconds(raw["connect_timeout"])
        return cls(**kw)


DEFAULT_POLICY = ReconnectPolicy()


def is_link_fault(exc: BaseException) -> bool:
    """True for a DeviceError the link caused (no device code): worth reconnecting."""
    from labctl.drivers.contracts import DeviceError

    return isinstance(exc, DeviceError) and getattr(exc, "code", None) is None
