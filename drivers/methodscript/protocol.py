"""MethodSCRIPT wire format: SI-prefixed integer literals, data packages, reply lines, error codes.

Everything here is pure (no I/O), so the emulator and the driver share one definition of
the format and the parser can be fuzzed on its own.  Facts: docs/drivers-methodscript.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from labctl.drivers.contracts import DeviceError

__all__ = [
    "ERROR_CODES",
    "MAX_LINE",
    "PREFIXES",
    "STATUS_BITS",
    "VAR_TYPES",
    "MethodScriptError",
    "MethodScriptProtocolError",
    "Package",
    "Reply",
    "Variable",
    "decode_package",
    "decode_value",
    "decode_variable",
    "encode_value",
    "error_from_reply",
    "format_literal",
    "parse_literal",
    "parse_reply",
]

#: SI prefix character -> factor.  ``" "`` is no prefix, ``i`` an integer count.
PREFIXES: dict[str, float] = {
    "a": 1e-18,
    "f": 1e-15,
    "p": 1e-12,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    " ": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "i": 1.0,
}
_ENCODE_ORDER = ("f", "p", "n", "u", "m", " ", "k", "M", "G", "T", "P", "E")
_OFFSET = 0x8000000
_SPAN = 0x7FFFFFF  # largest magnitude a 7-hex-digit value holds either side of the offset

#: A command line sent to a device holds at most this many characters (error 0008 beyond).
MAX_LINE = 128

#: Status bits of a variable's ``1X`` metadata field.
STATUS_BITS: dict[int, str] = {1: "timing_error", 2: "overload", 4: "underload", 8: "overload_warning"}

#: Variable types (2 letters) of the data packages this driver understands.
VAR_TYPES: dict[str, str] = {
    "da": "applied potential (V)",
    "db": "applied current (A)",
    "dc": "frequency (Hz)",
    "ba": "WE current (A)",
    "ab": "WE vs RE potential (V)",
    "cc": "Z' (ohm)",
    "cd": "Z'' (ohm)",
    "eb": "time (s)",
    "ed": "temperature (degC)",
    "ja": "generic",
    "aa": "unspecified",
}

#: Error codes (4 hex digits) and their meaning.
ERROR_CODES: dict[str, str] = {
    "0001": "an error occurred",
    "0002": "timeout",
    "0003": "command not recognised",
    "0004": "unknown error",
    "0005": "invalid hex value",
    "0006": "nothing is running",
    "0007": "bad argument value",
    "0008": "line too long (more than 128 characters)",
    "0014": "OCP measurement requested with the cell on",
    "001B": "not supported by this device",
    "4001": "unknown script command",
    "4004": "unexpected character",
    "400B": "nested measurement loops",
    "4205": "argument out of bounds",
    "7FFF": "fatal error",
}


class MethodScriptError(DeviceError):
    """The device replied ``!XXXX``: ``code`` (4 hex digits), ``meaning``, script ``line``/``col`` when given."""

    def __init__(self, code: str, line: int | None = None, col: int | None = None, raw: str = "") -> None:
        self.meaning = ERROR_CODES.get(code.upper(), "unlisted error code")
        where = f" at script line {line}, col {col}" if line is not None else ""
        super().__init__(f"MethodSCRIPT device error {code.upper()}: {self.meaning}{where}", code=code.upper())
        self.line = line
        self.col = col
        self.raw = raw


class MethodScriptProtocolError(DeviceError):
    """A reply that is not MethodSCRIPT (garbage, truncated or malformed)."""


# --------------------------------------------------------------------------- values
def decode_value(hex7: str, prefix: str) -> float:
    """``(int(hex7, 16) - 0x8000000) * factor(prefix)``; raises on anything else."""
    if len(hex7) != 7 or not all(ch in "0123456789ABCDEFabcdef" for ch in hex7):
        raise MethodScriptProtocolError(f"bad value digits {hex7!r} (7 hex digits expected)")
    if prefix not in PREFIXES:
        raise MethodScriptProtocolError(f"unknown SI prefix {prefix!r}")
    return (int(hex7, 16) - _OFFSET) * PREFIXES[prefix]


def encode_value(value: float, integer: bool = False) -> str:
    """The 8 characters of a package value: 7 hex digits and the finest prefix that holds it, or NaN."""
    if value is None or not math.isfinite(value):
        return "     nan"
    if integer:
        n = int(round(value))
        return f"{n + _OFFSET:07X}i"
    for p in _ENCODE_ORDER:
        n = int(round(value / PREFIXES[p]))
        if abs(n) <= _SPAN - 1:
            return f"{n + _OFFSET:07X}{p}"
    raise ValueError(f"{value!r} is too large for a MethodSCRIPT value")


@dataclass(frozen=True)
class Variable:
    """One variable of a data package: type, value (NaN allowed), status bits, range index."""

    type: str
    value: float
    status: int = 0
    range: int | None = None
    meta: tuple[str, ...] = ()

    @property
    def flags(self) -> list[str]:
        return [name for bit, name in STATUS_BITS.items() if self.status & bit]


@dataclass(frozen=True)
class Package:
    variables: tuple[Variable, ...]

    def get(self, vtype: str) -> Variable | None:
        for v in self.variables:
            if v.type == vtype:
                return v
        return None


_TYPE_RE = re.compile(r"[a-z]{2}")


def decode_variable(text: str) -> Variable:
    """``da7F85F3Fu`` / ``ba48D503Dp,10,288`` / ``ba     nan`` -> :class:`Variable`."""
    if len(text) < 10:
        raise MethodScriptProtocolError(f"truncated package variable {text!r}")
    vtype = text[:2]
    if not _TYPE_RE.fullmatch(vtype):
        raise MethodScriptProtocolError(f"bad variable type {vtype!r} in {text!r}")
    body, rest = text[2:10], text[10:]
    if body == "     nan":
        value = math.nan
    else:
        value = decode_value(body[:7], body[7])
    status, rng = 0, None
    meta: tuple[str, ...] = ()
    if rest:
        if rest[0] != ",":
            raise MethodScriptProtocolError(f"unexpected {rest!r} after the value of {text!r}")
        meta = tuple(rest[1:].split(","))
        for m in meta:
            if len(m) < 2 or not all(ch in "0123456789ABCDEFabcdef" for ch in m[1:]):
                raise MethodScriptProtocolError(f"bad metadata {m!r} in {text!r}")
            if m[0] == "1" and len(m) == 2:  # 1X: status bits
                status = int(m[1:], 16)
            elif m[0] == "2" and len(m) == 3:  # 2XX: range index
                rng = int(m[1:], 16)
            elif m[0] in "12" or not m[0].isdigit():
                raise MethodScriptProtocolError(f"bad metadata {m!r} in {text!r}")
    return Variable(vtype, value, status, rng, meta)


def decode_package(line: str) -> Package:
    """A data package line (``P`` then variables separated by ``;``)."""
    if not line.startswith("P") or len(line) < 2:
        raise MethodScriptProtocolError(f"not a data package: {line!r}")
    return Package(tuple(decode_variable(part) for part in line[1:].split(";")))


# --------------------------------------------------------------------------- reply lines
@dataclass(frozen=True)
class Reply:
    """One parsed reply line.

    ``kind``: ``ack`` (``e``), ``loop_start`` (``Mxxxx``), ``package``, ``scan_start``
    (``Cxxxx``), ``scan_end`` (``-``), ``loop_iter`` (``L``/``+``), ``loop_end`` (``*``),
    ``text`` (``T...``), ``error`` (``!XXXX``), ``end`` (empty line), ``abort`` (``Z``).
    """

    kind: str
    text: str = ""
    package: Package | None = None
    error: MethodScriptError | None = None
    extra: tuple[Reply, ...] = field(default=())


_ERR_RE = re.compile(r"^([A-Za-z])?!([0-9A-Fa-f]{4})(?:: ?Line (\d+), ?Col (\d+))?$")


def error_from_reply(line: str) -> MethodScriptError | None:
    """The error in a ``!XXXX[: Line L, Col C]`` line (optionally after an echoed character)."""
    m = _ERR_RE.match(line)
    if not m:
        return None
    return MethodScriptError(
        m.group(2), int(m.group(3)) if m.group(3) else None, int(m.group(4)) if m.group(4) else None, raw=line
    )


def _hex4(s: str) -> bool:
    return len(s) == 4 and all(ch in "0123456789ABCDEFabcdef" for ch in s)


def parse_reply(raw: bytes | str) -> Reply:
    """Parse one reply line of a running script (line end optional).  Raises
    :class:`MethodScriptProtocolError` for anything that is not MethodSCRIPT."""
    if isinstance(raw, bytes):
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            raise MethodScriptProtocolError(f"non-ASCII bytes in reply {raw[:60]!r}") from None
    else:
        line = raw
    if line.endswith("\n"):
        line = line[:-1]
    if line.endswith("\r"):
        line = line[:-1]
    if any(ord(ch) < 32 or ord(ch) > 126 for ch in line):
        raise MethodScriptProtocolError(f"control characters in reply {line[:60]!r}")
    if line == "":
        return Reply("end")
    err = error_from_reply(line)
    if err is not None:
        return Reply("error", line, error=err)
    head = line[0]
    if head == "e":
        if line == "e":
            return Reply("ack", line)
        rest = parse_reply(line[1:])  # PalmSens' Python example shows `eM0000` on one line
        if rest.kind in ("loop_start", "package"):
            return Reply("ack", line, extra=(rest,))
        raise MethodScriptProtocolError(f"unexpected reply {line[:60]!r}")
    if head == "M" and _hex4(line[1:]):
        return Reply("loop_start", line)
    if head == "C" and _hex4(line[1:]):
        return Reply("scan_start", line)
    if head == "P":
        return Reply("package", line, package=decode_package(line))
    if line in ("-",):
        return Reply("scan_end", line)
    if line in ("L", "+"):
        return Reply("loop_iter", line)
    if line == "*":
        return Reply("loop_end", line)
    if head == "T":
        return Reply("text", line[1:])
    if line == "Z":
        return Reply("abort", line)
    raise MethodScriptProtocolError(f"unexpected reply {line[:60]!r}")


# --------------------------------------------------------------------------- script literals
_LIT_RE = re.compile(r"^(-?)(\d+)([afpnumkMGTPEi]?)$")
_LIT_ORDER = ("E", "P", "T", "G", "M", "k", "", "m", "u", "n", "p", "f", "a")


def format_literal(value: float, integer: bool = False) -> str:
    """``value`` as a MethodSCRIPT number literal: an integer and an SI prefix (``-500m``, ``100k``, ``11i``).

    The literal is exact to 9 significant digits; a value that needs a decimal point at
    every prefix is rounded at the atto prefix.
    """
    if integer:
        return f"{int(round(value))}i"
    if not math.isfinite(value):
        raise ValueError(f"cannot write {value!r} as a MethodSCRIPT literal")
    if value == 0:
        return "0"
    v = float(f"{value:.9g}")
    for p in _LIT_ORDER:
        factor = PREFIXES[p or " "]
        n = v / factor
        r = round(n)
        if r != 0 and abs(n - r) <= 1e-9 * abs(n):
            return f"{int(r)}{p}"
    return f"{int(round(v / 1e-18))}a"


def parse_literal(text: str) -> float:
    """A MethodSCRIPT number literal -> float; ValueError when it is not one."""
    m = _LIT_RE.match(text)
    if not m:
        raise ValueError(f"not a MethodSCRIPT number literal: {text!r}")
    sign, digits, p = m.groups()
    val = int(digits) * PREFIXES[p or " "]
    return -val if sign else val
