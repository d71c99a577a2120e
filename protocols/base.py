"""What every step shares: its kind, label and position, the one-key unwrapping, recording."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, ValidationInfo, WithJsonSchema, model_validator
from pydantic.json_schema import SkipJsonSchema

from labctl.core.errors import custom_error, input_keys
from labctl.core.units import dimension_of

from .fields import QUANTITY_PATTERN, Quantity, StrictModel, Text, fmt
from .state import current_safety, current_state

__all__ = ["EXAMPLE_SETTINGS", "Issues", "RecordEvery", "RecordsTimeAndVoltage", "StepBase"]

Issues = list[tuple[str | None, str, str]]
"""Problems found by a model validator: ``[(field, message, hint), ...]`` for issues_error."""

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
"""A line of settings per step kind, for hints."""


class StepBase(StrictModel):
    """Common to every step: its kind, an optional label, and where it was written.

    A subclass sets ``__step_kind__`` (its YAML key) and a field
    ``kind: SkipJsonSchema[Literal["<kind>"]] = "<kind>"``.
    """

    __step_kind__: ClassVar[str] = ""
    __hidden_keys__: ClassVar[tuple[str, ...]] = ("kind", "line", "col")

    label: Annotated[str | None, Text("label", "plate")] = Field(
        None, description="optional name of this step, shown in logs and results"
    )
    line: SkipJsonSchema[int] = Field(
        0, exclude=True, description="line of the step in the file (1-based; 0 if not from a file)"
    )
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
            st = current_state()
            if st is not None and st.from_file:
                for k in ("kind", "line", "col"):
                    if k in data:
                        raise custom_error(
                            f"unknown key '{k}'",
                            f"the step kind is the key above ('{kind}'); valid keys: {', '.join(input_keys(cls))}",
                            field=k,
                            at_key=True,
                        )
            data = dict(data)
            data.setdefault("kind", kind)
        return data

    # helpers for cross-field checks ------------------------------------------------

    @staticmethod
    def _check_cutoff(issues: Issues, field: str, value: float | None) -> None:
        sf = current_safety()
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
    def _check_current(issues: Issues, field: str, current: float | None, detail: str = "") -> None:
        sf = current_safety()
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


# --------------------------------------------------------------------------- recording


def _record_every(value: Any) -> Any:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        dim = dimension_of(value) if isinstance(value, str) else None
        if dim == "voltage":
            return {"voltage": value}
        return {"time": value}
    return value


class RecordEvery(StrictModel):
    """When to record a point: every ``time`` and/or whenever the voltage moved ``voltage``."""

    time: Annotated[float, Quantity("time", "10 s", positive=True, what="record_every time")] | None = Field(
        None, description="record at least this often"
    )
    voltage: Annotated[float, Quantity("voltage", "5 mV", positive=True, what="record_every voltage")] | None = Field(
        None, description="also record whenever the voltage changed by this much"
    )

    @model_validator(mode="after")
    def _one(self) -> RecordEvery:
        if self.time is None and self.voltage is None:
            raise custom_error(
                "record_every needs a time and/or a voltage", "write e.g. record_every: {time: 10 s, voltage: 5 mV}"
            )
        return self


RECORD_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": QUANTITY_PATTERN, "examples": ["10 s", "5 mV"]},
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "time": {
                    "type": "string",
                    "pattern": QUANTITY_PATTERN,
                    "examples": ["10 s"],
                    "description": "record at least this often",
                },
                "voltage": {
                    "type": "string",
                    "pattern": QUANTITY_PATTERN,
                    "examples": ["5 mV"],
                    "description": "also record whenever the voltage changed by this much",
                },
            },
        },
    ]
}

RecordField = Annotated[RecordEvery, BeforeValidator(_record_every), WithJsonSchema(RECORD_SCHEMA)]
"""``10 s``, ``5 mV`` or ``{time: 10 s, voltage: 5 mV}``."""


def _default_record() -> RecordEvery:
    return RecordEvery.model_construct(time=10.0, voltage=None)


class RecordsTimeAndVoltage(StepBase):
    """Steps that record every time interval and/or every voltage change (cycling steps)."""

    record_every: RecordField = Field(
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
