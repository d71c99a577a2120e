"""Device contracts: small ``typing.Protocol`` s that the engine depends on, nothing more.

A real driver (MethodSCRIPT over serial, SCPI over pyvisa, hardpotato) and a
simulator implement the same contract, so the engine cannot tell them apart.
Construction is ``Factory(clock=clock, **config)``; see :mod:`drivers.registry`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from drivers.techniques import SampleBlock, Technique


@dataclass(frozen=True)
class Capabilities:
    """What a potentiostat can do, declared up front so a protocol can be checked before
    any current flows.

    ``techniques``: the ``kind`` s of :mod:`drivers.techniques` it runs natively.
    ``native_limits``: True when the instrument itself enforces the end conditions of
    a technique (so a crashed PC does not spoil a cell).
    """

    techniques: frozenset[str]
    current_range: tuple[float, float] = (-0.1, 0.1)  # A
    voltage_range: tuple[float, float] = (-10.0, 10.0)  # V
    frequency_range: tuple[float, float] = (1e-3, 1e6)  # Hz
    native_limits: bool = False
    channels: int = 1
    model: str = ""


class DeviceError(RuntimeError):
    """An instrument reported an error or stopped answering.  ``code`` is the device's own."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message if code is None else f"{message} (device code {code})")
        self.code = code


@runtime_checkable
class Potentiostat(Protocol):
    """A potentiostat/galvanostat channel."""

    capabilities: Capabilities

    def connect(self) -> None:
        """Open the link and identify the instrument."""

    def run(self, technique: Technique) -> Iterator[SampleBlock]:
        """Run a whole technique, yielding blocks of samples as they arrive.

        The generator ends when the technique ends; if the driver enforced a limit
        the last block carries ``end``.  Closing the generator early stops the
        technique on the instrument.
        """

    def cell_off(self) -> None:
        """Disconnect the cell (open circuit).  Must be safe to call at any time, twice."""

    def close(self) -> None:
        """Cell off and release the link."""

    def identify(self) -> str:
        """Model, serial number, firmware."""


@runtime_checkable
class TemperatureStage(Protocol):
    """A temperature controller with one controlled stage."""

    range_c: tuple[float, float]

    def connect(self) -> None: ...

    def set_setpoint(self, celsius: float) -> None: ...

    def read_temperature(self) -> float:
        """Current stage temperature, degC."""

    def close(self) -> None: ...


@runtime_checkable
class DipCoater(Protocol):
    """An automated dip coater: lowers a sample into a bath and lifts it out."""

    def connect(self) -> None: ...

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
