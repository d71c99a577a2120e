"""The safety section: limits the engine enforces on every sample, whatever the step."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator

from labctl.core.errors import custom_error
from labctl.core.units import UnitError, parse_quantity

from .fields import QUANTITY_PATTERN, Quantity, StrictModel, fmt, qfield

__all__ = ["Safety"]


def _voltage_window(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise custom_error(
                f"the voltage window needs two values [min, max], got {len(value)}",
                "write e.g. voltage: [-2.5 V, 2.5 V]",
            )
        return value
    try:
        v = parse_quantity(value, "voltage")
    except UnitError as exc:
        raise custom_error(exc.message, exc.hint + "; or a window like [-2.5 V, 2.5 V]") from None
    if v == 0:
        raise custom_error(
            "the voltage window is empty (0 V)", "write e.g. voltage: [-2.5 V, 2.5 V] or voltage: 2.5 V for +-2.5 V"
        )
    return (f"{-abs(v)!r} V", f"{abs(v)!r} V")


VoltageWindow = Annotated[
    tuple[Annotated[float, Quantity("voltage", "-2.5 V")], Annotated[float, Quantity("voltage", "2.5 V")]],
    BeforeValidator(_voltage_window),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "array",
                    "items": {"type": "string", "pattern": QUANTITY_PATTERN},
                    "minItems": 2,
                    "maxItems": 2,
                    "examples": [["-2.5 V", "2.5 V"]],
                },
                {"type": "string", "pattern": QUANTITY_PATTERN, "examples": ["2.5 V"]},
            ]
        }
    ),
]
"""``[-2.5 V, 2.5 V]``, or ``2.5 V`` for +-2.5 V."""


class Safety(StrictModel):
    """Limits the engine enforces on every sample, whatever the step."""

    voltage_window: VoltageWindow = Field(
        default=(-5.0, 5.0),
        validation_alias="voltage",
        description="allowed cell voltage [min, max] (a single value v means [-v, +v]); outside it the run stops, cell off",
        json_schema_extra={"default": ["-5 V", "5 V"]},
    )
    current_max: Annotated[float, Quantity("current", "20 mA", positive=True, what="current")] = qfield(
        "100 mA", "largest allowed current magnitude", "current", validation_alias="current"
    )
    temperature_max: Annotated[float, Quantity("temperature", "70 degC")] | None = Field(
        default=None,
        validation_alias="temperature",
        description="highest allowed cell/stage temperature (none: no limit)",
    )
    max_duration: Annotated[float, Quantity("time", "2000 h", positive=True, what="max_duration")] | None = Field(
        default=None, description="longest allowed run time (none: no limit)"
    )
    charge_max: Annotated[float, Quantity("charge", "5 mAh", positive=True, what="charge")] | None = Field(
        default=None,
        validation_alias="charge",
        description="largest charge magnitude passed in one step (none: no limit); beyond it the run stops, cell off",
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
    def _check(self) -> Safety:
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
