"""Potential sweeps: tafel, lsv, cv."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from labctl.core.errors import custom_error, issues_error

from .base import Issues, StepBase
from .fields import PositiveInt, Quantity, qfield

__all__ = ["CvStep", "LsvStep", "TafelStep"]


class TafelStep(StepBase):
    """Tafel scan: rest at open circuit, then a slow linear sweep from -span to +span around OCP."""

    __step_kind__: ClassVar[str] = "tafel"
    kind: SkipJsonSchema[Literal["tafel"]] = "tafel"
    rest: Annotated[float, Quantity("time", "10 min", nonnegative=True, what="rest")] = qfield(
        "10 min", "open-circuit rest before the sweep (OCP measured at its end)", "time"
    )
    span: Annotated[float, Quantity("voltage", "200 mV", positive=True, what="span")] = qfield(
        "200 mV", "sweep from OCP - span to OCP + span", "voltage"
    )
    scan_rate: Annotated[float, Quantity("scan_rate", "1 mV/s", positive=True, what="scan_rate")] = qfield(
        "1 mV/s", "sweep rate", "scan_rate"
    )
    step: Annotated[float, Quantity("voltage", "1 mV", positive=True, what="step")] = qfield(
        "1 mV", "potential step between points", "voltage"
    )

    @model_validator(mode="after")
    def _check(self) -> TafelStep:
        if self.step > 2 * self.span:
            raise custom_error(
                "the potential step is larger than the sweep", "use a step smaller than 2 x span", field="step"
            )
        return self


class LsvStep(StepBase):
    """Linear sweep voltammetry from ``start`` to ``end``."""

    __step_kind__: ClassVar[str] = "lsv"
    kind: SkipJsonSchema[Literal["lsv"]] = "lsv"
    start: Annotated[float, Quantity("voltage", "0 V")] = Field(description="start potential")
    end: Annotated[float, Quantity("voltage", "1 V")] = Field(description="end potential")
    scan_rate: Annotated[float, Quantity("scan_rate", "1 mV/s", positive=True, what="scan_rate")] = qfield(
        "1 mV/s", "sweep rate", "scan_rate"
    )
    step: Annotated[float, Quantity("voltage", "1 mV", positive=True, what="step")] = qfield(
        "1 mV", "potential step between points", "voltage"
    )
    vs_ocp: bool = Field(
        False, description="start and end are relative to the open-circuit potential measured just before"
    )

    @model_validator(mode="after")
    def _check(self) -> LsvStep:
        issues: Issues = []
        if self.start == self.end:
            issues.append(
                ("end", "start and end are the same: nothing to sweep", "choose different start and end potentials")
            )
        elif self.step > abs(self.end - self.start):
            issues.append(("step", "the potential step is larger than the sweep", "use a smaller step"))
        if not self.vs_ocp:
            self._check_cutoff(issues, "start", self.start)
            self._check_cutoff(issues, "end", self.end)
        if issues:
            raise issues_error(issues)
        return self


class CvStep(StepBase):
    """Cyclic voltammetry: start -> vertex1 -> vertex2 -> start, ``cycles`` times."""

    __step_kind__: ClassVar[str] = "cv"
    kind: SkipJsonSchema[Literal["cv"]] = "cv"
    start: Annotated[float, Quantity("voltage", "0 V")] = Field(description="start (and end) potential")
    vertex1: Annotated[float, Quantity("voltage", "1 V")] = Field(description="first vertex potential")
    vertex2: Annotated[float, Quantity("voltage", "-1 V")] = Field(description="second vertex potential")
    scan_rate: Annotated[float, Quantity("scan_rate", "10 mV/s", positive=True, what="scan_rate")] = Field(
        description="sweep rate"
    )
    step: Annotated[float, Quantity("voltage", "1 mV", positive=True, what="step")] = qfield(
        "1 mV", "potential step between points", "voltage"
    )
    cycles: PositiveInt = Field(1, description="number of CV cycles")
    vs_ocp: bool = Field(
        False, description="potentials are relative to the open-circuit potential measured just before"
    )

    @model_validator(mode="after")
    def _check(self) -> CvStep:
        issues: Issues = []
        if self.vertex1 == self.vertex2:
            issues.append(("vertex2", "vertex1 and vertex2 are the same", "choose two different vertex potentials"))
        if not self.vs_ocp:
            for f in ("start", "vertex1", "vertex2"):
                self._check_cutoff(issues, f, getattr(self, f))
        if issues:
            raise issues_error(issues)
        return self
