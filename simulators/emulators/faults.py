"""One fault schedule for every byte-level emulator: ``FaultPlan([Fault(kind, at=..., duration=...)])``.

A :class:`Fault` fires when the emulator has sent ``at`` messages (data packages for the
MethodSCRIPT emulator, commands answered by the line servers: Keithley 2450, Lake Shore 335;
replies of the GRBL dip coater), or, with
``after`` instead, once the emulator's clock has run ``after`` seconds since the plan was armed
(the first message).  ``duration`` (s of the emulator's clock) bounds the faults that last:
a silent instrument answers again, a disconnected one accepts connections again; ``None`` means
for ever.  Kinds:

========== ==================================================================================
disconnect the link is closed (TCP connection dropped); with ``duration`` new connections are
           refused until it has passed.  A script already running on a MethodSCRIPT device
           keeps running (as on the instrument) until a new connection aborts it.
silent     nothing is answered any more (commands still arrive), for ``duration`` or for ever
garbage    ``count`` messages are replaced by bytes that are not the protocol
partial    ``count`` messages are cut in half with no line end (the rest of the line is lost,
           the next message is glued onto it), as a link glitch does
error      MethodSCRIPT: the script fails with ``!code`` in the middle of its loop (the device
           turns the cell off); SCPI: ``code`` is queued in the error queue
no_settle  temperature stages: the heater cannot reach the set point; the stage levels off
           ``size`` K short of it (default 3 K)
overshoot  temperature stages: the loop runs away, the stage heads for set point + ``size`` K
           (default 15 K)
========== ==================================================================================

A plan can be written as text (``labctl emulate --fault``)::

    disconnect@20+5        the 20th message, 5 s
    silent@40              for ever
    garbage@10x3           three messages
    error@30:4205          code 4205
    no_settle:2            2 K short
    overshoot@5:20         from the 5th message, 20 K above the set point
    silent~600+30          600 s after the first message, 30 s long

(``KIND[@AT | ~AFTER][xCOUNT][+DURATION][:CODE_OR_SIZE]``; several faults separated by ``,``.)
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KINDS", "Fault", "FaultPlan", "FaultSpecError", "parse_plan"]

KINDS = ("disconnect", "silent", "garbage", "partial", "error", "no_settle", "overshoot")
#: kinds that act on the link (every emulator) and kinds that act on the physics of a stage
LINK_KINDS = ("disconnect", "silent", "garbage", "partial", "error")
STAGE_KINDS = ("no_settle", "overshoot")
GARBAGE = b"\x8f\xff#GARBLE\x00?\n"


class FaultSpecError(ValueError):
    """A fault written as text that cannot be read; the message says how to write it."""


@dataclass
class Fault:
    """One injected failure (see the module docstring)."""

    kind: str
    at: int | None = None  # the message (1-based) that triggers it
    after: float | None = None  # or: s of the emulator clock after the plan was armed
    duration: float | None = None  # s of the emulator clock; None: for ever
    count: int = 1  # garbage / partial: how many messages
    code: str = "7FFF"  # error: the MethodSCRIPT code (hex) or SCPI number
    size: float | None = None  # no_settle / overshoot: K
    # state
    fired_at: float | None = field(default=None, compare=False)
    left: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FaultSpecError(f"unknown fault kind {self.kind!r}; kinds: {', '.join(KINDS)}")
        if self.at is None and self.after is None:
            self.at = 1
        if self.at is not None and self.at < 1:
            raise FaultSpecError(f"{self.kind}: at must be 1 or more (the message that triggers it), got {self.at}")
        if self.duration is not None and not self.duration > 0:
            raise FaultSpecError(f"{self.kind}: duration must be positive, got {self.duration}")
        if self.count < 1:
            raise FaultSpecError(f"{self.kind}: count must be 1 or more, got {self.count}")
        self.left = self.count

    def active(self, now: float) -> bool:
        """Fired and still lasting (silent, disconnect, no_settle, overshoot)."""
        if self.fired_at is None:
            return False
        return self.duration is None or now < self.fired_at + self.duration


class FaultPlan:
    """A schedule of :class:`Fault` s, advanced by an emulator at every message it sends.

    ``tick(now)`` is called once per message and returns the faults that fire with it;
    ``active(kind, now)`` tells whether a lasting fault of that kind is in force.  Thread-safe.
    ``log`` lists ``(clock time, kind, message number)`` of every fault that fired.
    """

    def __init__(self, faults: list[Fault] | tuple[Fault, ...] = ()) -> None:
        self.faults = list(faults)
        self.messages = 0
        self.t0: float | None = None
        self.log: list[tuple[float, str, int]] = []
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.faults)

    def kinds(self) -> set[str]:
        return {f.kind for f in self.faults}

    def tick(self, now: float) -> list[Fault]:
        with self._lock:
            if self.t0 is None:
                self.t0 = now
            self.messages += 1
            out: list[Fault] = []
            for f in self.faults:
                if f.fired_at is None:
                    due = (f.at is not None and self.messages >= f.at) or (
                        f.after is not None and now - self.t0 >= f.after
                    )
                    if due:
                        f.fired_at = now
                        self.log.append((now, f.kind, self.messages))
                        out.append(f)
                elif f.kind in ("garbage", "partial") and f.left > 0:
                    out.append(f)
            return out

    def take(self, f: Fault) -> bool:
        """Use one of a counted fault's messages (garbage, partial); False when none are left."""
        with self._lock:
            if f.left <= 0:
                return False
            f.left -= 1
            return True

    def active(self, kind: str, now: float) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.kind == kind and f.active(now):
                    return f
            return None

    def arm(self, now: float) -> None:
        with self._lock:
            if self.t0 is None:
                self.t0 = now


_SPEC = re.compile(
    r"^(?P<kind>[a-z_]+)"
    r"(?:@(?P<at>\d+)|~(?P<after>[0-9]+(?:\.[0-9]*)?))?"
    r"(?:x(?P<count>\d+))?"
    r"(?:\+(?P<duration>[0-9]+(?:\.[0-9]*)?))?"
    r"(?::(?P<arg>[0-9A-Fa-f.+-]+))?$"
)


def parse_fault(text: str) -> Fault:
    m = _SPEC.match(text.strip())
    if m is None:
        raise FaultSpecError(
            f"cannot read fault {text!r}: write KIND[@MESSAGE | ~SECONDS][xCOUNT][+DURATION][:CODE_OR_SIZE], "
            f"e.g. disconnect@20+5, silent@40, garbage@10x3, error@30:4205, no_settle:2, overshoot@5:20"
        )
    kind = m["kind"]
    if kind not in KINDS:
        raise FaultSpecError(f"unknown fault kind {kind!r} in {text!r}; kinds: {', '.join(KINDS)}")
    kw: dict[str, Any] = {}
    if m["at"]:
        kw["at"] = int(m["at"])
    if m["after"]:
        kw["after"] = float(m["after"])
    if m["count"]:
        kw["count"] = int(m["count"])
    if m["duration"]:
        kw["duration"] = float(m["duration"])
    arg = m["arg"]
    if arg is not None:
        if kind == "error":
            kw["code"] = arg.upper()
        elif kind in STAGE_KINDS:
            try:
                kw["size"] = float(arg)
            except ValueError:
                raise FaultSpecError(f"{text!r}: the size of {kind} is a number of K, got {arg!r}") from None
        else:
            raise FaultSpecError(f"{text!r}: {kind} takes no ':' argument (only error and the stage faults do)")
    return Fault(kind, **kw)


def parse_plan(text: str) -> FaultPlan:
    """``"disconnect@20+5,garbage@40"`` -> a :class:`FaultPlan` (FaultSpecError says what is wrong)."""
    parts = [p for p in (s.strip() for s in text.split(",")) if p]
    if not parts:
        raise FaultSpecError("an empty fault plan: write e.g. disconnect@20+5")
    return FaultPlan([parse_fault(p) for p in parts])
