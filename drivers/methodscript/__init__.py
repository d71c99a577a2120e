"""PalmSens MethodSCRIPT driver (EmStat4 LR/HR, EmStat Pico): see docs/drivers-methodscript.md."""

from labctl.drivers.methodscript.compiler import CompiledScript, compile_technique
from labctl.drivers.methodscript.driver import MODELS, DeviceEvent, MethodScriptHandle, MethodScriptPotentiostat
from labctl.drivers.methodscript.protocol import (
    ERROR_CODES,
    MethodScriptError,
    MethodScriptProtocolError,
    decode_package,
    parse_reply,
)

__all__ = [
    "ERROR_CODES",
    "MODELS",
    "CompiledScript",
    "DeviceEvent",
    "MethodScriptError",
    "MethodScriptHandle",
    "MethodScriptPotentiostat",
    "MethodScriptProtocolError",
    "compile_technique",
    "decode_package",
    "parse_reply",
]
