"""Quantities as lab people write them, parsed into labctl's internal floats.

``parse_quantity("0.5 mA/cm2", "current_density")`` returns ``0.0005`` (A/cm2).
Spellings accepted besides pint's own: ``cm2``/``cm^2``/``cm**2``/``cm²``/``cm-2``,
``µ``/``μ``/``u`` for micro, ``Ω`` for ohm, ``°C``/``℃``/``deg C`` for degC,
``−`` (unicode minus), ``mAh``/``Ah``, ``hr``/``hrs``/``min``/``sec``/``d``.

A bare number is refused (write the unit), except an exact ``0`` for
non-temperature dimensions (zero is zero in every unit) and the dimensionless keys.

Dimension keys and the unit of the returned float:

==========================  ======  ==========================================
key                         unit    example
==========================  ======  ==========================================
time                        s       ``1 h``, ``10 min``, ``60 s``
voltage                     V       ``1.2 V``, ``5 mV``
current                     A       ``5 mA``, ``20 uA``
current_density             A/cm2   ``0.5 mA/cm2``
charge                      C       ``0.5 mAh`` (1 mAh = 3.6 C)
areal_charge                C/cm2   ``0.5 mAh/cm2``
area                        cm2     ``1.267 cm2``
length                      m       ``12.7 mm``
temperature                 degC    ``25 degC``, ``298.15 K``
temperature_difference      K       ``0.2 degC`` (a band or step, = degC)
frequency                   Hz      ``1 MHz``, ``0.1 Hz``
resistance                  ohm     ``10 ohm``, ``5 kΩ``
scan_rate                   V/s     ``1 mV/s``
mass                        g       ``2.5 mg``
areal_mass                  g/cm2   ``2 mg/cm2`` (a cathode loading)
specific_capacity           C/g     ``128.8 mAh/g``
dimensionless               1       ``0.1``, ``5 %``
==========================  ======  ==========================================
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from numbers import Real

import pint

__all__ = ["ureg", "UnitError", "parse_quantity", "dimension_of", "DIMENSIONS", "describe", "example"]

ureg: pint.UnitRegistry = pint.UnitRegistry(autoconvert_offset_to_baseunit=False, on_redefinition="raise")
"""The one unit registry of labctl (pint).  Use it for any Quantity you build."""


class UnitError(ValueError):
    """A quantity that could not be read: ``message`` says what, ``hint`` how to fix it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


@dataclass(frozen=True)
class _Dim:
    key: str
    unit: str  # unit of the returned float (pint spelling)
    noun: str  # "a voltage"
    example: str


DIMENSIONS: dict[str, _Dim] = {
    d.key: d
    for d in (
        _Dim("time", "s", "a time", "1 h"),
        _Dim("voltage", "V", "a voltage", "1.2 V"),
        _Dim("current", "A", "a current", "5 mA"),
        _Dim("current_density", "A/cm**2", "a current density", "0.5 mA/cm2"),
        _Dim("charge", "C", "a charge (capacity)", "0.5 mAh"),
        _Dim("areal_charge", "C/cm**2", "an areal capacity (charge per area)", "0.5 mAh/cm2"),
        _Dim("area", "cm**2", "an area", "1.267 cm2"),
        _Dim("length", "m", "a length", "12.7 mm"),
        _Dim("temperature", "degC", "a temperature", "25 degC"),
        _Dim("temperature_difference", "K", "a temperature difference", "0.2 degC"),
        _Dim("frequency", "Hz", "a frequency", "1 MHz"),
        _Dim("resistance", "ohm", "a resistance", "10 ohm"),
        _Dim("scan_rate", "V/s", "a scan rate", "1 mV/s"),
        _Dim("mass", "g", "a mass", "2.5 mg"),
        _Dim("areal_mass", "g/cm**2", "a mass per area (loading)", "2 mg/cm2"),
        _Dim("specific_capacity", "C/g", "a specific capacity (charge per mass)", "128.8 mAh/g"),
        _Dim("dimensionless", "", "a plain number", "0.1"),
    )
}

# Dimensions used to name what the user actually wrote, in order of preference.
_NAMED = [
    "time",
    "voltage",
    "current",
    "current_density",
    "charge",
    "areal_charge",
    "area",
    "length",
    "temperature",
    "frequency",
    "resistance",
    "scan_rate",
    "mass",
    "areal_mass",
    "specific_capacity",
    "dimensionless",
]
_DIMENSIONALITY = {k: ureg.parse_units(DIMENSIONS[k].unit or "dimensionless").dimensionality for k in _NAMED}
_EXTRA_NAMES = {
    # dimensionality -> noun, for common things that are no labctl dimension
    str(ureg.parse_units("V*s").dimensionality): "a magnetic flux / volt-second",
    str(ureg.parse_units("W").dimensionality): "a power",
    str(ureg.parse_units("J").dimensionality): "an energy",
    str(ureg.parse_units("S").dimensionality): "a conductance",
    str(ureg.parse_units("F").dimensionality): "a capacitance",
}


def describe(dimension: str) -> str:
    """The noun of a dimension key, e.g. ``"a voltage"``."""
    return DIMENSIONS[dimension].noun


def example(dimension: str) -> str:
    """An example value of a dimension key, e.g. ``"1.2 V"``."""
    return DIMENSIONS[dimension].example


_NUMBER = re.compile(r"^\s*([+-]?(?:\d+(?:_\d+)*\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(.*?)\s*$")

_REPLACE = [
    ("\u2212", "-"),  # unicode minus
    ("\u2013", "-"),  # en dash, as pasted from documents
    ("\u207b\u00b9", "**-1"),  # ⁻¹
    ("\u207b\u00b2", "**-2"),  # ⁻²
    ("\u207b\u00b3", "**-3"),  # ⁻³
    ("\u00b9", "**1"),
    ("\u00b2", "**2"),
    ("\u00b3", "**3"),
    ("\u2103", "degC"),  # ℃
    ("\u00b0C", "degC"),
    ("\u00baC", "degC"),  # masculine ordinal, a common look-alike of °
    ("\u00b0F", "degF"),
    ("\u03a9", "ohm"),  # Greek capital omega
    ("\u2126", "ohm"),  # ohm sign
    ("\u00b5", "u"),  # micro sign
    ("\u03bc", "u"),  # Greek mu
    ("\u00b7", "*"),  # middle dot
    ("\u22c5", "*"),  # dot operator
    ("^", "**"),
]
_DEG = re.compile(r"\bdeg\s+([CF])\b")
_POWER = re.compile(r"(?<=[A-Za-z])(-?[1-4])(?![\d.])")  # cm2 -> cm**2, cm-2 -> cm**-2


def _normalise_unit(unit: str) -> str:
    for old, new in _REPLACE:
        unit = unit.replace(old, new)
    unit = _DEG.sub(r"deg\1", unit)
    unit = _POWER.sub(lambda m: "**" + m.group(1), unit)
    unit = unit.replace("% ", "percent ").replace("%", "percent")
    return unit.strip()


def _what(q: pint.Quantity) -> str:
    """Name the dimension of a quantity the user wrote (for error hints)."""
    dim = q.dimensionality
    for key in _NAMED:
        if dim == _DIMENSIONALITY[key]:
            return DIMENSIONS[key].noun
    return _EXTRA_NAMES.get(str(dim), f"a quantity of dimension {dim}")


def _fmt(value: object) -> str:
    return str(value).strip()


def parse_quantity(value: object, dimension: str, *, field: str = "") -> float:
    """Parse ``value`` (e.g. ``"0.5 mA/cm2"``) as ``dimension`` and return the float.

    See the module docstring for the dimension keys and returned units.  Raises
    :class:`UnitError` (message, hint) for anything it cannot read: no unit, an
    unknown unit, the wrong dimension, a non-finite number.
    """
    if dimension not in DIMENSIONS:
        raise KeyError(f"unknown dimension {dimension!r}; known: {', '.join(DIMENSIONS)}")
    dim = DIMENSIONS[dimension]
    where = f"{field}: " if field else ""
    expected = f"{dim.noun} like '{dim.example}'"

    if isinstance(value, bool) or value is None:
        raise UnitError(f"expected {expected}, got {_fmt(value)!r}", f"write e.g. '{dim.example}'")

    if isinstance(value, pint.Quantity):
        q = value
    elif isinstance(value, Real):
        num = float(value)
        if not math.isfinite(num):
            raise UnitError(
                f"expected {expected}, got {num}", f"write a finite number with a unit, e.g. '{dim.example}'"
            )
        if dimension == "dimensionless":
            return num
        if num == 0 and dimension not in ("temperature",):
            return 0.0
        raise UnitError(
            f"{_fmt(value)} has no unit; expected {expected}",
            f"write the unit, e.g. '{_fmt(value)} {dim.example.split(' ', 1)[1]}'",
        )
    elif isinstance(value, str):
        value = value.replace("\u2212", "-").replace("\u2013", "-")
        m = _NUMBER.match(value)
        if not m:
            raise UnitError(
                f"cannot read {value!r} as {dim.noun}",
                f"write a number then a unit, e.g. '{dim.example}'",
            )
        num = float(m.group(1).replace("_", ""))
        unit = m.group(2)
        if not unit:
            if dimension == "dimensionless":
                return num
            if num == 0 and dimension != "temperature":
                return 0.0
            raise UnitError(
                f"{value.strip()!r} has no unit; expected {expected}",
                f"write the unit, e.g. '{m.group(1)} {dim.example.split(' ', 1)[1]}'",
            )
        unit_n = _normalise_unit(unit)
        if dimension in ("temperature", "temperature_difference") and unit_n in ("C", "F"):
            raise UnitError(
                f"'{value.strip()}' reads as coulombs, not a temperature"
                if unit_n == "C"
                else f"'{value.strip()}' reads as farads, not a temperature",
                f"write {m.group(1)} deg{unit_n} (or {m.group(1)} °{unit_n})",
            )
        if dimension == "temperature_difference":
            unit_n = re.sub(r"\bdeg([CF])\b", r"delta_deg\1", unit_n)
        try:
            units = ureg.parse_units(unit_n)
        except (
            pint.errors.UndefinedUnitError,
            pint.errors.DefinitionSyntaxError,
            ValueError,
            AttributeError,
            TypeError,
            AssertionError,
        ) as exc:
            raise UnitError(
                f"unknown unit {unit!r} in {value.strip()!r}",
                f"expected {expected}",
            ) from exc
        except Exception as exc:  # pint's tokenizer raises assorted errors on garbage
            raise UnitError(f"cannot read unit {unit!r} in {value.strip()!r}", f"expected {expected}") from exc
        q = ureg.Quantity(num, units)
    else:
        raise UnitError(
            f"expected {expected}, got {type(value).__name__} {_fmt(value)!r}",
            f"write a single value such as '{dim.example}'",
        )

    target = ureg.parse_units(dim.unit) if dim.unit else ureg.dimensionless
    if q.dimensionality != target.dimensionality:
        got = _what(q)
        extra = ""
        if dimension == "current_density" and got == "a current":
            extra = "; for an absolute current use the 'current' key"
        elif dimension == "current" and got == "a current density":
            extra = "; for a current per area use the 'current_density' key"
        raise UnitError(
            f"{where}'{_fmt(value)}' is {got}, not {dim.noun}",
            f"expected {expected}, got {got} ('{_fmt(value)}'){extra}",
        )
    try:
        out = float(q.to(target).magnitude)
    except pint.errors.OffsetUnitCalculusError as exc:  # e.g. degC*something
        raise UnitError(f"cannot use {_fmt(value)!r} here", f"write e.g. '{dim.example}'") from exc
    if not math.isfinite(out):
        raise UnitError(f"{_fmt(value)!r} is not a finite number", f"write e.g. '{dim.example}'")
    return out


def dimension_of(value: object) -> str | None:
    """Which dimension key a string quantity has (``"5 mA"`` -> ``"current"``), or None."""
    for key in _NAMED:
        try:
            parse_quantity(value, key)
        except UnitError:
            continue
        return key
    return None
