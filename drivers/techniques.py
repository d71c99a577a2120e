"""What a driver is asked to run: techniques in plain SI floats, and what it streams back.

The engine compiles protocol steps (``protocols/``, with units) into these
techniques (SI: s, V, A, C, Hz, degC for temperatures).  A driver runs one whole
technique and yields :class:`SampleBlock` s, the way a potentiostat streams data
packages.  Where an instrument can enforce the limits itself it does (the final
block then carries :class:`EndInfo`); the engine evaluates the same limits on every
block as well, so a driver without native limits is still safe.

Sign convention (everywhere in labctl): current is positive when it is anodic at
the working electrode (oxidation: Mg stripping from the WE), negative when
cathodic (plating onto the WE).  Voltages are WE minus counter/reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class EndReason(str, Enum):
    """Why a technique (and the step that ran it) ended."""

    DURATION = "duration"
    CHARGE = "charge"
    VOLTAGE_ABOVE = "voltage_above"
    VOLTAGE_BELOW = "voltage_below"
    CURRENT_BELOW = "current_below"
    CURRENT_ABOVE = "current_above"
    SHORT_CIRCUIT = "short_circuit"
    COMPLETE = "complete"  # sweeps, spectra: the technique's natural end
    SAFETY = "safety"
    ABORTED = "aborted"
    ERROR = "error"


@dataclass(frozen=True)
class Limits:
    """End conditions of one technique; whichever is met first ends it.

    ``charge`` is an absolute charge in coulombs (magnitude of the charge passed in
    the technique).  ``current_below``/``current_above`` compare ``|I|``.
    ``short_circuit``: ``|V|`` below this many volts while current flows, held for
    ``short_hold`` seconds, ends the technique with ``SHORT_CIRCUIT``.
    """

    duration: float | None = None
    charge: float | None = None
    voltage_above: float | None = None
    voltage_below: float | None = None
    current_below: float | None = None
    current_above: float | None = None
    short_circuit: float | None = None
    short_hold: float = 60.0


@dataclass(frozen=True)
class Recording:
    """When to record a sample: every ``dt`` seconds and/or whenever V moved ``dv``.

    A driver samples internally at ``dt`` (or finer) and emits a point when either
    criterion is met.  ``dv`` alone still records at least every ``max_dt``.
    """

    dt: float | None = 1.0
    dv: float | None = None
    max_dt: float = 3600.0


@dataclass(frozen=True)
class OpenCircuit:
    """Cell off (or at zero current), recording the open-circuit potential."""

    duration: float
    record: Recording = field(default_factory=Recording)
    kind: str = "ocp"


@dataclass(frozen=True)
class ConstantCurrent:
    """Galvanostatic: hold ``current`` amperes until one of ``limits`` is met."""

    current: float
    limits: Limits
    record: Recording = field(default_factory=Recording)
    kind: str = "cp"


@dataclass(frozen=True)
class ConstantPotential:
    """Potentiostatic hold at ``potential`` (V; relative to OCP when ``vs_ocp``)."""

    potential: float
    limits: Limits
    vs_ocp: bool = False
    record: Recording = field(default_factory=Recording)
    kind: str = "ca"


@dataclass(frozen=True)
class LinearSweep:
    """Linear sweep from ``start`` to ``end`` V at ``scan_rate`` V/s, a point every ``step`` V.

    With ``vs_ocp`` both ends are relative to the open-circuit potential measured
    just before the sweep (Tafel scans).
    """

    start: float
    end: float
    scan_rate: float
    step: float = 0.001
    vs_ocp: bool = False
    limits: Limits = field(default_factory=Limits)
    kind: str = "lsv"


@dataclass(frozen=True)
class CyclicSweep:
    """Cyclic voltammetry: start -> vertex1 -> vertex2 -> start, ``cycles`` times."""

    start: float
    vertex1: float
    vertex2: float
    scan_rate: float
    step: float = 0.001
    cycles: int = 1
    vs_ocp: bool = False
    limits: Limits = field(default_factory=Limits)
    kind: str = "cv"


@dataclass(frozen=True)
class Impedance:
    """Potentiostatic EIS from ``f_start`` to ``f_end`` Hz (log spaced, ``points_per_decade``)."""

    f_start: float
    f_end: float
    points_per_decade: int
    amplitude: float  # V rms
    e_dc: float = 0.0
    vs_ocp: bool = True
    kind: str = "eis"


Technique = OpenCircuit | ConstantCurrent | ConstantPotential | LinearSweep | CyclicSweep | Impedance


@dataclass(frozen=True)
class EndInfo:
    """Carried by the last block of a technique that ended on its own."""

    reason: EndReason
    t: float  # clock time at which the condition was met (interpolated)
    detail: str = ""


_OPTIONAL = ("temperature", "frequency", "z_re", "z_im")


@dataclass
class SampleBlock:
    """A block of samples as parallel float64 arrays (SI units).

    ``t`` is clock time (s, see :mod:`labctl.core.clock`).  ``voltage`` V, ``current`` A.
    Optional columns are ``None`` when the technique does not produce them:
    ``temperature`` degC, ``frequency`` Hz, ``z_re``/``z_im`` ohm (Z'' as measured,
    negative for capacitive points).  ``end`` is set on the last block when the
    driver itself ended the technique.
    """

    t: np.ndarray
    voltage: np.ndarray
    current: np.ndarray
    temperature: np.ndarray | None = None
    frequency: np.ndarray | None = None
    z_re: np.ndarray | None = None
    z_im: np.ndarray | None = None
    end: EndInfo | None = None

    def __post_init__(self) -> None:
        n = len(self.t)
        for name in ("voltage", "current", *_OPTIONAL):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(f"SampleBlock column {name} has {len(arr)} values, t has {n}")

    def __len__(self) -> int:
        return len(self.t)

    def head(self, n: int) -> "SampleBlock":
        """The first ``n`` samples (a view), without ``end``."""
        kw = {name: (None if getattr(self, name) is None else getattr(self, name)[:n]) for name in _OPTIONAL}
        return SampleBlock(self.t[:n], self.voltage[:n], self.current[:n], **kw)

    @staticmethod
    def empty() -> "SampleBlock":
        z = np.zeros(0)
        return SampleBlock(z, z, z)
