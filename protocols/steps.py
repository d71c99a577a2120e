"""The step union: one step of a protocol, chosen by its YAML key."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Discriminator, Tag

from labctl.core.errors import custom_error, did_you_mean

from .base import StepBase
from .eis import EisStep
from .electrochem import AurbachStep, GalvanostaticStep, PotentiostaticStep, RestStep
from .environment import DipCoatStep, TemperatureStep
from .structure import GroupStep, RepeatStep, steps_not_empty
from .sweeps import CvStep, LsvStep, TafelStep

__all__ = ["INPUT_STEP_KINDS", "STEP_TYPES", "Step", "StepList"]

STEP_TYPES: dict[str, type[StepBase]] = {
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
    if isinstance(value, StepBase):
        return type(value).__step_kind__
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))
    return None


def _check_step(value: Any) -> Any:
    if isinstance(value, StepBase):
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
    Annotated[RestStep, Tag("rest")]
    | Annotated[GalvanostaticStep, Tag("galvanostatic")]
    | Annotated[RepeatStep, Tag("repeat")]
    | Annotated[GroupStep, Tag("group")]
    | Annotated[TafelStep, Tag("tafel")]
    | Annotated[LsvStep, Tag("lsv")]
    | Annotated[CvStep, Tag("cv")]
    | Annotated[EisStep, Tag("eis")]
    | Annotated[PotentiostaticStep, Tag("potentiostatic")]
    | Annotated[TemperatureStep, Tag("temperature")]
    | Annotated[AurbachStep, Tag("aurbach_ce")]
    | Annotated[DipCoatStep, Tag("dip_coat")],
    Discriminator(_step_tag),
    BeforeValidator(_check_step),
]
"""One step of a protocol: any of :data:`STEP_TYPES`, chosen by its YAML key."""

StepList = Annotated[list[Step], BeforeValidator(steps_not_empty)]
"""A non-empty list of steps."""

# repeat and group hold steps: resolve their forward reference to Step now that it exists
RepeatStep.model_rebuild()
GroupStep.model_rebuild()
