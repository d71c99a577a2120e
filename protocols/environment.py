"""Steps on the cell's surroundings, not its electrodes: temperature, dip_coat."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from labctl.core.errors import custom_error, issues_error

from .base import Issues, StepBase
from .fields import Quantity, Text, fmt, qfield
from .state import current_safety, current_state

__all__ = ["DipCoatStep", "TemperatureStep"]


class TemperatureStep(StepBase):
    """Bring the temperature stage to ``setpoint`` and wait until it has held within ``band`` for ``hold``."""

    __step_kind__: ClassVar[str] = "temperature"
    kind: SkipJsonSchema[Literal["temperature"]] = "temperature"
    setpoint: Annotated[float, Quantity("temperature", "25 degC")] = Field(description="stage set point")
    band: Annotated[float, Quantity("temperature_difference", "0.2 degC", positive=True, what="band")] = qfield(
        "0.2 degC", "settled when within +-band of the set point", "temperature_difference"
    )
    hold: Annotated[float, Quantity("time", "10 min", nonnegative=True, what="hold")] = qfield(
        "10 min", "how long it must stay within the band", "time"
    )
    timeout: Annotated[float, Quantity("time", "2 h", positive=True, what="timeout")] = qfield(
        "2 h", "fail the step if not settled after this long", "time"
    )
    record_every: Annotated[float, Quantity("time", "10 s", positive=True, what="record_every")] = qfield(
        "10 s", "record the temperature (and OCV) this often", "time"
    )

    @model_validator(mode="after")
    def _check(self) -> TemperatureStep:
        issues: Issues = []
        sf = current_safety()
        if sf is not None and sf.temperature_max is not None and self.setpoint > sf.temperature_max:
            issues.append(
                (
                    "setpoint",
                    f"the set point {fmt(self.setpoint, 'degC')} is above the safety limit {fmt(sf.temperature_max, 'degC')}",
                    "lower the set point or raise safety.temperature",
                ),
            )
        if self.timeout <= self.hold:
            issues.append(
                (
                    "timeout",
                    f"timeout {fmt(self.timeout, 's')} is not longer than hold {fmt(self.hold, 's')}",
                    "make the timeout longer than the hold",
                )
            )
        if issues:
            raise issues_error(issues)
        return self


def _cells(value: Any) -> Any:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, list):
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


def _concentration(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise custom_error(f"expected a concentration like '2 vol%', got {value!r}", "write e.g. concentration: 2 vol%")
    if isinstance(value, (int, float)):
        raise custom_error(f"the concentration {value} has no unit", f"write e.g. concentration: {value} vol%")
    if not isinstance(value, str) or not value.strip():
        raise custom_error(f"expected a concentration like '2 vol%', got {value!r}", "write e.g. concentration: 2 vol%")
    return value.strip()


class DipCoatStep(StepBase):
    """A timed manual (or automated) dip coating, logged against the sample ids.

    Nothing electrical: the engine asks the operator (or the dip coater) to
    immerse, waits ``immersion``, asks for the rinse, waits ``rinse``, and records
    when each action was confirmed; a confirmation more than ``tolerance`` off the
    plan is recorded as a deviation.
    """

    __step_kind__: ClassVar[str] = "dip_coat"
    kind: SkipJsonSchema[Literal["dip_coat"]] = "dip_coat"
    cells: Annotated[list[Annotated[str, Text("cells", "[BrMg-S1]")]], BeforeValidator(_cells)] = Field(
        default_factory=list,
        description="ids of the samples coated together (default: the cell id of the protocol)",
        json_schema_extra={"examples": [["BrMg-S1", "BrMg-S2"]], "default": None},
    )
    solution: Annotated[str, Text("solution", "1-bromopropane in DME")] = Field(
        description="coating solution", json_schema_extra={"examples": ["1-bromopropane in DME"]}
    )
    concentration: Annotated[str, BeforeValidator(_concentration)] = Field(
        description="concentration, kept as text", json_schema_extra={"examples": ["2 vol%"]}
    )
    immersion: Annotated[float, Quantity("time", "1 h", positive=True, what="immersion")] = Field(
        description="immersion time"
    )
    rinse: Annotated[float, Quantity("time", "1 min", nonnegative=True, what="rinse")] = qfield(
        "1 min", "rinse time", "time"
    )
    rinse_solution: Annotated[str, Text("rinse_solution", "DME")] = Field("DME", description="rinse solvent")
    mode: Literal["manual", "automated"] = Field(
        "manual", description="manual: an operator confirms each action; automated: a dip coater does them"
    )
    operator: Annotated[str | None, Text("operator", "A. Person")] = Field(
        None, description="who does the coating (manual mode)"
    )
    tolerance: Annotated[float, Quantity("time", "60 s", positive=True, what="tolerance")] = qfield(
        "60 s", "confirmations further than this from the plan are recorded as deviations", "time"
    )

    @model_validator(mode="after")
    def _cells_default(self) -> DipCoatStep:
        if not self.cells:
            st = current_state()
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
