"""The whole protocol file: name, cell, safety limits and steps, validated together."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, ValidatorFunctionWrapHandler, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from labctl.core.errors import custom_error

from .base import StepBase
from .cell import CellSpec
from .fields import StrictModel, Text
from .safety import Safety
from .state import STATE, ValidationState, current_state
from .steps import StepList
from .structure import GroupStep, RepeatStep

__all__ = ["Protocol"]


class Protocol(StrictModel):
    """A whole protocol file, validated and resolved to SI floats."""

    name: Annotated[str, Text("name", "symmetric-0.5mA")] = Field(
        description="short name of the protocol", json_schema_extra={"examples": ["symmetric-0.5mA"]}
    )
    description: Annotated[str, Text("description", "what this protocol does and its assumptions")] = Field(
        "", description="what the protocol does, and the assumptions behind its numbers"
    )
    cell: CellSpec = Field(description="the cell under test")
    safety: Safety = Field(
        default_factory=lambda: Safety(),
        description="limits enforced on every sample; the run stops (cell off) when one is crossed",
    )
    steps: StepList = Field(description="what the cell experiences, in order")
    on_interrupt: Literal["resume", "end"] = Field(
        "resume",
        description=(
            "what `labctl resume` does with a run interrupted by a crash or SIGTERM: 'resume' continues from "
            "the last step or cycle boundary after measuring the OCV; 'end' measures the OCV and ends the run"
        ),
    )
    text: SkipJsonSchema[str] = Field("", exclude=True, description="the exact text of the file")
    source: SkipJsonSchema[str] = Field("<string>", exclude=True, description="file name (or '<string>')")

    @model_validator(mode="wrap")
    @classmethod
    def _with_state(cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Protocol:
        ctx = info.context if isinstance(info.context, dict) else {}
        st = ValidationState(from_file=bool(ctx.get("from_file")))
        if isinstance(data, dict):
            if st.from_file:
                bad = [k for k in ("text", "source") if k in data]
                if bad:
                    raise custom_error(
                        f"unknown key '{bad[0]}'",
                        "valid keys: name, description, cell, safety, steps, on_interrupt",
                        field=bad[0],
                        at_key=True,
                    )
            if "safety" not in data:
                st.safety = Safety()
        token = STATE.set(st)
        try:
            out: Protocol = handler(data)
            return out
        finally:
            STATE.reset(token)

    @field_validator("cell", mode="after")
    @classmethod
    def _keep_cell(cls, value: CellSpec) -> CellSpec:
        st = current_state()
        if st is not None:
            st.cell = value
        return value

    @field_validator("safety", mode="after")
    @classmethod
    def _keep_safety(cls, value: Safety) -> Safety:
        st = current_state()
        if st is not None:
            st.safety = value
        return value

    def iter_steps(self) -> Iterator[StepBase]:
        """Every step, depth first (groups and repeats before their children)."""

        def walk(steps: Sequence[StepBase]) -> Iterator[StepBase]:
            for s in steps:
                yield s
                if isinstance(s, (RepeatStep, GroupStep)):
                    yield from walk(s.steps)

        return walk(self.steps)
