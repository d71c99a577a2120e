"""Electrochemical leaf steps: rest, galvanostatic, potentiostatic, aurbach_ce.

Sign convention: a positive current is anodic at the working electrode
(stripping Mg from it), a negative current cathodic (plating onto it).  Voltages
are working electrode minus counter electrode.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from labctl.core.errors import custom_error, issues_error

from .base import Issues, RecordsTimeAndVoltage, StepBase
from .fields import MAH, Charge, CRate, PositiveInt, Quantity, fmt, qfield
from .state import cell_area, current_state

__all__ = ["AurbachStep", "GalvanostaticStep", "PotentiostaticStep", "RestStep"]


class RestStep(StepBase):
    """Open circuit (cell off), recording the open-circuit voltage."""

    __step_kind__: ClassVar[str] = "rest"
    kind: SkipJsonSchema[Literal["rest"]] = "rest"
    duration: Annotated[float, Quantity("time", "6 h", positive=True, what="duration")] = Field(
        description="how long to rest"
    )
    record_every: Annotated[float, Quantity("time", "60 s", positive=True, what="record_every")] = qfield(
        "10 s", "record a point this often", "time"
    )


class GalvanostaticStep(RecordsTimeAndVoltage):
    """Constant current until the first end condition is met.

    Give the current as exactly one of ``current``, ``current_density`` (times the
    cell area) or ``c_rate`` (times the cell's cathode capacity).  Signed:
    positive = anodic at the working electrode (stripping), negative = cathodic
    (plating).  At least one end condition: ``duration``, ``capacity``,
    ``voltage_above``, ``voltage_below``.
    """

    __step_kind__: ClassVar[str] = "galvanostatic"
    kind: SkipJsonSchema[Literal["galvanostatic"]] = "galvanostatic"
    current: Annotated[float, Quantity("current", "-0.634 mA")] | None = Field(
        None, description="signed current (after validation: the resolved current in A, whichever way it was given)"
    )
    current_density: Annotated[float, Quantity("current_density", "-0.5 mA/cm2")] | None = Field(
        None, description="signed current per electrode area (stored in A/cm2)"
    )
    c_rate: CRate | None = Field(
        None, description="signed C-rate (0.1 = C/10): current = c_rate x cathode_mass x theoretical_capacity / 1 h"
    )
    duration: Annotated[float, Quantity("time", "1 h", positive=True, what="duration")] | None = Field(
        None, description="end after this time"
    )
    capacity: Annotated[float, Charge("capacity")] | None = Field(
        None,
        description="end after this much charge has passed (absolute like 0.5 mAh, or per area like 0.5 mAh/cm2; a magnitude)",
    )
    voltage_above: Annotated[float, Quantity("voltage", "1.2 V")] | None = Field(
        None, description="end when the voltage rises above this"
    )
    voltage_below: Annotated[float, Quantity("voltage", "0.25 V")] | None = Field(
        None, description="end when the voltage falls below this"
    )

    @model_validator(mode="after")
    def _resolve(self) -> GalvanostaticStep:
        issues: Issues = []
        given = [
            f
            for f in ("current", "current_density", "c_rate")
            if f in self.model_fields_set and getattr(self, f) is not None
        ]
        detail = ""
        field = given[0] if given else None
        if not given:
            issues.append(
                (
                    None,
                    "a galvanostatic step needs a current",
                    "give one of current (5 mA), current_density (0.5 mA/cm2) or c_rate (0.1)",
                )
            )
        elif len(given) > 1:
            issues.append(
                (
                    given[1],
                    f"give only one of current, current_density, c_rate (found {', '.join(given)})",
                    "remove all but one",
                )
            )
        elif self.current_density is not None and given[0] == "current_density":
            area = cell_area()
            self.current = self.current_density * area
            detail = f" ({abs(self.current_density) * 1000:.4g} mA/cm2 x {area:.4g} cm2)"
        elif self.c_rate is not None and given[0] == "c_rate":
            st = current_state()
            if st is None:
                issues.append(
                    ("c_rate", "c_rate needs the cell's cathode mass", "validate this step as part of a protocol")
                )
            elif st.cell is None:
                raise custom_error("cell invalid", suppress=True)
            elif st.cell.cathode_mass_g is None:
                issues.append(
                    (
                        "c_rate",
                        "c_rate needs the cathode mass, and the cell section has none",
                        "add 'cathode_mass: 2.534 mg' (or 'cathode_loading: 2 mg/cm2') to the cell section, or give current instead",
                    ),
                )
            else:
                cap_mAh = st.cell.cathode_mass_g * st.cell.specific_capacity_mAh_g
                self.current = self.c_rate * cap_mAh / 1000.0
                detail = f" ({abs(self.c_rate):g}C of {cap_mAh:.4g} mAh)"
        if self.current is not None and field is not None and len(given) == 1:
            if self.current == 0:
                issues.append((field, "the current is zero", "use a rest step for open circuit"))
            self._check_current(issues, field, self.current, detail)
        if all(getattr(self, f) is None for f in ("duration", "capacity", "voltage_above", "voltage_below")):
            issues.append(
                (
                    None,
                    "a galvanostatic step needs an end condition",
                    "add duration (1 h), capacity (0.5 mAh/cm2), voltage_above or voltage_below",
                )
            )
        self._check_cutoff(issues, "voltage_above", self.voltage_above)
        self._check_cutoff(issues, "voltage_below", self.voltage_below)
        if (
            self.voltage_above is not None
            and self.voltage_below is not None
            and not self.voltage_below < self.voltage_above
        ):
            issues.append(("voltage_below", "voltage_below must be lower than voltage_above", "check the two cut-offs"))
        if issues:
            raise issues_error(issues)
        return self


class PotentiostaticStep(StepBase):
    """Hold a potential for ``duration`` (or until |I| falls below ``current_below``)."""

    __step_kind__: ClassVar[str] = "potentiostatic"
    kind: SkipJsonSchema[Literal["potentiostatic"]] = "potentiostatic"
    potential: Annotated[float, Quantity("voltage", "1 V")] = Field(description="potential to hold")
    vs_ocp: bool = Field(False, description="potential is relative to the open-circuit potential measured just before")
    duration: Annotated[float, Quantity("time", "1 h", positive=True, what="duration")] = Field(
        description="how long to hold"
    )
    current_below: Annotated[float, Quantity("current", "1 uA", positive=True, what="current_below")] | None = Field(
        None, description="end early when |I| falls below this"
    )
    record_every: Annotated[float, Quantity("time", "10 s", positive=True, what="record_every")] = qfield(
        "10 s", "record a point this often", "time"
    )

    @model_validator(mode="after")
    def _check(self) -> PotentiostaticStep:
        if not self.vs_ocp:
            issues: Issues = []
            self._check_cutoff(issues, "potential", self.potential)
            if issues:
                raise issues_error(issues)
        return self


class AurbachStep(RecordsTimeAndVoltage):
    """Aurbach coulombic-efficiency test (on an asymmetric cell, e.g. Mg || Al/C).

    1. plate ``reservoir`` (Q_T) onto the working electrode at -current;
    2. ``cycles`` times: strip then plate ``cycle_capacity`` (Q_C) at +-current;
    3. strip at +current until the voltage rises to ``strip_cutoff`` (Q_S).

    CE_avg = (cycles x Q_C + Q_S) / (cycles x Q_C + Q_T).  The step counts its own
    cycles (they are not cycles of an enclosing repeat).
    """

    __step_kind__: ClassVar[str] = "aurbach_ce"
    kind: SkipJsonSchema[Literal["aurbach_ce"]] = "aurbach_ce"
    current: Annotated[float, Quantity("current", "0.634 mA", positive=True, what="current")] | None = Field(
        None, description="current magnitude (after validation: resolved, in A)"
    )
    current_density: (
        Annotated[float, Quantity("current_density", "0.5 mA/cm2", positive=True, what="current_density")] | None
    ) = Field(None, description="current magnitude per area (stored in A/cm2)")
    reservoir: Annotated[float, Charge("reservoir")] = Field(
        description="Q_T, the charge plated first (5 mAh/cm2 or an absolute mAh)"
    )
    cycles: PositiveInt = Field(description="number of strip/plate cycles of cycle_capacity")
    cycle_capacity: Annotated[float, Charge("cycle_capacity")] = Field(
        description="Q_C, the charge stripped and re-plated each cycle"
    )
    strip_cutoff: Annotated[float, Quantity("voltage", "1 V")] = Field(
        description="the final strip ends when the voltage rises to this"
    )
    max_strip_duration: Annotated[float, Quantity("time", "20 h", positive=True, what="max_strip_duration")] = qfield(
        "20 h", "fail-safe: end the final strip after this long", "time"
    )

    @model_validator(mode="after")
    def _resolve(self) -> AurbachStep:
        issues: Issues = []
        given = [
            f for f in ("current", "current_density") if f in self.model_fields_set and getattr(self, f) is not None
        ]
        field = given[0] if given else None
        detail = ""
        if not given:
            issues.append(
                (None, "aurbach_ce needs a current", "give current_density (0.5 mA/cm2) or current (0.634 mA)")
            )
        elif len(given) > 1:
            issues.append(("current_density", "give either current or current_density, not both", "remove one of them"))
        elif self.current_density is not None and given[0] == "current_density":
            area = cell_area()
            self.current = self.current_density * area
            detail = f" ({self.current_density * 1000:.4g} mA/cm2 x {area:.4g} cm2)"
        if field and len(given) == 1:
            self._check_current(issues, field, self.current, detail)
        if self.cycle_capacity > self.reservoir:
            issues.append(
                (
                    "cycle_capacity",
                    f"cycle_capacity ({self.cycle_capacity / MAH:.4g} mAh) is larger than the reservoir ({self.reservoir / MAH:.4g} mAh)",
                    "the reservoir must hold at least one cycle's charge",
                ),
            )
        self._check_cutoff(issues, "strip_cutoff", self.strip_cutoff)
        if self.strip_cutoff <= 0:
            issues.append(
                (
                    "strip_cutoff",
                    f"strip_cutoff {fmt(self.strip_cutoff, 'V')} is not positive",
                    "stripping raises the working electrode potential: use e.g. 1 V",
                )
            )
        if issues:
            raise issues_error(issues)
        return self
