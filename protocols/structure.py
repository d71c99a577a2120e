"""Structure: repeat (cycles, until a short circuit) and group (what for_each expands into)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from labctl.core.errors import custom_error, issues_error

from .base import Issues, StepBase
from .fields import PositiveInt, Quantity, StrictModel, qfield

if TYPE_CHECKING:
    from .steps import Step

__all__ = ["GroupStep", "RepeatStep", "ShortCircuit", "steps_not_empty"]


def steps_not_empty(value: Any) -> Any:
    """Before-validator of a step list: refuse a missing or empty list with a hint."""
    if value is None or (isinstance(value, list) and not value):
        raise custom_error("the step list is empty", "add at least one step, e.g. '- rest: {duration: 1 h}'")
    return value


class ShortCircuit(StrictModel):
    """What counts as a short circuit: |V| below ``below`` while current flows, for ``hold``."""

    below: Annotated[float, Quantity("voltage", "10 mV", positive=True, what="below")] = qfield(
        "10 mV", "voltage magnitude below which the cell counts as shorted", "voltage"
    )
    hold: Annotated[float, Quantity("time", "60 s", positive=True, what="hold")] = qfield(
        "60 s", "how long the voltage must stay below to count", "time"
    )


def _default_short_circuit() -> ShortCircuit:
    return ShortCircuit.model_construct(below=0.010, hold=60.0)


class RepeatStep(StepBase):
    """Run ``steps`` again and again: ``times`` times, or ``until`` a condition (with a bound).

    Each iteration of a repeat that contains no other repeat is one *cycle*.
    """

    __step_kind__: ClassVar[str] = "repeat"
    kind: SkipJsonSchema[Literal["repeat"]] = "repeat"
    times: PositiveInt | None = Field(None, description="number of iterations")
    until: Literal["short_circuit"] | None = Field(
        None,
        description="repeat until this happens (short_circuit: the cell voltage collapses towards 0 V under current)",
    )
    max_cycles: PositiveInt | None = Field(
        None, description="upper bound on iterations with until (until needs max_cycles and/or max_duration)"
    )
    max_duration: Annotated[float, Quantity("time", "2000 h", positive=True, what="max_duration")] | None = Field(
        None, description="stop repeating after this time (checked between iterations and enforced within)"
    )
    short_circuit: ShortCircuit = Field(
        default_factory=_default_short_circuit,
        description="short-circuit detection settings for until: short_circuit",
        json_schema_extra={"default": {"below": "10 mV", "hold": "60 s"}},
    )
    steps: Annotated[list[Step], BeforeValidator(steps_not_empty)] = Field(description="the steps of one iteration")

    @property
    def short_below(self) -> float:
        """|V| below this (V) while current flows counts as a short."""
        return self.short_circuit.below

    @property
    def short_hold(self) -> float:
        """... held this long (s)."""
        return self.short_circuit.hold

    @model_validator(mode="after")
    def _check(self) -> RepeatStep:
        issues: Issues = []
        if self.times is None and self.until is None:
            issues.append(
                (
                    None,
                    "a repeat needs 'times' or 'until'",
                    "add e.g. 'times: 10', or 'until: short_circuit' with 'max_cycles: 5000'",
                )
            )
        elif self.times is not None and self.until is not None:
            issues.append(
                (
                    "until",
                    "give either times or until, not both",
                    "use times for a fixed count, until with max_cycles for an open-ended test",
                )
            )
        elif self.until is not None and self.max_cycles is None and self.max_duration is None:
            issues.append(
                (
                    "until",
                    "a repeat without a bound: 'until' needs max_cycles and/or max_duration",
                    "add e.g. 'max_cycles: 5000' or 'max_duration: 2000 h'",
                )
            )
        if self.times is not None and self.max_cycles is not None:
            issues.append(
                (
                    "max_cycles",
                    "max_cycles only applies with until; with times the count is already fixed",
                    "remove max_cycles",
                )
            )
        if "short_circuit" in self.model_fields_set and self.until != "short_circuit":
            issues.append(
                (
                    "short_circuit",
                    "short_circuit settings only apply with 'until: short_circuit'",
                    "add 'until: short_circuit' or remove short_circuit",
                )
            )
        if issues:
            raise issues_error(issues)
        return self


class GroupStep(StepBase):
    """A named block of steps (what a ``for_each`` expands into, one group per value)."""

    __step_kind__: ClassVar[str] = "group"
    kind: SkipJsonSchema[Literal["group"]] = "group"
    steps: Annotated[list[Step], BeforeValidator(steps_not_empty)] = Field(description="the steps of the group")
