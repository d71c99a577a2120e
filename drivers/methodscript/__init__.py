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
    "MethodScriptPotentiostat", "MethodScriptHandle", "DeviceEvent", "MODELS", "CompiledScript",
    "compile_technique", "ERROR_CODES", "MethodScriptError", "MethodScriptProtocolError", "decode_package",
    "parse_reply",
]
