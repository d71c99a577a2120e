"""Device contracts: small ``typing.Protocol`` s that the engine depends on, nothing more.

A real driver (MethodSCRIPT over serial, SCPI over pyvisa, hardpotato) and a
simulator implement the same contract, so the engine cannot tell them apart.
Construction is ``Factory(clock=clock, **config)``; see :mod:`labctl.drivers.registry`.

A technique is *started* and returns a :class:`TechniqueHandle`: the engine reads
blocks from it with a timeout, can ``stop()`` it (the instrument ends the technique
and leaves the cell safe), and sees its :class:`TechniqueState`.  Every call that
talks to an instrument takes a timeout (seconds of wall time), so a silent
instrument becomes a :class:`DeviceError`, never a hang.  The conformance suite
(:mod:`labctl.drivers.conformance`) checks an implementation against all of this.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from .techniques import EndInfo, SampleBlock, Technique

#: Default timeouts (s of wall time) for connecting and for one read of a block.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 5.0


@dataclass(frozen=True)
class Capabilities:
    """What a potentiostat can do, declared up front so a protocol can be checked before
    any current flows.

    ``techniques``: the ``kind`` s of :mod:`labctl.drivers.techniques` it runs natively.
    ``native_limits``: True when the instrument itself enforces the end conditions of
    a technique (so a crashed PC does not spoil a cell).
    """

    techniques: frozenset[str]
    current_range: tuple[float, float] = (-0.1, 0.1)  # A
    voltage_range: tuple[float, float] = (-10.0, 10.0)  # V
    frequency_range: tuple[float, float] = (1e-3, 1e6)  # Hz
    native_limits: bool = False
    #: False when the samples of a technique arrive only once it ended (a macro-run instrument):
    #: without native limits such an instrument cannot honour a cut-off, so preflight refuses one
    streams: bool = True
    channels: int = 1
    model: str = ""


class DeviceError(RuntimeError):
    """An instrument reported an error or stopped answering.  ``code`` is the device's own."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message if code is None else f"{message} (device code {code})")
        self.code = code


class DeviceTimeout(DeviceError):
    """An instrument did not answer within the timeout of the call."""


class JobRefused(DeviceError):
    """A cycler answered a start with a refusal: nothing runs."""


class WrongChannelReply(DeviceError):
    """An instrument answered for another channel than the one asked: its data must not be filed."""


class TechniqueState(str, Enum):
    """Where a started technique is.  ``RUNNING`` until the instrument ended it (``ENDED``: its
    natural end or a limit it enforced), the host stopped it (``STOPPED``), or it failed."""

    RUNNING = "running"
    ENDED = "ended"
    STOPPED = "stopped"
    FAILED = "failed"


@runtime_checkable
class TechniqueHandle(Protocol):
    """A technique running on an instrument.

    ``read(timeout)`` returns the samples that arrived (possibly none) within ``timeout``
    seconds of wall time; the block that ends the technique carries ``end`` when the
    instrument enforced a limit.  Once ``state`` is no longer RUNNING and every sample was
    delivered, ``read`` returns an empty block at once.  A dead or garbled link raises
    :class:`DeviceError` (never blocks past the timeout).  ``stop()`` ends the technique on
    the instrument and leaves the cell safe (off); it is idempotent and safe after an error.
    """

    @property
    def state(self) -> TechniqueState: ...

    @property
    def end(self) -> EndInfo | None:
        """Why the instrument ended the technique, once it did."""

    def read(self, timeout: float = READ_TIMEOUT) -> SampleBlock: ...

    def stop(self) -> None: ...


@runtime_checkable
class Potentiostat(Protocol):
    """A potentiostat/galvanostat channel."""

    capabilities: Capabilities

    def connect(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Open the link and identify the instrument (DeviceError within ``timeout`` if it does not answer)."""

    def start(self, technique: Technique) -> TechniqueHandle:
        """Start a whole technique on the instrument; its samples are read from the handle."""

    def cell_off(self) -> None:
        """Disconnect the cell (open circuit).  Must be safe to call at any time, twice."""

    def close(self) -> None:
        """Cell off and release the link.

        Optional, not part of the structural check: ``release()`` lets go of the link without
        changing anything on the instrument.  ``labctl instruments`` uses it (it queries a
        potentiostat that may be running another process's cell, which must stay on); a
        driver without it is only queried through ``identify()`` and left connected until exit.
        """

    def identify(self) -> str:
        """Model, serial number, firmware."""


@runtime_checkable
class TemperatureStage(Protocol):
    """A temperature controller with one controlled stage."""

    range_c: tuple[float, float]

    def connect(self, timeout: float = CONNECT_TIMEOUT) -> None: ...

    def set_setpoint(self, celsius: float) -> None: ...

    def read_temperature(self) -> float:
        """Current stage temperature, degC."""

    def close(self) -> None: ...


@runtime_checkable
class DipCoater(Protocol):
    """An automated dip coater: lowers a sample into a bath and lifts it out."""

    def connect(self, timeout: float = CONNECT_TIMEOUT) -> None: ...

    def immerse(self, bath: str) -> None:
        """Lower the sample holder into ``bath`` (returns when immersed)."""

    def withdraw(self) -> None:
        """Lift the sample holder out (returns when clear of the liquid)."""

    def close(self) -> None: ...


@dataclass
class ChannelDevices:
    """The devices of one channel: a potentiostat and optional stage and dip coater."""

    potentiostat: Potentiostat
    stage: TemperatureStage | None = None
    dip_coater: DipCoater | None = None
    extras: dict[str, object] = field(default_factory=dict)


# --------------------------------------------------------------------- instruments that run on their own
class JobState(str, Enum):
    """A job on an instrument that runs a whole protocol by itself (a battery cycler channel)."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"  # the instrument ended it on a fault or protection


@dataclass(frozen=True)
class JobStatus:
    """What the instrument says about a job: state, where it is, the last values it measured."""

    state: JobState
    step: int | None = None
    cycle: int | None = None
    voltage: float | None = None  # V
    current: float | None = None  # A
    detail: str = ""


@dataclass
class Harvest:
    """Samples collected from a job since a cursor, and the cursor to continue from.

    ``cursor`` is opaque to labctl and stored in its database after the samples are
    committed, so a restarted labctl continues where it left off (no sample lost or doubled).
    ``step`` and ``cycle`` are per sample, the instrument's own step numbers (positions in the
    submitted program, 1-based) and cycle counter: ``labctl.app.cycler_run`` maps them onto
    labctl's conventions with the program it submitted.  ``extra`` carries the instrument's own
    counters: ``step_seq`` (how many steps the job has begun, per sample), ``capacity_mAh``
    (the step's capacity, unsigned), ``energy_mWh`` and ``step_time`` (s).
    """

    block: SampleBlock
    step: Any  # np.ndarray of int
    cycle: Any  # np.ndarray of int
    cursor: str
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Cycler(Protocol):
    """A multi-channel instrument that runs a whole protocol on its own for weeks.

    The host submits a translated program, then only watches and harvests: it never
    streams blocks of a technique.  Job ids are the instrument's own and are stored by
    labctl so a restart never starts a job twice.
    """

    def connect(self, timeout: float = CONNECT_TIMEOUT) -> None: ...

    def channels(self) -> list[str]: ...

    def submit(self, channel: str, program: Any, *, barcode: str = "") -> str:
        """Start ``program`` (a :class:`~labctl.drivers.cycler.CyclerProgram`) on ``channel``; the job id.
        :class:`JobRefused` when the instrument answers the start with a refusal."""

    def status(self, job: str) -> JobStatus: ...

    def stop(self, job: str) -> None: ...

    def harvest(self, job: str, cursor: str | None) -> Harvest: ...

    def close(self) -> None:
        """Release the link; jobs go on running on the instrument."""

    # Optional, not part of the structural check:
    #   supports_pause / supports_continue: bool; pause(job), resume(job) where the vendor allows
    #   step_file_text(program) -> str: the vendor file of a program (its sha256 identifies a job's program)
    #   write_step_file(program, barcode) -> (local path, path the instrument reads, sha256)
    #   find_job(channel, barcode) -> job | None: the job a start with this barcode started, if any
    #   reconnect(): open the link again after an error
