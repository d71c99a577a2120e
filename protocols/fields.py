"""Field types of the protocol language: quantities written with units, text, C-rates.

A quantity field is annotated ``Annotated[float, Quantity("time", "6 h", positive=True,
what="duration")]``: the file holds text with a unit (``"6 h"``), the validated
model an SI float (s, V, A, C, Hz, ohm; degC for temperatures), and the JSON
schema a string with a ``pattern``, ``examples`` and ``x-dimension``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from labctl.core.errors import custom_error
from labctl.core.units import UnitError, example, parse_quantity, ureg

from .state import cell_area

__all__ = [
    "CHARGE_SCHEMA",
    "MAH",
    "QUANTITY_PATTERN",
    "CRate",
    "Charge",
    "PositiveInt",
    "Quantity",
    "SpecificCapacity",
    "StrictModel",
    "Text",
    "fmt",
    "parse_c_rate",
    "qfield",
    "quantity_schema",
    "text_check",
]

from labctl.core.constants import COULOMBS_PER_MAH as MAH

"""Coulombs per mAh."""

QUANTITY_PATTERN = r"^(\s*[+\-\u2212]?(\d+(_\d+)*\.?\d*|\.\d+)([eE][+-]?\d+)?\s*\S.*|.*\{[A-Za-z_][A-Za-z0-9_]*\}.*)$"
"""A number then a unit (``0.5 mA/cm2``), or text with a for_each placeholder (``-{j}``)."""


class StrictModel(BaseModel):
    """Base of every protocol model: unknown keys are errors, text is stripped."""

    model_config = ConfigDict(extra="forbid", validate_default=False, str_strip_whitespace=True)


# --------------------------------------------------------------------------- formatting


def fmt(value: float, unit: str) -> str:
    """``fmt(0.006335, 'A')`` -> ``'6.335 mA'`` (for messages)."""
    if unit in ("degC",):
        return f"{value:.4g} degC"
    if unit == "s":
        a = abs(value)
        if a >= 3600:
            return f"{value / 3600:.4g} h"
        if a >= 60:
            return f"{value / 60:.4g} min"
        return f"{value:.4g} s"
    if value == 0:
        return f"0 {unit}"
    q = ureg.Quantity(value, unit).to_compact()
    return f"{q.magnitude:.4g} {q.units:~}".replace(" ** ", "**").replace("µ", "u")


# --------------------------------------------------------------------------- quantities


def quantity_schema(dim: str, *, examples: list[str] | None = None) -> dict[str, Any]:
    """JSON schema of a quantity written as text: number, unit, examples."""
    return {
        "type": "string",
        "pattern": QUANTITY_PATTERN,
        "examples": examples or [example(dim)],
        "x-dimension": dim,
    }


class Quantity:
    """Annotation metadata: the float field is written with units of dimension ``dim``.

    ``examples`` appear in the JSON schema (and in hints for a missing field);
    ``positive``/``nonnegative`` bound the value; ``what`` names the field in
    those messages.
    """

    __slots__ = ("dim", "examples", "nonnegative", "positive", "what")

    def __init__(
        self, dim: str, *examples: str, positive: bool = False, nonnegative: bool = False, what: str = ""
    ) -> None:
        self.dim = dim
        self.examples = tuple(examples)
        self.positive = positive
        self.nonnegative = nonnegative
        self.what = what

    @property
    def json_schema(self) -> dict[str, Any]:
        """The field's JSON schema (also read by labctl.core.errors for example values)."""
        return quantity_schema(self.dim, examples=list(self.examples) or None)

    def parse(self, value: Any) -> float:
        try:
            out = parse_quantity(value, self.dim)
        except UnitError as exc:
            raise custom_error(exc.message, exc.hint) from None
        if self.positive and not out > 0:
            raise custom_error(
                f"{self.what or 'this value'} must be greater than zero, got '{value}'",
                f"write a positive value, e.g. '{example(self.dim).lstrip('-')}'",
            )
        if self.nonnegative and out < 0:
            raise custom_error(
                f"{self.what or 'this value'} must not be negative, got '{value}'",
                f"write a value of zero or more, e.g. '{example(self.dim).lstrip('-')}'",
            )
        return out

    def __get_pydantic_core_schema__(self, source_type: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_before_validator_function(self.parse, handler(source_type))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return self.json_schema

    def __repr__(self) -> str:
        return f"Quantity({self.dim!r}, *{self.examples!r}, positive={self.positive}, nonnegative={self.nonnegative}, what={self.what!r})"


def qfield(default: str | None, description: str, dim: str, **kw: Any) -> Any:
    """A quantity field whose default is written as text (``"10 s"``) in the schema."""
    if default is None:
        return Field(None, description=description, **kw)
    value = parse_quantity(default, dim)
    return Field(value, description=description, json_schema_extra={"default": default}, **kw)


CHARGE_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": QUANTITY_PATTERN,
    "examples": ["0.5 mAh/cm2", "0.5 mAh"],
    "x-dimension": "charge | areal_charge",
}


class Charge:
    """Annotation metadata: ``0.5 mAh`` (C) or ``0.5 mAh/cm2`` (times the cell area, C); > 0."""

    __slots__ = ("what",)

    json_schema = CHARGE_SCHEMA

    def __init__(self, what: str) -> None:
        self.what = what

    def parse(self, value: Any) -> float:
        try:
            out = parse_quantity(value, "charge")
        except UnitError as exc:
            try:
                out = parse_quantity(value, "areal_charge") * cell_area()
            except UnitError:
                raise custom_error(
                    exc.message.replace("not a charge (capacity)", "not a charge or an areal capacity"),
                    "expected a charge like '0.5 mAh' or an areal capacity like '0.5 mAh/cm2'",
                ) from None
        if not out > 0:
            raise custom_error(
                f"{self.what} must be greater than zero, got '{value}'",
                "write a positive capacity, e.g. '0.5 mAh/cm2' (the sign comes from the current)",
            )
        return out

    def __get_pydantic_core_schema__(self, source_type: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_before_validator_function(self.parse, handler(source_type))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return dict(CHARGE_SCHEMA)

    def __repr__(self) -> str:
        return f"Charge({self.what!r})"


# --------------------------------------------------------------------------- C-rate, specific capacity


_C_RATE = re.compile(r"^\s*([+-]?)\s*(?:(\d*\.?\d+)\s*C|C\s*/\s*(\d*\.?\d+))\s*$", re.IGNORECASE)


def parse_c_rate(value: Any) -> float:
    """``0.1``, ``"0.1C"``, ``"C/10"``, ``"-C/10"`` -> a signed, non-zero C-rate."""
    if isinstance(value, bool):
        raise custom_error(f"expected a C-rate like 0.1 or C/10, got {value!r}", "write e.g. c_rate: 0.1")
    if isinstance(value, (int, float)):
        out = float(value)
    elif isinstance(value, str):
        s = value.replace("\u2212", "-")
        m = _C_RATE.match(s)
        if m:
            sign = -1.0 if m.group(1) == "-" else 1.0
            out = sign * (float(m.group(2)) if m.group(2) else 1.0 / float(m.group(3)))
        else:
            try:
                out = float(s)
            except ValueError:
                raise custom_error(
                    f"cannot read {value!r} as a C-rate", "write e.g. 0.1, 0.1C or C/10 (negative to discharge)"
                ) from None
    else:
        raise custom_error(f"expected a C-rate like 0.1 or C/10, got {value!r}", "write e.g. c_rate: 0.1")
    if not math.isfinite(out) or out == 0:
        raise custom_error(
            f"the C-rate must be a non-zero number, got {value!r}", "write e.g. 0.1 (charge) or -0.1 (discharge)"
        )
    return out


CRate = Annotated[
    float,
    BeforeValidator(parse_c_rate),
    WithJsonSchema(
        {"anyOf": [{"type": "number"}, {"type": "string", "examples": ["C/10", "0.1C"]}], "examples": [0.1, -0.1]}
    ),
]
"""A signed C-rate: ``0.1``, ``0.1C`` or ``C/10``."""


def _specific_capacity(value: Any) -> float:
    try:
        out = parse_quantity(value, "specific_capacity") / MAH
    except UnitError as exc:
        raise custom_error(exc.message, exc.hint) from None
    if not out > 0:
        raise custom_error(f"theoretical_capacity must be greater than zero, got '{value}'", "write e.g. '128.8 mAh/g'")
    return out


SpecificCapacity = Annotated[
    float,
    BeforeValidator(_specific_capacity),
    WithJsonSchema(quantity_schema("specific_capacity", examples=["128.8 mAh/g"])),
]
"""A specific capacity written ``128.8 mAh/g``, held in mAh/g."""


# --------------------------------------------------------------------------- text, counts


def text_check(what: str, example_text: str) -> Callable[[Any], Any]:
    """A before-validator: non-empty text (numbers become text), stripped; None passes."""

    def check(value: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise custom_error(f"{what} must be text, got {value!r}", f"write e.g. {what}: {example_text}")
        if isinstance(value, (int, float)):
            return str(value)
        if not value.strip():
            raise custom_error(f"{what} is empty", f"write e.g. {what}: {example_text}")
        return value.strip()

    return check


class Text:
    """Annotation metadata: free text for the key ``what``, e.g. ``Annotated[str, Text("id", "BrMg-S1")]``."""

    __slots__ = ("example", "what")

    def __init__(self, what: str, example_text: str) -> None:
        self.what = what
        self.example = example_text

    def __get_pydantic_core_schema__(self, source_type: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_before_validator_function(text_check(self.what, self.example), handler(source_type))

    def __repr__(self) -> str:
        return f"Text({self.what!r}, {self.example!r})"


PositiveInt = Annotated[int, Field(ge=1, strict=True)]
"""A whole number of at least 1 (times, cycles): YAML ``10``, not ``10.0`` or ``"10"``."""
