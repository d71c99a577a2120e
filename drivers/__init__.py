"""Device contracts (typing.Protocol), techniques and sample blocks, and the driver registry."""

from .contracts import Capabilities, ChannelDevices, DeviceError, DipCoater, Potentiostat, TemperatureStage
from .techniques import (
    ConstantCurrent,
    ConstantPotential,
    CyclicSweep,
    EndInfo,
    EndReason,
    Impedance,
    Limits,
    LinearSweep,
    OpenCircuit,
    Recording,
    SampleBlock,
    Technique,
)

__all__ = [
    "Capabilities",
    "ChannelDevices",
    "DeviceError",
    "DipCoater",
    "Potentiostat",
    "TemperatureStage",
    "ConstantCurrent",
    "ConstantPotential",
    "CyclicSweep",
    "EndInfo",
    "EndReason",
    "Impedance",
    "Limits",
    "LinearSweep",
    "OpenCircuit",
    "Recording",
    "SampleBlock",
    "Technique",
]
