"""What a step needs to know about the protocol around it while it is validated.

:class:`labctl.protocols.Protocol` sets a :class:`ValidationState` for the time of
its validation (a context variable, so validations in threads do not mix); steps
read the cell (area, cathode mass) and the safety limits from it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labctl.core.errors import custom_error

if TYPE_CHECKING:
    from .cell import CellSpec
    from .safety import Safety

__all__ = ["STATE", "ValidationState", "cell_area", "current_safety", "current_state"]


@dataclass
class ValidationState:
    """The protocol around the steps being validated."""

    cell: CellSpec | None = None
    safety: Safety | None = None
    from_file: bool = False


STATE: ContextVar[ValidationState | None] = ContextVar("labctl_protocol_state", default=None)


def current_state() -> ValidationState | None:
    """The state of the protocol being validated, or None outside a protocol."""
    return STATE.get()


def current_safety() -> Safety | None:
    st = STATE.get()
    return None if st is None else st.safety


def cell_area() -> float:
    """The electrode area (cm2) of the protocol's cell, for per-area values."""
    st = STATE.get()
    if st is None:
        raise custom_error(
            "a per-area value needs the cell area",
            "validate steps as part of a protocol whose cell section gives 'area' or 'diameter'",
        )
    if st.cell is None or st.cell.area_cm2 is None:
        raise custom_error("cell invalid", "", suppress=True)
    return st.cell.area_cm2
