"""What a battery cycler is asked to run: a flat list of vendor-neutral steps with loops.

A cycler runs a whole program on its own (for weeks); the host translates a labctl
protocol into a :class:`CyclerProgram` once (``labctl.app.cycler_run``), a driver writes
it in its vendor's format (Neware step XML: :mod:`labctl.drivers.neware.stepfile`).
Units are SI like everywhere in labctl (s, V, A, C); the current sign is labctl's
(positive = anodic at the working electrode, a cycler's "charge").

Step numbers are 1-based positions in ``steps`` (a vendor's step ids).  A
:class:`CyclerLoop` jumps back to ``first`` until the steps ``first..loop-1`` ran
``count`` times.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .techniques import Recording


@dataclass(frozen=True)
class CyclerRest:
    duration: float  # s
    record: Recording = field(default_factory=Recording)
    kind: str = "rest"


@dataclass(frozen=True)
class CyclerCC:
    """Constant current until the first of: duration, |charge| passed, a voltage cut-off.

    ``voltage_limit`` is an upper limit for a positive current and a lower one for a negative
    current (that is what a cycler's charge/discharge step can stop on)."""

    current: float  # A, signed
    duration: float | None = None
    charge: float | None = None  # C, magnitude
    voltage_limit: float | None = None  # V
    record: Recording = field(default_factory=Recording)
    kind: str = "cc"


@dataclass(frozen=True)
class CyclerCV:
    """Constant voltage until the first of: duration, |current| below ``current_below``."""

    voltage: float  # V
    duration: float | None = None
    current_below: float | None = None  # A
    record: Recording = field(default_factory=Recording)
    kind: str = "cv"


@dataclass(frozen=True)
class CyclerLoop:
    first: int  # 1-based step number the loop jumps back to
    count: int  # total number of iterations of the body
    kind: str = "loop"


CyclerStep = CyclerRest | CyclerCC | CyclerCV | CyclerLoop


@dataclass(frozen=True)
class CyclerSafety:
    """What the cycler enforces on its own for the whole program (its protection)."""

    voltage_min: float | None = None
    voltage_max: float | None = None
    current_max: float | None = None


@dataclass(frozen=True)
class CyclerProgram:
    steps: tuple[CyclerStep, ...]
    safety: CyclerSafety = field(default_factory=CyclerSafety)
    #: free text the vendor keeps with the test (Neware: the step file's Remark)
    remark: str = ""
