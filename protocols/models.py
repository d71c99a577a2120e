"""The protocol language as pydantic models.

Input (a YAML file) is written with units (``0.5 mA/cm2``); after validation every
field holds an SI float (s, V, A, C, Hz, ohm; degC for temperatures), resolved
with the cell's area and cathode mass, so the engine never handles units.

Sign convention: a positive current is anodic at the working electrode
(stripping Mg from it), a negative current cathodic (plating onto it).  Voltages
are working electrode minus counter electrode.
"""

from __future__ import annotations

import math
import re
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from labctl.core.constants import COULOMBS_PER_MAH as MAH
from labctl.core.constants import MO6S8_THEORETICAL_CAPACITY_MAH_G
from labctl.core.errors import custom_error, did_you_mean, issues_error
from labctl.core.units import DIMENSIONS, UnitError, dimension_of, parse_quantity, ureg

__all__ = [
    "Protocol",
    "CellSpec",
    "Safety",
    "RecordEvery",
    "ShortCircuit",
    "Step",
    "RestStep",
    "GalvanostaticStep",
    "RepeatStep",
    "GroupStep",
    "TafelStep",
    "LsvStep",
    "CvStep",
    "EisStep",
    "PotentiostaticStep",
    "TemperatureStep",
    "AurbachStep",
    "DipCoatStep",
    "STEP_TYPES",
    "MAH",
]

QUANTITY_PATTERN = r"^(\s*[+\-\u2212]?(\d+(_\d+)*\.?\d*|\.\d+)([eE][+-]?\d+)?\s*\S.*|.*\{[A-Za-z_][A-Za-z0-9_]*\}.*)$"
"""A number then a unit (``0.5 mA/cm2``), or text with a for_each placeholder (``-{j}``)."""


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


# --------------------------------------------------------------------------- validation state


@dataclass
class _State:
    """What steps need to know about the protocol around them, during validation."""

    cell: "CellSpec | None" = None
    safety: "Safety | None" = None
    from_file: bool = False


_STATE: ContextVar[_State | None] = ContextVar("labctl_protocol_state", default=None)


def _state() -> _State | None:
    return _STATE.get()


def _area() -> float:
    st = _state()
    if st is None:
        raise custom_error(
            "a per-area value needs the cell area",
            "validate steps as part of a protocol whose cell section gives 'area' or 'diameter'",
        )
    if st.cell is None:
        raise custom_error("cell invalid", "", suppress=True)
    return st.cell.area_cm2


def _safety() -> "Safety | None":
    st = _state()
    return None if st is None else st.safety


# --------------------------------------------------------------------------- quantity fields


def _quantity_schema(dim: str, *, examples: list[str] | None = None) -> dict[str, Any]:
    d = DIMENSIONS[dim]
    ex = examples or [d.example]
    return {
        "type": "string",
        "pattern": QUANTITY_PATTERN,
        "examples": ex,
        "x-dimension": dim,
    }


def _parser(dim: str, *, positive: bool = False, nonnegative: bool = False, what: str = ""):
    def parse(value: Any) -> float:
        try:
            out = parse_quantity(value, dim)
        except UnitError as exc:
            raise custom_error(exc.message, exc.hint) from None
        if positive and not out > 0:
            raise custom_error(
                f"{what or 'this value'} must be greater than zero, got '{value}'",
                f"write a positive value, e.g. '{DIMENSIONS[dim].example.lstrip('-')}'",
            )
        if nonnegative and out < 0:
            raise custom_error(
                f"{what or 'this value'} must not be negative, got '{value}'",
                f"write a value of zero or more, e.g. '{DIMENSIONS[dim].example.lstrip('-')}'",
            )
        return out

    return parse


def Q(dim: str, *, positive: bool = False, nonnegative: bool = False, what: str = "", examples: list[str] | None = None) -> Any:
    """An annotated float field written with units in the file (see :mod:`labctl.core.units`)."""
    return Annotated[
        float,
        BeforeValidator(_parser(dim, positive=positive, nonnegative=nonnegative, what=what)),
        WithJsonSchema(_quantity_schema(dim, examples=examples)),
    ]


def qfield(default: str | None, description: str, dim: str, **kw: Any) -> Any:
    """A quantity field whose default is written as text (``"10 s"``) in the schema."""
    if default is None:
        return Field(None, description=description, **kw)
    value = parse_quantity(default, dim)
    return Field(value, description=description, json_schema_extra={"default": default}, **kw)


def _charge_or_areal(value: Any, what: str) -> float:
    """``0.5 mAh`` (C) or ``0.5 mAh/cm2`` (times the cell area, C); must be > 0."""
    try:
        out = parse_quantity(value, "charge")
    except UnitError as exc:
        try:
            out = parse_quantity(value, "areal_charge") * _area()
        except UnitError:
            raise custom_error(
                exc.message.replace("not a charge (capacity)", "not a charge or an areal capacity"),
                "expected a charge like '0.5 mAh' or an areal capacity like '0.5 mAh/cm2'",
            ) from None
    if not out > 0:
        raise custom_error(
            f"{what} must be greater than zero, got '{value}'",
            "write a positive capacity, e.g. '0.5 mAh/cm2' (the sign comes from the current)",
        )
    return out


CHARGE_SCHEMA = {
    "type": "string",
    "pattern": QUANTITY_PATTERN,
    "examples": ["0.5 mAh/cm2", "0.5 mAh"],
    "x-dimension": "charge | areal_charge",
}


def _text(what: str, example: str):
    def check(value: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise custom_error(f"{what} must be text, got {value!r}", f"write e.g. {what}: {example}")
        if isinstance(value, (int, float)):
            return str(value)
        if not value.strip():
            raise custom_error(f"{what} is empty", f"write e.g. {what}: {example}")
        return value.strip()

    return check


# --------------------------------------------------------------------------- cell and safety


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=False, str_strip_whitespace=True)


class CellSpec(_Model):
    """The cell under test: what it is made of and its geometry."""

    kind: Literal["symmetric", "asymmetric", "full"] = Field(
        description="symmetric (same metal both sides), asymmetric (e.g. Mg || Al/C), or full (Mg || cathode)",
        json_schema_extra={"examples": ["symmetric"]},
    )
    id: Annotated[str | None, BeforeValidator(_text("id", "BrMg-S1"))] = Field(
        None, description="the sample/cell id written on the cell (used by dip_coat and in the results)",
        json_schema_extra={"examples": ["BrMg-S1"]},
    )
    working: Annotated[str, BeforeValidator(_text("working", "Br-Mg"))] = Field(
        description="working electrode material, e.g. Br-Mg, Mg, Al/C", json_schema_extra={"examples": ["Br-Mg"]}
    )
    counter: Annotated[str | None, BeforeValidator(_text("counter", "Br-Mg"))] = Field(
        None, description="counter electrode material; defaults to the working electrode for a symmetric cell",
        json_schema_extra={"examples": ["Br-Mg"]},
    )
    electrolyte: Annotated[str | None, BeforeValidator(_text("electrolyte", "0.5 M Mg[B(hfip)4]2 in DME"))] = Field(
        None, description="electrolyte, free text", json_schema_extra={"examples": ["0.5 M Mg[B(hfip)4]2 in DME"]}
    )
    area_cm2: Q("area", positive=True, what="area", examples=["1.267 cm2"]) | None = Field(  # type: ignore[valid-type]
        None, validation_alias="area", description="geometric electrode area (give area or diameter)"
    )
    diameter_m: Q("length", positive=True, what="diameter", examples=["12.7 mm"]) | None = Field(  # type: ignore[valid-type]
        None, validation_alias="diameter", description="electrode disc diameter; the area is pi d^2 / 4 (give area or diameter)"
    )
    cathode_mass_g: Q("mass", positive=True, what="cathode_mass", examples=["2.534 mg"]) | None = Field(  # type: ignore[valid-type]
        None, validation_alias="cathode_mass",
        description="active cathode mass of a full cell (for c_rate); or give cathode_loading",
    )
    cathode_loading_g_cm2: Q("areal_mass", positive=True, what="cathode_loading", examples=["2 mg/cm2"]) | None = Field(  # type: ignore[valid-type]
        None, validation_alias="cathode_loading",
        description="active cathode loading per area; cathode_mass = loading x area",
    )
    specific_capacity_mAh_g: Annotated[
        float,
        BeforeValidator(lambda v: _specific_capacity(v)),
        WithJsonSchema(_quantity_schema("specific_capacity", examples=[f"{MO6S8_THEORETICAL_CAPACITY_MAH_G:g} mAh/g"])),
    ] = Field(
        MO6S8_THEORETICAL_CAPACITY_MAH_G, validation_alias="theoretical_capacity",
        description=("theoretical specific capacity of the cathode defining 1C "
                     f"(Mo6S8: {MO6S8_THEORETICAL_CAPACITY_MAH_G:g} mAh/g)"),
        json_schema_extra={"default": f"{MO6S8_THEORETICAL_CAPACITY_MAH_G:g} mAh/g"},
    )

    @model_validator(mode="after")
    def _resolve(self) -> "CellSpec":
        issues: list[tuple[str | None, str, str]] = []
        given = self.model_fields_set
        if "area_cm2" in given and "diameter_m" in given:
            issues.append(("diameter", "give either area or diameter, not both", "remove one of them"))
        elif "area_cm2" not in given and "diameter_m" not in given:
            issues.append((None, "the cell needs its electrode area", "add 'area: 1.267 cm2' or 'diameter: 12.7 mm'"))
        elif "diameter_m" in given and self.diameter_m is not None:
            self.area_cm2 = math.pi * (self.diameter_m * 100.0) ** 2 / 4.0
        if "cathode_mass_g" in given and "cathode_loading_g_cm2" in given:
            issues.append(("cathode_loading", "give either cathode_mass or cathode_loading, not both", "remove one of them"))
        elif self.cathode_loading_g_cm2 is not None and self.area_cm2 is not None:
            self.cathode_mass_g = self.cathode_loading_g_cm2 * self.area_cm2
        if self.counter is None:
            if self.kind == "symmetric":
                self.counter = self.working
            else:
                issues.append((None, f"an {self.kind} cell needs its counter electrode", "add e.g. 'counter: Br-Mg'"))
        elif self.kind == "symmetric" and self.counter != self.working:
            issues.append(
                ("counter", f"a symmetric cell has the same material on both sides, got working {self.working!r} and counter {self.counter!r}",
                 "use kind: asymmetric, or make counter the same as working"),
            )
        if issues:
            raise issues_error(issues)
        return self


def _specific_capacity(value: Any) -> float:
    try:
        out = parse_quantity(value, "specific_capacity") / MAH
    except UnitError as exc:
        raise custom_error(exc.message, exc.hint) from None
    if not out > 0:
        raise custom_error(f"theoretical_capacity must be greater than zero, got '{value}'", f"write e.g. '{MO6S8_THEORETICAL_CAPACITY_MAH_G:g} mAh/g'")
    return out


def _voltage_window(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise custom_error(
                f"the voltage window needs two values [min, max], got {len(value)}", "write e.g. voltage: [-2.5 V, 2.5 V]"
            )
        return value
    try:
        v = parse_quantity(value, "voltage")
    except UnitError as exc:
        raise custom_error(exc.message, exc.hint + "; or a window like [-2.5 V, 2.5 V]") from None
    if v == 0:
        raise custom_error("the voltage window is empty (0 V)", "write e.g. voltage: [-2.5 V, 2.5 V] or voltage: 2.5 V for +-2.5 V")
    return (f"{-abs(v)!r} V", f"{abs(v)!r} V")


class Safety(_Model):
    """Limits the engine enforces on every sample, whatever the step."""

    voltage_window: Annotated[
        tuple[Q("voltage", examples=["-2.5 V"]), Q("voltage", examples=["2.5 V"])],  # type: ignore[valid-type]
        BeforeValidator(_voltage_window),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "array", "items": {"type": "string", "pattern": QUANTITY_PATTERN}, "minItems": 2, "maxItems": 2, "examples": [["-2.5 V", "2.5 V"]]},
                    {"type": "string", "pattern": QUANTITY_PATTERN, "examples": ["2.5 V"]},
                ]
            }
        ),
    ] = Field(
        (-5.0, 5.0), validation_alias="voltage",
        description="allowed cell voltage [min, max] (a single value v means [-v, +v]); outside it the run stops, cell off",
        json_schema_extra={"default": ["-5 V", "5 V"]},
    )
    current_max: Q("current", positive=True, what="current", examples=["20 mA"]) = qfield(  # type: ignore[valid-type]
        "100 mA", "largest allowed current magnitude", "current", validation_alias="current"
    )
    temperature_max: Q("temperature", examples=["70 degC"]) | None = Field(  # type: ignore[valid-type]
        None, validation_alias="temperature", description="highest allowed cell/stage temperature (none: no limit)"
    )
    max_duration: Q("time", positive=True, what="max_duration", examples=["2000 h"]) | None = Field(  # type: ignore[valid-type]
        None, description="longest allowed run time (none: no limit)"
    )

    @property
    def voltage_min(self) -> float:
        """Lower voltage limit (V)."""
        return self.voltage_window[0]

    @property
    def voltage_max(self) -> float:
        """Upper voltage limit (V)."""
        return self.voltage_window[1]

    @model_validator(mode="after")
    def _check(self) -> "Safety":
        lo, hi = self.voltage_window
        if not lo < hi:
            raise custom_error(
                f"the voltage window [{fmt(lo, 'V')}, {fmt(hi, 'V')}] is empty or upside down",
                "write [min, max], e.g. [-2.5 V, 2.5 V]",
                field="voltage",
            )
        return self

    def window_text(self) -> str:
        return f"[{fmt(self.voltage_min, 'V')}, {fmt(self.voltage_max, 'V')}]"


# --------------------------------------------------------------------------- recording


def _record_every(value: Any) -> Any:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        dim = dimension_of(value) if isinstance(value, str) else None
        if dim == "voltage":
            return {"voltage": value}
        return {"time": value}
    return value


class RecordEvery(_Model):
    """When to record a point: every ``time`` and/or whenever the voltage moved ``voltage``."""

    time: Q("time", positive=True, what="record_every time", examples=["10 s"]) | None = Field(  # type: ignore[valid-type]
        None, description="record at least this often"
    )
    voltage: Q("voltage", positive=True, what="record_every voltage", examples=["5 mV"]) | None = Field(  # type: ignore[valid-type]
        None, description="also record whenever the voltage changed by this much"
    )

    @model_validator(mode="after")
    def _one(self) -> "RecordEvery":
        if self.time is None and self.voltage is None:
            raise custom_error("record_every needs a time and/or a voltage", "write e.g. record_every: {time: 10 s, voltage: 5 mV}")
        return self


RECORD_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": QUANTITY_PATTERN, "examples": ["10 s", "5 mV"]},
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "time": {"type": "string", "pattern": QUANTITY_PATTERN, "examples": ["10 s"], "description": "record at least this often"},
                "voltage": {"type": "string", "pattern": QUANTITY_PATTERN, "examples": ["5 mV"], "description": "also record whenever the voltage changed by this much"},
            },
        },
    ]
}
RecordField = Annotated[RecordEvery, BeforeValidator(_record_every)]


def _default_record() -> RecordEvery:
    return RecordEvery.model_construct(time=10.0, voltage=None)


# --------------------------------------------------------------------------- steps


class _Step(_Model):
    """Common to every step: its kind, an optional label, and where it was written."""

    __step_kind__: ClassVar[str] = ""
    __hidden_keys__: ClassVar[tuple[str, ...]] = ("kind", "line", "col")

    label: Annotated[str | None, BeforeValidator(_text("label", "plate"))] = Field(
        None, description="optional name of this step, shown in logs and results"
    )
    line: SkipJsonSchema[int] = Field(0, exclude=True, description="line of the step in the file (1-based; 0 if not from a file)")
    col: SkipJsonSchema[int] = Field(0, exclude=True, description="column of the step in the file (1-based)")

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any, info: ValidationInfo) -> Any:
        kind = cls.__step_kind__
        if isinstance(data, dict) and len(data) == 1 and kind in data:
            inner = data[kind]
            if inner is None:
                inner = {}
            if not isinstance(inner, dict):
                raise custom_error(
                    f"'{kind}' needs its settings as a mapping, got {inner!r}",
                    f"write e.g. '- {kind}: {{{EXAMPLE_SETTINGS.get(kind, 'key: value')}}}'",
                )
            data = inner
        if isinstance(data, dict):
            st = _state()
            if st is not None and st.from_file:
                for k in ("kind", "line", "col"):
                    if k in data:
                        raise custom_error(
                            f"unknown key '{k}'",
                            f"the step kind is the key above ('{kind}'); valid keys: {', '.join(_input_keys_of(cls))}",
                            field=k,
                            at_key=True,
                        )
            data = dict(data)
            data.setdefault("kind", kind)
        return data

    # helpers for cross-field checks ------------------------------------------------

    @staticmethod
    def _check_cutoff(issues: list, field: str, value: float | None) -> None:
        sf = _safety()
        if sf is None or value is None:
            return
        if not sf.voltage_min < value < sf.voltage_max:
            issues.append(
                (
                    field,
                    f"{field} {fmt(value, 'V')} is outside the safety voltage window {sf.window_text()}",
                    "the safety limit would stop the run before this is reached: move it inside the window or widen safety.voltage",
                )
            )

    @staticmethod
    def _check_current(issues: list, field: str, current: float | None, detail: str = "") -> None:
        sf = _safety()
        if sf is None or current is None:
            return
        if abs(current) > sf.current_max * (1 + 1e-9):
            issues.append(
                (
                    field,
                    f"the current {fmt(abs(current), 'A')}{detail} exceeds the safety limit of {fmt(sf.current_max, 'A')}",
                    "lower the current or raise safety.current",
                )
            )


def _input_keys_of(cls: type[BaseModel]) -> list[str]:
    from labctl.core.errors import _input_keys

    return _input_keys(cls)


EXAMPLE_SETTINGS = {
    "rest": "duration: 6 h",
    "galvanostatic": "current_density: 0.5 mA/cm2, duration: 1 h",
    "repeat": "times: 10, steps: [...]",
    "group": "steps: [...]",
    "tafel": "span: 200 mV",
    "lsv": "start: 0 V, end: 1 V, scan_rate: 1 mV/s",
    "cv": "start: 0 V, vertex1: 1 V, vertex2: -1 V, scan_rate: 10 mV/s",
    "eis": "f_start: 1 MHz, f_end: 0.1 Hz",
    "potentiostatic": "potential: 1 V, duration: 1 h",
    "temperature": "setpoint: 25 degC",
    "aurbach_ce": "current_density: 0.5 mA/cm2, ...",
    "dip_coat": "solution: 1-bromopropane in DME, concentration: 2 vol%, immersion: 1 h",
    "for_each": "as: T, values: [25 degC, 30 degC], steps: [...]",
}


class RestStep(_Step):
    """Open circuit (cell off), recording the open-circuit voltage."""

    __step_kind__: ClassVar[str] = "rest"
    kind: SkipJsonSchema[Literal["rest"]] = "rest"
    duration: Q("time", positive=True, what="duration", examples=["6 h"]) = Field(description="how long to rest")  # type: ignore[valid-type]
    record_every: Q("time", positive=True, what="record_every", examples=["60 s"]) = qfield("10 s", "record a point this often", "time")  # type: ignore[valid-type]


def _charge_field(what: str):
    return Annotated[float, BeforeValidator(lambda v: _charge_or_areal(v, what)), WithJsonSchema(CHARGE_SCHEMA)]


class _RecordsTimeAndVoltage(_Step):
    """Steps that record every time interval and/or every voltage change (cycling steps)."""

    record_every: Annotated[RecordField, WithJsonSchema(RECORD_SCHEMA)] = Field(
        default_factory=_default_record,
        description="record every time interval and/or voltage change: '10 s' or {time: 10 s, voltage: 5 mV}",
        json_schema_extra={"default": "10 s"},
    )

    @property
    def record_every_s(self) -> float | None:
        """Recording interval (s), or None."""
        return self.record_every.time

    @property
    def record_dv(self) -> float | None:
        """Record whenever the voltage moved this much (V), or None."""
        return self.record_every.voltage


class GalvanostaticStep(_RecordsTimeAndVoltage):
    """Constant current until the first end condition is met.

    Give the current as exactly one of ``current``, ``current_density`` (times the
    cell area) or ``c_rate`` (times the cell's cathode capacity).  Signed:
    positive = anodic at the working electrode (stripping), negative = cathodic
    (plating).  At least one end condition: ``duration``, ``capacity``,
    ``voltage_above``, ``voltage_below``.
    """

    __step_kind__: ClassVar[str] = "galvanostatic"
    kind: SkipJsonSchema[Literal["galvanostatic"]] = "galvanostatic"
    current: Q("current", examples=["-0.634 mA"]) | None = Field(  # type: ignore[valid-type]
        None, description="signed current (after validation: the resolved current in A, whichever way it was given)"
    )
    current_density: Q("current_density", examples=["-0.5 mA/cm2"]) | None = Field(  # type: ignore[valid-type]
        None, description="signed current per electrode area (stored in A/cm2)"
    )
    c_rate: Annotated[
        float, BeforeValidator(lambda v: _c_rate(v)), WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "examples": ["C/10", "0.1C"]}], "examples": [0.1, -0.1]})
    ] | None = Field(None, description="signed C-rate (0.1 = C/10): current = c_rate x cathode_mass x theoretical_capacity / 1 h")
    duration: Q("time", positive=True, what="duration", examples=["1 h"]) | None = Field(None, description="end after this time")  # type: ignore[valid-type]
    capacity: _charge_field("capacity") | None = Field(  # type: ignore[valid-type]
        None, description="end after this much charge has passed (absolute like 0.5 mAh, or per area like 0.5 mAh/cm2; a magnitude)"
    )
    voltage_above: Q("voltage", examples=["1.2 V"]) | None = Field(None, description="end when the voltage rises above this")  # type: ignore[valid-type]
    voltage_below: Q("voltage", examples=["0.25 V"]) | None = Field(None, description="end when the voltage falls below this")  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _resolve(self) -> "GalvanostaticStep":
        issues: list[tuple[str | None, str, str]] = []
        given = [f for f in ("current", "current_density", "c_rate") if f in self.model_fields_set and getattr(self, f) is not None]
        detail = ""
        field = given[0] if given else None
        if not given:
            issues.append((None, "a galvanostatic step needs a current", "give one of current (5 mA), current_density (0.5 mA/cm2) or c_rate (0.1)"))
        elif len(given) > 1:
            issues.append((given[1], f"give only one of current, current_density, c_rate (found {', '.join(given)})", "remove all but one"))
        elif given[0] == "current_density":
            area = _area()
            self.current = self.current_density * area  # type: ignore[operator]
            detail = f" ({abs(self.current_density) * 1000:.4g} mA/cm2 x {area:.4g} cm2)"  # type: ignore[operator]
        elif given[0] == "c_rate":
            st = _state()
            if st is None:
                issues.append(("c_rate", "c_rate needs the cell's cathode mass", "validate this step as part of a protocol"))
            elif st.cell is None:
                raise custom_error("cell invalid", suppress=True)
            elif st.cell.cathode_mass_g is None:
                issues.append(
                    ("c_rate", "c_rate needs the cathode mass, and the cell section has none",
                     "add 'cathode_mass: 2.534 mg' (or 'cathode_loading: 2 mg/cm2') to the cell section, or give current instead"),
                )
            else:
                cap_mAh = st.cell.cathode_mass_g * st.cell.specific_capacity_mAh_g
                self.current = self.c_rate * cap_mAh / 1000.0  # type: ignore[operator]
                detail = f" ({abs(self.c_rate):g}C of {cap_mAh:.4g} mAh)"  # type: ignore[arg-type]
        if self.current is not None and field is not None and len(given) == 1:
            if self.current == 0:
                issues.append((field, "the current is zero", "use a rest step for open circuit"))
            self._check_current(issues, field, self.current, detail)
        if all(getattr(self, f) is None for f in ("duration", "capacity", "voltage_above", "voltage_below")):
            issues.append((None, "a galvanostatic step needs an end condition", "add duration (1 h), capacity (0.5 mAh/cm2), voltage_above or voltage_below"))
        self._check_cutoff(issues, "voltage_above", self.voltage_above)
        self._check_cutoff(issues, "voltage_below", self.voltage_below)
        if self.voltage_above is not None and self.voltage_below is not None and not self.voltage_below < self.voltage_above:
            issues.append(("voltage_below", "voltage_below must be lower than voltage_above", "check the two cut-offs"))
        if issues:
            raise issues_error(issues)
        return self


_C_RATE = re.compile(r"^\s*([+-]?)\s*(?:(\d*\.?\d+)\s*C|C\s*/\s*(\d*\.?\d+))\s*$", re.IGNORECASE)


def _c_rate(value: Any) -> float:
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
                raise custom_error(f"cannot read {value!r} as a C-rate", "write e.g. 0.1, 0.1C or C/10 (negative to discharge)") from None
    else:
        raise custom_error(f"expected a C-rate like 0.1 or C/10, got {value!r}", "write e.g. c_rate: 0.1")
    if not math.isfinite(out) or out == 0:
        raise custom_error(f"the C-rate must be a non-zero number, got {value!r}", "write e.g. 0.1 (charge) or -0.1 (discharge)")
    return out


class ShortCircuit(_Model):
    """What counts as a short circuit: |V| below ``below`` while current flows, for ``hold``."""

    below: Q("voltage", positive=True, what="below", examples=["10 mV"]) = qfield("10 mV", "voltage magnitude below which the cell counts as shorted", "voltage")  # type: ignore[valid-type]
    hold: Q("time", positive=True, what="hold", examples=["60 s"]) = qfield("60 s", "how long the voltage must stay below to count", "time")  # type: ignore[valid-type]


def _steps_before(value: Any) -> Any:
    if value is None or (isinstance(value, list) and not value):
        raise custom_error("the step list is empty", "add at least one step, e.g. '- rest: {duration: 1 h}'")
    return value


class RepeatStep(_Step):
    """Run ``steps`` again and again: ``times`` times, or ``until`` a condition (with a bound).

    Each iteration of a repeat that contains no other repeat is one *cycle*.
    """

    __step_kind__: ClassVar[str] = "repeat"
    kind: SkipJsonSchema[Literal["repeat"]] = "repeat"
    times: Annotated[int, Field(ge=1, strict=True)] | None = Field(None, description="number of iterations")
    until: Literal["short_circuit"] | None = Field(
        None, description="repeat until this happens (short_circuit: the cell voltage collapses towards 0 V under current)"
    )
    max_cycles: Annotated[int, Field(ge=1, strict=True)] | None = Field(
        None, description="upper bound on iterations with until (until needs max_cycles and/or max_duration)"
    )
    max_duration: Q("time", positive=True, what="max_duration", examples=["2000 h"]) | None = Field(  # type: ignore[valid-type]
        None, description="stop repeating after this time (checked between iterations and enforced within)"
    )
    short_circuit: ShortCircuit = Field(
        default_factory=lambda: ShortCircuit.model_construct(below=0.010, hold=60.0),
        description="short-circuit detection settings for until: short_circuit",
        json_schema_extra={"default": {"below": "10 mV", "hold": "60 s"}},
    )
    steps: Annotated[list["Step"], BeforeValidator(_steps_before)] = Field(description="the steps of one iteration")

    @property
    def short_below(self) -> float:
        """|V| below this (V) while current flows counts as a short."""
        return self.short_circuit.below

    @property
    def short_hold(self) -> float:
        """... held this long (s)."""
        return self.short_circuit.hold

    @model_validator(mode="after")
    def _check(self) -> "RepeatStep":
        issues: list[tuple[str | None, str, str]] = []
        if self.times is None and self.until is None:
            issues.append((None, "a repeat needs 'times' or 'until'", "add e.g. 'times: 10', or 'until: short_circuit' with 'max_cycles: 5000'"))
        elif self.times is not None and self.until is not None:
            issues.append(("until", "give either times or until, not both", "use times for a fixed count, until with max_cycles for an open-ended test"))
        elif self.until is not None and self.max_cycles is None and self.max_duration is None:
            issues.append(("until", "a repeat without a bound: 'until' needs max_cycles and/or max_duration", "add e.g. 'max_cycles: 5000' or 'max_duration: 2000 h'"))
        if self.times is not None and self.max_cycles is not None:
            issues.append(("max_cycles", "max_cycles only applies with until; with times the count is already fixed", "remove max_cycles"))
        if "short_circuit" in self.model_fields_set and self.until != "short_circuit":
            issues.append(("short_circuit", "short_circuit settings only apply with 'until: short_circuit'", "add 'until: short_circuit' or remove short_circuit"))
        if issues:
            raise issues_error(issues)
        return self


class GroupStep(_Step):
    """A named block of steps (what a ``for_each`` expands into, one group per value)."""

    __step_kind__: ClassVar[str] = "group"
    kind: SkipJsonSchema[Literal["group"]] = "group"
    steps: Annotated[list["Step"], BeforeValidator(_steps_before)] = Field(description="the steps of the group")


class TafelStep(_Step):
    """Tafel scan: rest at open circuit, then a slow linear sweep from -span to +span around OCP."""

    __step_kind__: ClassVar[str] = "tafel"
    kind: SkipJsonSchema[Literal["tafel"]] = "tafel"
    rest: Q("time", nonnegative=True, what="rest", examples=["10 min"]) = qfield("10 min", "open-circuit rest before the sweep (OCP measured at its end)", "time")  # type: ignore[valid-type]
    span: Q("voltage", positive=True, what="span", examples=["200 mV"]) = qfield("200 mV", "sweep from OCP - span to OCP + span", "voltage")  # type: ignore[valid-type]
    scan_rate: Q("scan_rate", positive=True, what="scan_rate", examples=["1 mV/s"]) = qfield("1 mV/s", "sweep rate", "scan_rate")  # type: ignore[valid-type]
    step: Q("voltage", positive=True, what="step", examples=["1 mV"]) = qfield("1 mV", "potential step between points", "voltage")  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _check(self) -> "TafelStep":
        if self.step > 2 * self.span:
            raise custom_error("the potential step is larger than the sweep", "use a step smaller than 2 x span", field="step")
        return self


class LsvStep(_Step):
    """Linear sweep voltammetry from ``start`` to ``end``."""

    __step_kind__: ClassVar[str] = "lsv"
    kind: SkipJsonSchema[Literal["lsv"]] = "lsv"
    start: Q("voltage", examples=["0 V"]) = Field(description="start potential")  # type: ignore[valid-type]
    end: Q("voltage", examples=["1 V"]) = Field(description="end potential")  # type: ignore[valid-type]
    scan_rate: Q("scan_rate", positive=True, what="scan_rate", examples=["1 mV/s"]) = qfield("1 mV/s", "sweep rate", "scan_rate")  # type: ignore[valid-type]
    step: Q("voltage", positive=True, what="step", examples=["1 mV"]) = qfield("1 mV", "potential step between points", "voltage")  # type: ignore[valid-type]
    vs_ocp: bool = Field(False, description="start and end are relative to the open-circuit potential measured just before")

    @model_validator(mode="after")
    def _check(self) -> "LsvStep":
        issues: list[tuple[str | None, str, str]] = []
        if self.start == self.end:
            issues.append(("end", "start and end are the same: nothing to sweep", "choose different start and end potentials"))
        elif self.step > abs(self.end - self.start):
            issues.append(("step", "the potential step is larger than the sweep", "use a smaller step"))
        if not self.vs_ocp:
            self._check_cutoff(issues, "start", self.start)
            self._check_cutoff(issues, "end", self.end)
        if issues:
            raise issues_error(issues)
        return self


class CvStep(_Step):
    """Cyclic voltammetry: start -> vertex1 -> vertex2 -> start, ``cycles`` times."""

    __step_kind__: ClassVar[str] = "cv"
    kind: SkipJsonSchema[Literal["cv"]] = "cv"
    start: Q("voltage", examples=["0 V"]) = Field(description="start (and end) potential")  # type: ignore[valid-type]
    vertex1: Q("voltage", examples=["1 V"]) = Field(description="first vertex potential")  # type: ignore[valid-type]
    vertex2: Q("voltage", examples=["-1 V"]) = Field(description="second vertex potential")  # type: ignore[valid-type]
    scan_rate: Q("scan_rate", positive=True, what="scan_rate", examples=["10 mV/s"]) = Field(description="sweep rate")  # type: ignore[valid-type]
    step: Q("voltage", positive=True, what="step", examples=["1 mV"]) = qfield("1 mV", "potential step between points", "voltage")  # type: ignore[valid-type]
    cycles: Annotated[int, Field(ge=1, strict=True)] = Field(1, description="number of CV cycles")
    vs_ocp: bool = Field(False, description="potentials are relative to the open-circuit potential measured just before")

    @model_validator(mode="after")
    def _check(self) -> "CvStep":
        issues: list[tuple[str | None, str, str]] = []
        if self.vertex1 == self.vertex2:
            issues.append(("vertex2", "vertex1 and vertex2 are the same", "choose two different vertex potentials"))
        if not self.vs_ocp:
            for f in ("start", "vertex1", "vertex2"):
                self._check_cutoff(issues, f, getattr(self, f))
        if issues:
            raise issues_error(issues)
        return self


class EisStep(_Step):
    """Potentiostatic impedance spectrum, from ``f_start`` (high) down to ``f_end`` (low)."""

    __step_kind__: ClassVar[str] = "eis"
    kind: SkipJsonSchema[Literal["eis"]] = "eis"
    f_start: Q("frequency", positive=True, what="f_start", examples=["1 MHz"]) = qfield("1 MHz", "highest frequency (the sweep starts here)", "frequency")  # type: ignore[valid-type]
    f_end: Q("frequency", positive=True, what="f_end", examples=["0.1 Hz"]) = qfield("0.1 Hz", "lowest frequency (the sweep ends here)", "frequency")  # type: ignore[valid-type]
    points_per_decade: Annotated[int, Field(ge=1, le=1000, strict=True)] = Field(10, description="frequencies per decade (log spaced)")
    amplitude: Q("voltage", positive=True, what="amplitude", examples=["10 mV"]) = qfield("10 mV", "AC amplitude (rms)", "voltage")  # type: ignore[valid-type]
    e_dc: Q("voltage", examples=["0 V"]) | None = Field(None, description="DC potential; none = at open circuit")  # type: ignore[valid-type]
    vs_ocp: bool = Field(True, description="e_dc is relative to the open-circuit potential")

    @model_validator(mode="after")
    def _check(self) -> "EisStep":
        if not self.f_start > self.f_end:
            raise custom_error(
                f"frequency range upside down: f_start {fmt(self.f_start, 'Hz')} is not above f_end {fmt(self.f_end, 'Hz')}",
                "EIS sweeps from high to low frequency: swap them, e.g. f_start: 1 MHz, f_end: 0.1 Hz",
                field="f_end" if "f_end" in self.model_fields_set else "f_start",
            )
        if not self.vs_ocp and self.e_dc is not None:
            issues: list = []
            self._check_cutoff(issues, "e_dc", self.e_dc)
            if issues:
                raise issues_error(issues)
        return self


class PotentiostaticStep(_Step):
    """Hold a potential for ``duration`` (or until |I| falls below ``current_below``)."""

    __step_kind__: ClassVar[str] = "potentiostatic"
    kind: SkipJsonSchema[Literal["potentiostatic"]] = "potentiostatic"
    potential: Q("voltage", examples=["1 V"]) = Field(description="potential to hold")  # type: ignore[valid-type]
    vs_ocp: bool = Field(False, description="potential is relative to the open-circuit potential measured just before")
    duration: Q("time", positive=True, what="duration", examples=["1 h"]) = Field(description="how long to hold")  # type: ignore[valid-type]
    current_below: Q("current", positive=True, what="current_below", examples=["1 uA"]) | None = Field(  # type: ignore[valid-type]
        None, description="end early when |I| falls below this"
    )
    record_every: Q("time", positive=True, what="record_every", examples=["10 s"]) = qfield("10 s", "record a point this often", "time")  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _check(self) -> "PotentiostaticStep":
        if not self.vs_ocp:
            issues: list = []
            self._check_cutoff(issues, "potential", self.potential)
            if issues:
                raise issues_error(issues)
        return self


class TemperatureStep(_Step):
    """Bring the temperature stage to ``setpoint`` and wait until it has held within ``band`` for ``hold``."""

    __step_kind__: ClassVar[str] = "temperature"
    kind: SkipJsonSchema[Literal["temperature"]] = "temperature"
    setpoint: Q("temperature", examples=["25 degC"]) = Field(description="stage set point")  # type: ignore[valid-type]
    band: Q("temperature_difference", positive=True, what="band", examples=["0.2 degC"]) = qfield("0.2 degC", "settled when within +-band of the set point", "temperature_difference")  # type: ignore[valid-type]
    hold: Q("time", nonnegative=True, what="hold", examples=["10 min"]) = qfield("10 min", "how long it must stay within the band", "time")  # type: ignore[valid-type]
    timeout: Q("time", positive=True, what="timeout", examples=["2 h"]) = qfield("2 h", "fail the step if not settled after this long", "time")  # type: ignore[valid-type]
    record_every: Q("time", positive=True, what="record_every", examples=["10 s"]) = qfield("10 s", "record the temperature (and OCV) this often", "time")  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _check(self) -> "TemperatureStep":
        issues: list[tuple[str | None, str, str]] = []
        sf = _safety()
        if sf is not None and sf.temperature_max is not None and self.setpoint > sf.temperature_max:
            issues.append(
                ("setpoint", f"the set point {fmt(self.setpoint, 'degC')} is above the safety limit {fmt(sf.temperature_max, 'degC')}",
                 "lower the set point or raise safety.temperature"),
            )
        if self.timeout <= self.hold:
            issues.append(("timeout", f"timeout {fmt(self.timeout, 's')} is not longer than hold {fmt(self.hold, 's')}", "make the timeout longer than the hold"))
        if issues:
            raise issues_error(issues)
        return self


class AurbachStep(_RecordsTimeAndVoltage):
    """Aurbach coulombic-efficiency test (on an asymmetric cell, e.g. Mg || Al/C).

    1. plate ``reservoir`` (Q_T) onto the working electrode at -current;
    2. ``cycles`` times: strip then plate ``cycle_capacity`` (Q_C) at +-current;
    3. strip at +current until the voltage rises to ``strip_cutoff`` (Q_S).

    CE_avg = (cycles x Q_C + Q_S) / (cycles x Q_C + Q_T).  The step counts its own
    cycles (they are not cycles of an enclosing repeat).
    """

    __step_kind__: ClassVar[str] = "aurbach_ce"
    kind: SkipJsonSchema[Literal["aurbach_ce"]] = "aurbach_ce"
    current: Q("current", positive=True, what="current", examples=["0.634 mA"]) | None = Field(  # type: ignore[valid-type]
        None, description="current magnitude (after validation: resolved, in A)"
    )
    current_density: Q("current_density", positive=True, what="current_density", examples=["0.5 mA/cm2"]) | None = Field(  # type: ignore[valid-type]
        None, description="current magnitude per area (stored in A/cm2)"
    )
    reservoir: _charge_field("reservoir") = Field(description="Q_T, the charge plated first (5 mAh/cm2 or an absolute mAh)")  # type: ignore[valid-type]
    cycles: Annotated[int, Field(ge=1, strict=True)] = Field(description="number of strip/plate cycles of cycle_capacity")
    cycle_capacity: _charge_field("cycle_capacity") = Field(description="Q_C, the charge stripped and re-plated each cycle")  # type: ignore[valid-type]
    strip_cutoff: Q("voltage", examples=["1 V"]) = Field(description="the final strip ends when the voltage rises to this")  # type: ignore[valid-type]
    max_strip_duration: Q("time", positive=True, what="max_strip_duration", examples=["20 h"]) = qfield("20 h", "fail-safe: end the final strip after this long", "time")  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _resolve(self) -> "AurbachStep":
        issues: list[tuple[str | None, str, str]] = []
        given = [f for f in ("current", "current_density") if f in self.model_fields_set and getattr(self, f) is not None]
        field = given[0] if given else None
        detail = ""
        if not given:
            issues.append((None, "aurbach_ce needs a current", "give current_density (0.5 mA/cm2) or current (0.634 mA)"))
        elif len(given) > 1:
            issues.append(("current_density", "give either current or current_density, not both", "remove one of them"))
        elif given[0] == "current_density":
            area = _area()
            self.current = self.current_density * area  # type: ignore[operator]
            detail = f" ({self.current_density * 1000:.4g} mA/cm2 x {area:.4g} cm2)"  # type: ignore[operator]
        if field and len(given) == 1:
            self._check_current(issues, field, self.current, detail)
        if self.cycle_capacity > self.reservoir:
            issues.append(
                ("cycle_capacity", f"cycle_capacity ({self.cycle_capacity / MAH:.4g} mAh) is larger than the reservoir ({self.reservoir / MAH:.4g} mAh)",
                 "the reservoir must hold at least one cycle's charge"),
            )
        self._check_cutoff(issues, "strip_cutoff", self.strip_cutoff)
        if self.strip_cutoff <= 0:
            issues.append(("strip_cutoff", f"strip_cutoff {fmt(self.strip_cutoff, 'V')} is not positive", "stripping raises the working electrode potential: use e.g. 1 V"))
        if issues:
            raise issues_error(issues)
        return self


def _cells(value: Any) -> Any:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, list):
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


class DipCoatStep(_Step):
    """A timed manual (or automated) dip coating, logged against the sample ids.

    Nothing electrical: the engine asks the operator (or the dip coater) to
    immerse, waits ``immersion``, asks for the rinse, waits ``rinse``, and records
    when each action was confirmed; a confirmation more than ``tolerance`` off the
    plan is recorded as a deviation.
    """

    __step_kind__: ClassVar[str] = "dip_coat"
    kind: SkipJsonSchema[Literal["dip_coat"]] = "dip_coat"
    cells: Annotated[list[Annotated[str, BeforeValidator(_text("cells", "[BrMg-S1]"))]], BeforeValidator(_cells)] = Field(
        None, description="ids of the samples coated together (default: the cell id of the protocol)",  # type: ignore[arg-type]
        json_schema_extra={"examples": [["BrMg-S1", "BrMg-S2"]]},
    )
    solution: Annotated[str, BeforeValidator(_text("solution", "1-bromopropane in DME"))] = Field(
        description="coating solution", json_schema_extra={"examples": ["1-bromopropane in DME"]}
    )
    concentration: Annotated[str, BeforeValidator(lambda v: _concentration(v))] = Field(
        description="concentration, kept as text", json_schema_extra={"examples": ["2 vol%"]}
    )
    immersion: Q("time", positive=True, what="immersion", examples=["1 h"]) = Field(description="immersion time")  # type: ignore[valid-type]
    rinse: Q("time", nonnegative=True, what="rinse", examples=["1 min"]) = qfield("1 min", "rinse time", "time")  # type: ignore[valid-type]
    rinse_solution: Annotated[str, BeforeValidator(_text("rinse_solution", "DME"))] = Field("DME", description="rinse solvent")
    mode: Literal["manual", "automated"] = Field("manual", description="manual: an operator confirms each action; automated: a dip coater does them")
    operator: Annotated[str | None, BeforeValidator(_text("operator", "A. Person"))] = Field(None, description="who does the coating (manual mode)")
    tolerance: Q("time", positive=True, what="tolerance", examples=["60 s"]) = qfield("60 s", "confirmations further than this from the plan are recorded as deviations", "time")  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _cells_default(self) -> "DipCoatStep":
        if not self.cells:
            st = _state()
            if st is not None and st.cell is None:
                raise custom_error("cell invalid", suppress=True)  # the cell section's error is reported
            cell_id = st.cell.id if st is not None and st.cell is not None else None
            if cell_id:
                self.cells = [cell_id]
            else:
                raise custom_error(
                    "a dip-coat step needs the id of the cell(s) it coats",
                    "add 'cells: [BrMg-S1]' to the step, or 'id: BrMg-S1' to the cell section",
                    field="cells" if "cells" in self.model_fields_set else None,
                )
        return self


def _concentration(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise custom_error(f"expected a concentration like '2 vol%', got {value!r}", "write e.g. concentration: 2 vol%")
    if isinstance(value, (int, float)):
        raise custom_error(f"the concentration {value} has no unit", f"write e.g. concentration: {value} vol%")
    if not isinstance(value, str) or not value.strip():
        raise custom_error(f"expected a concentration like '2 vol%', got {value!r}", "write e.g. concentration: 2 vol%")
    return value.strip()


STEP_TYPES: dict[str, type[_Step]] = {
    c.__step_kind__: c
    for c in (
        RestStep,
        GalvanostaticStep,
        RepeatStep,
        GroupStep,
        TafelStep,
        LsvStep,
        CvStep,
        EisStep,
        PotentiostaticStep,
        TemperatureStep,
        AurbachStep,
        DipCoatStep,
    )
}
"""Step kind (the YAML key) -> model class.  ``for_each`` is expanded into groups at load time."""

INPUT_STEP_KINDS = [*STEP_TYPES, "for_each"]


def _step_tag(value: Any) -> str | None:
    if isinstance(value, _Step):
        return value.kind  # type: ignore[attr-defined]
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value))
    return None


def _check_step(value: Any) -> Any:
    if isinstance(value, _Step):
        return value
    example = "'- rest: {duration: 1 h}'"
    if not isinstance(value, dict) or not value:
        raise custom_error(
            f"a step must be a mapping with one key, the step kind; got {value!r}",
            f"write e.g. {example}; step kinds: {', '.join(INPUT_STEP_KINDS)}",
        )
    keys = list(value)
    if len(keys) > 1:
        kinds = [k for k in keys if k in STEP_TYPES or k == "for_each"]
        if len(kinds) == 1:
            other = [k for k in keys if k != kinds[0]]
            raise custom_error(
                f"'{other[0]}' is beside the step kind '{kinds[0]}' instead of inside it",
                f"indent the settings under '{kinds[0]}:' (or write '- {kinds[0]}: {{{', '.join(f'{o}: ...' for o in other)}}}')",
                field=other[0],
                at_key=True,
            )
        raise custom_error(
            f"a step has exactly one key, its kind; found {len(keys)}: {', '.join(map(str, keys))}",
            "start each step with its own '- '",
        )
    key = keys[0]
    if key == "for_each":
        raise custom_error("for_each reported", suppress=True)  # malformed; reported by the expansion
    if key not in STEP_TYPES:
        dym = did_you_mean(str(key), INPUT_STEP_KINDS)
        raise custom_error(
            f"unknown step '{key}'",
            (dym + " " if dym else "") + f"step kinds: {', '.join(INPUT_STEP_KINDS)}",
            field=key,
            at_key=True,
        )
    return value


Step = Annotated[
    Union[tuple(Annotated[cls, Tag(kind)] for kind, cls in STEP_TYPES.items())],  # type: ignore[valid-type]
    Discriminator(_step_tag),
    BeforeValidator(_check_step),
]
"""One step of a protocol: any of :data:`STEP_TYPES`, chosen by its YAML key."""

StepList = Annotated[list[Step], BeforeValidator(_steps_before)]  # type: ignore[valid-type]


# --------------------------------------------------------------------------- protocol


class Protocol(_Model):
    """A whole protocol file, validated and resolved to SI floats."""

    name: Annotated[str, BeforeValidator(_text("name", "symmetric-0.5mA"))] = Field(
        description="short name of the protocol", json_schema_extra={"examples": ["symmetric-0.5mA"]}
    )
    description: Annotated[str, BeforeValidator(_text("description", "what this protocol does and its assumptions"))] = Field(
        "", description="what the protocol does, and the assumptions behind its numbers"
    )
    cell: CellSpec = Field(description="the cell under test")
    safety: Safety = Field(default_factory=Safety, description="limits enforced on every sample; the run stops (cell off) when one is crossed")
    steps: StepList = Field(description="what the cell experiences, in order")  # type: ignore[valid-type]
    text: SkipJsonSchema[str] = Field("", exclude=True, description="the exact text of the file")
    source: SkipJsonSchema[str] = Field("<string>", exclude=True, description="file name (or '<string>')")

    @model_validator(mode="wrap")
    @classmethod
    def _with_state(cls, data: Any, handler: Any, info: ValidationInfo) -> "Protocol":
        ctx = info.context if isinstance(info.context, dict) else {}
        st = _State(from_file=bool(ctx.get("from_file")))
        if isinstance(data, dict):
            if st.from_file:
                bad = [k for k in ("text", "source") if k in data]
                if bad:
                    raise custom_error(
                        f"unknown key '{bad[0]}'",
                        "valid keys: name, description, cell, safety, steps",
                        field=bad[0],
                        at_key=True,
                    )
            if "safety" not in data:
                st.safety = Safety()
        token = _STATE.set(st)
        try:
            return handler(data)
        finally:
            _STATE.reset(token)

    @field_validator("cell", mode="after")
    @classmethod
    def _keep_cell(cls, value: CellSpec) -> CellSpec:
        st = _state()
        if st is not None:
            st.cell = value
        return value

    @field_validator("safety", mode="after")
    @classmethod
    def _keep_safety(cls, value: Safety) -> Safety:
        st = _state()
        if st is not None:
            st.safety = value
        return value

    def iter_steps(self):
        """Every step, depth first (groups and repeats before their children)."""

        def walk(steps):
            for s in steps:
                yield s
                if isinstance(s, (RepeatStep, GroupStep)):
                    yield from walk(s.steps)

        return walk(self.steps)


RepeatStep.model_rebuild()
GroupStep.model_rebuild()
Protocol.model_rebuild()
