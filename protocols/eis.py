"""Impedance spectroscopy: the eis step."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from labctl.core.errors import custom_error, issues_error

from .base import Issues, StepBase
from .fields import Quantity, fmt, qfield

__all__ = ["EisStep"]


class EisStep(StepBase):
    """Potentiostatic impedance spectrum, from ``f_start`` (high) down to ``f_end`` (low)."""

    __step_kind__: ClassVar[str] = "eis"
    kind: SkipJsonSchema[Literal["eis"]] = "eis"
    f_start: Annotated[float, Quantity("frequency", "1 MHz", positive=True, what="f_start")] = qfield(
        "1 MHz", "highest frequency (the sweep starts here)", "frequency"
    )
    f_end: Annotated[float, Quantity("frequency", "0.1 Hz", positive=True, what="f_end")] = qfield(
        "0.1 Hz", "lowest frequency (the sweep ends here)", "frequency"
    )
    points_per_decade: Annotated[int, Field(ge=1, le=1000, strict=True)] = Field(
        10, description="frequencies per decade (log spaced)"
    )
    amplitude: Annotated[float, Quantity("voltage", "10 mV", positive=True, what="amplitude")] = qfield(
        "10 mV", "AC amplitude (rms)", "voltage"
    )
    e_dc: Annotated[float, Quantity("voltage", "0 V")] | None = Field(
        None, description="DC potential; none = at open circuit"
    )
    vs_ocp: bool = Field(True, description="e_dc is relative to the open-circuit potential")

    @model_validator(mode="after")
    def _check(self) -> EisStep:
        if not self.f_start > self.f_end:
            raise custom_error(
                f"frequency range upside down: f_start {fmt(self.f_start, 'Hz')} is not above f_end {fmt(self.f_end, 'Hz')}",
                "EIS sweeps from high to low frequency: swap them, e.g. f_start: 1 MHz, f_end: 0.1 Hz",
                field="f_end" if "f_end" in self.model_fields_set else "f_start",
            )
        if not self.vs_ocp and self.e_dc is not None:
            issues: Issues = []
            self._check_cutoff(issues, "e_dc", self.e_dc)
            if issues:
                raise issues_error(issues)
        return self
